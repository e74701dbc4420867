"""edgenas: neural architecture search for small devices.

The Python API (`edgenas.api`, loaded on first use so that `import edgenas` stays light, e.g.
for the torch-free board agent): `search`, `export`, `bench`, `load_run`, `report`,
`profiles`, `calibrate`, `make_pipeline`, and the result types `Run`, `Winner`. The modules
`edgenas.search`, `edgenas.export`, `edgenas.bench`, `edgenas.report`, `edgenas.profiles` and
`edgenas.calibrate` keep their names for `from edgenas.search import ...`; as attributes of the
package these names are the API's functions.
"""

import sys
import types

from edgenas.version import __version__

_API = (
    "search", "export", "bench", "load_run", "report", "profiles", "calibrate", "make_pipeline", "Run", "Winner",
)  # fmt: skip
__all__ = ["__version__", *_API]


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: object) -> None:
        # Loading the submodule edgenas.search (export, bench) binds its name on the package;
        # the API's function of that name is what `edgenas.search` means.
        if name in _API and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)

    def __getattr__(self, name: str) -> object:
        if name in _API:
            from edgenas import api

            return getattr(api, name)
        raise AttributeError(f"module 'edgenas' has no attribute '{name}'")


sys.modules[__name__].__class__ = _Package
