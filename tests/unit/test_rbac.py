"""deploy/kubernetes/rbac.yaml grants exactly ingressd/kube/rbac.py's table: nothing more, nothing
less. (That the code calls nothing outside the table is checked on the requests the API emulator
records, in tests/integration.)"""

from __future__ import annotations

from pathlib import Path

import yaml

from ingressd.kube.rbac import CLUSTER, OWN_NAMESPACE, PERMISSIONS, allows, granted

RBAC = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "rbac.yaml"


def rules_of(kind: str) -> set[tuple[str, str, str]]:
    (role,) = [d for d in yaml.safe_load_all(RBAC.read_text()) if d and d["kind"] == kind]
    triples = set()
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"{kind}: no resourceNames or nonResourceURLs"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), f"{kind}: no wildcards"
                    triple = (group, resource, verb)
                    assert triple not in triples, f"{kind}: {triple} granted twice"
                    triples.add(triple)
    return triples


def test_cluster_role_grants_exactly_the_table():
    assert rules_of("ClusterRole") == granted(CLUSTER)


def test_role_in_the_own_namespace_grants_exactly_the_table():
    assert rules_of("Role") == granted(OWN_NAMESPACE)


def test_table_has_no_duplicates_and_no_writes_beyond_the_leaders():
    triples = [(p.group, p.resource, p.verb) for p in PERMISSIONS]
    assert len(triples) == len(set(triples))
    writes = {t for t in triples if t[2] not in ("get", "list", "watch")}
    assert writes == {("networking.k8s.io", "ingresses/status", "patch"), ("", "secrets", "create"),
                      ("", "secrets", "update"), ("", "events", "create"),
                      ("coordination.k8s.io", "leases", "create"), ("coordination.k8s.io", "leases", "update"),
                      ("", "configmaps", "create"), ("", "configmaps", "update")}
    assert not any(t[2] == "delete" for t in triples)  # ingressd never deletes anything


def test_allows():
    assert allows("coordination.k8s.io", "leases", "update", "ingressd", "ingressd")
    assert not allows("coordination.k8s.io", "leases", "update", "default", "ingressd")
    assert allows("", "secrets", "create", "web", "ingressd")
    assert not allows("", "secrets", "delete", "web", "ingressd")
    assert not allows("networking.k8s.io", "ingresses", "patch", "web", "ingressd")  # never an Ingress's spec
    assert allows("", "configmaps", "update", "ingressd", "ingressd")
    assert not allows("", "configmaps", "update", "ingress-nginx", "ingressd")  # not the controller ConfigMap
