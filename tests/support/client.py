"""HTTP clients for the tests: http.client with a chosen Host/SNI, a raw socket client, curl."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
from dataclasses import dataclass, field


@dataclass
class Response:
    status: int
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    def header_names(self) -> set[str]:
        return {k.lower() for k, _ in self.headers}

    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def name(self) -> str | None:
        """The backend that answered (from the echo JSON), or None."""
        try:
            return self.json().get("name")
        except ValueError:
            return None

    def __repr__(self) -> str:  # short, for assertion messages
        return f"<Response {self.status} {self.headers!r} {self.body[:300]!r}>"


class _SNIHTTPSConnection(http.client.HTTPConnection):
    default_port = 443

    def __init__(self, host, port, context: ssl.SSLContext, sni: str | None, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._context = context
        self._sni = sni

    def connect(self):
        sock = socket.create_connection((self.host, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._sni)


def connection(port: int, tls: ssl.SSLContext | None = None, sni: str | None = None,
               timeout: float = 10.0) -> http.client.HTTPConnection:
    if tls is None:
        return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    return _SNIHTTPSConnection("127.0.0.1", port, tls, sni, timeout)


def send(conn: http.client.HTTPConnection, path: str = "/", host: str | None = "example.com",
         method: str = "GET", headers: dict | list | None = None, body=None,
         encode_chunked: bool = False) -> Response:
    """One request on an existing http.client connection (kept open)."""
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    hdrs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {k.lower() for k, _ in hdrs}
    if host is not None:
        conn.putheader("Host", host)
    if encode_chunked:
        hdrs.append(("Transfer-Encoding", "chunked"))
    elif isinstance(body, (bytes, bytearray)) and not names & {"content-length", "transfer-encoding"}:
        hdrs.append(("Content-Length", str(len(body))))
    for k, v in hdrs:
        conn.putheader(k, v)
    conn.endheaders(body, encode_chunked=encode_chunked)
    resp = conn.getresponse()
    data = resp.read()
    return Response(resp.status, resp.reason, resp.getheaders(), data)


def request(port: int, path: str = "/", host: str | None = "example.com", method: str = "GET",
            headers: dict | list | None = None, body=None, tls: ssl.SSLContext | None = None,
            sni: str | None = None, timeout: float = 10.0, encode_chunked: bool = False) -> Response:
    """One request on a fresh connection to 127.0.0.1:port (closed afterwards)."""
    conn = connection(port, tls, sni if sni is not None else (host.split(":")[0] if host and tls else None), timeout)
    try:
        return send(conn, path, host, method, headers, body, encode_chunked)
    finally:
        conn.close()


class RawConn:
    """A raw TCP (optionally TLS) connection with a tiny, strict HTTP/1.1 response reader."""

    def __init__(self, port: int, timeout: float = 10.0, tls: ssl.SSLContext | None = None,
                 sni: str | None = None, addr: str = "127.0.0.1"):
        sock = socket.create_connection((addr, port), timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=sni)
        self.sock = sock
        self.sock.settimeout(timeout)
        self.buf = b""
        self.eof = False

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        if self.eof:
            return False
        data = self.sock.recv(1 << 16)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            if not self._fill():
                raise ConnectionError(f"EOF before {marker!r}; got {self.buf[:500]!r}")
        idx = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:idx], self.buf[idx:]
        return out

    def peek_until(self, marker: bytes) -> bytes:
        """Receive until ``marker`` has arrived, without consuming anything; returns the buffer."""
        while marker not in self.buf:
            if not self._fill():
                raise ConnectionError(f"EOF before {marker!r}; got {self.buf[:500]!r}")
        return self.buf

    def read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionError(f"EOF after {len(self.buf)} of {n} bytes")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, method: str = "GET") -> Response:
        """Read one response (a 1xx interim response is returned as is)."""
        head = self.read_until(b"\r\n\r\n").decode("latin-1")
        lines = head.split("\r\n")
        version, status, *reason = lines[0].split(" ", 2)
        assert version.startswith("HTTP/1."), lines[0]
        status_code = int(status)
        headers = []
        for line in lines[1:]:
            if line:
                k, v = line.split(":", 1)
                headers.append((k.strip(), v.strip()))
        resp = Response(status_code, reason[0] if reason else "", headers)
        if method == "HEAD" or status_code < 200 or status_code in (204, 304):
            return resp
        te = (resp.header("transfer-encoding") or "").lower()
        if "chunked" in te:
            body = b""
            while True:
                size = int(self.read_until(b"\r\n").split(b";")[0].strip(), 16)
                if size == 0:
                    while self.read_until(b"\r\n") != b"\r\n":
                        pass
                    break
                body += self.read_exactly(size)
                self.read_exactly(2)
            resp.body = body
        elif resp.header("content-length") is not None:
            resp.body = self.read_exactly(int(resp.header("content-length")))
        else:
            while self._fill():
                pass
            resp.body, self.buf = self.buf, b""
        return resp

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True when the peer closes (EOF or reset) within ``timeout`` with no further data."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(1 << 16)
                if not data:
                    return True
                self.buf += data
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            return True
        except socket.timeout:
            return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def curl(*args: str, timeout: float = 60.0, input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run curl (never through a proxy) and return the completed process (bytes output)."""
    cmd = ["curl", "--noproxy", "*", "-sS", *args]
    return subprocess.run(cmd, capture_output=True, timeout=timeout, input=input)


def curl_status(*args: str, timeout: float = 60.0) -> int:
    proc = curl("-o", "/dev/null", "-w", "%{http_code}", *args, timeout=timeout)
    return int(proc.stdout or b"0")


def ws_connect(port: int, host: str, path: str = "/ws", tls: ssl.SSLContext | None = None,
               timeout: float = 10.0):
    """A websockets (sync) client to 127.0.0.1:port with Host/SNI ``host``; no keepalive pings."""
    from websockets.sync.client import connect

    sock = socket.create_connection(("127.0.0.1", port), timeout)
    scheme = "wss" if tls is not None else "ws"
    return connect(f"{scheme}://{host}:{port}{path}", sock=sock, ssl=tls, proxy=None, ping_interval=None,
                   open_timeout=timeout, close_timeout=2, compression=None)
