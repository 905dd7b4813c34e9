"""digit-recognizer: handwritten-digit recognition from first principles."""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("digit-recognizer")
except PackageNotFoundError:  # running from a checkout without installing
    __version__ = "1.0.0"

__all__ = ["__version__"]
