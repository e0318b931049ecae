"""proxy-next-upstream (+ -tries, -timeout): when ingressd asks the next endpoint, in process."""

from __future__ import annotations

import pytest

from dataplanekit import Rig
from unitkit import NGINX, compile_config, ingress, path, rule, svc_with_endpoints

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
UNAVAILABLE = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"
ENDPOINTS = ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4")


def rig(annotations=None, configmap=None):
    extra = []
    if configmap:
        extra.append({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "ingress-nginx-controller", "namespace": "ingress-nginx"},
                      "data": configmap})
    return Rig(compile_config(ingress("web", rule("a.com", path("/", "web")),
                                      annotations={NGINX + k: v for k, v in (annotations or {}).items()}),
                              svc_with_endpoints("web", ENDPOINTS), *extra))


def get(r, method=b"GET", body=b""):
    client = r.client()
    length = b"Content-Length: %d\r\n" % len(body) if body else b""
    client.send(method + b" / HTTP/1.1\r\nHost: a.com\r\n" + length + b"\r\n" + body)
    return client


def test_a_503_goes_to_the_next_endpoint_only_when_listed():
    r = rig({"proxy-next-upstream": "error timeout http_503"})
    client = get(r)
    r.upstream().send(UNAVAILABLE)
    assert len(r.dialed) == 2 and r.dialed[0] != r.dialed[1]
    r.upstream().send(OK)
    assert client.response().status == 200
    plain = rig()  # the default "error timeout": the 503 is the answer
    client = get(plain)
    plain.upstream().send(UNAVAILABLE)
    assert client.response().status == 503 and len(plain.dialed) == 1


def test_tries_bound_the_attempts_and_the_last_answer_is_sent():
    r = rig({"proxy-next-upstream": "http_503", "proxy-next-upstream-tries": "2"})
    client = get(r)
    r.upstream().send(UNAVAILABLE)
    r.upstream().send(UNAVAILABLE)
    response = client.response()
    assert response.status == 503 and response.body == b"busy" and len(r.dialed) == 2


def test_non_idempotent_requests_only_with_non_idempotent():
    r = rig({"proxy-next-upstream": "http_503"})
    client = get(r, method=b"POST")
    r.upstream().send(UNAVAILABLE)
    assert client.response().status == 503 and len(r.dialed) == 1
    r = rig({"proxy-next-upstream": "http_503 non_idempotent"})
    client = get(r, method=b"POST")
    r.upstream().send(UNAVAILABLE)
    r.upstream().send(OK)
    assert client.response().status == 200 and len(r.dialed) == 2


def test_a_streamed_body_is_never_sent_twice():
    r = rig({"proxy-next-upstream": "http_503 non_idempotent"})
    client = get(r, method=b"PUT", body=b"payload")
    r.upstream().send(UNAVAILABLE)
    assert client.response().status == 503 and len(r.dialed) == 1


def test_read_timeout_moves_on_and_off_stops_it():
    r = rig({"proxy-read-timeout": "2"})
    client = get(r)
    r.advance(3)  # no answer within proxy-read-timeout: "timeout" is in the default
    assert len(r.dialed) == 2
    r.upstream().send(OK)
    assert client.response().status == 200
    off = rig({"proxy-next-upstream": "off"})
    off.dial = "refuse"
    client = get(off)
    assert client.response().status == 502 and len(off.dialed) == 1


def test_next_upstream_timeout_bounds_the_total_time():
    r = rig({"proxy-next-upstream": "timeout", "proxy-read-timeout": "2", "proxy-next-upstream-timeout": "3"})
    client = get(r)
    r.advance(2.5)
    assert len(r.dialed) == 2  # 2.5 s < 3 s: one more try
    r.advance(2.5)
    assert client.response().status == 504 and len(r.dialed) == 2  # 5 s spent: no more


def test_the_configmap_sets_the_default_and_annotations_override_it():
    r = rig(configmap={"proxy-next-upstream": "error timeout http_502"})
    client = get(r)
    r.upstream().send(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
    r.upstream().send(OK)
    assert client.response().status == 200
    r = rig({"proxy-next-upstream": "error"}, configmap={"proxy-next-upstream": "http_502"})
    client = get(r)
    r.upstream().send(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
    assert client.response().status == 502


def test_request_buffering_on_reads_the_body_first_and_can_resend_it():
    r = rig({"proxy-request-buffering": "on", "proxy-next-upstream": "http_503 non_idempotent"})
    client = r.client()
    client.send(b"POST / HTTP/1.1\r\nHost: a.com\r\nContent-Length: 7\r\n\r\npay")
    assert r.dialed == []  # nothing asked of an upstream until the whole body is here
    client.send(b"load")
    assert len(r.dialed) == 1 and r.upstream().received().endswith(b"\r\n\r\npayload")
    r.upstream().send(UNAVAILABLE)
    assert len(r.dialed) == 2 and r.upstream().received().endswith(b"\r\n\r\npayload")  # sent again, whole
    r.upstream().send(OK)
    assert client.response().status == 200


def test_request_buffering_answers_expect_continue_itself():
    r = rig({"proxy-request-buffering": "on"})
    client = r.client()
    client.send(b"PUT / HTTP/1.1\r\nHost: a.com\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    assert client.received().startswith(b"HTTP/1.1 100 Continue") and r.dialed == []
    client.send(b"ok")
    assert r.upstream().received().endswith(b"ok") and b"expect" not in r.upstream().received().lower()
    r.upstream().send(OK)
    assert [response.status for response in client.responses()] == [100, 200]  # one 100, from ingressd
