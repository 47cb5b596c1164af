"""facesim: face similarity trained, tuned and served the Kubeflow way."""

from facesim.contract.version import __version__

__all__ = ["__version__"]
