"""``auth-type: basic`` with ``auth-secret`` (+ ``auth-secret-type``, ``auth-realm``): HTTP Basic
authentication against an htpasswd file, as nginx's ``auth_basic``.

The Secret holds the file under the key ``auth`` (``auth-secret-type: auth-file``, the default) or
one key per user whose value is the hash (``auth-map``). Hashes are checked by passlib (PyPI
``libpass``): every format nginx accepts from ``htpasswd`` and ``openssl passwd`` — Apache MD5
(``$apr1$``), bcrypt (``$2y$``), SHA-256/512-crypt (``$5$``/``$6$``), MD5-crypt (``$1$``), DES crypt,
``{SHA}`` and ``{PLAIN}``. A hash costs milliseconds (bcrypt at cost 10: ~50 ms of CPU), so it never
runs on the event loop: ``verdict`` answers from memory (or ``{PLAIN}``), and when it cannot, the
connection awaits ``verify``, which hashes in one thread per worker (pyca/bcrypt releases the GIL
while hashing). Verdicts are remembered twice, both bounded: per configuration by the Authorization
value, and per worker across configurations by (stored hash, SHA-256 of the password), so a
configuration change does not make every client pay a bcrypt again. (A memory dump of a worker
thus holds SHA-256 digests of recently verified passwords, next to the hashes it holds anyway.)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from dataclasses import dataclass, field

_CACHE_LIMIT = 1024
_VERIFIED_LIMIT = 4096
_VERIFIED: dict[tuple[str, bytes], bool] = {}  # (stored hash, sha256(password)) -> verdict, across configurations


def _digest(password: str) -> bytes:
    return hashlib.sha256(password.encode("utf-8", "surrogatepass")).digest()


def _remember(hashed: str, password: str, verdict: bool) -> None:
    if len(_VERIFIED) >= _VERIFIED_LIMIT:
        _VERIFIED.clear()
    _VERIFIED[(hashed, _digest(password))] = verdict


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


_EXECUTOR = None


def _executor():
    """One hashing thread per worker: the workers already use every core, and more threads would
    take CPU time from the event loop's thread (measured in bench/basicauth_loop.py)."""
    global _EXECUTOR
    if _EXECUTOR is None:
        from concurrent.futures import ThreadPoolExecutor
        _EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingressd-hash")
    return _EXECUTOR


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

    def verdict(self, authorization: bytes | None) -> bool | None:
        """Whether the credentials are valid, from memory; None when only hashing can tell (``verify``)."""
        if authorization is None:
            return False
        verdict = self._verdicts.get(authorization)
        if verdict is not None:
            return verdict
        credentials = self._credentials(authorization)
        if credentials is None:
            verdict = False
        else:
            password, hashed = credentials
            if hashed.startswith("{PLAIN}"):
                verdict = password == hashed[7:]
            else:
                verdict = _VERIFIED.get((hashed, _digest(password)))
                if verdict is None:
                    return None
        self._keep(authorization, verdict)
        return verdict

    async def verify(self, authorization: bytes | None) -> bool:
        """The verdict, hashing in the event loop's thread pool when it is not known yet."""
        verdict = self.verdict(authorization)
        if verdict is None:
            password, hashed = self._credentials(authorization)
            verdict = await asyncio.get_running_loop().run_in_executor(_executor(), _verify, password, hashed)
            _remember(hashed, password, verdict)
            self._keep(authorization, verdict)
        return verdict

    def admits(self, authorization: bytes | None) -> bool:
        """The verdict, hashing here when needed (blocking: for tools and tests, not the data plane)."""
        verdict = self.verdict(authorization)
        if verdict is None:
            password, hashed = self._credentials(authorization)
            verdict = _verify(password, hashed)
            _remember(hashed, password, verdict)
            self._keep(authorization, verdict)
        return verdict

    def _keep(self, authorization: bytes, verdict: bool) -> None:
        verdicts = self._verdicts
        if len(verdicts) >= _CACHE_LIMIT:
            verdicts.clear()
        verdicts[authorization] = verdict

    def _credentials(self, authorization: bytes) -> tuple[str, str] | None:
        """(password, stored hash) of a Basic Authorization value naming a known user, else None."""
        scheme, _, token = authorization.strip().partition(b" ")
        if scheme.lower() != b"basic":
            return None
        try:
            user, colon, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, ValueError):
            return None
        hashed = self.users.get(user)
        if not colon or hashed is None:
            return None
        return password, hashed

    def describe(self) -> str:
        return f"basic-auth({len(self.users)} users)"
