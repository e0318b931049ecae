"""The status page on the metrics port, loaded in a real headless chromium over the DevTools protocol:
it shows a known route and a known broken object, plots live traffic, and logs no console errors."""

from __future__ import annotations

import base64
import contextlib
import inspect
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from support import manifests as m
from support import procs
from support.certs import issue
from support.ingressd import launch, subprocess_env
from support.wait import wait_until

pytestmark = pytest.mark.timeout(180)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """Headless chromium driven over the DevTools protocol; stopped by its own PID."""

    def __init__(self, workdir: Path, extra_args: tuple[str, ...] = ()):
        self.workdir = Path(workdir)
        self.extra_args = tuple(extra_args)  # more chromium flags (test_h2_websocket: host mapping, test CA)
        self.proc: subprocess.Popen | None = None
        self.ws = None
        self.ids = itertools.count(1)
        self.events: list[dict] = []
        self.stack = contextlib.ExitStack()

    def start(self) -> "Browser":
        profile = self.workdir / "profile"
        profile.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "chromium.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-extensions", "--disable-default-apps", "--no-first-run", "--no-default-browser-check",
                 "--no-proxy-server", "--mute-audio", "--hide-scrollbars", "--window-size=1280,1000",
                 f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1",
                 "--remote-debugging-port=0", *self.extra_args, "about:blank"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=subprocess_env(), start_new_session=True)
        active = profile / "DevToolsActivePort"

        def port():
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}: {self.log()}")
            lines = active.read_text().split() if active.exists() else []
            return int(lines[0]) if lines else None

        devtools_port = wait_until(port, timeout=60, message="chromium's DevTools port")
        pages = wait_until(lambda: [t for t in self._json(devtools_port, "/json/list") if t["type"] == "page"],
                           timeout=30, message="a chromium page target")
        from websockets.sync.client import connect
        extra = {"proxy": None} if "proxy" in inspect.signature(connect).parameters else {}
        self.ws = self.stack.enter_context(connect(pages[0]["webSocketDebuggerUrl"], max_size=None,
                                                   open_timeout=20, **extra))
        for method in ("Runtime.enable", "Log.enable", "Page.enable"):
            self.call(method)
        self.call("Emulation.setDeviceMetricsOverride", width=1280, height=1000, deviceScaleFactor=1, mobile=False)
        return self

    @staticmethod
    def _json(port: int, path: str):
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return json.load(response)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def call(self, method: str, timeout: float = 30.0, **params) -> dict:
        ident = next(self.ids)
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluating {expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def console_errors(self) -> list[str]:
        self.evaluate("1")  # collect the events received so far
        errors = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                errors.append(f"exception: {details.get('exception', {}).get('description') or details.get('text')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append("console.%s: %s" % (params["type"], " ".join(
                    str(a.get("value", a.get("description", ""))) for a in params.get("args", []))))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                errors.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}")
        return errors

    def screenshot(self, path: Path) -> Path:
        height = int(self.evaluate("document.documentElement.scrollHeight"))
        self.call("Emulation.setDeviceMetricsOverride", width=1280, height=min(max(height, 600), 4000),
                  deviceScaleFactor=1, mobile=False)
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def stop(self) -> None:
        try:
            self.stack.close()
        except Exception:  # noqa: BLE001 - best effort on teardown
            pass
        proc = self.proc
        if proc is None:
            return
        procs.stop(proc)
        try:  # helpers chromium started in its own session (renderers, zygote) that outlived it
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc = None


@pytest.fixture
def browser(tmp_path):
    if CHROMIUM is None:
        pytest.fail("chromium is not installed (apt-get install -y chromium; scripts/test.sh installs it)")
    b = Browser(tmp_path / "chromium")
    try:
        b.start()
    except BaseException:
        b.stop()
        raise
    yield b
    b.stop()


@pytest.fixture
def status_ingressd(request, tmp_path, backend, ca):
    """ingressd with a known route, a TLS host, a backend-less route and an invalid Ingress; extra
    ``serve`` arguments by indirect parametrization."""
    cert_pem, key_pem = issue(ca, "secure.status.example")
    args = getattr(request, "param", ())
    inst = launch(tmp_path / "ingressd", {
        "svc.yaml": backend.services("a"),
        "secret.yaml": [m.tls_secret("secure-tls", cert_pem, key_pem)],
        "good.yaml": [
            m.ingress("status-shop", [m.rule("shop.status.example", m.path("/api", "svc-a"))]),
            m.ingress("status-secure", [m.rule("secure.status.example", m.path("/", "svc-a"))],
                      tls=[(["secure.status.example"], "secure-tls")]),
            m.ingress("status-down", [m.rule("down.status.example", m.path("/", "svc-nowhere"))]),
        ],
        "broken.yaml": [m.ingress("status-bogus", [m.rule("bogus.status.example", m.path("/", "svc-a",
                                                                                          type="Bogus"))])],
    }, args)
    yield inst
    inst.stop()


def send_traffic(inst, rounds: int = 1) -> None:
    for _ in range(rounds):
        for i in range(3):
            assert inst.get(f"/api/item/{i}", "shop.status.example").status == 200
        assert inst.get("/", "down.status.example").status == 503


@pytest.mark.parametrize("status_ingressd", [(), ("--workers", "1")], indirect=True,
                         ids=["default-workers", "single-process"])
def test_status_json_is_on_the_metrics_port_only(status_ingressd):
    send_traffic(status_ingressd)

    def counted():
        status, text = status_ingressd.metrics_get("/status.json")
        assert status == 200
        traffic = {i["name"]: i for i in json.loads(text)["traffic"]["ingresses"]}
        if traffic.get("default/status-shop", {}).get("requests") == 3 and \
                traffic.get("default/status-down", {}).get("errors_5xx") == 1:
            return text

    text = wait_until(counted, timeout=10, message="the requests counted in /status.json")
    data = json.loads(text)
    assert any(r["host"] == "shop.status.example" and r["path"] == "/api" for r in data["routes"])
    assert any(d["object"] == "Ingress default/status-bogus" for d in data["diagnostics"])
    assert "PRIVATE KEY" not in text and "BEGIN CERTIFICATE" not in text
    status, page = status_ingressd.metrics_get("/")
    assert status == 200 and "<title>ingressd status</title>" in page
    assert status_ingressd.metrics_get("/status.js")[0] == 200
    assert status_ingressd.metrics_get("/status.css")[0] == 200
    # The public ports route / and /status.json like any other request: to the default backend.
    for path in ("/status.json", "/"):
        response = status_ingressd.get(path, "127.0.0.1")
        assert response.status == 404 and b"routes" not in response.body


def test_status_page_in_headless_chromium(status_ingressd, browser, tmp_path):
    send_traffic(status_ingressd, rounds=2)
    url = f"http://127.0.0.1:{status_ingressd.metrics_port}/"
    browser.call("Page.navigate", url=url)
    wait_until(lambda: browser.evaluate("document.body && document.body.dataset.loaded === 'true'"), timeout=30,
               interval=0.1, message="the status page's first render")

    text = browser.evaluate("document.body.innerText")
    routes = browser.evaluate("document.querySelector('#routes tbody').innerText")
    assert "shop.status.example" in routes and "/api" in routes and "svc-a" in routes
    assert "secure.status.example" in routes and "default/secure-tls" in routes
    problems = browser.evaluate("document.querySelector('#problems tbody').innerText")
    assert "Ingress default/status-bogus" in problems and "Bogus" in problems
    certificates = browser.evaluate("document.querySelector('#certificates tbody').innerText")
    assert "default/secure-tls" in certificates and "secure.status.example" in certificates
    assert "PRIVATE KEY" not in text

    # Live view: with traffic flowing, the page computes non-zero rates between polls and plots a line
    # of at least three points.
    def plotted():
        send_traffic(status_ingressd)
        return browser.evaluate("""(() => {
            const rows = [...document.querySelectorAll('#traffic tbody tr')].map(r => r.innerText);
            const shop = rows.find(r => r.includes('default/status-shop')) || '';
            const down = rows.find(r => r.includes('default/status-down')) || '';
            const rate = row => parseFloat(row.split('\\t')[1]);
            const errors = row => parseFloat(row.split('\\t')[2]);
            return rate(shop) > 0 && errors(down) > 0 &&
                   document.querySelectorAll('#plot-requests path.series').length >= 2 &&
                   document.querySelectorAll('#plot-errors path.series').length >= 1 &&
                   [...document.querySelectorAll('#plot-requests path.series')].some(
                       p => (p.getAttribute('d').match(/L/g) || []).length >= 2);
        })()""")

    wait_until(plotted, timeout=40, interval=0.3, message="non-zero request and 5xx rates plotted")
    shot = browser.screenshot(tmp_path / "status-page.png")
    assert shot.stat().st_size > 10_000
    errors = browser.console_errors()
    assert not errors, "console errors:\n" + "\n".join(errors)
