"""Token buckets that bound how often something may happen, per key and in total."""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimiter:
    """Allows `rate` events per second per key (bursts up to `burst`) and `total_rate` over all
    keys together; at most `max_keys` keys are remembered (idle ones are forgotten first)."""

    def __init__(
        self,
        rate: float,
        burst: float,
        total_rate: float,
        max_keys: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate, self.burst, self.total_rate, self.max_keys = rate, burst, total_rate, max_keys
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._total = (total_rate * burst / rate, clock())

    def _take(self, bucket: tuple[float, float], rate: float, cap: float) -> tuple[float, bool]:
        tokens, at = bucket
        tokens = min(cap, tokens + (self._clock() - at) * rate)
        return (tokens - 1.0, True) if tokens >= 1.0 else (tokens, False)

    def allow(self, key: str) -> bool:
        """True when one more event for `key` fits both budgets (and spends it)."""
        now = self._clock()
        if key not in self._buckets and len(self._buckets) >= self.max_keys:
            self._forget_idle(now)
        own, own_ok = self._take(self._buckets.get(key, (self.burst, now)), self.rate, self.burst)
        total_cap = self.total_rate * self.burst / self.rate
        total, total_ok = self._take(self._total, self.total_rate, total_cap)
        ok = own_ok and total_ok
        refund = 0.0 if ok else 1.0  # a refused event spends nothing
        self._buckets[key] = (own + refund * own_ok, now)
        self._total = (total + refund * total_ok, now)
        return ok

    def _forget_idle(self, now: float) -> None:
        """Drop keys whose bucket has refilled (they are as good as new), else the oldest."""
        full = [k for k, (tokens, at) in self._buckets.items()
                if tokens + (now - at) * self.rate >= self.burst]  # fmt: skip
        for key in full or [min(self._buckets, key=lambda k: self._buckets[k][1])]:
            del self._buckets[key]
