"""auth-type basic: the htpasswd formats nginx accepts, and the verdict cache."""

from __future__ import annotations

import base64

import pytest

from ingressd.options.basicauth import BasicAuth, parse_htpasswd

HTPASSWD = """# made with htpasswd and openssl passwd
apr:$apr1$s4lt$dd.Ua3J4x4/X73gGcJ2oB1
bcrypt:$2b$05$dPeXyh35KLq782ax3F.hH.QSFXm8fq151YvkCzyBTtb/iArTy0yum
sha512:$6$abcdefgh$AmG/p6USYTDnD0i9OnzSKPHywtVj65aAr9wlivj4RTvOTk7KtUVA.oTYWoSPriFBc8/GpWmBT82/SO.3ziVE2/
sha256:$5$abcdefgh$Q3HL3fyO1X2phL4HcbLKrQIvNmLlASe4ayT3RIc4ZbD
md5:$1$abcdefgh$CSewKYDMd6dmHkTqkKYk60
sha1:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=
plain:{PLAIN}open

"""


def header(credentials: str) -> bytes:
    return b"Basic " + base64.b64encode(credentials.encode())


@pytest.mark.parametrize("user, password", [("apr", "secret"), ("bcrypt", "ops"), ("sha512", "pw6"),
                                            ("sha256", "pw5"), ("md5", "pw1"), ("sha1", "password"),
                                            ("plain", "open")])
def test_every_htpasswd_format(user, password):
    auth = BasicAuth(parse_htpasswd(HTPASSWD), "r")
    assert auth.admits(header(f"{user}:{password}"))
    assert not auth.admits(header(f"{user}:{password}x"))


@pytest.mark.parametrize("value", [None, b"Bearer x", b"Basic !!!", header("nocolon"), header("ghost:pw"), b"Basic"])
def test_malformed_or_unknown_credentials_are_refused(value):
    assert not BasicAuth(parse_htpasswd(HTPASSWD)).admits(value)


def test_verdicts_are_remembered_by_header_value():
    auth = BasicAuth({"u": "{PLAIN}p"})
    auth.admits(header("u:p"))
    auth.users["u"] = "{PLAIN}changed"  # a cached verdict does not look at the hash again
    assert auth.admits(header("u:p"))


def test_bad_htpasswd_line_and_realm_quoting():
    with pytest.raises(ValueError, match="line 2"):
        parse_htpasswd("a:x\nbroken\n")
    assert BasicAuth({}, 'say "hi"').challenge == b'WWW-Authenticate: Basic realm="say \\"hi\\""\r\n'


def test_bcrypt_is_verified_off_the_event_loop_and_remembered_across_configurations():
    import asyncio
    import base64

    from ingressd.options.basicauth import BasicAuth

    from passlib.hash import bcrypt
    hashed = bcrypt.using(rounds=8).hash("pw")
    value = b"Basic " + base64.b64encode(b"u:pw")
    first = BasicAuth({"u": hashed})
    assert first.verdict(value) is None  # unknown: must be hashed

    async def run():
        ticks = 0
        verifying = asyncio.ensure_future(first.verify(value))
        while not verifying.done():  # the loop keeps running while the hash is computed
            ticks += 1
            await asyncio.sleep(0.0005)
        return verifying.result(), ticks

    ok, ticks = asyncio.run(run())
    assert ok and ticks > 1
    assert first.verdict(value) is True
    assert BasicAuth({"u": hashed}).verdict(value) is True  # a new configuration: no second bcrypt
    assert BasicAuth({"u": hashed}).verdict(b"Basic " + base64.b64encode(b"u:other")) is None
