"""Worker threads for SCU work that runs several associations at once (``store -j N``).

Threads live here, beside the sockets they block on: :meth:`Pool.run` starts them and joins every one
before it returns, Ctrl-C included; a stop (Ctrl-C, or a bug in one task) wakes the others' blocked reads
and writes through their drivers' ``interrupt`` and lets each task wind down by itself.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from .channel import Driver


class Pool:
    """A stop flag, the drivers to wake on a stop, and the threads that run the tasks."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._drivers: set[Driver] = set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the pool is stopped meanwhile (a back-off between retries)."""
        self._stop.wait(seconds)

    def track(self, driver: Driver) -> None:
        with self._lock:
            self._drivers.add(driver)

    def untrack(self, driver: Driver) -> None:
        with self._lock:
            self._drivers.discard(driver)

    def stop(self) -> None:
        """Stop taking tasks and wake every tracked driver's blocked I/O (its owner then ends it)."""
        self._stop.set()
        with self._lock:
            drivers = list(self._drivers)
        for driver in drivers:
            driver.interrupt()

    def run(self, count: int, jobs: int, task: Callable[[int], None]) -> None:
        """``task(index)`` for every index below ``count`` on ``jobs`` threads (inline when one is enough).
        A task's exception stops the others and is raised here once all are joined."""
        if jobs <= 1 or count <= 1:
            for index in range(count):
                task(index)
            return
        work: queue.SimpleQueue[int] = queue.SimpleQueue()
        for index in range(count):
            work.put(index)
        failures: list[BaseException] = []

        def worker() -> None:
            while not self._stop.is_set():
                try:
                    index = work.get_nowait()
                except queue.Empty:
                    return
                try:
                    task(index)
                except BaseException as error:  # a bug: keep it for the caller, stop the others
                    failures.append(error)
                    self._stop.set()
                    return

        threads = [threading.Thread(target=worker, name=f"store-{n + 1}") for n in range(min(jobs, count))]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        except BaseException:
            self.stop()
            for thread in threads:
                thread.join()
            raise
        if failures:
            raise failures[0]
