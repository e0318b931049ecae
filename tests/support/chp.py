"""Starting real configurable-http-proxy (Node.js) or ``python -m ingressd chp`` with the same flags.

Real CHP is the npm package installed by scripts/test.sh into ``~/.cache/ingressd-bench/npm``; it is
run as ``node <that script>``, never looked up on PATH (ingressd installs a ``configurable-http-proxy``
console script of its own).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import procs
from .ingressd import REPO, free_port, subprocess_env
from .wait import wait_until

# scripts/test.sh and bench/run.sh install it there (INGRESSD_BENCH_CACHE as in bench/run.sh).
NPM_PREFIX = Path(os.environ.get("INGRESSD_BENCH_CACHE", Path.home() / ".cache" / "ingressd-bench")) / "npm"
CHP_SCRIPT = NPM_PREFIX / "node_modules" / "configurable-http-proxy" / "bin" / "configurable-http-proxy"
TOKEN = "t0ken"


def real_chp_missing() -> str | None:
    """Why real CHP cannot run here, or None when it can."""
    if shutil.which("node") is None:
        return "node is not installed (scripts/test.sh installs CHP with npm when node and npm exist)"
    if not CHP_SCRIPT.exists():
        if shutil.which("npm") is None:
            return "npm is not installed: real configurable-http-proxy cannot be installed"
        return f"configurable-http-proxy is not installed at {CHP_SCRIPT} (run scripts/test.sh)"
    return None


def chp_version() -> str:
    return json.loads((CHP_SCRIPT.parents[1] / "package.json").read_text())["version"]


class Response:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.headers!r}, {self.body[:200]!r})"


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 10.0, tls=None) -> Response:
    """One HTTP/1.1 request on its own connection (HTTPS with ``tls``, an ssl.SSLContext); ``path`` is
    sent exactly as given."""
    if tls is not None:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=tls)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host="host" in {k.lower() for k in (headers or {})},
                        skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return Response(response.status, response.getheaders(), response.read())
    finally:
        conn.close()


class Proxy:
    """Real CHP (``kind="chp"``) or ``ingressd chp`` (``kind="ingressd"``) on free loopback ports."""

    def __init__(self, kind: str, workdir: Path, *args: str, token: str | None = TOKEN, tls=None,
                 wait: bool = True):
        """``tls``: the client ssl.SSLContext for the proxy port when ``args`` has --ssl-key/--ssl-cert;
        ``wait=False``: return once started, call ``wait_ready`` later (to start several at once)."""
        assert kind in ("chp", "ingressd")
        self.kind = kind
        self.token = token
        self.tls = tls
        self.port, self.api_port = free_port(), free_port()
        flags = ["--ip", "127.0.0.1", "--port", str(self.port), "--api-ip", "127.0.0.1",
                 "--api-port", str(self.api_port), *args]
        if kind == "chp":
            command = [shutil.which("node") or "node", str(CHP_SCRIPT), *flags]
        else:
            command = [sys.executable, "-m", "ingressd", "chp", *flags]
        env = subprocess_env()
        env.pop("CONFIGPROXY_AUTH_TOKEN", None)
        if token:
            env["CONFIGPROXY_AUTH_TOKEN"] = token
        Path(workdir).mkdir(parents=True, exist_ok=True)
        self.log_path = Path(workdir) / f"{kind}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 20.0) -> "Proxy":
        """Until the API answers GET /api/routes with 200 (stops the process if it never does)."""
        try:
            wait_until(self._ready, timeout=timeout, interval=0.02, message=f"{self.kind}'s API")
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.kind} exited: {self.log_path.read_text(errors='replace')}")
        return self.api("GET", "/api/routes").status == 200

    def api(self, method: str, path: str, body=None, token: str | None = "default",
            headers: dict[str, str] | None = None) -> Response:
        """A request to the REST API; ``body`` a dict (sent as JSON) or bytes; ``token`` None: none."""
        token = self.token if token == "default" else token
        all_headers = {"Authorization": f"token {token}"} if token else {}
        all_headers.update(headers or {})
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        return request(self.api_port, method, path, data, all_headers)

    def get(self, path: str, host: str | None = None, headers: dict[str, str] | None = None) -> Response:
        """GET through the proxy port (``host``: the Host header; default 127.0.0.1:PORT)."""
        all_headers = {"Host": host} if host else {}
        all_headers.update(headers or {})
        return request(self.port, "GET", path, headers=all_headers, tls=self.tls)

    def stop(self) -> None:
        procs.stop(self.proc)
        self.log.close()
