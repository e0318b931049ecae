"""Running against the Kubernetes API: the client wrapper, leader election, Ingress status."""
