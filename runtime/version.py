"""The package version: the installed distribution's (importlib.metadata), else the source tree's constant."""
from __future__ import annotations

__all__ = ["__version__", "DISTRIBUTION"]

DISTRIBUTION = "i24-stitch-costs"
_SOURCE_VERSION = "0.1.0"  # keep equal to pyproject.toml's [project] version (a test checks)

try:
    from importlib.metadata import PackageNotFoundError, version as _version

    try:
        __version__ = _version(DISTRIBUTION)
    except PackageNotFoundError:  # running from a source tree that was never installed
        __version__ = _SOURCE_VERSION
except ImportError:  # pragma: no cover  (Python < 3.8)
    __version__ = _SOURCE_VERSION
