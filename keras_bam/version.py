"""The package version (read by setup.cfg and by the export metadata)."""

__version__ = "0.1.0"
