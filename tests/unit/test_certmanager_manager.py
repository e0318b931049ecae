"""The reconcile loop with in-memory stores and local issuers: no network, no files."""

from __future__ import annotations

import asyncio
import time

from cryptography import x509

from certmanager_kit import CM, ca_pair, cluster_issuer, ingress, snapshot, tls_secret
from ingressd.certmanager.manager import CertificateManager
from ingressd.certmanager.metrics import CertificateCollector
from ingressd.certmanager.plan import CertSettings
from ingressd.certmanager.store import CertStatus, MemorySecretStore
from ingressd.config import Settings

class MemoryStatusStore:
    def __init__(self):
        self.saved = {}

    def load(self):
        return {k: v for k, v in self.saved.items()}

    def save(self, statuses):
        self.saved = dict(statuses)


def manager(store, status, clock=time.time):  # the certificates issued here are dated by the real clock
    return CertificateManager(CertSettings(state_dir="/state"), Settings(), store=store, status_store=status,
                              clock=clock)


async def settle(mgr: CertificateManager) -> None:
    while mgr.inflight:
        await asyncio.gather(*mgr.inflight.values())


def leaf(store, name, namespace="default"):
    secret = store.get(namespace, name)
    return secret, x509.load_pem_x509_certificates(secret.data["tls.crt"])[0]


def test_local_issuer_issues_before_serving_then_reuses_without_orders():
    store, status = MemorySecretStore(), MemoryStatusStore()
    site = ingress("web", [(["a.example.com", "b.example.com"], "web-tls")], {CM + "cluster-issuer": "self"})
    snap = snapshot(cluster_issuer("self", {"selfSigned": {}}), site)

    async def run():
        mgr = manager(store, status)
        # Before the ports open: a local issuer needs no network, so the real certificate is
        # issued at once and the first configuration serves it (no temporary one in between).
        assert await mgr.start(snap)
        secret, cert = leaf(store, "web-tls")
        assert "ingressd.io/temporary-certificate" not in secret.annotations and not mgr.inflight
        assert {n.value for n in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value} == {
            "a.example.com", "b.example.com"}
        assert secret.annotations[CM + "issuer-name"] == "self" and secret.data["ca.crt"] == secret.data["tls.crt"]
        assert mgr.orders == {("self", "success"): 1}
        issued_key = store.get("default", "web-tls").data["tls.key"]
        await mgr.reconcile()
        assert not mgr.inflight and mgr.orders == {("self", "success"): 1}  # valid: nothing to do
        assert mgr.next_renewal[("default", "web-tls")][1] > time.time()

        # a restart: a new manager on the same stores orders nothing
        again = manager(store, status)
        again.update(snap)
        await again.reconcile()
        assert not again.inflight and not again.orders

        # renamed Secret: the valid certificate is copied
        renamed = ingress("web", [(["a.example.com", "b.example.com"], "renamed")], {CM + "cluster-issuer": "self"})
        again.update(snapshot(cluster_issuer("self", {"selfSigned": {}}), renamed))
        await again.reconcile()
        assert not again.inflight and not again.orders
        assert leaf(store, "renamed")[1].serial_number == cert.serial_number
        assert store.get("default", "renamed").data["tls.key"] == issued_key
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in CertificateCollector(mgr).collect() for s in family.samples}
        assert samples[("ingressd_certificate_orders_total", (("issuer", "self"), ("result", "success")))] == 1
        await again.reconcile()  # as the write's new snapshot makes it do
        entries = {e["secret"]: e["state"] for e in again.status_entries()}
        assert entries == {"default/renamed": "Ready"}

    asyncio.run(run())


def test_failures_back_off_and_the_backoff_survives_a_restart():
    store, status = MemorySecretStore(), MemoryStatusStore()
    not_a_ca = ca_pair(ca=False)
    snap = snapshot(cluster_issuer("ca", {"ca": {"secretName": "root"}}), tls_secret("root", "cert-manager", *not_a_ca),
                    ingress("web", [(["a.example.com"], "web-tls")], {CM + "cluster-issuer": "ca"}))
    start = time.time()
    now = [start]

    async def run():
        mgr = manager(store, status, clock=lambda: now[0])
        mgr.update(snap)
        await mgr.reconcile()
        await settle(mgr)
        assert mgr.orders == {("ca", "error"): 1}
        [saved] = status.saved.values()
        assert saved.failures == 1 and "not a CA" in saved.last_error
        assert start + 300 <= saved.next_attempt <= start + 330
        assert store.get("default", "web-tls").annotations["ingressd.io/temporary-certificate"] == "true"

        now[0] = start + 60
        restarted = manager(store, status, clock=lambda: now[0])
        restarted.update(snap)
        await restarted.reconcile()
        assert not restarted.inflight and restarted._next_due == saved.next_attempt
        state = restarted.status_entries()[0]
        assert state["state"] == "Temporary (backoff after 1 failure(s))" and "not a CA" in state["last_error"]

        now[0] = saved.next_attempt + 1
        await restarted.reconcile()
        await settle(restarted)
        [second] = status.saved.values()
        assert second.failures == 2 and second.next_attempt >= now[0] + 600

    asyncio.run(run())


def test_without_a_state_dir_nothing_is_managed(caplog):
    snap = snapshot(cluster_issuer("self", {"selfSigned": {}}),
                    ingress("web", [(["a.example.com"], "web-tls")], {CM + "cluster-issuer": "self"}))
    mgr = CertificateManager(CertSettings(), Settings(), store=None, status_store=None)

    async def run():
        mgr.update(snap)
        assert await mgr.reconcile() is False

    asyncio.run(run())
    assert "without --state-dir" in caplog.text


class FlakyStore(MemorySecretStore):
    """A store whose writes of one Secret fail until ``healed``."""

    def __init__(self, failing: str):
        super().__init__()
        self.failing = failing
        self.healed = False

    def put(self, secret):
        temporary = "ingressd.io/temporary-certificate" in secret.annotations
        if secret.name == self.failing and not self.healed and not temporary:
            raise OSError(28, "No space left on device")
        super().put(secret)


def test_an_issued_certificate_that_cannot_be_stored_is_written_again_not_ordered_again():
    store, status = FlakyStore("web-tls"), MemoryStatusStore()
    snap = snapshot(cluster_issuer("self", {"selfSigned": {}}),
                    ingress("web", [(["a.example.com"], "web-tls")], {CM + "cluster-issuer": "self"}))

    async def run():
        mgr = manager(store, status)
        mgr.update(snap)
        await mgr.reconcile()
        await settle(mgr)
        assert mgr.orders == {("self", "success"): 1}
        assert "cannot be stored" in mgr.statuses[next(iter(mgr.statuses))].last_error
        await mgr.reconcile()  # still failing: no new order
        await settle(mgr)
        assert mgr.orders == {("self", "success"): 1}
        store.healed = True
        await mgr.reconcile()
        await settle(mgr)
        assert mgr.orders == {("self", "success"): 1}
        assert "ingressd.io/temporary-certificate" not in store.get("default", "web-tls").annotations
        await mgr.reconcile()
        assert not mgr.inflight and mgr.orders == {("self", "success"): 1}

    asyncio.run(run())


def test_an_unexpected_error_backs_off_too(caplog):
    store, status = MemorySecretStore(), MemoryStatusStore()
    snap = snapshot(cluster_issuer("self", {"selfSigned": {}}),
                    ingress("web", [(["a.example.com"], "web-tls")], {CM + "cluster-issuer": "self"}))

    def broken(*args):
        raise RuntimeError("bug")

    async def run():
        mgr = manager(store, status)
        mgr._obtain = broken
        mgr.update(snap)
        await mgr.reconcile()
        await settle(mgr)
        [saved] = status.saved.values()
        assert saved.failures == 1 and saved.last_error == "internal error: RuntimeError('bug')"
        assert saved.next_attempt > time.time() + 250
        await mgr.reconcile()
        assert not mgr.inflight and mgr.orders == {("self", "error"): 1}

    asyncio.run(run())
    assert "Traceback" in caplog.text


def test_only_the_leader_writes_and_orders_and_losing_the_lease_stops_at_once():
    store, status = MemorySecretStore(), MemoryStatusStore()
    site = ingress("web", [(["a.example.com"], "web-tls")], {CM + "cluster-issuer": "self"})
    snap = snapshot(cluster_issuer("self", {"selfSigned": {}}), site)

    async def run():
        follower = CertificateManager(CertSettings(state_dir="/state"), Settings(), store=store, status_store=status,
                                      leading=False)
        assert not await follower.start(snap)  # not even a temporary certificate
        await follower.reconcile()
        assert store.get("default", "web-tls") is None and not follower.inflight and not follower.orders
        assert [e["secret"] for e in follower.status_entries()] == ["default/web-tls"]  # still shown

        # meanwhile the previous leader stored a backoff: a new leader continues from the stored state
        status.saved = {"other-certificate": CertStatus(failures=2, last_attempt=time.time(), last_error="x")}
        follower.set_leading(True)  # elected: it reloads the stored state, then issues
        await follower.reconcile()
        assert follower.statuses["other-certificate"].failures == 2
        await settle(follower)
        assert store.get("default", "web-tls") is not None and follower.orders == {("self", "success"): 1}

        # an order in flight when the Lease is lost is cancelled and never written
        del store.secrets[("default", "web-tls")]
        gate = asyncio.Event()
        original = follower._obtain

        def slow_obtain(*args):
            asyncio.run_coroutine_threadsafe(gate.wait(), loop).result(5)
            return original(*args)

        loop = asyncio.get_running_loop()
        follower._obtain = slow_obtain
        follower.update(snap)
        await follower.reconcile()
        assert follower.inflight
        before = store.get("default", "web-tls")  # the temporary certificate, written while leading
        assert before.annotations["ingressd.io/temporary-certificate"] == "true"
        task, = follower.inflight.values()
        follower.set_leading(False)
        gate.set()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0.05)
        assert task.cancelled() and store.get("default", "web-tls") is before  # the issued one is dropped
        await follower.reconcile()
        assert store.get("default", "web-tls") is before and not follower.inflight

    asyncio.run(run())
