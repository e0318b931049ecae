"""The ACME client wrapper at the message level, without a server.

pebble 2.4 (the ACME server of the integration tests) implements neither ARI (RFC 9773: renewal
information and ``replaces``) nor profiles, so those are checked here: the JSON ingressd sends, and
how it reacts to what a server offers or answers.
"""

from __future__ import annotations

import datetime
import email.utils
import json

import josepy as jose
import pytest
import requests
from acme import errors, messages
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ingressd.certmanager import acme_client
from ingressd.certmanager.acme_client import (Account, Client, Network, NewOrder, OrderFailure, account_jwk, classify,
                                              fetch_renewal_info, parse_retry_after)
from ingressd.certmanager.keys import KeySpec, generate_key, key_pem, make_csr

DIRECTORY = {"newNonce": "https://ca.test/nonce", "newAccount": "https://ca.test/acct",
             "newOrder": "https://ca.test/order", "revokeCert": "https://ca.test/revoke",
             "keyChange": "https://ca.test/key"}


def response(status: int = 200, body=None, headers: dict | None = None) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r._content = json.dumps(body).encode() if body is not None else b""
    r.headers.update(headers or {})
    if body is not None:
        r.headers.setdefault("Content-Type", "application/problem+json" if status >= 400 else "application/json")
    r.url = "https://ca.test/"
    return r


def directory(**extra) -> messages.Directory:
    return messages.Directory.from_json(dict(DIRECTORY, **extra))


def test_new_order_message_carries_replaces_and_profile():
    identifiers = [messages.Identifier(typ=messages.IDENTIFIER_FQDN, value="a.example.com")]
    full = NewOrder(identifiers=identifiers, profile="shortlived", replaces="aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE")
    assert full.to_partial_json()["replaces"] == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
    assert full.to_partial_json()["profile"] == "shortlived"
    assert json.loads(full.json_dumps())["identifiers"] == [{"type": "dns", "value": "a.example.com"}]
    plain = NewOrder(identifiers=identifiers).to_partial_json()
    assert "replaces" not in plain and "profile" not in plain
    assert isinstance(full, messages.NewOrder)  # the library's message, extended


class RecordingClient(Client):
    """The real ``Client.new_order`` with the network replaced by a recorder."""

    def __init__(self):
        self.directory = directory()
        self.posted = []

    def _post(self, url, obj, **kwargs):
        self.posted.append((url, obj))
        return response(201, {"status": "pending", "identifiers": [{"type": "dns", "value": "a.example.com"}],
                              "authorizations": [], "finalize": "https://ca.test/finalize/1"},
                        {"Location": "https://ca.test/order/1"})


def test_client_new_order_posts_replaces_and_profile():
    cli = RecordingClient()
    csr = make_csr(generate_key(KeySpec()), ("a.example.com", "b.example.com"), "a.example.com")
    order = cli.new_order(csr, profile="tlsserver", replaces="abc.def")
    url, sent = cli.posted[0]
    assert url == "https://ca.test/order" and isinstance(sent, NewOrder)
    body = sent.to_partial_json()
    assert body["replaces"] == "abc.def" and body["profile"] == "tlsserver"
    assert [i.value for i in sent.identifiers] == ["a.example.com", "b.example.com"]
    assert order.uri == "https://ca.test/order/1" and order.csr_pem == csr
    cli.new_order(csr)
    assert "replaces" not in cli.posted[1][1].to_partial_json() and "profile" not in cli.posted[1][1].to_partial_json()


class FakeClient:
    """Stands in for ``Client`` inside ``Account.order``: records, and fails the first order as told."""

    def __init__(self, directory_, fail_first: messages.Error | None = None):
        self.directory = directory_
        self.orders = []
        self.fail_first = fail_first

    def new_order(self, csr_pem, profile=None, replaces=None):
        self.orders.append({"profile": profile, "replaces": replaces})
        if self.fail_first is not None:
            error, self.fail_first = self.fail_first, None
            raise error
        return messages.OrderResource(body=messages.Order(), authorizations=[], csr_pem=csr_pem)

    def poll_and_finalize(self, order, deadline):
        return order.update(fullchain_pem="-----BEGIN CERTIFICATE-----\n")


def run_order(monkeypatch, directory_, *, profile=None, replaces=None, fail_first=None):
    account = Account("https://ca.test/dir", key_pem(generate_key(KeySpec())))
    fake = FakeClient(directory_, fail_first)
    monkeypatch.setattr(account, "_client", lambda: (fake, Network(account.jwk, alg=account.alg)))
    chain = account.order(b"csr", publish=lambda tokens: None, withdraw=lambda tokens: None, profile=profile,
                          replaces=replaces)
    return chain, fake.orders


def test_replaces_is_sent_only_to_a_server_with_renewal_info(monkeypatch):
    _, orders = run_order(monkeypatch, directory(renewalInfo="https://ca.test/ari"), replaces="abc.def")
    assert orders == [{"profile": None, "replaces": "abc.def"}]
    _, orders = run_order(monkeypatch, directory(), replaces="abc.def")
    assert orders == [{"profile": None, "replaces": None}]


def test_already_replaced_orders_again_without_replaces(monkeypatch):
    refused = messages.Error(typ="urn:ietf:params:acme:error:alreadyReplaced", detail="already replaced")
    chain, orders = run_order(monkeypatch, directory(renewalInfo="https://ca.test/ari"), replaces="abc.def",
                              fail_first=refused)
    assert orders == [{"profile": None, "replaces": "abc.def"}, {"profile": None, "replaces": None}]
    assert chain.startswith("-----BEGIN CERTIFICATE")


def test_profile_is_requested_when_offered(monkeypatch):
    offering = directory(meta={"profiles": {"classic": "90 days", "shortlived": "160 hours"}})
    _, orders = run_order(monkeypatch, offering, profile="shortlived")
    assert orders == [{"profile": "shortlived", "replaces": None}]
    with pytest.raises(OrderFailure, match=r"profile 'tlsserver' is not offered by https://ca.test/dir \(it offers "
                                           r"classic, shortlived\)"):
        run_order(monkeypatch, offering, profile="tlsserver")
    _, orders = run_order(monkeypatch, directory(), profile="shortlived")  # a server without profiles
    assert orders == [{"profile": None, "replaces": None}]


class FakeRegistrations:
    """``Client`` for ``Account.ensure``: an existing account whose contact may need updating."""

    def __init__(self, contact, exists=True):
        self.contact = tuple(contact)
        self.exists = exists
        self.calls = []

    def query_registration(self, regr):
        self.calls.append("query")
        if not self.exists:
            raise messages.Error.with_code("accountDoesNotExist")
        return messages.RegistrationResource(uri="https://ca.test/acct/1",
                                             body=messages.Registration(contact=self.contact))

    def new_account(self, registration):
        self.calls.append(("new", tuple(registration.contact)))
        if self.exists:
            raise errors.ConflictError("https://ca.test/acct/1")
        self.exists = True
        self.contact = tuple(registration.contact)
        return messages.RegistrationResource(uri="https://ca.test/acct/2", body=registration)

    def update_registration(self, regr, update):
        self.calls.append(("update", tuple(update.contact)))
        self.contact = tuple(update.contact)
        return regr.update(body=update)


def ensure(monkeypatch, fake, email, known):
    account = Account("https://ca.test/dir", key_pem(generate_key(KeySpec())))
    monkeypatch.setattr(account, "_client", lambda: (fake, Network(account.jwk, alg=account.alg)))
    return account.ensure(email, known), account


def test_a_changed_email_updates_the_contact_of_the_same_account(monkeypatch):
    fake = FakeRegistrations(["mailto:old@example.com"])
    (uri, changed), account = ensure(monkeypatch, fake, "new@example.com", "https://ca.test/acct/1")
    assert (uri, changed) == ("https://ca.test/acct/1", True)
    assert fake.calls == ["query", ("update", ("mailto:new@example.com",))]
    assert account.ensure("new@example.com") == ("https://ca.test/acct/1", False)  # once per process
    assert len(fake.calls) == 2


def test_registration_happens_once_per_key(monkeypatch):
    fake = FakeRegistrations([], exists=False)
    (uri, changed), _ = ensure(monkeypatch, fake, "a@example.com", None)
    assert (uri, changed) == ("https://ca.test/acct/2", True) and fake.calls == [("new", ("mailto:a@example.com",))]
    existing = FakeRegistrations(["mailto:a@example.com"])
    (uri, changed), _ = ensure(monkeypatch, existing, "a@example.com", None)  # key known to the CA: looked up
    assert (uri, changed) == ("https://ca.test/acct/1", False)
    assert existing.calls == [("new", ("mailto:a@example.com",)), "query"]
    gone = FakeRegistrations([], exists=False)  # the CA forgot the account (pebble restarted): register again
    (uri, _), _ = ensure(monkeypatch, gone, "a@example.com", "https://ca.test/acct/1")
    assert uri == "https://ca.test/acct/2" and gone.calls[0] == "query"


def test_network_remembers_retry_after_and_classify_uses_it(monkeypatch):
    net = Network(None)
    monkeypatch.setattr(net.session, "request", lambda *a, **kw: response(
        429, {"type": "urn:ietf:params:acme:error:rateLimited", "detail": "too many certificates"},
        {"Retry-After": "3600"}))
    with pytest.raises(messages.Error) as raised:
        net.get("https://ca.test/order")
    assert net.last_retry_after == 3600
    failure = classify(raised.value, net, "https://ca.test/dir")
    assert (failure.result, failure.transient, failure.retry_after) == ("rate_limited", False, 3600)
    assert "too many certificates" in failure.message


def test_classify():
    server = "https://ca.test/dir"
    unreachable = classify(requests.exceptions.ConnectionError("refused"), None, server)
    assert (unreachable.result, unreachable.transient) == ("unreachable", True)
    assert unreachable.message == "cannot reach the ACME server https://ca.test/dir: ConnectionError"
    internal = classify(messages.Error.with_code("serverInternal", detail="oops"), None, server)
    assert internal.transient and internal.result == "error"
    from acme import challenges

    failed = messages.ChallengeBody(chall=challenges.HTTP01(token=b"t" * 32), uri="https://ca.test/chall/1",
                                    status=messages.STATUS_INVALID,
                                    error=messages.Error.with_code("connection", detail="127.0.0.1: refused"))
    authz = messages.AuthorizationResource(body=messages.Authorization(
        identifier=messages.Identifier(typ=messages.IDENTIFIER_FQDN, value="a.example.com"), challenges=[failed]))
    invalid = classify(errors.ValidationError([authz]), None, server)
    assert (invalid.result, invalid.transient) == ("invalid", False)
    assert invalid.message == "validation failed: a.example.com: connection: 127.0.0.1: refused"
    timeout = classify(errors.TimeoutError(), None, server)
    assert timeout.result == "error" and "did not complete" in timeout.message


def test_parse_retry_after():
    assert parse_retry_after("120") == 120
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    when = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
    assert parse_retry_after(email.utils.format_datetime(when, usegmt=True), now=when.timestamp() - 90) == 90
    assert parse_retry_after(email.utils.format_datetime(when, usegmt=True), now=when.timestamp() + 90) == 0


def test_account_keys():
    assert account_jwk(key_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))[1] == jose.RS256
    assert account_jwk(key_pem(ec.generate_private_key(ec.SECP256R1())))[1] == jose.ES256
    assert account_jwk(key_pem(ec.generate_private_key(ec.SECP384R1())))[1] == jose.ES384


def test_fetch_renewal_info(monkeypatch):
    """ARI: GET renewalInfo/CertID, unauthenticated; the window and Retry-After come back."""
    requested = []

    def request(self, method, url, *args, **kwargs):
        requested.append((method, url))
        if url.endswith("/dir"):
            return response(200, dict(DIRECTORY, renewalInfo="https://ca.test/ari/"))
        return response(200, {"suggestedWindow": {"start": "2030-01-01T00:00:00Z", "end": "2030-01-02T00:00:00Z"}},
                        {"Retry-After": "21600"})

    monkeypatch.setattr(acme_client.Network, "_send_request", request)
    window = fetch_renewal_info("https://ca.test/dir", True, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE")
    assert requested[-1] == ("GET", "https://ca.test/ari/aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE")
    start = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc).timestamp()
    assert (window.start, window.end, window.retry_after) == (start, start + 86400, 21600)
    monkeypatch.setattr(acme_client.Network, "_send_request", lambda self, method, url, *a, **kw: response(
        200, DIRECTORY))
    assert fetch_renewal_info("https://ca.test/dir", True, "x.y") is None
