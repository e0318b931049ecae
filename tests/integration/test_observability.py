"""Issue 4: ingress-nginx's metric series with real values, access logs, controller events."""

from __future__ import annotations

import json

import pytest

from support import certs
from support import client as h
from support import manifests as m
from support.ingressd import launch, sample_value, samples
from support.wait import wait_until

pytestmark = pytest.mark.timeout(120)

P = "nginx_ingress_controller_"


def route_labels(status: str = "200", method: str = "GET") -> dict:
    return dict(namespace="default", ingress="ing-obs", service="svc-a", host="obs.example.com", path="/api",
                method=method, status=status, canary="")


@pytest.fixture(scope="module")
def obs(tmp_path_factory, backend, ca):
    cert, key = certs.issue(ca, "tls.obs.example.com")
    inst = launch(tmp_path_factory.mktemp("obs"), {
        "svc.yaml": backend.services("a", "ws"),
        "secret.yaml": [m.tls_secret("obs-tls", cert, key)],
        "ing.yaml": [
            m.ingress("ing-obs", [m.rule("obs.example.com", m.path("/api", "svc-a"), m.path("/ws", "svc-ws"))]),
            m.ingress("ing-tls", [m.rule("tls.obs.example.com", m.path("/", "svc-a"))],
                      tls=[(["tls.obs.example.com"], "obs-tls")]),
            m.ingress("ing-orphan", [m.rule("orphan.obs.example.com", m.path("/", "svc-missing"))]),
        ],
        "broken.yaml": [m.ingress("ing-broken", [m.rule("b.obs.example.com", m.path("relative", "svc-a"))])],
    }, args=["--log-format", "json"])
    yield inst
    inst.stop()


def test_request_histograms_count_every_request(obs):
    base = obs.metrics()
    before = {name: sample_value(base, P + name + "_count", **route_labels())
              for name in ("request_duration_seconds", "response_duration_seconds", "header_duration_seconds",
                           "connect_duration_seconds", "request_size", "response_size")}
    for i in range(5):
        assert obs.get(f"/api/x{i}", "obs.example.com").status == 200

    def counted() -> bool:
        text = obs.metrics()
        return all(sample_value(text, P + name + "_count", **route_labels()) - value == 5
                   for name, value in before.items())

    wait_until(counted, 10, message="histogram counts")
    text = obs.metrics()
    # Buckets are ingress-nginx's, cumulative, ending in +Inf = count.
    buckets = {ls["le"]: v for ls, v in samples(text, P + "request_duration_seconds_bucket")
               if all(ls.get(k) == v2 for k, v2 in route_labels().items())}
    assert list(buckets) == ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0",
                             "+Inf"]
    assert buckets["+Inf"] == sample_value(text, P + "request_duration_seconds_count", **route_labels())
    sizes = {ls["le"] for ls, _ in samples(text, P + "request_size_bucket")}
    assert {"10.0", "50.0", "100.0", "+Inf"} <= sizes
    assert sample_value(text, P + "response_size_sum", **route_labels()) > 0
    for ls, _ in samples(text, P + "requests"):
        assert {"controller_namespace", "controller_class", "controller_pod"} <= set(ls)


def test_undefined_hosts_collapse_to_one_label(obs):
    for host in ("nobody-1.example.net", "nobody-2.example.net"):
        assert obs.get("/", host).status == 404

    def collapsed() -> bool:
        hosts = {ls["host"] for ls, _ in samples(obs.metrics(), P + "requests")}
        return "_" in hosts
    wait_until(collapsed, 10, message="undefined host label")
    hosts = {ls["host"] for ls, _ in samples(obs.metrics(), P + "requests")}
    assert not {"nobody-1.example.net", "nobody-2.example.net"} & hosts


def test_metrics_per_undefined_host_flag(tmp_path, backend):
    inst = launch(tmp_path, {"svc.yaml": backend.services("a")}, args=["--metrics-per-undefined-host"])
    try:
        assert inst.get("/", "stray.example.net").status == 404
        wait_until(lambda: sample_value(inst.metrics(), P + "requests", host="stray.example.net", status="404") == 1,
                   10, message="per-host label for an undefined host")
    finally:
        inst.stop()


def test_controller_series(obs):
    assert obs.get("/api", "obs.example.com").status == 200
    text = obs.metrics()
    assert sample_value(text, P + "config_last_reload_successful") == 1
    assert sample_value(text, P + "config_hash") > 0
    assert sample_value(text, P + "success") >= 1
    assert sample_value(text, P + "orphan_ingress", ingress="ing-orphan", type="no-service") == 1
    expiry = sample_value(text, P + "ssl_expire_time_seconds", host="tls.obs.example.com", secret_name="obs-tls")
    assert expiry > 1.7e9
    assert sample_value(text, P + "ssl_certificate_info", host="tls.obs.example.com") == 1
    assert sample_value(text, "ingressd_objects_rejected", kind="Ingress", reason="invalid") == 1
    assert sample_value(text, P + "leader_election_status") == 1
    assert sample_value(text, P + "nginx_process_connections_total", state="accepted") >= 1
    assert sample_value(text, "ingressd_config_apply_duration_seconds_count") >= 1


def test_config_hash_changes_with_the_manifests(tmp_path, backend):
    inst = launch(tmp_path, {"svc.yaml": backend.services("a")})
    try:
        first = sample_value(inst.metrics(), P + "config_hash")
        (inst.manifests / "ing.yaml").write_text(m.dump([m.ingress("ing-new", [m.rule("n.example.com",
                                                                                      m.path("/", "svc-a"))])]))
        wait_until(lambda: sample_value(inst.metrics(), P + "config_hash") not in (first, 0), 10,
                   message="config_hash to change")
        assert sample_value(inst.metrics(), P + "success") >= 2
    finally:
        inst.stop()


def access_lines(inst) -> list[dict]:
    return [json.loads(line) for line in inst.stdout().splitlines() if line.startswith("{")]


def test_access_log_json_fields(obs):
    obs.get("/api/logged?q=1", "obs.example.com", headers={"User-Agent": "obs-agent", "Referer": "http://r.example/"})

    def logged() -> list[dict]:
        return [e for e in access_lines(obs) if e["request"] == "GET /api/logged?q=1 HTTP/1.1"]
    wait_until(logged, 10, message="access log line")
    entry = logged()[0]
    assert entry["status"] == 200 and entry["remote_addr"] == "127.0.0.1"
    assert entry["http_user_agent"] == "obs-agent" and entry["http_referer"] == "http://r.example/"
    assert entry["proxy_upstream_name"] == "default-svc-a-80" and entry["upstream_status"] == 200
    assert entry["namespace"] == "default" and entry["ingress"] == "ing-obs" and entry["service"] == "svc-a"
    assert len(entry["req_id"]) == 32 and entry["body_bytes_sent"] > 0 and entry["request_length"] > 0
    assert entry["upstream_addr"].startswith("127.0.0.1:")


def test_websocket_gauge_and_close_line(obs):
    with h.ws_connect(obs.http_port, "obs.example.com") as ws:
        ws.send("ping")
        assert ws.recv(timeout=5) == "ping"
        wait_until(lambda: sample_value(obs.metrics(), "ingressd_upgraded_connections") == 1, 10,
                   message="open websocket gauge")
    wait_until(lambda: sample_value(obs.metrics(), "ingressd_upgraded_connections") == 0, 10,
               message="websocket gauge back to 0")
    wait_until(lambda: [e for e in access_lines(obs) if e["request"] == "websocket closed"], 10,
               message="websocket close line")
    assert sample_value(obs.metrics(), "ingressd_upgraded_connection_duration_seconds_count") >= 1


def test_controller_events_are_structured(obs):
    events = [json.loads(line) for line in obs.stderr().splitlines() if line.startswith("{")]
    accepted = [e for e in events if e.get("event") == "accepted"]
    assert any(e["object"] == "Ingress default/ing-obs" for e in accepted)
    rejected = [e for e in events if e.get("event") == "rejected"]
    assert any(e["object"] == "Ingress default/ing-broken" and e["file"].endswith("broken.yaml") for e in rejected)
    # Reported once: the source logs what it could not read; the controller does not repeat it.
    assert len([e for e in rejected if e["object"] == "Ingress default/ing-broken"]) == 1


def test_no_access_log(tmp_path, backend):
    inst = launch(tmp_path, {
        "svc.yaml": backend.services("a"),
        "ing.yaml": [m.ingress("ing-quiet", [m.rule("q.example.com", m.path("/", "svc-a"))])],
    }, args=["--no-access-log"])
    try:
        for _ in range(3):
            assert inst.get("/", "q.example.com").status == 200
        wait_until(lambda: sample_value(inst.metrics(), P + "requests", ingress="ing-quiet") == 3, 10,
                   message="requests counted")
        assert "GET / HTTP/1.1" not in inst.stdout()
    finally:
        inst.stop()
