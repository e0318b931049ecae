"""Polling instead of sleeping."""

from __future__ import annotations

import time
from typing import Any, Callable


class WaitTimeout(AssertionError):
    pass


def wait_until(pred: Callable[[], Any], timeout: float = 5.0, interval: float = 0.05, message: str = "") -> Any:
    """Call ``pred`` until it returns a truthy value and return that value.

    Exceptions raised by ``pred`` count as "not yet" (the last one is reported on timeout).
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    last_exc: BaseException | None = None
    while True:
        try:
            last = pred()
            last_exc = None
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - polling tolerates transient failures
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f"last value {last!r}" if last_exc is None else f"last error {last_exc!r}"
            raise WaitTimeout(f"timed out after {timeout}s waiting for {message or pred}: {detail}")
        time.sleep(interval)
