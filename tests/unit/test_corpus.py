"""The corpus of real-world-shaped Ingresses (tests/corpus): what ``ingressd check`` reports for each
directory, and requests through each compiled configuration (in process, see dataplanekit)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import os
from pathlib import Path

import pytest

from dataplanekit import Rig
from ingressd import catalog
from ingressd.cli import main
from ingressd.config import Settings, Snapshot
from ingressd.sources.manifests import parse_file
from ingressd.translate import translate

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())
ARGS = ["--ingress-class", "nginx", "--acme-email", "admins@example.org"]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def check_output(case: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["check", "--manifests", str(CORPUS / case), *ARGS])
    return out.getvalue().replace(str(CORPUS / case) + "/", "")


@pytest.mark.parametrize("case", CASES)
def test_check_reports_what_differs(case):
    expected = CORPUS / case / "expected.txt"
    output = check_output(case)
    if os.environ.get("INGRESSD_CORPUS_UPDATE"):
        expected.write_text(output)
    assert output == expected.read_text()


def test_corpus_reports_only_documented_differences():
    """Every annotation or key the corpus gets a warning for is a documented partial/no row (or a
    typo, reported as unknown)."""
    for case in CASES:
        for line in check_output(case).splitlines():
            for marker in (" is not supported: ", " is supported in part: "):
                if marker in line:
                    name = line.split(marker)[0].rsplit(" ", 1)[1].removeprefix("nginx.ingress.kubernetes.io/")
                    table = catalog.ANNOTATIONS if "annotation " in line else catalog.CONFIGMAP
                    assert table[name].status in (catalog.NO, catalog.PARTIAL), line


def config_of(case: str):
    objects = []
    for path in sorted((CORPUS / case).glob("*.yaml")):
        objects += parse_file(str(path))[0]
    return translate(Snapshot(tuple(objects)), Settings(ingress_classes=("nginx",)))


def request(rig, target="/", host="a.com", headers=b"", method=b"GET", scheme="http", peer=("192.0.2.10", 40000)):
    client = rig.client(scheme, peer)
    client.send(method + b" " + target.encode() + b" HTTP/1.1\r\nHost: " + host.encode() + b"\r\n" + headers + b"\r\n")
    return client


def sent(rig) -> tuple[bytes, dict[str, str]]:
    head = rig.upstream().received().split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    return head[0].encode(), {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in head[1:])}


def test_zero_to_jupyterhub_hub():
    rig = Rig(config_of("zero-to-jupyterhub"))
    assert request(rig, "/hub/", host="hub.example.org").response().status == 308  # tls: ssl-redirect
    body = b"x" * (2 << 20)
    client = request(rig, "/hub/api/upload", host="hub.example.org", method=b"PUT", scheme="https",
                     headers=b"Content-Length: %d\r\n" % len(body))
    client.send(body)
    assert rig.dialed == [("10.1.0.10", 8000)]  # 64m allows what the 1m default would refuse
    assert rig.upstream().conn.read_timeout == 3600


def test_mybinder_configmap_and_annotations_together():
    config = config_of("mybinder")
    rig = Rig(config)
    response = request(rig, "/v2/gh/x", host="beta.mybinder.org").response()
    assert (response.status, response.header("location")) == (301, "https://mybinder.org/v2/gh/x")
    response = request(rig, "/badge", host="www.mybinder.org", scheme="https").response()
    assert (response.status, response.header("location")) == (308, "https://mybinder.org/badge")
    assert response.header("strict-transport-security") == "max-age=63072000; includeSubDomains; preload"
    request(rig, "/badge/logo.svg", host="docs.mybinder.org", scheme="https")  # server-alias
    assert rig.dialed == [("10.3.0.7", 8080)]
    assert request(rig, "/", host="mybinder.org", scheme="https", peer=("198.51.100.3", 1)).response().status == 403
    assert config.table.lookup("mybinder.org", "/").options.read_timeout == 120  # the ConfigMap's
    assert config.trust.use_forwarded_headers and [str(n) for n in config.trust.networks] == ["10.0.0.0/8"]


def test_grafana_under_a_sub_path_with_app_root():
    rig = Rig(config_of("grafana"))
    request(rig, "/grafana/api/health?x=1", host="ops.example.org")
    line, fields = sent(rig)
    assert line == b"GET /api/health?x=1 HTTP/1.1" and fields["x-forwarded-prefix"] == "/grafana"
    response = request(rig, "/", host="ops.example.org").response()
    assert (response.status, response.header("location")) == (302, "/grafana/")
    request(rig, "/d/abc", host="ops.example.org")  # the other Ingress's "/" (a regex on this host too)
    assert sent(rig)[0] == b"GET /d/abc HTTP/1.1"


async def _settled(rig, condition, timeout=10.0):
    """Run the event loop (the thread pool hashing passwords) until ``condition()``, at most ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.001)
        rig.settle()


def test_prometheus_source_ranges_and_basic_auth():
    asyncio.run(_prometheus())


async def _prometheus():
    rig = Rig(config_of("prometheus"))
    assert request(rig, host="prometheus.example.org", peer=("203.0.113.1", 1)).response().status == 403
    denied = request(rig, host="prometheus.example.org", peer=("2001:db8::5", 1)).response()
    assert denied.status == 401 and denied.header("www-authenticate") == 'Basic realm="Authentication Required"'
    wrong = b"Authorization: Basic " + base64.b64encode(b"admin:nope") + b"\r\n"
    client = request(rig, host="prometheus.example.org", headers=wrong)  # hashed off the loop
    await _settled(rig, lambda: client.received())
    assert client.response().status == 401
    for user in (b"admin:secret", b"ops:ops"):  # Apache MD5 and bcrypt entries
        served = len(rig.upstreams)
        client = request(rig, host="prometheus.example.org",
                         headers=b"Authorization: Basic " + base64.b64encode(user) + b"\r\n")
        await _settled(rig, lambda: rig.upstreams and (len(rig.upstreams) > served or rig.upstream().received()))
        rig.upstream().send(OK)
        assert client.response().status == 200
        rig.upstream().take()
    assert rig.dialed == [("10.5.0.2", 9090)]
    assert request(rig, host="alertmanager.example.org", peer=("192.0.2.66", 1)).response().status == 403
    request(rig, host="alertmanager.example.org", peer=("192.0.2.67", 1))  # ssl-redirect off: plain HTTP served
    assert rig.dialed[-1] == ("10.5.0.3", 9093)


def test_api_cors_and_upstream_vhost():
    rig = Rig(config_of("api-gateway"))
    answer = request(rig, "/v1/cart", host="api.shop.example.com", method=b"OPTIONS",
                     headers=b"Origin: https://m.shop.example.com\r\n").response()
    assert answer.status == 204 and answer.header("access-control-allow-origin") == "https://m.shop.example.com"
    assert answer.header("access-control-allow-headers") == "Content-Type,Authorization,X-Api-Key"
    client = request(rig, "/v1/cart", host="api.shop.example.com", headers=b"Origin: https://shop.example.com\r\n")
    assert sent(rig)[1]["host"] == "api.internal"
    rig.upstream().send(OK)
    assert client.response().header("access-control-allow-origin") == "https://shop.example.com"


def test_grafana_behind_oauth2_proxy():
    from ingressd.options.extauth import AuthRequest
    config = config_of("grafana")
    route = config.table.lookup("grafana.example.org", "/d/home")
    auth = route.options.ext_auth
    assert auth is not None and auth.response_headers[0] == "X-Auth-Request-User"
    request = AuthRequest(b"GET", "https", "grafana.example.org", b"grafana.example.org", b"/d/home?x=1", "192.0.2.1",
                          [], b"id")
    assert auth.url.render(request) == "https://grafana.example.org/oauth2/auth"
    assert auth.signin_url(request) == "https://grafana.example.org/oauth2/start?rd=%2Fd%2Fhome%3Fx%3D1"
    assert config.table.lookup("grafana.example.org", "/oauth2/start").options.ext_auth is None


def test_storefront_custom_error_pages():
    rig = Rig(config_of("api-gateway"))
    client = request(rig, "/missing?x=1", host="www.shop.example.com", headers=b"Accept: text/html\r\n")
    rig.upstream().send(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found")
    assert rig.dialed[-1] == ("10.7.0.20", 8080)  # the error-pages Service
    line, headers = sent(rig)
    assert line == b"GET / HTTP/1.1"
    assert headers["x-code"] == "404" and headers["x-original-uri"] == "/missing?x=1"
    assert (headers["x-namespace"], headers["x-ingress-name"], headers["x-service-name"]) == ("shop", "storefront", "api")
    rig.upstream().send(b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\npretty 404")
    answer = client.response()
    assert answer.status == 404 and answer.body == b"pretty 404"


def test_rollouts_canary_with_affinity_hashing_and_the_configmaps_ewma():
    config = config_of("rollouts")
    lookup = config.table.lookup
    assert lookup("api.example.com", "/").options.balance is None  # round_robin annotation over the ConfigMap's ewma
    shop = lookup("shop.example.com", "/").options.balance
    assert shop.method == "ewma" and shop.affinity.name == "shop-route"  # ewma inherited, affinity wins
    assert shop.canary.backend.service == "storefront-canary" and shop.canary.balance.affinity is shop.affinity
    rig = Rig(config)

    def visit(host, headers=b""):
        client = request(rig, host=host, headers=headers)
        upstream = next(u for u in rig.upstreams if u.conn.exchange is not None)
        upstream.send(OK)
        return upstream.conn.endpoint[0], client.response()

    assert visit("shop.example.com", b"X-Canary: always\r\n")[0] == "10.8.1.1"
    assert visit("shop.example.com", b"Cookie: canary=always\r\n")[0] == "10.8.1.1"
    sessions = {}
    for _ in range(60):
        address, response = visit("shop.example.com")
        sessions.setdefault(address == "10.8.1.1", response.header("set-cookie").split(";")[0])
    assert set(sessions) == {True, False}  # canary-weight 20: both sides get new sessions
    for on_canary, cookie in sessions.items():  # and each session stays on its side
        seen = {visit("shop.example.com", b"Cookie: " + cookie.encode() + b"\r\n")[0] == "10.8.1.1"
                for _ in range(10)}
        assert seen == {on_canary}
    address, response = visit("sso.example.com")
    assert "; Secure; HttpOnly" in response.header("set-cookie") and address.startswith("10.9.0.")
    assert len({visit("img.example.com")[0] for _ in range(8)}) == 1  # one URI, one cache


def test_hardened_controller_configmap():
    """ssl-*, add-headers / hide-headers / proxy-set-headers, custom-headers over add-headers,
    block-user-agents / block-referers, the JSON log-format-upstream, worker-shutdown-timeout."""
    import json

    from ingressd.dataplane.stats import AccessLog

    config = config_of("hardened")
    assert config.tls.protocols == ("TLSv1.2", "TLSv1.3") and config.tls.ciphers.startswith("ECDHE-ECDSA-AES128")
    assert config.table.hosts.get("argocd.example.org").ssl_ciphers.startswith("ECDHE-ECDSA-AES256")
    assert config.shutdown_timeout == 300
    log = AccessLog(fd=-1)
    rig = Rig(config, access_log=log)
    rig.recorder.configure(config.log_format)  # as DataPlane.apply
    client = request(rig, "/cart?id=7", host="shop.example.org", headers=b"User-Agent: Mozilla/5.0\r\n")
    line, fields = sent(rig)
    assert fields["x-cluster"] == "prod-eu-1"
    rig.upstream().send(b"HTTP/1.1 200 OK\r\nServer: express\r\nX-Powered-By: Express\r\nContent-Length: 2\r\n\r\nok")
    response = client.response()
    assert response.status == 200 and response.header("server") is None and response.header("x-powered-by") is None
    assert (response.header("x-frame-options"), response.header("x-content-type-options")) == ("DENY", "nosniff")
    entry = json.loads(log.lines[-1])
    assert (entry["path"], entry["request_query"], entry["status"], entry["service_name"]) == ("/cart", "id=7", 200,
                                                                                            "storefront")
    assert entry["x_forwarded_for"] == "192.0.2.10" and entry["http_user_agent"] == "Mozilla/5.0"
    client = request(rig, "/", host="argocd.example.org")
    rig.upstream().send(OK)
    response = client.response()
    assert response.header("x-frame-options") == "SAMEORIGIN"  # the Ingress's custom-headers win
    assert response.header("content-security-policy") == "frame-ancestors 'self'"
    assert response.header("referrer-policy") == "strict-origin-when-cross-origin"
    for headers in (b"User-Agent: sqlmap/1.7\r\n", b"User-Agent: go-http-client/1.1\r\n",
                    b"Referer: https://www.spam-seo.example/x\r\n"):
        answer = request(rig, "/", host="shop.example.org", headers=headers).response()
        assert answer.status == 403 and answer.header("x-frame-options") == "DENY", headers
