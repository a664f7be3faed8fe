"""dcq: dataset colour quantization as a staged, offline DVC pipeline."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dcq")
except PackageNotFoundError:  # run from a source tree that was not installed
    __version__ = "0+unknown"
