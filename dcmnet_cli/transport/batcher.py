"""Items queued from any thread and handed on in batches, mostly by the threads that queue them.

``listen``'s index (services/archive/index.py) writes the rows of stored files through one of these, so a
run of objects costs one SQLite transaction and one commit instead of one each. Who writes a batch matters
more than how (bench/perobject.py): a writer thread of its own cost ~150 µs of CPU per small object,
mostly in GIL hand-offs with the association thread it runs beside, where the same rows written by the
association thread itself cost ~70. So:

- ``put`` appends and returns at once, telling whether a batch is due: ``limit`` items queued, or the
  oldest waited ``delay`` seconds. It only handles a batch itself when ``max_queued`` items wait (bounded
  memory).
- ``run_due`` handles the due batch in the calling thread, unless another thread is handling one (then
  the items wait for the next call): the Storage SCP calls it after its C-STORE-RSP, when the sender is
  busy with the answer anyway.
- A background thread handles what is left at the end of a run: once ``gap`` seconds passed without a
  new item, or ``delay + gap`` after the oldest (a caller that never calls ``run_due`` still gets its
  items handled). It is a daemon started on the first ``put``, so a process that forks before its first
  item has no thread to lose in the child.
- ``flush(timeout)`` handles, in the calling thread, every item put before the call that is not handled
  yet, after any batch another thread is handling (True), or returns False when it could not start
  within the timeout; ``close`` flushes and stops the thread.
- Batches are taken and handled one at a time under one lock, so items are handled in the order they were
  put. ``handle`` reports its own errors; anything it raises goes to ``on_error`` and the batch counts
  as handled (a flush never hangs on a failed batch).
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
        self.max_queued = max(max_queued, limit)
        self._lock = threading.Lock()  # the queue and the counters
        self._wake = threading.Condition(self._lock)
        self._handling = threading.Lock()  # held from taking a batch until it was handled: order kept
        self._items: list[T] = []
        self._first = 0.0  # when the oldest queued item was put (monotonic)
        self._last = 0.0  # when the newest was
        self._put = 0  # items put so far
        self._handled = 0  # items handed to ``handle`` and returned from it
        self._closing = False
        self._thread: threading.Thread | None = None

    def put(self, item: T) -> bool:
        """Queue ``item``; True when a batch is due (see :meth:`run_due`)."""
        with self._lock:
            if self._closing:
                raise RuntimeError(f"{self.name}: closed")
            items = self._items
            items.append(item)
            self._put += 1
            now = self._last = time.monotonic()
            if len(items) == 1:
                self._first = now
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                    self._thread.start()
                else:
                    self._wake.notify()
            queued = len(items)
        if queued >= self.max_queued:  # nobody keeps up: this caller waits its turn and handles
            self._handle(block=True, target=None)
        return queued >= self.limit or now - self._first >= self.delay

    def run_due(self) -> bool:
        """Handle the queued items in this thread when a batch is due and no other thread is handling one;
        True when this call handled them."""
        with self._lock:
            queued = len(self._items)
            if not queued or (queued < self.limit and time.monotonic() - self._first < self.delay):
                return False
        return self._handle(block=False, target=None)

    def pending(self) -> int:
        """Items put and not yet handled."""
        return self._put - self._handled

    def flush(self, timeout: float | None = None) -> bool:
        """Every item put before this call handled (by this thread when still queued); False when the batch
        another thread is handling did not end within ``timeout``."""
        target = self._put
        if self._handled >= target:
            return True
        if not self._handle(block=True, target=target, timeout=-1 if timeout is None else max(timeout, 0.0)):
            return False
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Flush, then stop the thread; later ``put`` calls raise RuntimeError. True when all was handled."""
        flushed = self.flush(timeout)
        with self._lock:
            self._closing = True
            self._wake.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        return flushed

    def _handle(self, block: bool, target: int | None, timeout: float = -1) -> bool:
        """Take and handle batches under the handling lock: until ``target`` items were handled (a flush),
        else the items queued now. False when the lock was not free (``block`` False) or not in time."""
        if not self._handling.acquire(block, timeout if block else -1):
            return False
        try:
            with self._lock:
                goal = self._put if target is None else target
            while self._handled < goal:
                with self._lock:
                    batch = self._items[:self.limit]
                    del self._items[:self.limit]
                    if self._items:
                        self._first = time.monotonic()  # the rest starts its wait now
                if not batch:
                    break
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
        finally:
            self._handling.release()
        return True

    def _tail_due(self) -> bool:
        """Wait (holding ``_lock``) until the queued items are the tail of a run; False when closing with
        nothing queued."""
        while True:
            while not self._items and not self._closing:
                self._wake.wait()
            if not self._items:
                return False
            now = time.monotonic()
            deadline = min(self._last + self.gap, self._first + self.delay + self.gap)
            if now >= deadline or self._closing:
                return True
            self._wake.wait(deadline - now)

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._tail_due():
                    return
            self._handle(block=True, target=None)
