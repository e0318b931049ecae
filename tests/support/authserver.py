"""A small external-auth server (oauth2-proxy's ``/oauth2/auth`` shape) for the auth-url tests.

Runs ``http.server`` with HTTP/1.1 keep-alive in a thread of the test process; ``stop()`` ends it.
Paths (the last segment decides):

* ``/auth``: ``Authorization: Bearer good`` -> 200 with ``X-Auth-Request-User: alice``,
  ``X-Auth-Request-Email: alice@example.org`` and ``Set-Cookie``; ``Bearer forbidden`` -> 403;
  otherwise 401 with ``WWW-Authenticate: Bearer realm="test"``.
* ``/status/N``: N.
* ``/slow``: waits ``slow`` seconds (attribute), then 200.

Every request is kept in ``seen`` (method, path, headers as a dict of lower-case names, connection id).
"""

from __future__ import annotations

import itertools
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class AuthServer:
    def __init__(self, host: str = "127.0.0.1"):
        self.seen: list[dict] = []
        self.slow = 3.0
        self.release = threading.Event()
        server = self
        connections = itertools.count(1)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # head and body are two writes

            def setup(self):
                super().setup()
                self.conn_id = next(connections)

            def log_message(self, *args):
                pass

            def do_GET(self):
                server.seen.append({"method": self.command, "path": self.path, "conn": self.conn_id,
                                    "headers": {k.lower(): v for k, v in self.headers.items()}})
                last = self.path.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
                extra: list[tuple[str, str]] = []
                if last == "auth":
                    token = self.headers.get("Authorization", "")
                    if token == "Bearer good":
                        status = 200
                        extra = [("X-Auth-Request-User", "alice"), ("X-Auth-Request-Email", "alice@example.org"),
                                 ("Set-Cookie", "session=1")]
                    elif token == "Bearer forbidden":
                        status = 403
                    else:
                        status, extra = 401, [("WWW-Authenticate", 'Bearer realm="test"'), ("Set-Cookie", "csrf=1")]
                elif last.isdigit():
                    status = int(last)
                elif last == "slow":
                    server.release.wait(server.slow)
                    status = 200
                else:
                    status = 404
                body = b"auth says %d\n" % status
                self.send_response(status)
                for name, value in extra:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = do_GET

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> "AuthServer":
        self.thread.start()
        return self

    def url(self, path: str = "/oauth2/auth") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def last(self) -> dict:
        deadline = time.monotonic() + 5
        while not self.seen and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.seen[-1]
