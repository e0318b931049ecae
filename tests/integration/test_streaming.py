"""Streaming with bounded memory: a 100 MB upload and a 100 MB download through ingressd."""

from __future__ import annotations

import hashlib
import time

import pytest

from support import client as h
from support import manifests as m
from support.backend import pattern
from support.ingressd import launch

pytestmark = pytest.mark.timeout(240)

HOST = "stream.example.com"
SIZE = 100 * 1024 * 1024
RSS_LIMIT_KB = 150 * 1024


@pytest.fixture(scope="module")
def st(tmp_path_factory, backend):
    inst = launch(tmp_path_factory.mktemp("streaming"), {
        "svc.yaml": backend.services("big"),
        "ing.yaml": [m.ingress("ing-stream", [m.rule(HOST, m.path("/", "svc-big"))],
                               annotations={"proxy-body-size": "0"})],
    })
    yield inst
    inst.stop()


def upload_body(size: int, digest):
    block = hashlib.sha256(b"seed").digest() * 2048  # 64 KiB
    left = size
    while left:
        part = block[: min(left, len(block))]
        digest.update(part)
        left -= len(part)
        yield part


def test_100mb_upload_streams_with_bounded_memory(st):
    digest = hashlib.sha256()
    conn = h.connection(st.http_port, timeout=120)
    try:
        r = h.send(conn, "/upload", HOST, method="POST", headers={"Content-Length": str(SIZE)},
                   body=upload_body(SIZE, digest))
    finally:
        conn.close()
    assert r.status == 200, r
    assert r.json()["body_len"] == SIZE
    assert r.json()["sha256"] == digest.hexdigest()
    hwm = st.memory_kb("VmHWM")
    print(f"ingressd peak RSS {hwm} kB")
    assert 0 < hwm < RSS_LIMIT_KB, f"ingressd peak RSS {hwm} kB"


def test_100mb_download_streams_with_bounded_memory(st):
    expected = hashlib.sha256()
    for block in pattern(SIZE):
        expected.update(block)
    conn = h.connection(st.http_port, timeout=120)
    try:
        conn.putrequest("GET", f"/download?size={SIZE}", skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", HOST)
        conn.endheaders()
        resp = conn.getresponse()
        assert resp.status == 200
        got = hashlib.sha256()
        first = resp.read(1 << 20)
        got.update(first)
        n = len(first)
        # A slow reader: ingressd must stop reading the upstream instead of buffering the rest.
        time.sleep(1.5)
        while True:
            data = resp.read(1 << 20)
            if not data:
                break
            got.update(data)
            n += len(data)
    finally:
        conn.close()
    assert n == SIZE
    assert got.hexdigest() == expected.hexdigest()
    hwm = st.memory_kb("VmHWM")
    print(f"ingressd peak RSS {hwm} kB")
    assert 0 < hwm < RSS_LIMIT_KB, f"ingressd peak RSS {hwm} kB"
