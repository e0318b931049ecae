"""The default access log line is written straight from the exchange (no dict per request): it
must equal ingress-nginx's upstream format as ``AccessLog.text`` makes it from the named fields."""

from __future__ import annotations

import pytest
from dataplanekit import Rig
from unitkit import NGINX, compile_config, ingress, path, rule, svc_with_endpoints

from ingressd.dataplane.stats import AccessLog

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


class Lines(AccessLog):
    def __init__(self, fmt: str = "text"):
        super().__init__(fmt, fd=-1)
        self.written: list[str] = []

    def write_line(self, line: str) -> None:
        self.written.append(line)


def checked_rig(canary: bool = False) -> tuple[Rig, list[tuple[str, str]]]:
    objects = [ingress("web", rule("a.com", path("/", "web")), namespace="ns", created="2020-01-01T00:00:00Z"),
               svc_with_endpoints("web", ("10.0.0.1",), namespace="ns")]
    if canary:
        objects += [ingress("web-canary", rule("a.com", path("/", "web-canary")), namespace="ns",
                            created="2021-01-01T00:00:00Z",
                            annotations={NGINX + "canary": "true", NGINX + "canary-weight": "100"}),
                    svc_with_endpoints("web-canary", ("10.9.0.1",), namespace="ns")]
    config = compile_config(*objects)
    log = Lines()
    rig = Rig(config, access_log=log)
    pairs: list[tuple[str, str]] = []
    recorder = rig.recorder
    original = recorder.log_exchange

    def log_exchange(exchange, now):
        original(exchange, now)
        pairs.append((log.written[-1], AccessLog.text(recorder.log_fields(exchange, now))))

    recorder.log_exchange = log_exchange
    return rig, pairs


@pytest.mark.parametrize("request_head", [
    b"GET /x?y=1 HTTP/1.1\r\nHost: a.com\r\nUser-Agent: curl/8\r\nReferer: https://r/\r\n\r\n",
    b"HEAD / HTTP/1.0\r\nHost: a.com\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: a.com\r\nContent-Length: 3\r\n\r\nabc",
])
def test_proxied_requests(request_head):
    rig, pairs = checked_rig()
    rig.client().send(request_head)
    rig.upstream().send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert len(pairs) == 1 and pairs[0][0] == pairs[0][1]
    assert ' [ns-web-80] [] 10.0.0.1:80' in pairs[0][0] and pairs[0][0].endswith(" ns web web")


def test_a_failure_without_an_upstream_answer():
    rig, pairs = checked_rig()
    rig.dial = "refuse"
    rig.client().send(b"GET / HTTP/1.1\r\nHost: a.com\r\n\r\n")
    assert len(pairs) == 1 and pairs[0][0] == pairs[0][1]
    assert " 502 " in pairs[0][0] and "[ns-web-80] [] - - - -" in pairs[0][0]


def test_a_canary_names_its_backend_as_the_alternative_upstream():
    rig, pairs = checked_rig(canary=True)
    rig.client().send(b"GET / HTTP/1.1\r\nHost: a.com\r\n\r\n")
    rig.upstream().send(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert len(pairs) == 1 and pairs[0][0] == pairs[0][1]
    assert "[ns-web-80] [ns-web-canary-80] 10.9.0.1:80" in pairs[0][0]
