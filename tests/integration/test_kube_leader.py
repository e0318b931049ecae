"""Two real ingressd replicas against one API (the emulator of tests/support/kubeapi, a separate
server process driven by the real kubectl): both serve, exactly one holds the Lease and writes the
Ingress status; killing the leader hands over within the lease duration; every API request ingressd
makes is one the RBAC table grants.

Emulated (tests/support/kubeapi): 409 on a stale Lease resourceVersion, the status subresource.
The lease duration is shortened with --election-ttl 3 (renew deadline 2 s, retry 0.4 s) so that the
failover takes seconds; the defaults are client-go's (15/10/2 s), covered by tests/unit/test_election.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import yaml

from ingressd.kube.rbac import allows
from support.backends import BackendProcess
from support.ingressd import LIVE, REPO, Ingressd, subprocess_env
from support.kubeapi.fixture import KubeApi
from support.wait import wait_until

TTL = 3.0
NAMESPACE = "ingressd"
LB_IP = "203.0.113.7"


class Replica(Ingressd):
    """``ingressd serve --kubernetes`` as the pod ``name`` (POD_NAME/POD_NAMESPACE as the Deployment sets them)."""

    def __init__(self, workdir, api: KubeApi, name: str, args=(), namespace: str = NAMESPACE):
        super().__init__(workdir / "unused", workdir / name, args)
        self.api = api
        self.name = name
        self.namespace = namespace

    def spawn(self, ready_timeout: float) -> bool:
        cmd = [sys.executable, "-m", "ingressd", "serve", "--kubernetes", "--kubeconfig", str(self.api.kubeconfig),
               "--listen", "127.0.0.1", "--http-port", str(self.http_port), "--https-port", str(self.https_port),
               "--metrics-port", str(self.metrics_port), "--workers", "1", "--election-ttl", str(TTL), *self.args]
        env = dict(subprocess_env(), POD_NAME=self.name, POD_NAMESPACE=self.namespace)
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=REPO, env=env)
        LIVE.append(self)
        try:
            wait_until(self._ready_or_dead, timeout=ready_timeout, interval=0.05, message=f"{self.name} /readyz")
        except Exception:
            self.stop()
            raise RuntimeError(f"{self.name} did not become ready:\n{self.logs()}") from None
        return self.proc.poll() is None

    def leading(self) -> bool:
        match = re.search(r'^nginx_ingress_controller_leader_election_status\{[^}]*\} (\S+)$', self.metrics(), re.M)
        return match is not None and float(match.group(1)) == 1.0


def objects(backend_port: int) -> str:
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ingressd", "namespace": NAMESPACE},
         "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
         "spec": {"ports": [{"name": "http", "port": 80, "targetPort": backend_port}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "web-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
         "addressType": "IPv4", "ports": [{"name": "http", "port": backend_port}],
         "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}]},
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web", "namespace": "default"},
         "spec": {"ingressClassName": "ingressd", "rules": [{"host": "web.example.com", "http": {"paths": [
             {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "other", "namespace": "default"},
         "spec": {"ingressClassName": "nginx", "rules": [{"host": "other.example.com", "http": {"paths": [
             {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}},
    ]
    return yaml.safe_dump_all(docs)


def set_lb_address(api: KubeApi, ip: str) -> None:
    """What the cloud's controller does: write the Service's status (the status subresource)."""
    service = api.get(f"/api/v1/namespaces/{NAMESPACE}/services/ingressd")
    service["status"] = {"loadBalancer": {"ingress": [{"ip": ip}]}}
    status, body = api.request("PUT", f"/api/v1/namespaces/{NAMESPACE}/services/ingressd/status", service)
    assert status == 200, body


def ingress_status(api: KubeApi, name: str) -> list:
    """As a user reads it: ``kubectl get ingress -o yaml``."""
    doc = yaml.safe_load(api.kubectl("get", "ingress", name, "-n", "default", "-o", "yaml"))
    return ((doc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []


def lease_holder(api: KubeApi) -> str:
    doc = json.loads(api.kubectl("get", "lease", "ingressd-leader", "-n", NAMESPACE, "-o", "json"))
    return doc["spec"].get("holderIdentity") or ""


def test_two_replicas_one_leader_writes_status_and_failover_within_the_lease(kubeapi, tmp_path):
    api = kubeapi
    with BackendProcess({"web": ["127.0.0.1"]}, tmp_path / "backend.log") as backend:
        api.apply(objects(backend.port("web")))
        set_lb_address(api, LB_IP)
        a = Replica(tmp_path, api, "ingressd-a", ["--publish-service", f"{NAMESPACE}/ingressd"]).start()
        b = Replica(tmp_path, api, "ingressd-b", ["--publish-service", f"{NAMESPACE}/ingressd"]).start()
        c = None
        try:
            for replica in (a, b):  # both serve
                assert replica.get("/", host="web.example.com").status == 200
            leader = wait_until(lambda: [r for r in (a, b) if r.leading()], timeout=10, message="a leader")
            assert len(leader) == 1
            leader, follower = leader[0], (b if leader[0] is a else a)
            time.sleep(TTL)  # several renewals: still exactly one (not a sleep to wait for something)
            assert leader.leading() and not follower.leading()
            requests = api.ingressd_requests()

            # exactly the leader wrote the status, and only of the Ingress it serves
            assert lease_holder(api) == leader.name
            wait_until(lambda: ingress_status(api, "web") == [{"ip": LB_IP}], timeout=5, message="status written")
            assert ingress_status(api, "other") == []  # class nginx: not ours
            patches = [r for r in requests if r["resource"] == "ingresses/status"]
            assert len(patches) <= 1  # written once, not on every renewal or snapshot

            # kill the leader (no chance to release the Lease): the follower takes over within the lease
            killed_at = time.monotonic()
            os.kill(leader.pid, signal.SIGKILL)
            wait_until(follower.leading, timeout=TTL * 3, interval=0.05, message="takeover")
            failover = time.monotonic() - killed_at
            print(f"failover after SIGKILL of the leader: {failover:.2f} s (lease {TTL:.0f} s)")
            # the follower saw the last renewal at one of its jittered reads, and takes over at the first
            # read a lease duration after that one
            retry = TTL * 2 / 15 * (1 + 1.2)
            assert failover <= TTL + 2 * retry + 0.5
            assert lease_holder(api) == follower.name
            assert follower.get("/", host="web.example.com").status == 200  # serving throughout

            # the new leader follows the load balancer's address
            set_lb_address(api, "203.0.113.8")
            wait_until(lambda: ingress_status(api, "web") == [{"ip": "203.0.113.8"}], timeout=5,
                       message="status updated by the new leader")

            # a clean stop (rollout, drain) releases the Lease: a new replica takes over within a retry
            c = Replica(tmp_path, api, "ingressd-c", ["--publish-service", f"{NAMESPACE}/ingressd"]).start()
            assert not c.leading()
            stopped_at = time.monotonic()
            follower.proc.send_signal(signal.SIGTERM)
            wait_until(c.leading, timeout=TTL * 2, interval=0.05, message="takeover after a release")
            handover = time.monotonic() - stopped_at
            print(f"handover after SIGTERM of the leader (Lease released): {handover:.2f} s")
            assert handover <= retry + 1.0
            assert lease_holder(api) == "ingressd-c"
        finally:
            for replica in (a, b, c):
                if replica is not None:
                    replica.stop()

    # RBAC: every request ingressd made is granted by the table (and so by deploy/kubernetes/rbac.yaml)
    requests = api.ingressd_requests()  # the whole run
    assert {r["resource"] for r in requests} >= {"leases", "ingresses", "ingresses/status", "services"}
    denied = {(r["group"], r["resource"], r["verb"], r["namespace"]) for r in requests
              if not allows(r["group"], r["resource"], r["verb"], r["namespace"] or None, NAMESPACE)}
    assert not denied, f"requests outside ingressd/kube/rbac.py: {sorted(denied)}"
