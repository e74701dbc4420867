"""edgenas: neural architecture search for small devices.

The Python API (`edgenas.api`, loaded on first use so that `import edgenas` stays light, e.g.
for the torch-free board agent): `search`, `export`, `bench`, `load_run`, `report`,
`profiles`, `calibrate`, `make_pipeline`, and the result types `Run`, `Winner`. No module of the
package is named like one of them (docs/architecture.md shows where each concept lives).
"""

from edgenas.version import __version__

_API = (
    "search", "export", "bench", "load_run", "report", "profiles", "calibrate", "make_pipeline", "Run", "Winner",
)  # fmt: skip
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> object:
    if name in _API:
        from edgenas import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgenas' has no attribute '{name}'")
