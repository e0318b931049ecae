"""The status page's data: ``build_status`` on a translated snapshot (pure, no IO)."""

from __future__ import annotations

import datetime
import json
from types import SimpleNamespace

from ingressd.config import Settings, Snapshot
from ingressd.diagnostics import ERROR, Diagnostic, InvalidObject
from ingressd.objects import parse_object
from ingressd.status import build_status
from ingressd.translate import translate
from unitkit import cert_for, ingress, path, rule, svc_with_endpoints, tls_secret

BROKEN = ingress("broken", rule("broken.example.com", path("/", "web", path_type="Bogus")), namespace="shop")


def snapshot(*docs) -> Snapshot:
    """Objects as the manifest source makes them: an invalid object becomes an error diagnostic."""
    objects, diagnostics = [], []
    for doc in docs:
        try:
            objects += parse_object(doc, "manifests/app.yaml")
        except InvalidObject as error:
            meta = doc.get("metadata", {})
            ref = f"{doc['kind']} {meta.get('namespace', 'default')}/{meta['name']}"
            diagnostics.append(Diagnostic(ERROR, str(error), "manifests/app.yaml", ref))
    return Snapshot(tuple(objects), tuple(diagnostics))


def make_config():
    cert_pem, key_pem = cert_for("shop.example.com")
    docs = [
        *svc_with_endpoints("web", ("10.0.0.1", "10.0.0.2"), namespace="shop"),
        tls_secret("shop-tls", cert_pem, key_pem, namespace="shop"),
        ingress("shop", rule("shop.example.com", path("/api", "web"), path("/", "missing")), namespace="shop",
                tls=[{"hosts": ["shop.example.com"], "secretName": "shop-tls"}]),
        BROKEN,
    ]
    return translate(snapshot(*docs), Settings()), cert_pem, key_pem


class Counted:
    def __init__(self, count):
        self.count = count


def plane_with(stats: dict):
    return SimpleNamespace(stats=stats, connections={object(), object()}, upgraded=1)


LABELS = ("shop", "shop", "web", "shop.example.com", "/api")


def test_known_route_is_listed_with_backend_endpoints_and_certificate():
    config, _, _ = make_config()
    status = build_status(config, plane_with({}))
    routes = {(r["host"], r["path"]): r for r in status["routes"]}
    api = routes[("shop.example.com", "/api")]
    assert api["ingress"] == "shop" and api["namespace"] == "shop" and api["path_type"] == "Prefix"
    assert api["backend"]["service"] == "web"
    assert api["backend"]["endpoints"] == {"ready": 2, "total": 2}
    assert api["backend"]["error"] is None
    assert api["tls"]["source"] == "shop/shop-tls"
    assert api["tls"]["not_after"].endswith("Z")
    assert api["https_redirect"] is True
    # A route whose Service does not exist says why it gets 503.
    missing = routes[("shop.example.com", "/")]
    assert missing["backend"]["endpoints"]["ready"] == 0 and missing["backend"]["error"]
    assert status["summary"]["routes"] == 2 and status["summary"]["ingresses"] == 1
    assert status["summary"]["connections"] == 2 and status["summary"]["upgraded"] == 1


def test_broken_object_is_listed_with_the_reason():
    config, _, _ = make_config()
    status = build_status(config, plane_with({}))
    broken = [d for d in status["diagnostics"] if d["object"] == "Ingress shop/broken"]
    assert broken and broken[0]["severity"] == "error"
    assert "Bogus" in broken[0]["message"] and broken[0]["origin"] == "manifests/app.yaml"
    assert status["diagnostics"][0]["severity"] == "error"  # errors first
    assert status["summary"]["errors"] >= 1
    assert not any(r["ingress"] == "broken" for r in status["routes"])


def test_traffic_is_counted_per_ingress_from_ints_and_count_objects():
    config, _, _ = make_config()
    stats = {
        (LABELS, b"GET", 200): 7,
        (LABELS, b"POST", 200): Counted(3),
        (LABELS, b"GET", 404): 2,
        (LABELS, b"GET", 503): Counted(1),
        (("", "", "", "", ""), b"GET", 404): 5,
    }
    traffic = build_status(config, plane_with(stats))["traffic"]
    by_name = {i["name"]: i for i in traffic["ingresses"]}
    assert by_name["shop/shop"]["requests"] == 13
    assert by_name["shop/shop"]["errors_4xx"] == 2 and by_name["shop/shop"]["errors_5xx"] == 1
    assert by_name["(no ingress)"]["requests"] == 5
    assert traffic["ingresses"][0]["name"] == "shop/shop"


def test_certificates_merge_secrets_in_use_with_the_certificate_manager():
    config, _, _ = make_config()
    renewal = datetime.datetime(2031, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)

    def manager():
        return [{"secret": "shop/shop-tls", "hosts": ["shop.example.com"], "issuer": "letsencrypt",
                 "not_after": None, "next_renewal": renewal, "state": "issued", "last_error": None,
                 "private_key": "must never show"},
                {"secret": "shop/pending", "hosts": ["new.example.com"], "issuer": "letsencrypt",
                 "not_after": None, "next_renewal": None, "state": "pending", "last_error": "rate limited"}]

    status = build_status(config, plane_with({}), manager)
    certs = {c["secret"]: c for c in status["certificates"]}
    shop = certs["shop/shop-tls"]
    assert shop["issuer"] == "letsencrypt" and shop["state"] == "issued" and shop["managed"]
    assert shop["next_renewal"] == "2031-01-02T03:04:05Z"
    assert shop["not_after"] and shop["expires_in_days"] > 300  # from the Secret in use
    assert shop["hosts"] == ["shop.example.com"]
    assert certs["shop/pending"]["last_error"] == "rate limited"
    assert "must never show" not in json.dumps(status)


def test_a_failing_certificate_manager_does_not_break_the_status():
    config, _, _ = make_config()

    def manager():
        raise RuntimeError("store unavailable")

    status = build_status(config, plane_with({}), manager)
    assert "store unavailable" in status["certificate_manager_error"]
    assert [c["secret"] for c in status["certificates"]] == ["shop/shop-tls"]


def test_no_secret_material_in_the_json():
    config, cert_pem, key_pem = make_config()
    text = json.dumps(build_status(config, plane_with({(LABELS, b"GET", 200): 1})))
    assert "PRIVATE KEY" not in text and "BEGIN CERTIFICATE" not in text
    for pem in (cert_pem, key_pem):
        body = b"".join(line for line in pem.splitlines() if not line.startswith(b"-----")).decode()
        for start in range(0, len(body) - 32, 32):
            assert body[start:start + 32] not in text
    for key in ("cert_pem", "key_pem", "tls.key", "tls.crt"):
        assert key not in text


def test_counters_gathered_from_workers_are_accepted():
    config, _, _ = make_config()
    counters = SimpleNamespace(stats={(LABELS, b"GET", 200): Counted(4)}, active=3, upgraded=2)
    status = build_status(config, counters)
    assert status["summary"]["connections"] == 3 and status["summary"]["upgraded"] == 2
    assert status["traffic"]["ingresses"][0]["requests"] == 4


def test_handlers_serve_the_page_assets_and_json():
    import asyncio

    from ingressd.status import status_handlers

    config, _, _ = make_config()
    direct = SimpleNamespace(config=config, stats={(LABELS, b"GET", 200): 1}, connections=set(), upgraded=0)
    handlers = status_handlers(direct)
    assert set(handlers) == {"/", "/status.js", "/status.css", "/status.json"}
    status, content_type, body = handlers["/"]()
    assert status == 200 and content_type.startswith("text/html") and b'src="status.js"' in body
    assert b"http://" not in body and b"https://" not in body  # nothing loaded from outside
    for asset in ("/status.js", "/status.css"):
        assert b"http://" not in handlers[asset]()[2].replace(b"http://www.w3.org/2000/svg", b"")
    status, content_type, body = handlers["/status.json"]()
    assert status == 200 and content_type == "application/json"
    assert json.loads(body)["traffic"]["ingresses"][0]["requests"] == 1

    async def gather():
        return SimpleNamespace(stats={(LABELS, b"GET", 500): 5}, active=1, upgraded=0)

    pooled = SimpleNamespace(config=config, gather_counters=gather)
    status, _, body = asyncio.run(handlers_json(status_handlers(pooled)))
    assert status == 200 and json.loads(body)["traffic"]["ingresses"][0]["errors_5xx"] == 5


async def handlers_json(handlers):
    return await handlers["/status.json"]()
