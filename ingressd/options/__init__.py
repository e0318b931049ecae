"""Typed per-route options compiled from ingress-nginx annotations and ConfigMap keys.

Each module parses one family of values once per configuration into an immutable object whose
per-request method is as cheap as the feature allows; nothing here does IO.
"""
