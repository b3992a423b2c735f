"""Per-source token buckets: the first defence of a SIP edge that faces the internet.

Pure: the caller passes ``now``. Each source (an IP address) gets ``rate`` messages per second
with bursts up to ``burst``. The table is bounded: when full, the least recently seen sources
are forgotten (a forgotten source starts again with a full bucket, so an attacker rotating
addresses gains nothing it would not get from fresh addresses anyway).
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["RateLimiter"]


class RateLimiter:
    """``allow(source, now)`` is False once ``source`` exceeds its rate."""

    __slots__ = ("_buckets", "burst", "dropped", "max_sources", "rate")

    def __init__(self, rate: float, burst: float | None = None,
                 max_sources: int = 65_536) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else 2 * rate)
        if self.burst < 1:
            raise ValueError("burst must be at least 1")
        if max_sources < 1:
            raise ValueError("max_sources must be positive")
        self.max_sources = max_sources
        self.dropped = 0
        # source -> (tokens, time of last update); most recently seen last
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, source: str, now: float) -> bool:
        buckets = self._buckets
        entry = buckets.get(source)
        if entry is None:
            tokens = self.burst
            if len(buckets) >= self.max_sources:
                buckets.popitem(last=False)
        else:
            tokens, then = entry
            tokens = min(self.burst, tokens + (now - then) * self.rate) if now > then else tokens
            buckets.move_to_end(source)
        if tokens >= 1.0:
            buckets[source] = (tokens - 1.0, now)
            return True
        buckets[source] = (tokens, now)
        self.dropped += 1
        return False

    def __len__(self) -> int:
        return len(self._buckets)
