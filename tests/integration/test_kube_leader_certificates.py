"""Certificates with two replicas (emulator + pebble): only the leader orders; the CA's HTTP-01
validation reaches the *other* replica first (a round-robin TCP load balancer in front of both,
tests/support/tcplb.py) and is answered from the leader's shared answers; after the leader is killed
the new leader orders nothing already issued. The API requests both replicas made are exactly the
RBAC table (ingressd/kube/rbac.py, which deploy/kubernetes/rbac.yaml grants): none outside it, none
of it unused."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ingressd.kube.rbac import allows, granted
from acme_pebble import Pebble, leaf, needs_pebble, served_leaf
from support import manifests as m
from support.ingressd import free_port
from support.procs import stop as stop_process
from support.wait import wait_until
from test_kube_leader import TTL, Replica, ingress_status
from test_kubernetes_certificates import CRDS, issued

pytestmark = [needs_pebble, pytest.mark.timeout(180)]

TCPLB = Path(__file__).resolve().parents[1] / "support" / "tcplb.py"


def start_balancer(port: int, backends: list[int], log: Path) -> subprocess.Popen:
    args = [sys.executable, str(TCPLB), "--listen", f"127.0.0.1:{port}"]
    for backend in backends:
        args += ["--backend", f"127.0.0.1:{backend}"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=open(log, "wb"), stdin=subprocess.DEVNULL)
    assert proc.stdout.readline().startswith(b"listening"), log.read_text()
    return proc


def test_only_the_leader_orders_any_replica_answers_and_a_new_leader_reorders_nothing(kubeapi, backend, tmp_path):
    lb_port = free_port()
    pebble = Pebble(tmp_path / "pebble", lb_port).start()
    replicas, balancer = [], None
    try:
        kubeapi.apply(m.dump([*backend.services("a")]))
        kubeapi.apply(CRDS)
        replicas = [Replica(tmp_path, kubeapi, name, ["--publish-status-address", "203.0.113.7"],
                            namespace="default").start() for name in ("ingressd-a", "ingressd-b")]
        leader = wait_until(lambda: [r for r in replicas if r.leading()], timeout=10, message="a leader")[0]
        follower = next(r for r in replicas if r is not leader)
        # the load balancer sends the first connection (pebble's validation) to the follower
        balancer = start_balancer(lb_port, [follower.http_port, leader.http_port], tmp_path / "tcplb.log")

        issuer = {"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": "pebble"},
                  "spec": {"acme": {"server": pebble.directory, "email": "ops@example.com",
                                    "privateKeySecretRef": {"name": "pebble-account"},
                                    "caBundle": base64.b64encode(pebble.ca_file.read_bytes()).decode(),
                                    "solvers": [{"http01": {"ingress": {}}}]}}}
        kubeapi.apply(m.dump([issuer, m.ingress("site", [m.rule("site.example.com", m.path("/", "svc-a"))],
                                                tls=[(["site.example.com"], "site-tls")], class_name="ingressd",
                                                annotations={"cert-manager.io/cluster-issuer": "pebble"})]))
        doc = wait_until(lambda: issued(kubeapi, "site-tls"), timeout=60, interval=0.2, message="issued")
        cert = leaf(base64.b64decode(doc["data"]["tls.crt"]))
        assert pebble.issued() == 1
        first = (tmp_path / "tcplb.log").read_text().splitlines()[0]
        assert first.endswith(f":{follower.http_port}"), first  # the follower answered the CA
        assert "ordering a certificate" in leader.stderr() and "ordering a certificate" not in follower.stderr()
        for replica in replicas:  # both serve it
            wait_until(lambda: served_leaf(replica.https_port, "site.example.com", pebble.root_pem()).serial_number
                       == cert.serial_number, timeout=10, interval=0.1)

        os.kill(leader.pid, signal.SIGKILL)
        wait_until(follower.leading, timeout=TTL * 3, message="takeover")
        # the new leader reconciles: it finds the valid certificate and orders nothing
        wait_until(lambda: "is valid until" in follower.stderr(), timeout=10, message="reconciled")
        assert pebble.issued() == 1 and "ordering a certificate" not in follower.stderr()
        assert wait_until(lambda: ingress_status(kubeapi, "site") == [{"ip": "203.0.113.7"}], timeout=5)
        # RBAC: every request either replica made (watches, Secrets, certificate state, HTTP-01
        # ConfigMap, Lease) is granted by the table, and so by deploy/kubernetes/rbac.yaml
        requests = kubeapi.ingressd_requests()
        assert {(r["resource"], r["verb"]) for r in requests} >= {
            ("secrets", "create"), ("secrets", "update"), ("configmaps", "update"), ("leases", "update")}
        denied = {(r["group"], r["resource"], r["verb"], r["namespace"]) for r in requests
                  if not allows(r["group"], r["resource"], r["verb"], r["namespace"] or None, "default")}
        assert not denied, f"requests outside ingressd/kube/rbac.py: {sorted(denied)}"
        # ...and the table holds nothing the code does not call: this scenario exercises all of it
        assert {(r["group"], r["resource"], r["verb"]) for r in requests} == granted()
    finally:
        for replica in replicas:
            replica.stop()
        if balancer is not None:
            stop_process(balancer)
        pebble.close()
