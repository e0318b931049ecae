"""Start the emulator as its own process, write a kubeconfig, drive it with the real ``kubectl``.

    api = KubeApi(tmp_path); api.start()
    api.kubectl("apply", "-f", "-", input=yaml_text)
    api.get("/apis/networking.k8s.io/v1/ingresses")       # plain HTTP for assertions
    api.stop(); api.start()                                # an outage: same port, same objects
    api.close()

Whichever ``kubectl`` is on PATH is used (Debian's 1.20 or a newer one): the kubeconfig and the
flags used here work with both. ``--validate=false`` is passed to apply/create because the
emulator serves no OpenAPI schema.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from ..procs import stop as stop_process

ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class KubeApi:
    def __init__(self, directory: Path, *, bookmark_interval: float = 1.0, namespace: str = "default"):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state = self.directory / "kubeapi-state.json"
        self.log = self.directory / "kubeapi.log"
        self.kubeconfig = self.directory / "kubeconfig"
        self.bookmark_interval = bookmark_interval
        self.proc: subprocess.Popen | None = None
        self.kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "emulator-token"}}],
            "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester", "namespace": namespace}}],
        }))

    def start(self) -> "KubeApi":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.support.kubeapi.server", "--port", str(self.port),
                 "--state", str(self.state), "--bookmark-interval", str(self.bookmark_interval)],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=log)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("listening"):
            stop_process(self.proc)
            raise RuntimeError(f"the emulator did not start: {line!r}; see {self.log}")
        return self

    def stop(self) -> None:
        """Stop the process (SIGTERM: its objects are kept in the state file for the next start)."""
        stop_process(self.proc)
        self.proc = None

    def close(self) -> None:
        self.stop()

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 30) -> str:
        binary = shutil.which("kubectl")
        if binary is None:
            raise RuntimeError("kubectl is not on PATH (Debian package kubernetes-client)")
        args = list(args)
        if args and args[0] in ("apply", "create", "replace"):
            args.insert(1, "--validate=false")
        result = subprocess.run([binary, "--kubeconfig", str(self.kubeconfig), *args], input=input,
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def apply(self, text: str) -> str:
        return self.kubectl("apply", "-f", "-", input=text)

    def request(self, method: str, path: str, body=None, content_type: str = "application/json"):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def get(self, path: str):
        status, body = self.request("GET", path)
        if status != 200:
            raise AssertionError(f"GET {path}: {status} {body}")
        return body

    def control(self, name: str):
        return self.get(f"/_emulator/{name}")

    def requests(self) -> list[dict]:
        """Every API request the emulator saw: {verb, group, resource, namespace, agent} (for the RBAC check)."""
        return self.control("requests")

    def ingressd_requests(self) -> list[dict]:
        """The requests ingressd made (its client sends ``User-Agent: ingressd/VERSION``), not kubectl's
        or this fixture's, for checking them against ingressd/kube/rbac.py."""
        return [r for r in self.requests() if r.get("agent", "").startswith("ingressd/")]
