"""Launching tests/support/backend.py as a separate process and describing it in manifests."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from . import manifests as m

BACKEND_SCRIPT = Path(__file__).with_name("backend.py")


class BackendProcess:
    """One backend process with named listeners.

    ``listeners`` maps a name to a list of addresses; all addresses of one name share one port.
    """

    def __init__(self, listeners: dict[str, list[str]], log_path: Path):
        self.spec = listeners
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen | None = None
        self.ports: dict[str, int] = {}
        self.addrs: dict[str, list[str]] = {}

    def start(self, timeout: float = 20.0) -> "BackendProcess":
        args = [sys.executable, str(BACKEND_SCRIPT)]
        for name, addrs in self.spec.items():
            args += ["--listen", f"{name}={','.join(addrs)}:0"]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"backend did not start: {self.log_path.read_text(errors='replace')}")
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    continue
                line += chunk
        info = json.loads(line)["listeners"]
        for name, item in info.items():
            self.ports[name] = item["port"]
            self.addrs[name] = item["addrs"]
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._log.close()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def port(self, name: str) -> int:
        return self.ports[name]

    def service(self, name: str, service_name: str | None = None, namespace: str = "default",
                service_port: int = 80, port_name: str = "http", ready: bool = True) -> list[dict]:
        """Service + EndpointSlice routing ``service_name`` (default ``svc-NAME``) to listener NAME."""
        return m.service_with_endpoints(
            service_name or f"svc-{name}",
            self.ports[name],
            addresses=self.addrs[name],
            namespace=namespace,
            service_port=service_port,
            port_name=port_name,
            ready=ready,
        )

    def services(self, *names: str, namespace: str = "default") -> list[dict]:
        docs: list[dict] = []
        for name in names:
            docs += self.service(name, namespace=namespace)
        return docs
