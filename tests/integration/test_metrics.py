"""Health, readiness and the Prometheus request counter on --metrics-port."""

from __future__ import annotations

import pytest

from support import manifests as m
from support.ingressd import launch, sample_value, samples
from support.wait import wait_until

pytestmark = pytest.mark.timeout(120)

REQUESTS = "nginx_ingress_controller_requests"


@pytest.fixture(scope="module")
def mt(tmp_path_factory, backend):
    inst = launch(tmp_path_factory.mktemp("metrics"), {
        "svc.yaml": backend.services("a"),
        "ing.yaml": [m.ingress("ing-metrics", [m.rule("m.example.com", m.path("/api", "svc-a"))],
                               namespace="default")],
    })
    yield inst
    inst.stop()


def test_healthz_and_readyz(mt):
    assert mt.metrics_get("/healthz")[0] == 200
    assert mt.metrics_get("/readyz")[0] == 200


def test_readyz_is_503_until_configuration_applied(tmp_path, backend):
    # Many objects make the first configuration take a moment; /readyz must never say 200 before it.
    ingresses = [m.ingress(f"ing-{i}", [m.rule(f"h{i}.example.com", m.path("/", "svc-a"))]) for i in range(500)]
    inst = launch(tmp_path, {"svc.yaml": backend.services("a"), "many.yaml": ingresses})
    try:
        assert inst.readyz_seen[-1] == 200
        assert set(inst.readyz_seen) <= {200, 503}, inst.readyz_seen
        # Ready means configured: the last Ingress routes right away.
        assert inst.get("/", "h499.example.com").status == 200
    finally:
        inst.stop()


def labels(status: str, method: str = "GET") -> dict:
    return dict(namespace="default", ingress="ing-metrics", service="svc-a", host="m.example.com",
                path="/api", method=method, status=status)


def test_requests_counter(mt):
    before = mt.metrics()
    base_200 = sample_value(before, REQUESTS, **labels("200"))
    base_post = sample_value(before, REQUESTS, **labels("200", "POST"))
    base_404 = sample_value(before, REQUESTS, **labels("404"))
    for i in range(7):
        assert mt.get(f"/api/item/{i}?x={i}", "m.example.com").status == 200
    for _ in range(3):
        assert mt.get("/api", "m.example.com", method="POST", body=b"x").status == 200
    for _ in range(2):
        assert mt.get("/api/status?code=404", "m.example.com").status == 404

    def counted():
        text = mt.metrics()
        return (sample_value(text, REQUESTS, **labels("200")) - base_200 == 7
                and sample_value(text, REQUESTS, **labels("200", "POST")) - base_post == 3
                and sample_value(text, REQUESTS, **labels("404")) - base_404 == 2)

    wait_until(counted, 5, message="request counters")
    text = mt.metrics()
    assert sample_value(text, REQUESTS, **labels("200")) - base_200 == 7
    # The path label is the rule's path, never the request URI.
    assert not [ls for ls, _ in samples(text, REQUESTS) if ls.get("path", "").startswith("/api/")]


def test_open_connections_metric_present(mt):
    text = mt.metrics()
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    assert any("connections" in n for n in names), sorted(names)[:50]
