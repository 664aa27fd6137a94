"""Worker threads for SCU work that runs several associations at once (``store -j N``).

Threads live here, beside the sockets they block on: :meth:`Pool.run` starts them and joins every one
before it returns, Ctrl-C included; a stop (Ctrl-C, or a bug in one task) wakes the others' blocked reads
and writes through their drivers' ``interrupt`` and lets each task wind down by itself.

One association (the usual ``dcmnet store``) runs inline and never loads ``threading`` or ``queue``
(start-up): the stop is a flag, and the event a back-off sleeps on is made by the first sleep.
"""

from __future__ import annotations

from _thread import allocate_lock
from collections.abc import Callable

from .channel import Driver

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up)
if TYPE_CHECKING:
    import threading


class Pool:
    """A stop flag, the drivers to wake on a stop, and the threads that run the tasks."""

    def __init__(self) -> None:
        self._stopped = False
        self._wake: threading.Event | None = None  # set on a stop; made by the first sleep
        self._lock = allocate_lock()
        self._drivers: set[Driver] = set()

    @property
    def stopping(self) -> bool:
        return self._stopped

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the pool is stopped meanwhile (a back-off between retries)."""
        with self._lock:
            wake = self._wake
            if wake is None:
                import threading

                wake = self._wake = threading.Event()
                if self._stopped:
                    wake.set()
        wake.wait(seconds)

    def _halt(self) -> None:
        """Stop taking tasks and end any back-off sleep."""
        with self._lock:
            self._stopped = True
            wake = self._wake
        if wake is not None:
            wake.set()

    def track(self, driver: Driver) -> None:
        with self._lock:
            self._drivers.add(driver)

    def untrack(self, driver: Driver) -> None:
        with self._lock:
            self._drivers.discard(driver)

    def stop(self) -> None:
        """Stop taking tasks and wake every tracked driver's blocked I/O (its owner then ends it)."""
        self._halt()
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
        import queue
        import threading

        work: queue.SimpleQueue[int] = queue.SimpleQueue()
        for index in range(count):
            work.put(index)
        failures: list[BaseException] = []

        def worker() -> None:
            while not self._stopped:
                try:
                    index = work.get_nowait()
                except queue.Empty:
                    return
                try:
                    task(index)
                except BaseException as error:  # a bug: keep it for the caller, stop the others
                    failures.append(error)
                    self._halt()
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
