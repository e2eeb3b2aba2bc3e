"""When a supervised daemon that exited is started again: pure backoff over its recent exits.

The first restart is fast; each further exit soon after a start doubles the delay up to a
cap; a daemon that stayed up STABLE_AFTER seconds counts as healthy again (the streak resets).
"""

from dataclasses import dataclass

FIRST_DELAY = 0.1
MAX_DELAY = 5.0
STABLE_AFTER = 10.0


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    first: float = FIRST_DELAY
    limit: float = MAX_DELAY
    stable_after: float = STABLE_AFTER

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.limit or self.stable_after <= 0:
            raise ValueError("restart policy needs 0 < first <= limit and stable_after > 0")

    def next_streak(self, streak: int, uptime: float) -> int:
        """Quick exits in a row, counting the one that just happened after `uptime` s up."""
        return 1 if uptime >= self.stable_after else streak + 1

    def delay(self, streak: int) -> float:
        """Seconds to wait before the restart that follows the `streak`-th quick exit."""
        if streak <= 1:
            return self.first
        # the exponent is capped so a long crash loop cannot overflow the float
        return min(self.limit, self.first * 2.0 ** min(streak - 1, 64))
