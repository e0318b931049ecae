"""``auth-type: basic`` with ``auth-secret`` (+ ``auth-secret-type``, ``auth-realm``): HTTP Basic
authentication against an htpasswd file, as nginx's ``auth_basic``.

The Secret holds the file under the key ``auth`` (``auth-secret-type: auth-file``, the default) or
one key per user whose value is the hash (``auth-map``). Hashes are checked by passlib (PyPI
``libpass``): every format nginx accepts from ``htpasswd`` and ``openssl passwd`` — Apache MD5
(``$apr1$``), bcrypt (``$2y$``), SHA-256/512-crypt (``$5$``/``$6$``), MD5-crypt (``$1$``), DES crypt,
``{SHA}`` and ``{PLAIN}``. A hash costs milliseconds (bcrypt more) and runs on the event loop, so
every verdict is remembered by the header value (bounded): a client sending the same credentials
pays once per configuration and worker.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

_CACHE_LIMIT = 1024


def parse_htpasswd(text: str) -> dict[str, str]:
    """``user:hash`` lines (comments and blank lines skipped); ValueError for a line without a colon."""
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, colon, hashed = line.partition(":")
        if not colon or not user:
            raise ValueError(f"line {number} of the htpasswd file is not user:hash")
        users.setdefault(user, hashed)
    return users


def _verify(password: str, hashed: str) -> bool:
    if hashed.startswith("{PLAIN}"):
        return password == hashed[7:]
    context = _context()
    try:
        return context.verify(password, hashed)
    except (ValueError, TypeError):  # a hash format passlib does not know
        return False


_CONTEXT = None


def _context():
    global _CONTEXT
    if _CONTEXT is None:
        import logging

        from passlib.context import CryptContext
        logging.getLogger("passlib").setLevel(logging.ERROR)  # bcrypt version chatter
        _CONTEXT = CryptContext(schemes=["apr_md5_crypt", "bcrypt", "sha256_crypt", "sha512_crypt", "md5_crypt",
                                         "ldap_sha1", "ldap_salted_sha1", "des_crypt"])
    return _CONTEXT


@dataclass(frozen=True, slots=True, eq=False)
class BasicAuth:
    users: dict = field(default_factory=dict)  # user -> hash
    realm: str = ""
    _verdicts: dict = field(default_factory=dict, compare=False, repr=False)  # Authorization value -> bool

    @property
    def challenge(self) -> bytes:
        realm = self.realm.replace("\\", "\\\\").replace('"', '\\"')
        return b'WWW-Authenticate: Basic realm="' + realm.encode("latin-1", "replace") + b'"\r\n'

    def admits(self, authorization: bytes | None) -> bool:
        if authorization is None:
            return False
        verdicts = self._verdicts
        verdict = verdicts.get(authorization)
        if verdict is None:
            verdict = self._check(authorization)
            if len(verdicts) >= _CACHE_LIMIT:
                verdicts.clear()
            verdicts[authorization] = verdict
        return verdict

    def _check(self, authorization: bytes) -> bool:
        scheme, _, token = authorization.strip().partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            user, colon, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, ValueError):
            return False
        hashed = self.users.get(user)
        return bool(colon) and hashed is not None and _verify(password, hashed)

    def describe(self) -> str:
        return f"basic-auth({len(self.users)} users)"
