"""Token buckets, one per punt source, so that one VM's punts to the agent cannot starve
another's. Pure: every call takes `now`."""

from dataclasses import dataclass

from openvpc.vrouter.limits import Source


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens a second up to `burst`; a full bucket to start with."""

    rate: float
    burst: float
    tokens: float
    stamp: float

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, now: float) -> bool:
        self.refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class PuntLimiter:
    """A bucket per source, made on first use and forgotten once full again (`prune`)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.buckets: dict[Source, TokenBucket] = {}

    def allow(self, source: Source, now: float) -> bool:
        bucket = self.buckets.get(source)
        if bucket is None:
            bucket = self.buckets[source] = TokenBucket(self.rate, self.burst, self.burst, now)
        return bucket.take(now)

    def prune(self, now: float) -> int:
        """Forget the buckets that have refilled (a new one would be the same); returns how
        many, so that sources gone (unplugged vifs, removed VRFs) hold no memory."""
        full = []
        for source, bucket in self.buckets.items():
            bucket.refill(now)
            if bucket.tokens >= self.burst:
                full.append(source)
        for source in full:
            del self.buckets[source]
        return len(full)
