"""ACME over certbot's ``acme`` library: accounts, HTTP-01 orders, renewal information.

Everything here blocks (``requests``); the manager runs it in worker threads. The library's order
message lacks RFC 9773's ``replaces``: :class:`NewOrder` adds it (and declares ``profile``), and
:class:`Client.new_order` sends it, so nothing of the protocol is written by hand.
"""

from __future__ import annotations

import datetime
import email.utils
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

import josepy as jose
import requests
from acme import challenges, client, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .. import __version__
from .keys import load_key

log = logging.getLogger("ingressd.acme")

NETWORK_TIMEOUT = 15  # seconds per HTTP request to the CA
ORDER_TIMEOUT = 120.0  # seconds for validation and finalization of one order


class NewOrder(messages.NewOrder):
    """newOrder with ``profile`` (draft-aaron-acme-profiles) and ``replaces`` (RFC 9773)."""

    profile: str | None = jose.field("profile", omitempty=True)
    replaces: str | None = jose.field("replaces", omitempty=True)


class Network(client.ClientNetwork):
    """Remembers the Retry-After of the last failed response, which ``messages.Error`` drops."""

    last_retry_after: float | None = None

    def _send_request(self, method, url, *args, **kwargs):
        response = super()._send_request(method, url, *args, **kwargs)
        if not response.ok:
            self.last_retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return response


class Client(client.ClientV2):
    def new_order(self, csr_pem: bytes, profile: str | None = None,  # type: ignore[override]
                  replaces: str | None = None) -> messages.OrderResource:
        """The library's ``new_order`` with ``replaces`` added to the message."""
        csr = x509.load_pem_x509_csr(csr_pem)
        try:
            names = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns_names = names.get_values_for_type(x509.DNSName)
        except x509.ExtensionNotFound:
            dns_names = []
        identifiers = [messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=name) for name in dns_names]
        order = NewOrder(identifiers=identifiers, profile=profile or None, replaces=replaces or None)
        response = self._post(self.directory["newOrder"], order)
        body = messages.Order.from_json(response.json())
        authorizations = [self._authzr_from_response(self._post_as_get(url), uri=url)
                          for url in body.authorizations]
        return messages.OrderResource(body=body, uri=response.headers.get("Location"),
                                      authorizations=authorizations, csr_pem=csr_pem)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass
class OrderFailure(Exception):
    message: str
    result: str = "error"  # the metric label: unreachable, rate_limited, invalid, error
    transient: bool = False  # the CA was not reached or failed: retry soon, no limit was touched
    retry_after: float | None = None

    def __str__(self) -> str:
        return self.message


def error_code(error: messages.Error) -> str:
    """The ACME error type without its URN prefix, also for types the library does not know (RFC 9773's
    ``alreadyReplaced``, for one: ``messages.Error.code`` is None for those)."""
    return str(error.typ).rsplit(":", 1)[-1]


def _problem(error: messages.Error) -> str:
    text = error.detail or error.title or error.description or error.typ
    return f"{error_code(error)}: {text}"


def classify(exc: BaseException, net: Network | None, server: str) -> OrderFailure:
    """Turn what the library raised into a failure with a clear message and a backoff class."""
    retry_after = net.last_retry_after if net is not None else None
    if isinstance(exc, OrderFailure):
        return exc
    if isinstance(exc, requests.exceptions.SSLError):
        return OrderFailure(f"TLS error talking to the ACME server {server}: {exc}", "unreachable", False)
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        return OrderFailure(f"cannot reach the ACME server {server}: {type(exc).__name__}", "unreachable", True)
    if isinstance(exc, errors.ValidationError):
        details = []
        for authzr in exc.failed_authzrs:
            for chall in authzr.body.challenges:
                if chall.error is not None:
                    details.append(f"{authzr.body.identifier.value}: {_problem(chall.error)}")
        return OrderFailure("validation failed: " + ("; ".join(details) or "no detail"), "invalid", False,
                            retry_after)
    if isinstance(exc, errors.IssuanceError):
        return OrderFailure(f"the order failed: {_problem(exc.error)}", "invalid", False, retry_after)
    if isinstance(exc, messages.Error):
        code = error_code(exc)
        if code == "rateLimited":
            return OrderFailure(f"rate limited by {server}: {exc.detail or ''}".rstrip(": "), "rate_limited", False,
                                retry_after)
        transient = code in ("serverInternal", "badNonce")
        return OrderFailure(f"the ACME server refused: {_problem(exc)}", "error", transient, retry_after)
    if isinstance(exc, errors.TimeoutError):
        return OrderFailure(f"the order did not complete within {ORDER_TIMEOUT:.0f}s", "error", False)
    if isinstance(exc, errors.ClientError):
        response = exc.args[0] if exc.args and isinstance(exc.args[0], requests.Response) else None
        if response is not None:
            return OrderFailure(f"unexpected answer from the ACME server: HTTP {response.status_code}", "error",
                                response.status_code >= 500, retry_after)
        return OrderFailure(f"ACME client error: {exc}", "error", False, retry_after)
    return OrderFailure(f"{type(exc).__name__}: {exc}", "error", False, retry_after)


def account_jwk(key_pem: bytes):
    """(JWK, JWS algorithm) for an account key: RSA (RS256) or ECDSA P-256/P-384 (ES256/ES384)."""
    key = load_key(key_pem)
    if isinstance(key, rsa.RSAPrivateKey):
        return jose.JWKRSA(key=key), jose.RS256
    if isinstance(key, ec.EllipticCurvePrivateKey):
        alg = {256: jose.ES256, 384: jose.ES384, 521: jose.ES512}[key.curve.key_size]
        return jose.JWKEC(key=key), alg
    raise ValueError("the ACME account key is neither RSA nor ECDSA")


@dataclass(frozen=True)
class RenewalWindow:
    start: float
    end: float
    retry_after: float | None


def fetch_renewal_info(server: str, verify: bool | str, cert_id: str) -> RenewalWindow | None:
    """ARI (RFC 9773) for a certificate, unauthenticated; None when the server does not offer it."""
    net = Network(None, verify_ssl=verify, timeout=NETWORK_TIMEOUT, user_agent=f"ingressd/{__version__} acme-python")
    directory = net.get(server).json()
    base = directory.get("renewalInfo")
    if not base:
        return None
    response = net.get(base.rstrip("/") + "/" + cert_id, content_type=client.ClientNetwork.JSON_CONTENT_TYPE)
    window = messages.RenewalInfo.from_json(response.json()).suggested_window
    return RenewalWindow(window.start.timestamp(), window.end.timestamp(),
                         parse_retry_after(response.headers.get("Retry-After")))


class Account:
    """One ACME account: a server and a key. Thread-safe; every operation uses its own connection."""

    def __init__(self, server: str, key_pem: bytes, verify: bool | str = True):
        self.server = server
        self.verify = verify
        self.jwk, self.alg = account_jwk(key_pem)
        self.regr: messages.RegistrationResource | None = None
        self.email: str | None = None
        self._lock = threading.Lock()
        self._directory: dict | None = None

    def _client(self) -> tuple[Client, Network]:
        net = Network(self.jwk, alg=self.alg, verify_ssl=self.verify, timeout=NETWORK_TIMEOUT,
                      user_agent=f"ingressd/{__version__} acme-python")
        if self._directory is None:
            self._directory = net.get(self.server).json()
        directory = messages.Directory.from_json(dict(self._directory))
        net.account = self.regr
        return Client(directory, net), net

    def directory(self) -> messages.Directory:
        return self._client()[0].directory

    def ensure(self, email: str, known_uri: str | None = None) -> tuple[str, bool]:
        """Make sure the account exists with ``email`` as its contact: (account URL, changed).

        With ``known_uri`` (registered before, by this key) the account is looked up instead of
        registered; a changed email updates the contact. Never creates a second account for a key.
        """
        with self._lock:
            if self.regr is not None and self.email == email:
                return self.regr.uri, False
            cli, net = self._client()
            changed = False
            contact = (f"mailto:{email}",) if email else ()
            regr = None
            if known_uri or self.regr is not None:
                try:
                    regr = cli.query_registration(messages.RegistrationResource(body=messages.Registration()))
                except messages.Error as error:
                    if error_code(error) != "accountDoesNotExist":
                        raise
                    log.warning("ACME account %s no longer exists on %s; registering again", known_uri, self.server)
            if regr is None:
                try:
                    regr = cli.new_account(messages.NewRegistration.from_data(
                        email=email or None, terms_of_service_agreed=True))
                    changed = True
                    log.info("registered ACME account %s on %s", regr.uri, self.server)
                except errors.ConflictError as conflict:
                    net.account = messages.RegistrationResource(uri=conflict.location, body=messages.Registration())
                    regr = cli.query_registration(net.account)
            if tuple(regr.body.contact or ()) != contact:
                regr = cli.update_registration(regr, regr.body.update(contact=contact))
                log.info("updated the contact of ACME account %s to %s", regr.uri, email or "(none)")
                changed = True
            self.regr, self.email = regr, email
            return regr.uri, changed

    def order(self, csr_pem: bytes, *, publish: Callable[[dict[str, bytes]], None],
              withdraw: Callable[[dict[str, bytes]], None], profile: str | None = None,
              replaces: str | None = None, timeout: float = ORDER_TIMEOUT) -> str:
        """Order a certificate for the CSR, answering HTTP-01 through ``publish``: the full chain PEM.

        Raises OrderFailure."""
        net = None
        try:
            cli, net = self._client()
            directory = cli.directory
            if profile:
                offered = dict(getattr(directory.meta, "profiles", None) or {})
                if not offered:
                    log.warning("the ACME server %s offers no profiles; ordering without profile %r",
                                self.server, profile)
                    profile = None
                elif profile not in offered:
                    raise OrderFailure(f"profile {profile!r} is not offered by {self.server} "
                                       f"(it offers {', '.join(sorted(offered))})")
            try:
                directory["renewalInfo"]
            except KeyError:
                replaces = None
            try:
                order = cli.new_order(csr_pem, profile=profile, replaces=replaces)
            except messages.Error as error:
                if not replaces or error_code(error) not in ("alreadyReplaced", "malformed", "conflict"):
                    raise
                log.info("the CA refused replaces=%s (%s); ordering without it", replaces, _problem(error))
                order = cli.new_order(csr_pem, profile=profile)
            tokens: dict[str, bytes] = {}
            answers = []
            for authzr in order.authorizations:
                if authzr.body.status == messages.STATUS_VALID:
                    continue
                challb = next((c for c in authzr.body.challenges if isinstance(c.chall, challenges.HTTP01)), None)
                if challb is None:
                    raise OrderFailure(f"the CA offers no http-01 challenge for {authzr.body.identifier.value}")
                response, validation = challb.response_and_validation(net.key)
                tokens[challb.chall.encode("token")] = validation.encode()
                answers.append((challb, response))
            publish(tokens)
            try:
                for challb, response in answers:
                    cli.answer_challenge(challb, response)
                deadline = datetime.datetime.now() + datetime.timedelta(seconds=timeout)
                order = cli.poll_and_finalize(order, deadline)
            finally:
                withdraw(tokens)
            return order.fullchain_pem
        except Exception as exc:  # noqa: BLE001 - every failure is classified and reported
            raise classify(exc, net, self.server) from exc
