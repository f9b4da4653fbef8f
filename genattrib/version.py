"""The genattrib version: one place, read by ``genattrib.__version__``, provenance and pyproject.toml.

Example:
    >>> from genattrib.version import __version__
    >>> __version__.count(".") >= 1
    True
"""

__version__ = "0.1.0"
