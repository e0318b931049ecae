"""ingressd: an HTTPS ingress for Kubernetes Ingress objects, in one Python program."""

__version__ = "0.1.0"
