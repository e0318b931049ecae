"""KubernetesSource's snapshots, driven through its cache callbacks (no API, no IO)."""

import copy

from ingressd.kube.client import INGRESSES, SERVICES
from ingressd.sources.kubernetes import KubernetesSource


class NoClient:
    server = "http://unused"
    namespace = "default"
    _sync_factory = None


def ingress(name, host, rv):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": rv},
            "spec": {"rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}


def test_unchanged_objects_stay_identical_and_changed_keys_are_named():
    source = KubernetesSource(NoClient())
    on_ingress = source._event_handler(INGRESSES)
    on_ingress("set", ("default", "a"), ingress("a", "a.example", "1"))
    on_ingress("set", ("default", "b"), ingress("b", "b.example", "2"))
    first = source.snapshot()
    assert source.snapshot() is first  # nothing changed: the same snapshot
    a, b = first.by_key[("Ingress", "default", "a")], first.by_key[("Ingress", "default", "b")]

    # a relist delivers an equal object again (other resourceVersion): nothing changes
    on_ingress("set", ("default", "a"), ingress("a", "a.example", "3"))
    on_ingress("set", ("default", "b"), ingress("b", "b2.example", "4"))
    second = source.snapshot()
    assert second.by_key[("Ingress", "default", "a")] is a
    assert second.by_key[("Ingress", "default", "b")] is not b
    assert second.since == first.version and second.changed == {("Ingress", "default", "b")}
    assert second.changes_since(first) == {("Ingress", "default", "b")}

    on_ingress("delete", ("default", "a"), None)
    third = source.snapshot()
    assert ("Ingress", "default", "a") not in third.by_key and third.changed == {("Ingress", "default", "a")}


def test_an_invalid_object_is_a_diagnostic_naming_it_and_others_still_serve():
    source = KubernetesSource(NoClient())
    bad = ingress("bad", "not a host!", "1")
    source._event_handler(INGRESSES)("set", ("default", "bad"), bad)
    source._event_handler(SERVICES)("set", ("default", "web"), {"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "resourceVersion": "2"},
        "spec": {"ports": [{"port": 80}]}})
    snapshot = source.snapshot()
    assert [d.object for d in snapshot.diagnostics] == ["Ingress default/bad"]
    assert list(snapshot.by_key) == [("Service", "default", "web")]
    fixed = copy.deepcopy(bad)
    fixed["spec"]["rules"][0]["host"] = "ok.example"
    source._event_handler(INGRESSES)("set", ("default", "bad"), fixed)
    assert source.snapshot().diagnostics == ()
