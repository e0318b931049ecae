"""Helpers for ingressd's integration tests: backends, the ingressd launcher, manifests, TLS, HTTP."""
