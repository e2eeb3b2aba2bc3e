"""Waiting on state in unit tests: poll a condition until it holds, bounded in time."""

import time
from collections.abc import Callable


def until(check: Callable[[], object], what: str, timeout: float) -> None:
    """Return once `check()` is true; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)
