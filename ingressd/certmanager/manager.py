"""The certificate manager: reads each snapshot, writes certificates back as Secrets.

``reconcile`` plans the wanted certificates (pure), compares them with the stored Secrets (pure
``decide``) and acts: copies a valid certificate that already exists, writes a temporary
certificate where a host has nothing to serve, and starts orders when they are due. Orders run in
daemon threads (the ``acme`` library blocks) at most ``max_orders`` at a time; HTTP-01 answers are
handed to the data plane. Results go back through the :class:`SecretStore`; the manifest source
then loads them and the translator serves them like any user Secret. Failures back off per
certificate, persisted in the :class:`StatusStore`, so a restart or a crash loop never hammers a CA.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import hashlib
import inspect
import logging
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Callable

from cryptography import x509

from ..config import Config, Settings, Snapshot
from ..diagnostics import Reporter
from ..objects import Secret
from .acme_client import Account, OrderFailure, RenewalWindow, classify, fetch_renewal_info
from .decide import (ALT_NAMES, CERTIFICATE_NAME, COMMON_NAME, ISSUER_GROUP, ISSUER_KIND, ISSUER_NAME, MANAGED_BY,
                     TEMPORARY, TLS_TYPE, Decision, SecretFacts, decide, facts_of)
from .issuers import Issuer
from .listing import certificate_entries
from .keys import (DEFAULT_LOCAL_DURATION, KeySpec, ca_signed_certificate, generate_key, key_pem, key_spec_of,
                   load_key, make_csr, public_der, self_signed_certificate, temporary_certificate)
from .plan import MANAGED_LABEL, MANAGED_VALUE, CertSettings, Plan, WantedCertificate, find_tls_secret, plan
from .store import CertStatus, SecretStore, StatusStore, _write_private
from .timing import ARI_DEFAULT_RETRY, HOUR, MINUTE, ari_retry, backoff_delay, choose_in_window

log = logging.getLogger("ingressd.certmanager")

ACCOUNT_SERVER = "ingressd.io/acme-server"
ACCOUNT_URI = "ingressd.io/acme-account"
ACCOUNT_EMAIL = "ingressd.io/acme-email"
MAX_ORDERS = 4
RECHECK = HOUR  # reconcile at least this often, whatever happens
ARI_ERROR_RETRY = 10 * MINUTE
ACCOUNT_SYNC_RETRY = 5 * MINUTE
CHALLENGE_PUBLISH_TIMEOUT = 10.0  # seconds to wait for every worker to serve new HTTP-01 answers
STATUS_KEEP = 86400.0  # keep the backoff of a certificate no longer wanted this long


class NotLeading(OSError):
    """A write was attempted after leadership was lost."""


class DaemonThreads(concurrent.futures.Executor):
    """One daemon thread per call: a blocked request to a CA never delays the process's exit."""

    def submit(self, fn, /, *args, **kwargs):
        future: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                future.set_exception(exc)
            else:
                future.set_result(result)

        threading.Thread(target=run, name="ingressd-certificates", daemon=True).start()
        return future


def secret_annotations(want: WantedCertificate, temporary: bool = False) -> dict[str, str]:
    """cert-manager's annotations on the Secrets it writes, plus ingressd's own."""
    annotations = {
        ALT_NAMES: ",".join(want.hosts),
        COMMON_NAME: want.common_name or "",
        ISSUER_NAME: want.issuer_ref.name,
        ISSUER_KIND: want.issuer_ref.kind,
        ISSUER_GROUP: "cert-manager.io",
        CERTIFICATE_NAME: want.secret_name,
        MANAGED_BY: "ingressd",
    }
    if temporary:
        annotations[TEMPORARY] = "true"
    return annotations


_SCRATCH: list[str] = []


def _scratch_dir() -> str:
    if not _SCRATCH:
        import tempfile

        _SCRATCH.append(tempfile.mkdtemp(prefix="ingressd-"))  # mode 0700
    return _SCRATCH[0]


def _managed(namespace: str, name: str, type_: str, data: dict[str, bytes], annotations: dict[str, str]) -> Secret:
    """A Secret as ingressd writes it: with the ownership label, so that it may overwrite it later."""
    return Secret.build(namespace, name, type_, data, annotations, labels={MANAGED_LABEL: MANAGED_VALUE})


@dataclasses.dataclass
class Issued:
    chain: bytes
    key: bytes
    ca: bytes | None


class CertificateManager:
    def __init__(self, cert_settings: CertSettings, settings: Settings, *, store: SecretStore | None,
                 status_store: StatusStore | None, on_challenges: Callable[[dict[str, bytes]], None] | None = None,
                 max_orders: int = MAX_ORDERS, clock: Callable[[], float] = time.time,
                 reporter: Reporter | None = None, leading: bool = True):
        self.cert_settings = cert_settings
        # Only the elected leader (ingressd.kube.leader) writes Secrets and orders: the others plan,
        # for the status page and ``ingressd certs``, and serve what the leader writes.
        self.leading = leading
        self._reload_statuses = False
        self.settings = settings
        self.store = store
        self.status_store = status_store
        self.on_challenges = on_challenges
        self.clock = clock
        self.max_orders = max_orders
        self.reporter = reporter or Reporter()
        self.snapshot: Snapshot | None = None
        self.config: Config | None = None
        self.plan = Plan()
        self.statuses: dict[str, CertStatus] = status_store.load() if status_store is not None else {}
        self.inflight: dict[str, asyncio.Task] = {}
        self.orders: Counter = Counter()  # (issuer label, result) -> orders
        self.next_renewal: dict[tuple[str, str], tuple[str, float]] = {}  # secret -> (issuer label, time)
        self.challenges: dict[str, bytes] = {}
        self._accounts: dict[tuple, Account] = {}
        self._account_lock = threading.Lock()
        self._account_syncs: dict[tuple, float] = {}  # key secret -> no sync attempt before
        self._aux: dict[str, asyncio.Task] = {}  # ARI polls and account syncs, by purpose
        self._facts: dict[tuple, SecretFacts] = {}
        self._logged: dict[str, str] = {}
        self._executor = DaemonThreads()
        self._slots: asyncio.Semaphore | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_due = 0.0
        self._no_state_reported = False
        self._stored_facts: dict[tuple[str, str], SecretFacts] = {}
        self._unwritten: dict[str, tuple[Issued, list[WantedCertificate]]] = {}  # issued, not yet stored

    @classmethod
    def for_source(cls, source, cert_settings: CertSettings, settings: Settings,
                   on_challenges: Callable[[dict[str, bytes]], None] | None = None,
                   reporter: Reporter | None = None) -> "CertificateManager":
        """A manager that writes through ``source``'s stores (none: certificates are not managed)."""
        return cls(cert_settings, settings, store=source.secrets, status_store=source.statuses,
                   on_challenges=on_challenges, reporter=reporter)

    # --- input -----------------------------------------------------------------------------------

    def update(self, snapshot: Snapshot, config: Config | None = None) -> None:
        """A new snapshot (and the configuration compiled from it): reconcile soon."""
        self.snapshot = snapshot
        if config is not None:
            self.config = config
        if self._wake is not None:
            self._wake.set()

    def _bind(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._slots = asyncio.Semaphore(self.max_orders)
            self._wake = asyncio.Event()

    async def start(self, snapshot: Snapshot) -> bool:
        """Before the first configuration is served (no port open yet, so no ACME order): copy valid
        certificates, issue those of local issuers, write temporary ones for the rest. True when a
        Secret was written."""
        self._bind()
        self.snapshot = snapshot
        try:
            return await self.reconcile(orders=False)
        except Exception:  # never keep ingressd from serving
            log.exception("reconciling certificates failed")
            return False

    async def run(self) -> None:
        self._bind()
        while True:
            timeout = min(max(self._next_due - self.clock(), 0.0), RECHECK)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.reconcile()
            except Exception:
                log.exception("reconciling certificates failed; retrying in 30 s")
                self._next_due = self.clock() + 30
            if self._next_due <= self.clock():  # nothing scheduled (e.g. no --state-dir): wait for a change
                self._next_due = self.clock() + RECHECK

    async def close(self) -> None:
        for task in list(self.inflight.values()) + list(self._aux.values()):
            task.cancel()

    def set_leading(self, leading: bool) -> None:
        """Leadership changed. Losing it stops at once: orders in flight are cancelled (their result
        is never written; the new leader decides from the Secrets it sees) and nothing more is written."""
        if leading and not self.leading:
            self._reload_statuses = True  # the previous leader's backoffs and ARI windows, from the store
        self.leading = leading
        if not leading:
            for task in list(self.inflight.values()) + list(self._aux.values()):
                task.cancel()
            self.inflight.clear()  # a task cancelled before it ran never reaches its own cleanup
            self._aux.clear()
            self._unwritten.clear()
        if self._wake is not None:
            self._wake.set()

    # --- reconciling ------------------------------------------------------------------------------

    def _log_once(self, key: str, message: str, *args) -> None:
        text = message % args
        if self._logged.get(key) != text:
            self._logged[key] = text
            log.info("%s", text)

    def groups(self) -> dict[str, list[WantedCertificate]]:
        groups: dict[str, list[WantedCertificate]] = {}
        for cert in self.plan.issuable:
            groups.setdefault(cert.group, []).append(cert)
        return groups

    def _facts_of(self, secret: Secret) -> SecretFacts:
        digest = hashlib.sha256(secret.data.get("tls.crt", b"") + b"\0" + secret.data.get("tls.key", b"")).digest()
        key = (secret.key, secret.type, digest, tuple(sorted(secret.annotations.items())))
        facts = self._facts.get(key)
        if facts is None:
            facts = self._facts[key] = facts_of(secret)
        return facts

    async def reconcile(self, orders: bool = True) -> bool:
        """Bring the stored Secrets in line with the snapshot; True when a Secret was written."""
        self._bind()
        if self.snapshot is None:
            return False
        wrote = False
        loop = asyncio.get_running_loop()
        self.plan = plan(self.snapshot, self.settings, self.cert_settings,
                         owns=self.store.owns if self.store is not None else None)
        self.reporter.update("certificates", self.plan.diagnostics)
        if self.store is None:
            if self.plan.certificates and not self._no_state_reported:
                log.error("%d certificate(s) are asked for (e.g. Secret %s/%s for Ingress %s) but ingressd runs "
                          "without --state-dir: no certificate is managed", len(self.plan.certificates),
                          self.plan.certificates[0].namespace, self.plan.certificates[0].secret_name,
                          self.plan.certificates[0].ingress)
                self._no_state_reported = True
            return False
        stored = await loop.run_in_executor(None, self.store.list)
        by_key = {s.key: s for s in stored}
        facts = {s.key: self._facts_of(s) for s in stored if s.type == TLS_TYPE}
        live = {f.key for f in facts.values()}
        self._facts = {k: v for k, v in self._facts.items() if k[0] in live}
        now = self.clock()
        if not self.leading:  # another replica orders and writes; this one only shows the plan
            self._stored_facts = facts
            self._next_due = now + RECHECK
            return False
        if self._reload_statuses and self.status_store is not None:
            self.statuses = await loop.run_in_executor(None, self.status_store.load)
            self._reload_statuses = False
        next_due = now + RECHECK
        next_renewal: dict[tuple[str, str], tuple[str, float]] = {}
        groups = self.groups()
        for gid, certs in groups.items():
            want = certs[0]
            if gid in self.inflight:
                continue
            if gid in self._unwritten:  # issued, not stored yet: store it, order nothing
                if orders and await self._write_issued(gid):
                    wrote = True  # its new snapshot brings the next reconcile
                else:
                    next_due = min(next_due, now + MINUTE)
                continue
            namespace_facts = {k: f for k, f in facts.items() if k[0] == want.namespace}
            status = self.statuses.get(gid)
            decision = decide(certs, namespace_facts, status, now)
            if decision.copy_from is not None and decision.copy_to:
                await self._copy(by_key[decision.copy_from.key], decision.copy_from, certs, decision.copy_to)
                wrote = True
            if decision.temporary:
                await self._temporary(certs, decision.temporary)
                wrote = True
            if decision.renew_at is not None:
                for cert in certs:
                    next_renewal[cert.key_] = (want.issuer_ref.label, max(decision.issue_at, now))
                self._log_once(gid, "certificate %s for %s (%s) is valid until %s; renewal at %s",
                               ", ".join(f"{c.namespace}/{c.secret_name}" for c in certs), ", ".join(want.hosts),
                               want.issuer_ref, _iso(decision.copy_from.not_after), _iso(decision.issue_at))
            if decision.issue_at is not None and decision.issue_at <= now and not orders and want.issuer.acme is None:
                # Local issuers (ca, selfSigned) issue offline at once: even before the first
                # configuration, so that it serves the real certificate rather than a temporary one.
                await self._issue(gid, decision)
                wrote = True
            elif decision.issue_at is not None and orders:
                if decision.issue_at <= now:
                    self.inflight[gid] = loop.create_task(self._issue(gid, decision))
                else:
                    next_due = min(next_due, decision.issue_at)
                    if decision.waiting_for_backoff:
                        self._log_once(gid + "|backoff", "certificate %s/%s: next order at %s (backoff after %d "
                                       "failure(s): %s)", want.namespace, want.secret_name,
                                       _iso(decision.issue_at), status.failures, status.last_error)
            if decision.copy_from is not None and want.issuer.acme is not None and orders:
                next_due = min(next_due, self._maybe_poll_ari(gid, want, decision.copy_from, status, now))
        self.next_renewal = next_renewal
        if orders:
            next_due = min(next_due, self._account_syncs_due(groups, by_key, now))
            self._prune(groups, now)
        self._next_due = next_due
        self._stored_facts = facts
        return wrote

    def status_entries(self) -> list[dict]:
        """What the status page and ``ingressd certs`` show, from the live manager."""
        return certificate_entries(self.plan, self._stored_facts, self.statuses, self.clock(), set(self.inflight))

    # --- writing Secrets ---------------------------------------------------------------------------

    async def _put(self, secrets: list[Secret]) -> None:
        if not self.leading:  # lost the Lease while reconciling: the new leader writes
            raise NotLeading("this replica no longer leads")
        loop = asyncio.get_running_loop()

        def write() -> None:
            for secret in secrets:
                self.store.put(secret)

        await loop.run_in_executor(None, write)

    async def _copy(self, source: Secret, facts: SecretFacts, certs: list[WantedCertificate],
                    targets: tuple[tuple[str, str], ...]) -> None:
        by_key = {c.key_: c for c in certs}
        secrets = []
        for target in targets:
            want = by_key[target]
            data = {k: v for k, v in source.data.items() if k in ("tls.crt", "tls.key", "ca.crt")}
            secrets.append(_managed(want.namespace, want.secret_name, TLS_TYPE, data, secret_annotations(want)))
            log.info("Secret %s/%s: reusing the valid certificate of Secret %s/%s (same names and issuer, valid "
                     "until %s); no new order", want.namespace, want.secret_name, source.namespace, source.name,
                     _iso(facts.not_after))
        await self._put(secrets)

    async def _temporary(self, certs: list[WantedCertificate], targets: tuple[tuple[str, str], ...]) -> None:
        loop = asyncio.get_running_loop()
        by_key = {c.key_: c for c in certs}

        def make() -> list[Secret]:
            secrets = []
            for target in targets:
                want = by_key[target]
                key = generate_key(want.key)
                cert = temporary_certificate(key, want.hosts)
                secrets.append(_managed(want.namespace, want.secret_name, TLS_TYPE,
                                            {"tls.crt": cert, "tls.key": key_pem(key)},
                                            secret_annotations(want, temporary=True)))
            return secrets

        secrets = await loop.run_in_executor(self._executor, make)
        for secret in secrets:
            log.info("Secret %s/%s: serving a temporary self-signed certificate for %s until the real one is "
                     "issued", secret.namespace, secret.name, secret.annotations[ALT_NAMES])
        await self._put(secrets)

    # --- ordering -----------------------------------------------------------------------------------

    async def _issue(self, gid: str, decision: Decision) -> None:
        loop = asyncio.get_running_loop()
        captured = self.groups().get(gid, [])
        try:
            if not captured:
                return
            async with self._slots:
                certs = self.groups().get(gid) or captured
                want = certs[0]
                snapshot = self.snapshot
                status = self.statuses.setdefault(gid, CertStatus())
                status.last_attempt = self.clock()
                label = want.issuer_ref.label
                log.info("ordering a certificate for %s (Secret %s/%s) from %s: %s", ", ".join(want.hosts),
                         want.namespace, want.secret_name, want.issuer_ref, decision.reason)
                try:
                    issued = await loop.run_in_executor(self._executor, self._obtain, want, decision, snapshot)
                except Exception as exc:  # noqa: BLE001 - whatever failed, back off: never loop on a CA
                    failure = exc if isinstance(exc, OrderFailure) else OrderFailure(f"internal error: {exc!r}")
                    if not isinstance(exc, OrderFailure):
                        log.exception("ordering the certificate for %s failed", ", ".join(want.hosts))
                    result = failure.result
                    self._failed(gid, status, want, failure)
                else:
                    result = "success"
                    status.last_success = self.clock()
                    self._unwritten[gid] = (issued, captured)
                    await self._write_issued(gid)
                self.orders[(label, result)] += 1
                await self._save_status()
        finally:
            self.inflight.pop(gid, None)
            if self._wake is not None:
                self._wake.set()

    def _failed(self, gid: str, status: CertStatus, want: WantedCertificate, failure: OrderFailure) -> None:
        status.failures += 1
        delay = backoff_delay(status.failures, transient=failure.transient, seed=gid, retry_after=failure.retry_after)
        status.next_attempt = self.clock() + delay
        status.last_error = failure.message
        log.warning("ordering the certificate for %s (Secret %s/%s) from %s failed: %s; next attempt in %.0f s "
                    "(failure %d)", ", ".join(want.hosts), want.namespace, want.secret_name, want.issuer_ref,
                    failure.message, delay, status.failures)

    async def _write_issued(self, gid: str) -> bool:
        """Store an issued certificate into every Secret of its group. One that cannot be written is
        kept and written again at the next reconcile, never ordered again (kube-lego's loop)."""
        issued, captured = self._unwritten[gid]
        current = self.groups().get(gid)
        if not current:  # no longer wanted as such: still keep it where it was asked for, for reuse
            wanted = {c.key_ for c in self.plan.certificates}
            current = [c for c in captured if c.key_ not in wanted]
        secrets = [_managed(c.namespace, c.secret_name, TLS_TYPE,
                                {"tls.crt": issued.chain, "tls.key": issued.key} | ({"ca.crt": issued.ca} if issued.ca
                                                                                   else {}),
                                secret_annotations(c)) for c in current]
        status = self.statuses.setdefault(gid, CertStatus())
        try:
            await self._put(secrets)
        except OSError as error:
            status.last_error = f"the certificate was issued but cannot be stored: {error}"
            log.error("the certificate for %s was issued but cannot be stored (%s); retrying the write, not the order",
                      ", ".join(captured[0].hosts), error)
            return False
        del self._unwritten[gid]
        status.failures, status.next_attempt, status.last_error = 0, 0.0, ""
        status.ari_cert_id, status.ari_renew_at, status.ari_next_poll = "", None, 0.0
        log.info("issued the certificate for %s by %s into Secret(s) %s", ", ".join(captured[0].hosts),
                 captured[0].issuer_ref, ", ".join(f"{s.namespace}/{s.name}" for s in secrets))
        return True

    def _obtain(self, want: WantedCertificate, decision: Decision, snapshot: Snapshot) -> Issued:
        """Issue the certificate (blocking; in a worker thread). Raises OrderFailure."""
        issuer = want.issuer
        key = None
        stored = self.store.get(want.namespace, want.secret_name)
        if stored is not None and stored.annotations.get(TEMPORARY) == "true" and "tls.key" in stored.data:
            try:  # as cert-manager does: the real certificate gets the temporary one's key
                candidate = load_key(stored.data["tls.key"])
                if key_spec_of(candidate) == want.key:
                    key = candidate
            except (ValueError, TypeError):
                pass
        if key is None:
            key = generate_key(want.key)
        duration = want.duration or DEFAULT_LOCAL_DURATION
        try:
            if issuer.self_signed:
                chain = self_signed_certificate(key, want.hosts, want.common_name, duration)
                return Issued(chain, key_pem(key), chain)
            if issuer.ca_secret:
                secret = find_tls_secret(snapshot, issuer.resource_namespace, issuer.ca_secret)
                if secret is None:
                    raise OrderFailure(f"CA Secret {issuer.resource_namespace}/{issuer.ca_secret} not found")
                chain, ca = ca_signed_certificate(key, want.hosts, want.common_name, secret.cert_pem, secret.key_pem,
                                                  duration)
                return Issued(chain, key_pem(key), ca)
        except ValueError as error:
            raise OrderFailure(f"{issuer.ref}: {error}") from None
        if issuer.acme is None:
            raise OrderFailure(f"{issuer.ref} is not an issuer ingressd supports")
        account = self._account(issuer)
        replaces = None
        if decision.replaces is not None and decision.replaces.issuer == want.issuer_ref:
            replaces = decision.replaces.cert_id
        chain = account.order(make_csr(key, want.hosts, want.common_name), publish=self._publish,
                              withdraw=self._withdraw, profile=issuer.acme.profile, replaces=replaces)
        chain_pem = chain.encode()
        _check_issued(chain_pem, key, want)
        return Issued(chain_pem, key_pem(key), None)

    # --- ACME accounts ------------------------------------------------------------------------------

    def _verify(self, issuer: Issuer) -> bool | str:
        acme = issuer.acme
        if acme.skip_tls_verify:
            return False
        if acme.ca_bundle_file:
            return acme.ca_bundle_file
        if acme.ca_bundle:
            name = hashlib.sha256(acme.ca_bundle).hexdigest() + ".pem"
            # a dot-directory of the state directory (never read as manifests); in a cluster, where
            # there is no state directory, a private temporary one
            base = self.cert_settings.state_dir or _scratch_dir()
            path = Path(base) / ".ca-bundles" / name
            if not path.exists():
                _write_private(path, acme.ca_bundle)
            return str(path)
        return True

    def _account_secret(self, issuer: Issuer) -> Secret:
        namespace, name = issuer.resource_namespace, issuer.acme.private_key_secret
        secret = self.store.get(namespace, name)
        if secret is None or "tls.key" not in secret.data:
            account_key = generate_key(KeySpec("ECDSA", 256))
            secret = _managed(namespace, name, "Opaque", {"tls.key": key_pem(account_key)},
                                  {MANAGED_BY: "ingressd"})
            self.store.put(secret)
            log.info("generated the ACME account key of %s in Secret %s/%s", issuer.ref, namespace, name)
        return secret

    def _account(self, issuer: Issuer) -> Account:
        """The issuer's account, registered (once per server and key) with its current email."""
        acme = issuer.acme
        try:
            with self._account_lock:
                secret = self._account_secret(issuer)
                key = secret.data["tls.key"]
                verify = self._verify(issuer)
                index = (acme.server, hashlib.sha256(key).hexdigest(), verify)
                account = self._accounts.get(index)
                if account is None:
                    account = self._accounts[index] = Account(acme.server, key, verify)
            registered = secret.annotations.get(ACCOUNT_SERVER) == acme.server
            uri, _ = account.ensure(acme.email, secret.annotations.get(ACCOUNT_URI) if registered else None)
            with self._account_lock:
                secret = self.store.get(secret.namespace, secret.name) or secret
                wanted = {ACCOUNT_SERVER: acme.server, ACCOUNT_URI: uri, ACCOUNT_EMAIL: acme.email}
                if any(secret.annotations.get(k) != v for k, v in wanted.items()):
                    meta = dataclasses.replace(secret.meta, annotations=secret.annotations | wanted)
                    self.store.put(Secret(meta, secret.type, secret.data))
            return account
        except OrderFailure:
            raise
        except Exception as exc:  # noqa: BLE001
            raise classify(exc, None, acme.server) from exc

    def _account_syncs_due(self, groups: dict[str, list[WantedCertificate]],
                           stored: dict[tuple[str, str], Secret], now: float) -> float:
        """Update the contact of registered accounts whose issuer's email changed (no order needed)."""
        next_due = now + RECHECK
        issuers = {c.issuer_ref: c.issuer for certs in groups.values() for c in certs if c.issuer.acme is not None}
        for issuer in issuers.values():
            acme = issuer.acme
            secret = stored.get((issuer.resource_namespace, acme.private_key_secret))
            if secret is None or secret.annotations.get(ACCOUNT_SERVER) != acme.server:
                continue  # never registered with this server: the first order registers
            if secret.annotations.get(ACCOUNT_EMAIL, "") == acme.email:
                continue
            purpose = f"account|{secret.namespace}/{secret.name}"
            not_before = self._account_syncs.get(secret.key, 0.0)
            if purpose in self._aux:
                continue
            if not_before > now:
                next_due = min(next_due, not_before)
                continue
            self._aux[purpose] = asyncio.get_running_loop().create_task(self._sync_account(purpose, issuer, secret))
        return next_due

    async def _sync_account(self, purpose: str, issuer: Issuer, secret: Secret) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._account, issuer)
            log.info("ACME account of %s: contact is now %s", issuer.ref, issuer.acme.email or "(none)")
        except OrderFailure as failure:
            self._account_syncs[secret.key] = self.clock() + ACCOUNT_SYNC_RETRY
            log.warning("updating the ACME account of %s failed: %s; retrying in %.0f s", issuer.ref, failure,
                        ACCOUNT_SYNC_RETRY)
        finally:
            self._aux.pop(purpose, None)
            self._wake.set()

    # --- ARI --------------------------------------------------------------------------------------

    def _maybe_poll_ari(self, gid: str, want: WantedCertificate, facts: SecretFacts, status: CertStatus | None,
                        now: float) -> float:
        if not facts.cert_id:
            return now + RECHECK
        status = self.statuses.setdefault(gid, status or CertStatus())
        if status.ari_cert_id == facts.cert_id and status.ari_next_poll > now:
            return status.ari_next_poll
        purpose = "ari|" + gid
        if purpose not in self._aux:
            self._aux[purpose] = asyncio.get_running_loop().create_task(self._poll_ari(purpose, gid, want, facts))
        return now + RECHECK

    async def _poll_ari(self, purpose: str, gid: str, want: WantedCertificate, facts: SecretFacts) -> None:
        loop = asyncio.get_running_loop()
        status = self.statuses.setdefault(gid, CertStatus())
        try:
            verify = self._verify(want.issuer)
            async with self._slots:  # bounded like orders: a start with many certificates polls a few at a time
                window: RenewalWindow | None = await loop.run_in_executor(
                    self._executor, fetch_renewal_info, want.issuer.acme.server, verify, facts.cert_id)
        except Exception as exc:  # noqa: BLE001 - ARI is advisory: fall back to the lifetime rule
            log.debug("renewal information for %s unavailable: %s", facts.cert_id, exc)
            status.ari_cert_id, status.ari_renew_at = facts.cert_id, None
            status.ari_next_poll = self.clock() + ARI_ERROR_RETRY
        else:
            now = self.clock()
            status.ari_cert_id = facts.cert_id
            if window is None:
                status.ari_renew_at, status.ari_next_poll = None, now + ARI_DEFAULT_RETRY
            else:
                status.ari_renew_at = choose_in_window(window.start, window.end, seed=facts.fingerprint, now=now)
                status.ari_next_poll = now + ari_retry(window.retry_after)
                self._log_once(purpose, "certificate %s/%s: the CA suggests renewing between %s and %s",
                               want.namespace, want.secret_name, _iso(window.start), _iso(window.end))
        finally:
            self._aux.pop(purpose, None)
        await self._save_status()
        self._wake.set()

    # --- challenges and status ------------------------------------------------------------------------

    def _publish(self, tokens: dict[str, bytes]) -> None:
        """From a worker thread: serve these HTTP-01 answers before the CA is told to validate
        (returns once every data-plane process serves them)."""
        asyncio.run_coroutine_threadsafe(self._set_challenges(tokens, True), self._loop).result(15)

    def _withdraw(self, tokens: dict[str, bytes]) -> None:
        asyncio.run_coroutine_threadsafe(self._set_challenges(tokens, False), self._loop).result(10)

    async def _set_challenges(self, tokens: dict[str, bytes], add: bool) -> None:
        for token, answer in tokens.items():
            if add:
                self.challenges[token] = answer
            else:
                self.challenges.pop(token, None)
        if self.on_challenges is not None:
            served = self.on_challenges(dict(self.challenges))
            if inspect.isawaitable(served):  # worker processes confirm over their pipes
                try:
                    await asyncio.wait_for(served, CHALLENGE_PUBLISH_TIMEOUT)
                except asyncio.TimeoutError:
                    log.warning("not every data-plane worker confirmed the HTTP-01 answers in time")

    def _prune(self, groups: dict, now: float) -> None:
        for gid in list(self.statuses):
            status = self.statuses[gid]
            if gid not in groups and gid not in self.inflight and not (
                    status.failures and status.last_attempt > now - STATUS_KEEP):
                del self.statuses[gid]

    async def _save_status(self) -> None:
        if self.status_store is None:
            return
        statuses = {k: dataclasses.replace(v) for k, v in self.statuses.items()}
        await asyncio.get_running_loop().run_in_executor(None, self.status_store.save, statuses)


def _check_issued(chain_pem: bytes, key, want: WantedCertificate) -> None:
    try:
        leaf = x509.load_pem_x509_certificates(chain_pem)[0]
    except ValueError as error:
        raise OrderFailure(f"the CA returned no PEM certificate ({error})") from None
    if public_der(leaf) != public_der(key):
        raise OrderFailure("the CA returned a certificate for another key")
    try:
        names = set(leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                    .get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = set()
    if {n.lower() for n in names} != set(want.hosts):
        raise OrderFailure(f"the CA returned a certificate for {', '.join(sorted(names))} instead of "
                           f"{', '.join(want.hosts)}")


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
