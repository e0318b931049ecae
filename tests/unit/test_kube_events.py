"""Diagnostics as Events: the rate limiter and the Event body (pure)."""

from ingressd.diagnostics import ERROR, WARNING, Diagnostic
from ingressd.kube.events import EventLimiter, event_body, parse_ref


def test_same_object_and_message_once_per_repeat_window():
    limiter = EventLimiter(burst=10, per_second=1.0, repeat=600)
    key = (("Ingress", "default", "web"), "bad")
    assert limiter.allow(key, 0.0)
    assert not limiter.allow(key, 599.0)
    assert limiter.allow(key, 600.0)


def test_token_bucket_bounds_a_flood_and_refills():
    limiter = EventLimiter(burst=3, per_second=0.5, repeat=600)
    allowed = [limiter.allow((i, "m"), 0.0) for i in range(10)]
    assert allowed.count(True) == 3 and limiter.dropped == 7
    assert not limiter.allow(("x", "m"), 1.0)  # half a token
    assert limiter.allow(("x", "m"), 2.0)


def test_parse_ref():
    assert parse_ref("Ingress default/web") == ("Ingress", "default", "web")
    assert parse_ref("ClusterIssuer pebble") == ("ClusterIssuer", "", "pebble")
    assert parse_ref(None) is None and parse_ref("file") is None


def test_event_body_names_the_object_and_the_reason():
    error = event_body(Diagnostic(ERROR, "no such service", object="Ingress default/web"), "Ingress", "default",
                       "web", "uid-1", 0.0)
    assert error["reason"] == "Rejected" and error["type"] == "Warning"
    assert error["involvedObject"] == {"kind": "Ingress", "name": "web", "apiVersion": "networking.k8s.io/v1",
                                       "namespace": "default", "uid": "uid-1"}
    assert error["metadata"]["namespace"] == "default" and error["metadata"]["name"].startswith("web.")
    assert error["firstTimestamp"] == "1970-01-01T00:00:00Z"
    warning = event_body(Diagnostic(WARNING, "x", object="ClusterIssuer p"), "ClusterIssuer", "", "p", None, 0.0)
    assert warning["reason"] == "Warning" and "namespace" not in warning["involvedObject"]
