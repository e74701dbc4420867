"""edgenas: neural architecture search for small devices.

The Python API (`edgenas.api`): `search`, `export`, `bench`, `load_run`, `make_pipeline`, and
the result types `Run`, `Winner`. The modules `edgenas.search`, `edgenas.export` and
`edgenas.bench` keep their names for `import edgenas.search as ...` / `from edgenas.search
import ...`; as attributes of the package these names are the API's functions.
"""

# The modules load first, so that these names end up bound to the API's functions (loading a
# submodule sets the package attribute of its name).
import edgenas.bench  # noqa: E402, F401
import edgenas.export  # noqa: E402, F401
import edgenas.search  # noqa: E402, F401
from edgenas.api import Run, Winner, bench, export, load_run, make_pipeline, search  # noqa: E402
from edgenas.version import __version__

__all__ = ["__version__", "search", "export", "bench", "load_run", "make_pipeline", "Run", "Winner"]
