"""Shared fixtures: a CA, a backend process, ingressd launchers, and logs attached to failures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import ingressd as ingressd_mod  # noqa: E402
from support.authserver import AuthServer  # noqa: E402
from support.backends import BackendProcess  # noqa: E402
from support.kubeapi.fixture import KubeApi  # noqa: E402

# Ten distinct loopback addresses for the round-robin service.
RR_ADDRS = [f"127.0.0.{i}" for i in range(2, 12)]


@pytest.fixture(scope="session")
def ca():
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_pem(ca, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="session")
def backend(tmp_path_factory):
    """One backend process per xdist worker with the listeners every module uses.

    a..f: one listener each on 127.0.0.1; rr: ten addresses sharing one port; reuse: for the
    upstream keep-alive test only; ws: websocket echo.
    """
    listeners = {name: ["127.0.0.1"] for name in ("a", "b", "c", "d", "e", "f", "reuse", "ws", "big")}
    listeners["rr"] = RR_ADDRS
    proc = BackendProcess(listeners, tmp_path_factory.mktemp("backend") / "backend.log").start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def auth():
    """A real external authentication server (tests/support/authserver.py) for auth-url, one per module."""
    server = AuthServer().start()
    yield server
    server.stop()


@pytest.fixture
def kubeapi(tmp_path):
    """The Kubernetes API emulator (tests/support/kubeapi) on a free port, with a kubeconfig and
    ``kubeapi.kubectl(...)``; stopped at teardown."""
    api = KubeApi(tmp_path / "kubeapi", bookmark_interval=0.5).start()
    yield api
    api.close()


@pytest.fixture
def ingressd_factory(tmp_path):
    """Start ingressd instances for one test: ``factory(files, args=())``; all stopped at teardown."""
    started: list[ingressd_mod.Ingressd] = []

    def factory(files: dict, args=(), name: str = "ingressd"):
        inst = ingressd_mod.launch(tmp_path / f"{name}{len(started)}", files, args)
        started.append(inst)
        return inst

    yield factory
    for inst in started:
        inst.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for inst in list(ingressd_mod.LIVE):
            report.sections.append((f"ingressd pid {inst.proc.pid if inst.proc else '-'} log ({report.when})",
                                    inst.logs(tail=80)))
