"""sharedcare: one shared care record for an Integrated Care System."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sharedcare")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
