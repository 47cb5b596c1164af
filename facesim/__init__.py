"""facesim: face similarity trained, tuned and served the Kubeflow way."""

__version__ = "0.1.0"
