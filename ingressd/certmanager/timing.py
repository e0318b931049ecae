"""When to renew and when to retry: pure functions of certificate dates, ARI windows and failures.

Every random choice here is derived from a seed (a certificate fingerprint, a certificate's name)
so that the serving process, a restarted one and ``ingressd certs`` all compute the same times.
"""

from __future__ import annotations

import hashlib
import re

from ..certs import ari_cert_id  # noqa: F401 - re-exported: the ARI helpers live together

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0

# Without ARI, renew when a third of the lifetime remains (Let's Encrypt's and cert-manager's advice),
# earlier by a jitter of up to 5% of the lifetime (at most 12 h) so that renewals spread out.
RENEW_FRACTION = 1 / 3
JITTER_FRACTION = 0.05
JITTER_MAX = 12 * HOUR

# Backoff after a failed order. "transient": the CA could not be reached or answered 5xx; those do
# not count against its limits, so retry soon. Otherwise (validation failed, rate limited, refused)
# start at 5 minutes: Let's Encrypt allows 5 failed validations per name per hour.
TRANSIENT_BASE, TRANSIENT_MAX = 10.0, 30 * MINUTE
FAILURE_BASE, FAILURE_MAX = 5 * MINUTE, 24 * HOUR
BACKOFF_JITTER = 0.1

ARI_DEFAULT_RETRY = 6 * HOUR  # RFC 9773: poll again after Retry-After, else about 6 hours
ARI_MIN_RETRY = MINUTE
ARI_MAX_RETRY = DAY

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": MINUTE, "h": HOUR, "d": DAY}


def parse_duration(text: str) -> float:
    """Seconds in a Go duration as cert-manager's annotations use it (``2160h``, ``1h30m``, ``45s``;
    ``d`` for days is accepted too). Raises ValueError."""
    text = text.strip()
    if not text:
        raise ValueError("empty duration")
    position, total = 0, 0.0
    for match in _DURATION_RE.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(text):
        raise ValueError(f"{text!r} is not a duration like 2160h, 90m or 1h30m")
    if total <= 0:
        raise ValueError(f"{text!r} is not a positive duration")
    return total


def fraction(seed: str) -> float:
    """A stable pseudo-random number in [0, 1) for ``seed``."""
    return int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big") / 2.0 ** 64


def effective_not_after(not_before: float, not_after: float, duration: float | None) -> float:
    """The end of the lifetime the user asked for: a CA may issue longer than ``duration``."""
    if duration is not None:
        return min(not_after, not_before + duration)
    return not_after


def renewal_time(not_before: float, not_after: float, *, seed: str, duration: float | None = None,
                 renew_before: float | None = None, ari_renew_at: float | None = None) -> float:
    """When to renew a certificate valid from ``not_before`` to ``not_after`` (epoch seconds).

    With an ARI choice (already picked inside the CA's window) that choice is followed, unless the
    user's ``duration``/``renew-before`` ask for an earlier renewal. Otherwise renew when a third of
    the (effective) lifetime remains, or ``renew_before`` ahead of the end, minus a stable jitter.
    """
    end = effective_not_after(not_before, not_after, duration)
    lifetime = max(end - not_before, 1.0)
    if renew_before is not None and renew_before < lifetime:
        local = end - renew_before
    else:
        local = end - lifetime * RENEW_FRACTION
    local -= fraction("renew:" + seed) * min(lifetime * JITTER_FRACTION, JITTER_MAX)
    if ari_renew_at is None:
        return local
    if duration is not None or renew_before is not None:
        return min(ari_renew_at, local)
    return ari_renew_at


def choose_in_window(start: float, end: float, *, seed: str, now: float) -> float:
    """RFC 9773: a uniformly distributed time inside the suggested window; now when it has passed."""
    if end <= start:
        chosen = start
    else:
        chosen = start + fraction("ari:" + seed) * (end - start)
    return now if end <= now else chosen


def ari_retry(retry_after: float | None) -> float:
    """Seconds until renewal information should be fetched again."""
    if retry_after is None:
        return ARI_DEFAULT_RETRY
    return min(max(retry_after, ARI_MIN_RETRY), ARI_MAX_RETRY)


def backoff_delay(failures: int, *, transient: bool, seed: str, retry_after: float | None = None) -> float:
    """Seconds to wait after the ``failures``-th consecutive failure (1 for the first)."""
    base, cap = (TRANSIENT_BASE, TRANSIENT_MAX) if transient else (FAILURE_BASE, FAILURE_MAX)
    delay = min(base * 2 ** max(failures - 1, 0), cap)
    delay += delay * BACKOFF_JITTER * fraction(f"backoff:{seed}:{failures}")
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay
