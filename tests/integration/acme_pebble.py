"""Pebble (a real ACME server) and pebble-challtestsrv for the certificate tests, on free ports.

Not a test module: ``test_acme_*.py`` import it. Pebble's listener certificate comes from a
throwaway trustme CA; ``-dnsserver`` points at challtestsrv, whose default answer for every name is
127.0.0.1, and pebble's ``httpPort`` is the HTTP port of the ingressd under test, so HTTP-01
validation really goes through ingressd's data plane.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import urllib.request
from pathlib import Path

import pytest
import trustme

from support import procs
from support.ingressd import Ingressd, free_port, subprocess_env
from support.wait import wait_until

PEBBLE = shutil.which("pebble") or "/usr/bin/pebble"
CHALLTESTSRV = shutil.which("pebble-challtestsrv") or "/usr/bin/pebble-challtestsrv"

needs_pebble = pytest.mark.skipif(not (os.path.exists(PEBBLE) and os.path.exists(CHALLTESTSRV)),
                                  reason="Debian's pebble package is not installed")


_stop = procs.stop


class Pebble:
    """``pebble`` + ``pebble-challtestsrv``; stopped and started again on the same ports."""

    def __init__(self, workdir: Path, http_port: int, validity: int | None = None):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.http_port = http_port
        self.port, self.management_port = free_port(), free_port()
        self.dns_port, self.challtest_port = free_port(), free_port()
        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = self.dir / "listener-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        leaf.cert_chain_pems[0].write_to_path(str(self.dir / "cert.pem"))
        leaf.private_key_pem.write_to_path(str(self.dir / "key.pem"))
        config = {"pebble": {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.management_port}",
            "certificate": str(self.dir / "cert.pem"), "privateKey": str(self.dir / "key.pem"),
            "httpPort": http_port, "tlsPort": free_port(), "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }}
        if validity:
            config["pebble"]["certificateValidityPeriod"] = validity
        (self.dir / "config.json").write_text(json.dumps(config))
        self.log_path = self.dir / "pebble.log"
        self.proc: subprocess.Popen | None = None
        self.challtest: subprocess.Popen | None = None
        self.logs_before = ""  # output of earlier runs (a restart truncates nothing: we append)

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def start(self) -> "Pebble":
        if self.challtest is None or self.challtest.poll() is not None:
            with open(self.dir / "challtestsrv.log", "ab") as out:
                self.challtest = subprocess.Popen(
                    [CHALLTESTSRV, "-http01", "", "-https01", "", "-tlsalpn01", "",
                     "-dns01", f"127.0.0.1:{self.dns_port}", "-management", f"127.0.0.1:{self.challtest_port}",
                     "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        env = dict(subprocess_env(), PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0", PEBBLE_AUTHZREUSE="0")
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([PEBBLE, "-config", str(self.dir / "config.json"),
                                          "-dnsserver", f"127.0.0.1:{self.dns_port}"],
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=self.dir, env=env)
        wait_until(lambda: self.proc.poll() is not None or self._get(self.directory), timeout=20,
                   message="pebble's directory")
        assert self.proc.poll() is None, self.logs()
        return self

    def stop(self) -> None:
        _stop(self.proc)

    def close(self) -> None:
        _stop(self.proc)
        _stop(self.challtest)

    def _get(self, url: str) -> bytes:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        with urllib.request.urlopen(url, context=ctx, timeout=5) as response:
            return response.read()

    def root_pem(self) -> bytes:
        """The root of the chains this run of pebble issues (new at each start)."""
        return self._get(f"https://127.0.0.1:{self.management_port}/roots/0")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def issued(self) -> int:
        """Certificates issued so far (over every run of this pebble)."""
        return self.logs().count("Issued certificate serial")


class FixedPortIngressd(Ingressd):
    """``ingressd serve`` on ports chosen once: pebble validates on the HTTP port, and a restart
    must come back on the same one."""

    def __init__(self, manifests: Path, workdir: Path, args, ports: tuple[int, int, int]):
        super().__init__(manifests, workdir, args)
        self.http_port, self.https_port, self.metrics_port = ports

    def start(self, ready_timeout: float = 30.0) -> "FixedPortIngressd":
        if not self.spawn(ready_timeout):
            log = self.logs()
            self.stop()
            raise RuntimeError(f"ingressd exited with {self.returncode}:\n{log}")
        return self


# --- reading what ingressd wrote, and what it serves -----------------------------------------------


def stored_secret(state_dir: Path, namespace: str, name: str):
    """The Secret ingressd keeps in the state directory (an ingressd.objects.Secret), or None."""
    from ingressd.certmanager.store import FileSecretStore

    return FileSecretStore(state_dir).get(namespace, name)


def leaf(pem: bytes):
    from cryptography import x509

    return x509.load_pem_x509_certificates(pem)[0]


def issued_leaf(state_dir: Path, namespace: str, name: str, serial_not: int | None = None):
    """The leaf of a real (not temporary) certificate in the Secret, else None."""
    secret = stored_secret(state_dir, namespace, name)
    if secret is None or secret.annotations.get("ingressd.io/temporary-certificate") == "true":
        return None
    cert = leaf(secret.data["tls.crt"])
    return None if serial_not is not None and cert.serial_number == serial_not else cert


def served_leaf(port: int, host: str, cadata: bytes | None):
    """The leaf certificate ingressd presents for ``host``, verified against ``cadata`` (with
    hostname checking) unless it is None."""
    import socket

    from cryptography import x509

    if cadata is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cadata=cadata.decode())
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with ctx.wrap_socket(sock, server_hostname=host) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
