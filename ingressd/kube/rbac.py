"""Every Kubernetes API call ingressd makes, as RBAC sees it: (API group, resource, verb).

This table is the single statement of ingressd's privileges. ``deploy/kubernetes/rbac.yaml`` must
grant exactly it (tests/unit/test_rbac.py), and the integration tests record every request the API
emulator receives from ingressd and check each one is in it, and that a full scenario (two replicas,
certificates, status, failover) calls every line of it (tests/integration/test_kube_leader*.py).
Code that adds an API call adds its line here, or those tests fail.
"""

from __future__ import annotations

from typing import NamedTuple

CLUSTER = "cluster"  # any namespace (the ClusterRole)
OWN_NAMESPACE = "own-namespace"  # the pod's namespace only (the Role)


class Permission(NamedTuple):
    group: str  # "" is the core group
    resource: str  # "ingresses", or a subresource "ingresses/status"
    verb: str  # get, list, watch, create, update, patch, delete
    scope: str = CLUSTER
    why: str = ""


PERMISSIONS: tuple[Permission, ...] = (
    # the watch caches (list + watch; never a GET of one object)
    Permission("networking.k8s.io", "ingresses", "list", why="watch cache; the statuses read by the leader"),
    Permission("networking.k8s.io", "ingresses", "watch", why="watch cache"),
    Permission("networking.k8s.io", "ingressclasses", "list", why="watch cache"),
    Permission("networking.k8s.io", "ingressclasses", "watch", why="watch cache"),
    Permission("", "services", "list", why="watch cache"),
    Permission("", "services", "watch", why="watch cache"),
    Permission("discovery.k8s.io", "endpointslices", "list", why="watch cache"),
    Permission("discovery.k8s.io", "endpointslices", "watch", why="watch cache"),
    Permission("", "secrets", "list", why="watch cache (TLS Secrets, by field selector)"),
    Permission("", "secrets", "watch", why="watch cache"),
    Permission("", "configmaps", "list", why="watch cache (the --configmap and referenced ConfigMaps)"),
    Permission("", "configmaps", "watch", why="watch cache"),
    Permission("cert-manager.io", "clusterissuers", "list", why="watch cache, when the CRD exists"),
    Permission("cert-manager.io", "clusterissuers", "watch", why="watch cache"),
    Permission("cert-manager.io", "issuers", "list", why="watch cache, when the CRD exists"),
    Permission("cert-manager.io", "issuers", "watch", why="watch cache"),
    # the leader's writes
    Permission("networking.k8s.io", "ingresses/status", "patch", why="status.loadBalancer.ingress"),
    Permission("", "secrets", "get", why="before a write: is it there, does ingressd own it (label), its resourceVersion"),
    Permission("", "secrets", "create", why="certificates and ACME account keys"),
    Permission("", "secrets", "update", why="renewals, only of Secrets ingressd owns (label)"),
    Permission("", "events", "create", why="diagnostics as Events on the objects"),
    # leader election, in the pod's own namespace
    Permission("coordination.k8s.io", "leases", "get", OWN_NAMESPACE, why="leader election"),
    Permission("coordination.k8s.io", "leases", "create", OWN_NAMESPACE, why="the first replica"),
    Permission("coordination.k8s.io", "leases", "update", OWN_NAMESPACE, why="renew, take over, release"),
    # the leader's HTTP-01 answers for every replica (ConfigMap <election-id>-http01)
    Permission("", "configmaps", "get", OWN_NAMESPACE, why="the shared HTTP-01 answers"),
    Permission("", "configmaps", "create", OWN_NAMESPACE, why="the shared HTTP-01 answers"),
    Permission("", "configmaps", "update", OWN_NAMESPACE, why="the shared HTTP-01 answers"),
)


def granted(scope: str | None = None) -> set[tuple[str, str, str]]:
    """The (group, resource, verb) triples of one scope (both when None)."""
    return {(p.group, p.resource, p.verb) for p in PERMISSIONS if scope is None or p.scope == scope}


def allows(group: str, resource: str, verb: str, namespace: str | None, own_namespace: str) -> bool:
    """Whether a request is one the table grants (the RBAC check of recorded requests)."""
    for p in PERMISSIONS:
        if (p.group, p.resource, p.verb) == (group, resource, verb):
            if p.scope == CLUSTER or namespace == own_namespace:
                return True
    return False
