"""The package version (its own module: importing it loads nothing else)."""

__version__ = "0.2.0"
