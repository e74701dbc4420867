"""edgenas: neural architecture search for small devices."""

__version__ = "0.1.0"
