"""Renewal times, ARI windows, backoff and the ARI CertID: pure functions, no IO."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ingressd.certmanager import timing
from ingressd.certmanager.timing import (DAY, HOUR, MINUTE, ari_cert_id, ari_retry, backoff_delay, choose_in_window,
                                         parse_duration, renewal_time)


@pytest.mark.parametrize("text,seconds", [("2160h", 2160 * HOUR), ("90m", 90 * MINUTE), ("1h30m", 5400),
                                          ("45s", 45), ("1.5h", 5400), ("90d", 90 * DAY), ("500ms", 0.5)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "10", "h", "-5m", "1h 30m", "0s", "5x"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_renewal_at_a_third_of_the_lifetime_with_stable_bounded_jitter():
    start, end = 1_000_000.0, 1_000_000.0 + 90 * DAY
    times = [renewal_time(start, end, seed=f"cert{i}") for i in range(200)]
    nominal = end - 30 * DAY
    assert all(nominal - 12 * HOUR <= t <= nominal for t in times)  # 5% of 90 d is 4.5 d: capped at 12 h
    assert len(set(times)) > 150  # spread
    assert renewal_time(start, end, seed="cert7") == times[7]  # same seed, same time: restarts agree


def test_short_lifetime_jitter_is_a_fraction_of_it():
    t = renewal_time(0.0, 30.0, seed="x")
    assert 20.0 - 1.5 <= t <= 20.0


def test_renew_before_overrides_and_must_be_shorter_than_the_lifetime():
    start, end = 0.0, 90 * DAY
    t = renewal_time(start, end, seed="s", renew_before=10 * DAY)
    assert end - 10 * DAY - 12 * HOUR <= t <= end - 10 * DAY
    assert renewal_time(start, end, seed="s", renew_before=100 * DAY) == renewal_time(start, end, seed="s")


def test_duration_shorter_than_issued_lifetime_wins():
    # the CA issued 5 years, the annotation asked for 18 s: renew when 6 s of those remain
    t = renewal_time(100.0, 100.0 + 5 * 365 * DAY, seed="s", duration=18.0)
    assert 112.0 - 0.9 <= t <= 112.0


def test_ari_choice_is_followed_unless_the_user_asks_for_earlier():
    start, end = 0.0, 90 * DAY
    assert renewal_time(start, end, seed="s", ari_renew_at=80 * DAY) == 80 * DAY  # later than 60 d: ARI rules
    assert renewal_time(start, end, seed="s", ari_renew_at=10 * DAY) == 10 * DAY
    explicit = renewal_time(start, end, seed="s", renew_before=20 * DAY, ari_renew_at=80 * DAY)
    assert explicit <= 70 * DAY


def test_choose_in_window():
    picks = [choose_in_window(100.0, 200.0, seed=f"c{i}", now=50.0) for i in range(300)]
    assert all(100.0 <= p <= 200.0 for p in picks)
    assert min(picks) < 120 and max(picks) > 180  # uniform-ish over the window
    assert choose_in_window(100.0, 200.0, seed="c1", now=50.0) == picks[1]
    assert choose_in_window(100.0, 200.0, seed="c1", now=250.0) == 250.0  # window over: now
    assert choose_in_window(100.0, 100.0, seed="c1", now=0.0) == 100.0


def test_ari_retry():
    assert ari_retry(None) == 6 * HOUR
    assert ari_retry(5.0) == MINUTE
    assert ari_retry(3600.0) == 3600.0
    assert ari_retry(10 * DAY) == DAY


def test_backoff_grows_exponentially_with_caps_and_jitter():
    transient = [backoff_delay(n, transient=True, seed="g") for n in range(1, 12)]
    assert 10 <= transient[0] <= 11 and 20 <= transient[1] <= 22 and 40 <= transient[2] <= 44
    assert all(a < b for a, b in zip(transient, transient[1:8]))
    assert max(transient) <= 30 * MINUTE * 1.1
    failures = [backoff_delay(n, transient=False, seed="g") for n in range(1, 20)]
    assert 300 <= failures[0] <= 330 and 600 <= failures[1] <= 660
    assert max(failures) <= DAY * 1.1
    # Let's Encrypt allows 5 failed validations per name per hour: fewer attempts fit in an hour
    elapsed, attempts = 0.0, 1
    for n in range(1, 10):
        elapsed += backoff_delay(n, transient=False, seed="g")
        if elapsed < HOUR:
            attempts += 1
    assert attempts <= 4


def test_backoff_honours_retry_after():
    assert backoff_delay(1, transient=True, seed="g", retry_after=3 * HOUR) == 3 * HOUR
    assert backoff_delay(5, transient=False, seed="g", retry_after=1.0) >= 5 * MINUTE * 16


def _cert(serial: int, aki: bytes) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(serial).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.AuthorityKeyIdentifier(aki, None, None), critical=False)
            .sign(key, hashes.SHA256()))


def test_ari_cert_id_rfc9773_example():
    # RFC 9773 section 4.1: AKI 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4, serial 00:87:65:43:21
    aki = bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
    assert ari_cert_id(_cert(0x87654321, aki)) == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"


def test_ari_cert_id_agrees_with_the_acme_library():
    from acme.client import _renewal_info_path_component

    for serial in (1, 0x7F, 0x80, 0xFF, 0x1234, 2 ** 64 - 1, 2 ** 158 + 12345):
        cert = _cert(serial, bytes(range(20)))
        assert ari_cert_id(cert) == _renewal_info_path_component(cert)


def test_fraction_is_stable_and_in_range():
    values = [timing.fraction(str(i)) for i in range(1000)]
    assert all(0 <= v < 1 for v in values) and 0.4 < sum(values) / 1000 < 0.6
    assert timing.fraction("a") == timing.fraction("a")
