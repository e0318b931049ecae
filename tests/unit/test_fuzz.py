"""Property-based fuzzing (hypothesis) of every parser that takes outside input, on a fixed budget.

- manifests (YAML/JSON files) and annotations / the controller ConfigMap: any input yields objects
  or diagnostics, never an exception that escapes, and the translator takes whatever they yield;
- the HTTP/1.1 request path in process: random and mutated requests, split anywhere: no exception
  escapes, no internal error, no connection outlives the timeouts, and an upstream only ever gets
  well-formed requests (one Host, one framing);
- upstream responses: whatever an upstream sends, the client gets well-formed responses or a cut;
- Host parsing and path normalisation: idempotent, and what is forwarded routes where it was routed.

``FUZZ_EXAMPLES`` (environment) raises the budget for a longer run: FUZZ_EXAMPLES=20000 pytest -k fuzz.
"""

from __future__ import annotations

import json
import os
import tempfile

import httptools
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataplanekit import Rig
from unitkit import compile_config, ingress, path, rule, svc_with_endpoints

from ingressd.annotations import NGINX, parse_route_options
from ingressd.catalog import ANNOTATIONS, CONFIGMAP
from ingressd.config import ClientTrust, Settings, Snapshot
from ingressd.controller_config import parse_controller_configmap
from ingressd.dataplane.forward import parse_host
from ingressd.dataplane.framing import TargetError, normalize_target
from ingressd.sources.manifests import parse_file
from ingressd.translate import translate

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

BUDGET = int(os.environ.get("FUZZ_EXAMPLES", "0"))


def budget(examples: int):
    return settings(max_examples=BUDGET or examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


# --- manifests and annotations ----------------------------------------------------------------------

KINDS = [("networking.k8s.io/v1", "Ingress"), ("networking.k8s.io/v1", "IngressClass"), ("v1", "Service"),
         ("discovery.k8s.io/v1", "EndpointSlice"), ("v1", "Endpoints"), ("v1", "Secret"), ("v1", "ConfigMap"),
         ("cert-manager.io/v1", "ClusterIssuer"), ("cert-manager.io/v1", "Issuer"), ("v1", "List")]
KEYS = ["metadata", "spec", "name", "namespace", "annotations", "rules", "host", "http", "paths", "path",
        "pathType", "backend", "service", "port", "number", "tls", "hosts", "secretName", "defaultBackend",
        "ingressClassName", "items", "data", "ports", "endpoints", "addresses", "targetPort", "subsets",
        "labels", "creationTimestamp", "type", "kubernetes.io/service-name", "tls.crt", "tls.key",
        "controller", "conditions", "ready", "protocol", "selector", "acme", "ca", "selfSigned"]
SCALARS = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True)
           | st.text(max_size=30) | st.sampled_from(["", "/", "a.com", "*.a.com", "Prefix", "Exact",
                                                    "ImplementationSpecific", "80", "http", "web", "-1"]))
JSONISH = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=5),
                       max_leaves=40)


@st.composite
def documents(draw):
    api_version, kind = draw(st.sampled_from(KINDS))
    doc = {"apiVersion": api_version, "kind": kind}
    doc.update(draw(st.dictionaries(st.sampled_from(KEYS), JSONISH, max_size=5)))
    if draw(st.booleans()):
        annotations = draw(st.dictionaries(st.sampled_from([NGINX + k for k in ANNOTATIONS]), st.text(max_size=20),
                                           max_size=6))
        metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {"name": "x"}
        doc["metadata"] = {**metadata, "annotations": annotations}
    return doc


@st.composite
def manifest_files(draw):
    docs = draw(st.lists(documents() | JSONISH, max_size=4))
    if draw(st.booleans()):
        return ".json", json.dumps(docs[0] if docs else None, default=str).encode()
    text = yaml.safe_dump_all(docs, allow_unicode=True)
    if draw(st.booleans()):  # mutate the text: YAML syntax errors, tags, anchors, odd bytes
        position = draw(st.integers(0, len(text)))
        insert = draw(st.sampled_from(["*a", "&a ", "!!python/object:os.system ", "\t", ": ", "- ", "{", "]", "\x00",
                                       "%YAML 1.1\n", "? ", "|", ">", "'", '"', "\n  ", "<<: *a\n"]) | st.text(max_size=5))
        text = text[:position] + insert + text[position:]
    return ".yaml", text.encode("utf-8", "surrogatepass") if draw(st.booleans()) else text.encode("utf-8", "replace")


@budget(150)
@given(manifest_files())
def test_fuzz_manifests_yield_objects_or_diagnostics(file):
    suffix, data = file
    with tempfile.NamedTemporaryFile("wb", suffix=suffix, dir=_fuzz_dir(), delete=False) as handle:
        handle.write(data)
    try:
        objects, diagnostics = parse_file(handle.name)
    finally:
        os.unlink(handle.name)
    config = translate(Snapshot(tuple(objects), tuple(diagnostics)), Settings())
    assert config.table is not None
    for diagnostic in config.diagnostics:
        assert str(diagnostic)


@budget(300)
@given(st.dictionaries(st.sampled_from([NGINX + k for k in ANNOTATIONS]) | st.text(max_size=10),
                       st.text(max_size=40) | st.sampled_from(["true", "0", "1m", "10.0.0.0/8", "308", "https://x/$1"]),
                       max_size=8))
def test_fuzz_annotations_yield_options_or_warnings(annotations):
    options, warnings = parse_route_options(annotations)
    assert all(isinstance(w, str) for w in warnings) and options is not None


@budget(300)
@given(st.dictionaries(st.sampled_from(sorted(CONFIGMAP)) | st.text(max_size=10),
                       st.text(max_size=40) | st.sampled_from(["true", "false", "0.0.0.0/0, ::/0", "X-Real-IP", "60"]),
                       max_size=8))
def test_fuzz_controller_configmap_yields_settings_or_warnings(data):
    controller, warnings = parse_controller_configmap(data, ClientTrust())
    assert all(isinstance(w, str) for w in warnings) and controller is not None


_FUZZ_DIR: list[str] = []


def _fuzz_dir() -> str:
    if not _FUZZ_DIR:
        _FUZZ_DIR.append(tempfile.mkdtemp(prefix="ingressd-fuzz-"))
    return _FUZZ_DIR[0]


# --- the request path ---------------------------------------------------------------------------------

CONFIG = compile_config(ingress("web", rule("a.com", path("/", "web")), rule("b.com", path("/x", "web", "Exact"))),
                        svc_with_endpoints("web"))
VALID = [
    b"GET /x?y=1 HTTP/1.1\r\nHost: a.com\r\nUser-Agent: t\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: a.com\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /p HTTP/1.1\r\nHost: a.com\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n",
    b"GET /x HTTP/1.0\r\nHost: b.com\r\nConnection: keep-alive\r\n\r\n",
    b"GET http://a.com/%2e%2e/x HTTP/1.1\r\nHost: a.com\r\nExpect: 100-continue\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: a.com\r\nConnection: Upgrade, X-Y\r\nUpgrade: websocket\r\nX-Y: 1\r\n\r\n",
    b"HEAD / HTTP/1.1\r\nHost: a.com\r\nConnection: close\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a.com\r\n\r\n",
]
INTERESTING = [b"\r\n", b"\n", b"\r", b"\x00", b" ", b"\t", b":", b",", b";", b"%", b"%2f", b"/../", b"#", b"\\",
               b"Content-Length: 5\r\n", b"Transfer-Encoding: chunked\r\n", b"Host: b.com\r\n", b"0\r\n\r\n",
               b"Content-Length: 0\r\n", b"\r\n\r\n", b"GET / HTTP/1.1\r\nHost: a.com\r\n\r\n", b"HTTP/1.1", b"\xff",
               b"Connection: close\r\n", b"Upgrade: h2c\r\n", b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\r\n"]


@st.composite
def mutated(draw, valid: list[bytes]):
    data = b"".join(draw(st.lists(st.sampled_from(valid), min_size=1, max_size=3)))
    for _ in range(draw(st.integers(0, 4))):
        position = draw(st.integers(0, len(data)))
        operation = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(st.sampled_from(INTERESTING) | st.binary(max_size=4))
        if operation == "insert":
            data = data[:position] + piece + data[position:]
        elif operation == "delete":
            data = data[:position] + data[position + draw(st.integers(1, 8)):]
        else:
            data = data[:position] + piece + data[position + len(piece):]
    return data


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


class RequestChecker:
    """Parses what an upstream received, strictly: every request well-formed and unambiguous."""

    def __init__(self):
        self.headers: list[tuple[bytes, bytes]] = []
        self.requests = 0
        self.parser = httptools.HttpRequestParser(self)

    def on_message_begin(self):
        self.headers = []

    def on_header(self, name, value):
        self.headers.append((name.lower(), value))

    def on_headers_complete(self):
        names = [n for n, _ in self.headers]
        assert names.count(b"host") == 1, self.headers
        assert not (b"content-length" in names and b"transfer-encoding" in names), self.headers
        assert names.count(b"content-length") <= 1 and names.count(b"transfer-encoding") <= 1
        for name, value in self.headers:
            if name == b"transfer-encoding":
                assert value == b"chunked"
        assert parse_host(dict(self.headers)[b"host"]) is not None

    def on_message_complete(self):
        self.requests += 1

    def feed(self, data: bytes):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # tunnelled bytes follow an accepted upgrade


def serve(rig: Rig, chunks: list[bytes], response: bytes, peer=("203.0.113.7", 1)):
    client = rig.client(peer=peer)
    for chunk in chunks:
        client.send(chunk)
    answer(rig, response)
    return client


def answer(rig: Rig, response: bytes) -> None:
    """Answer every request an upstream is serving; pipelined ones come as earlier ones finish."""
    for _ in range(8):
        waiting = [u for u in rig.upstreams if not u.closed and u.conn.exchange is not None and u.conn.tunnel is None]
        if not waiting:
            return
        for upstream in waiting:
            upstream.send(response)


def check_no_hang_and_well_formed(rig: Rig, client):
    assert b"HTTP/1.1 500 " not in client.received()  # an internal error (a bug) answers 500
    for _ in range(12):
        rig.advance(61)  # past every timeout (header, body, upstream read, keep-alive), pipelined ones too
    assert client.closed, client.received()[-200:]
    for upstream in rig.upstreams:
        checker = RequestChecker()
        checker.feed(upstream.received())


@budget(400)
@given(mutated(VALID), st.lists(st.integers(0, 10_000), max_size=6))
def test_fuzz_request_path_mutated_requests(data, cuts):
    rig = Rig(CONFIG)
    client = serve(rig, splits(data, cuts), b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    check_no_hang_and_well_formed(rig, client)


@budget(200)
@given(st.binary(max_size=300), st.lists(st.integers(0, 1000), max_size=4))
def test_fuzz_request_path_random_bytes(data, cuts):
    rig = Rig(CONFIG)
    client = serve(rig, splits(data, cuts), b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    check_no_hang_and_well_formed(rig, client)


@budget(200)
@given(mutated(VALID), st.lists(st.integers(0, 10_000), max_size=4), st.booleans())
def test_fuzz_request_path_behind_a_trusted_proxy(data, cuts, proxy_protocol):
    trust = ClientTrust(use_forwarded_headers=True, compute_full_forwarded_for=True, use_proxy_protocol=proxy_protocol)
    rig = Rig(compile_config(ingress("web", rule("a.com", path("/", "web"))), svc_with_endpoints("web"), trust=trust))
    client = rig.client(peer=("10.0.0.1", 1), proxy_protocol=proxy_protocol)
    for chunk in splits((b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\r\n" if proxy_protocol else b"")
                        + b"GET / HTTP/1.1\r\nHost: a.com\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n" + data, cuts):
        client.send(chunk)
    answer(rig, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    check_no_hang_and_well_formed(rig, client)


# --- upstream responses -------------------------------------------------------------------------------

VALID_RESPONSES = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.0 200 OK\r\n\r\nuntil the close",
    b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
]


class ResponseChecker:
    def __init__(self):
        self.parser = httptools.HttpResponseParser(self)

    def on_headers_complete(self):
        pass


@budget(400)
@given(mutated(VALID_RESPONSES), st.lists(st.integers(0, 10_000), max_size=6), st.booleans())
def test_fuzz_upstream_responses(data, cuts, close):
    rig = Rig(CONFIG)
    client = rig.client()
    client.send(b"GET / HTTP/1.1\r\nHost: a.com\r\n\r\n")
    upstream = rig.upstream()
    for chunk in splits(data, cuts):
        if not upstream.closed:
            upstream.send(chunk)
    if close and not upstream.closed:
        upstream.disconnect()
    assert b"HTTP/1.1 500 " not in client.received()
    received = client.received()
    if not received.startswith(b"HTTP/1.1 101 "):  # a tunnel carries anything after its head
        try:
            ResponseChecker().parser.feed_data(received)
        except httptools.HttpParserUpgrade:
            pass
    for _ in range(4):
        rig.advance(61)
    assert client.closed and upstream.closed or received.startswith(b"HTTP/1.1 101 ")


# --- Host and path properties -------------------------------------------------------------------------

PATH_PIECES = st.sampled_from(["/", "a", "b", ".", "..", "%2e", "%2E", "%2f", "%2F", "%25", "%41", "%00", "%zz",
                               "//", "?", "#", "\\", "%", "é", ";", "x.y"])


@budget(2000)
@given(st.lists(PATH_PIECES, max_size=12))
def test_fuzz_path_normalisation_is_idempotent_and_agrees_with_the_upstream(pieces):
    raw = ("/" + "".join(pieces)).encode()
    try:
        routed, forwarded = normalize_target(raw)
    except TargetError:
        return
    assert routed.startswith("/") and "//" not in routed
    assert all(part not in (".", "..") for part in routed.split("/"))
    # what the upstream gets is normalised already: it routes to the same path, unchanged
    assert normalize_target(forwarded) == (routed, forwarded)
    assert b"%00" not in forwarded and b"#" not in forwarded


@budget(2000)
@given(st.text(st.sampled_from("aA0-._*:[]1f.é \t@/"), max_size=20))
def test_fuzz_host_parsing_is_idempotent(raw):
    host = parse_host(raw.encode("utf-8"))
    if host is None:
        return
    assert host == host.lower() and not host.endswith(".") and ".." not in host
    assert parse_host(host.encode()) == host
