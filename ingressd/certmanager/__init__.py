"""Automatic certificates: cert-manager's and kube-lego's annotations, ACME (HTTP-01), local issuers.

Modules, one job each:

- ``issuers``: ClusterIssuer and Issuer objects (``with_issuer_kinds`` adds them to a source's parser table).
- ``plan``: which certificates the snapshot asks for and from which issuer (pure).
- ``timing``: renewal times (ARI window, a third of the lifetime, jitter), backoff, ARI CertID (pure).
- ``decide``: what to do for one certificate given its stored Secret and status (pure).
- ``keys``: keys, CSRs, selfSigned/ca/temporary certificates.
- ``store``: the SecretStore and StatusStore interfaces and their state-directory files.
- ``acme_client``: certbot's ``acme`` library with ``replaces``/``profile``, accounts, orders.
- ``manager``: the asyncio reconcile loop that writes certificates back through the store.
- ``metrics``: the Prometheus collector; ``listing``: ``ingressd certs``.
"""

from .issuers import with_issuer_kinds
from .listing import certificate_entries, certificate_rows, render
from .manager import CertificateManager
from .metrics import CertificateCollector
from .plan import CertSettings, plan
from .store import FileSecretStore, FileStatusStore

__all__ = ["CertSettings", "CertificateCollector", "CertificateManager", "FileSecretStore", "FileStatusStore",
           "certificate_entries", "certificate_rows", "plan", "render", "with_issuer_kinds"]
