"""Launching ``python -m ingressd serve`` on free loopback ports and talking to it."""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from . import client as h
from . import procs
from .manifests import ManifestDir
from .wait import wait_until

REPO = Path(__file__).resolve().parents[2]

# Every ingressd started by the tests and still running; conftest attaches their logs to failures.
LIVE: list["Ingressd"] = []


def free_port(addr: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(var, None)
    return env


def run_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run ``python -m ingressd ARGS`` to completion (text output)."""
    return subprocess.run([sys.executable, "-m", "ingressd", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=subprocess_env(), stdin=subprocess.DEVNULL)


class Ingressd:
    """``ingressd serve`` on 127.0.0.1 with free ports, its output in ``workdir``."""

    def __init__(self, manifests: Path, workdir: Path, args: list[str] | tuple[str, ...] = ()):
        self.manifests = Path(manifests)
        self.dir = ManifestDir(self.manifests)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.args = list(args)
        self.proc: subprocess.Popen | None = None
        self.stdout_path = self.workdir / "ingressd.stdout.log"
        self.stderr_path = self.workdir / "ingressd.stderr.log"
        self.http_port = self.https_port = self.metrics_port = 0
        self.returncode: int | None = None
        self.readyz_seen: list[int] = []  # /readyz answers observed while starting

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self, ready_timeout: float = 30.0) -> "Ingressd":
        for attempt in range(3):
            self.http_port, self.https_port, self.metrics_port = free_port(), free_port(), free_port()
            if self.spawn(ready_timeout):
                return self
            # Exited: a port taken by someone else between free_port() and bind() is retried.
            log = self.logs()
            self.stop()
            if "in use" not in log.lower() or attempt == 2:
                raise RuntimeError(f"ingressd exited with {self.returncode} before ready:\n{log}")
        raise AssertionError("unreachable")

    def spawn(self, ready_timeout: float) -> bool:
        """Start ``ingressd serve`` on this instance's ports and wait for /readyz; False if it exited."""
        source = [] if "--kubernetes" in self.args else ["--manifests", str(self.manifests)]
        cmd = [sys.executable, "-m", "ingressd", "serve", *source,
               "--listen", "127.0.0.1", "--http-port", str(self.http_port), "--https-port", str(self.https_port),
               "--metrics-port", str(self.metrics_port), *self.args]
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=REPO,
                                         env=subprocess_env())
        LIVE.append(self)
        try:
            wait_until(self._ready_or_dead, timeout=ready_timeout, interval=0.05,
                       message=f"ingressd /readyz on port {self.metrics_port}")
        except Exception:
            self.stop()
            raise RuntimeError(f"ingressd did not become ready:\n{self.logs()}") from None
        return self.proc.poll() is None

    def _ready_or_dead(self) -> bool:
        if self.proc.poll() is not None:
            return True
        status = self.metrics_get("/readyz", timeout=1.0)[0]
        self.readyz_seen.append(status)
        return status == 200

    def stop(self) -> None:
        """Stop this ingressd by its own PID (SIGTERM, then SIGKILL)."""
        proc = self.proc
        if proc is None:
            return
        procs.stop(proc)
        self.returncode = proc.returncode
        if self in LIVE:
            LIVE.remove(self)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # --- requests --------------------------------------------------------------------------------

    def get(self, path: str = "/", host: str | None = "example.com", **kw) -> h.Response:
        """A request to the HTTP port on a fresh connection."""
        return h.request(self.http_port, path, host, **kw)

    def get_tls(self, path: str = "/", host: str | None = "example.com", *, tls, sni: str | None = None,
                **kw) -> h.Response:
        """A request to the HTTPS port (SNI = host unless given) on a fresh connection."""
        return h.request(self.https_port, path, host, tls=tls, sni=sni, **kw)

    def url(self, host: str, path: str = "/", https: bool = False) -> str:
        port = self.https_port if https else self.http_port
        return f"{'https' if https else 'http'}://{host}:{port}{path}"

    def resolve(self, host: str, https: bool = False) -> str:
        """A curl ``--resolve`` value sending ``host`` to this ingressd."""
        return f"{host}:{self.https_port if https else self.http_port}:127.0.0.1"

    # --- observation ---------------------------------------------------------------------------

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def logs(self, tail: int = 200) -> str:
        out = self.stdout().splitlines()[-tail:]
        err = self.stderr().splitlines()[-tail:]
        return ("--- ingressd stdout ---\n" + "\n".join(out) + "\n--- ingressd stderr ---\n" + "\n".join(err))

    def metrics_get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def metrics(self) -> str:
        status, text = self.metrics_get("/metrics")
        assert status == 200, (status, text[:500])
        return text

    def memory_kb(self, field: str = "VmHWM") -> int:
        """Largest ``field`` (kB) over the ingressd process and its descendants."""
        best = 0
        for pid in _descendants(self.pid):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            match = re.search(rf"^{field}:\s+(\d+)\s+kB", status, re.M)
            if match:
                best = max(best, int(match.group(1)))
        return best


def launch(workdir: Path, files: dict[str, list[dict] | str | bytes], args=()) -> Ingressd:
    """Write ``files`` into ``workdir/manifests`` and start an ingressd on them (ready on return)."""
    mdir = ManifestDir(Path(workdir) / "manifests")
    for name, content in files.items():
        if isinstance(content, (str, bytes)):
            mdir.write_text(name, content)
        else:
            mdir.write(name, content)
    return Ingressd(mdir.path, Path(workdir) / "run", args).start()


def _descendants(pid: int) -> list[int]:
    out = [pid]
    i = 0
    while i < len(out):
        p = out[i]
        i += 1
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                out += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return out


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample named exactly ``name`` in Prometheus text: (labels, value)."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match and match.group(1) == name:
            labels = {k: bytes(v, "utf-8").decode("unicode_escape") for k, v in _LABEL.findall(match.group(2) or "")}
            out.append((labels, float(match.group(3))))
    return out


def sample_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
    return sum(v for ls, v in samples(text, name) if all(ls.get(k) == val for k, val in labels.items()))
