"""``--max-rate``: one byte budget shared by every association of a run (threads sleep outside the lock)."""

from __future__ import annotations

import time
from _thread import allocate_lock  # threading.Lock itself, without importing threading (start-up)


class TokenBucket:
    """Shared byte budget for ``--max-rate``: callers sleep (outside the lock) until their bytes fit."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(rate / 10, 64 * 1024)
        self._lock = allocate_lock()
        self._next = time.monotonic()

    def take(self, count: int) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(self._next, now - self.burst / self.rate)
            self._next = start + count / self.rate
            wait = self._next - now - self.burst / self.rate
        if wait > 0:
            time.sleep(wait)
