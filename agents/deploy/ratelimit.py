"""Per-client throttling: a token bucket per key (a client id), refilled at a steady rate up to a burst.

    limiter = RateLimiter(rate=50, burst=100)
    wait = limiter.acquire("erp-1")      # None: go ahead; else the seconds until a request would be allowed

The buckets live in the process: with N workers each keeps its own, so a client gets up to N times the rate
in all (workers share nothing but the audit database). The number of keys kept is bounded (`max_keys`, the
least recently used dropped first), so keys a caller makes up (client ids at the token endpoint) cannot grow
memory without end; a dropped bucket comes back full, which is the state an idle key's bucket reaches anyway.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable


class RateLimiter:
    """Token buckets by key: `rate` requests per second on average, up to `burst` at once."""

    def __init__(self, rate: float, burst: float, *, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not (rate > 0 and burst >= 1):
            raise ValueError(f"rate {rate} and burst {burst}; allowed: rate > 0, burst >= 1")
        self.rate, self.burst, self.max_keys = float(rate), float(burst), max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, time)
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float | None:
        """Take one token from `key`'s bucket: None if there was one, else the seconds until there is."""
        with self._lock:
            now = self._clock()
            tokens, then = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            allowed = tokens >= 1.0
            self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return None if allowed else (1.0 - tokens) / self.rate


def retry_after(seconds: float) -> str:
    """A `Retry-After` header value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))
