"""guardray: small, fast guardrail classifiers for custom policies, trained at cluster scale on Ray.

Importing this package is cheap: it pulls in no Ray, DeepSpeed, vLLM or torch. Heavy
dependencies are imported inside the modules that need them.
"""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("guardray")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
