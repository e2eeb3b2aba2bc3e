"""Bounded exponential backoff for reconnect loops. Pure: the caller sleeps."""

from dataclasses import dataclass


@dataclass
class Backoff:
    """Delays first, first*factor, ... capped at `limit`; `reset` after a success."""

    first: float = 0.1
    limit: float = 2.0
    factor: float = 2.0
    _next: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.limit or self.factor < 1:
            raise ValueError("backoff needs 0 < first <= limit and factor >= 1")
        self._next = self.first

    def delay(self) -> float:
        current = self._next
        self._next = min(self.limit, current * self.factor)
        return current

    def reset(self) -> None:
        self._next = self.first
