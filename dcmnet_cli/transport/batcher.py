"""One background thread that takes items from any thread and hands them on in batches.

``listen``'s index (services/archive/index.py) writes the rows of stored files through one of these, so a
run of objects costs one SQLite transaction and one commit instead of one each, and the association
threads only append to a list. The rules:

- ``put`` appends and returns at once; it wakes the thread only when the queue was empty (or full). When
  ``max_queued`` items wait already (the thread is far behind), it waits for a batch to be handled.
- The thread waits for the first item, then for more while they keep coming: until ``gap`` seconds
  passed without a new item, or ``delay`` seconds after the first (deadlines, no polling), or sooner
  when ``limit`` items are queued, a ``flush`` asks, or the batcher closes; then calls ``handle(batch)``
  outside the lock, in order. So a run of items is grouped, and the last of a run waits ``gap`` at most. ``handle`` reports its own errors; anything it raises
  goes to ``on_error`` and the batch counts as handled (a flush never hangs on a failed batch).
- ``flush(timeout)`` returns once every item put before the call was handled (True), or when the timeout
  passed (False); ``close`` flushes and stops the thread. The thread is a daemon started on the first
  ``put``, so a process that forks before its first item has no thread to lose in the child.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Batcher(Generic[T]):
    """See the module docstring."""

    def __init__(self, handle: Callable[[list[T]], None], delay: float, limit: int, name: str,
                 on_error: Callable[[BaseException], None] | None = None, max_queued: int = 8192,
                 gap: float | None = None) -> None:
        self.handle, self.delay, self.limit, self.name, self.on_error = handle, delay, limit, name, on_error
        self.gap = delay if gap is None else min(gap, delay)
        self._last_put = 0.0
        self.max_queued = max(max_queued, limit)
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._done = threading.Condition(self._lock)
        self._items: list[T] = []
        self._put = 0  # items put so far
        self._handled = 0  # items handed to ``handle`` and returned from it
        self._hurry = 0  # a flush waits for items up to this count: no batching delay until then
        self._closing = False
        self._thread: threading.Thread | None = None

    def put(self, item: T) -> None:
        with self._lock:
            while len(self._items) >= self.max_queued and not self._closing and self._thread is not None:
                self._work.notify()
                self._done.wait()  # the thread is behind by max_queued items: bounded memory, the caller waits
            if self._closing:
                raise RuntimeError(f"{self.name}: closed")
            self._items.append(item)
            self._put += 1
            self._last_put = time.monotonic()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            elif len(self._items) == 1 or len(self._items) >= self.limit:
                self._work.notify()

    def pending(self) -> int:
        """Items put and not yet handled."""
        return self._put - self._handled

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every item put before this call was handled; False when ``timeout`` passed first."""
        with self._lock:
            target = self._put
            if self._handled >= target:
                return True
            self._hurry = max(self._hurry, target)
            self._work.notify()
            deadline = None if timeout is None else time.monotonic() + timeout
            while self._handled < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._done.wait(remaining)
            return True

    def close(self, timeout: float | None = None) -> bool:
        """Flush, then stop the thread; later ``put`` calls raise RuntimeError. True when all was handled."""
        flushed = self.flush(timeout)
        with self._lock:
            self._closing = True
            self._work.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        return flushed

    def _next(self) -> list[T] | None:
        """The next batch (None: closed and empty), after the batching delay."""
        with self._lock:
            while not self._items and not self._closing:
                self._work.wait()
            if not self._items:
                return None
            latest = time.monotonic() + self.delay
            while (len(self._items) < self.limit and not self._closing and self._hurry <= self._handled):
                remaining = min(latest, self._last_put + self.gap) - time.monotonic()
                if remaining <= 0:
                    break
                self._work.wait(remaining)
            batch, self._items = self._items[:self.limit], self._items[self.limit:]
            return batch

    def _run(self) -> None:
        while True:
            batch = self._next()
            if batch is None:
                return
            try:
                self.handle(batch)
            except BaseException as error:  # handle reports its own errors; this is the last resort
                if self.on_error is not None:
                    try:
                        self.on_error(error)
                    except BaseException:
                        pass
            with self._lock:
                self._handled += len(batch)
                self._done.notify_all()
