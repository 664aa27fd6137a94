"""Busy-polling a socket read for a moment before sleeping in it (issue 13).

One request at a time (storescu → listen, store → storescp, find, echo) is a round trip per message, and
on a virtual machine waking a thread that sleeps in ``recv`` costs more than the work it waits for: a
20-byte ping-pong between two processes over loopback took 57-66 µs blocking and 6 µs polling
(bench/wakeup.py measures it). So a read first polls (non-blocking ``recv_into``) for up to
:data:`DEFAULT_BUDGET`, then sleeps as before: the same bytes, the same deadlines, the same errors.

When it polls, so it costs CPU only where it saves time:

- only if this link's previous wait was within the budget (a peer answering at that pace): an idle
  association, a slow peer or one across a WAN makes the next read sleep at once, and a fast answer
  again turns polling back on;
- only while this process has one association open (``store -j 2``, ``listen`` serving several senders:
  polling threads would take the GIL and the CPU from the thread that works), and never in the
  processes of ``listen --workers N`` (N > 1);
- only on a machine with at least two CPUs (on one, the peer cannot run while this side polls), and
  not for a while after a poll was preempted (other processes wanted the CPU: :data:`PREEMPTED`);
- never with ``DCMNET_BUSY_POLL=0`` (microseconds; the default is 500).

Plain sockets only: a TLS socket keeps its own reads (channel.py).
"""

from __future__ import annotations

import os
import time
from _thread import allocate_lock  # not threading: its import would be start-up every `dcmnet echo` pays

from ..ul.typenames import TYPE_CHECKING
from .sockets import MSG_DONTWAIT, Socket

if TYPE_CHECKING:
    from typing import Callable, Mapping

DEFAULT_BUDGET = 500e-6
"""Seconds a read polls at most before it sleeps: above a listen's turn for a small object (~80 µs here)
and for a 0.5 MB CT (300-450 µs: receive, write, answer), so a round trip of one request at a time is
caught on both (bench/store.py: 100 and 200 µs took store → listen -od, small, from 0.8 to 1.1-1.3×
storescu → storescp; 50 µs caught too few).

Why the CT turn matters beyond its own wake-up: a socket's data wakes a sleeping reader as a "sync"
wake-up, which lets Linux move the reader onto the waker's CPU. A ``store`` that slept through listen's
turn was often woken onto listen's CPU and ran there, so ``listen``'s own send of the response returned
~400 µs late, object after object, while the other CPU idled (runs pinned with ``taskset`` never did).
A store that polls through the turn needs no wake-up: with 200 µs, CT cycles averaged 486-518 µs over
four runs, with 600 µs 428-460 µs (bench/turnaround.py's timing, both dcmnet); whole runs 0.89× → 0.94-0.97×
storescu → storescp (8 interleaved reps; small files unchanged, 1.3-1.4×)."""

PREEMPTED = 50e-6
"""A gap this long between two polls (each a ~1 µs syscall) means this thread lost its CPU (or the GIL) to
other work, which polling on would slow down: the link sleeps in its next :data:`QUIET_READS` reads
instead. (It did not settle ``listen --workers 3`` with three senders on two CPUs alone, hence
:attr:`Links.siblings`.)"""

QUIET_READS = 64

ENV = "DCMNET_BUSY_POLL"
MAX_BUDGET_US = 1_000_000
"""The largest budget ``DCMNET_BUSY_POLL`` takes (1 s): past that, polling is a hang in all but name."""


def budget_from(environ: Mapping[str, str], cpus: int) -> float:
    """The polling budget in seconds from ``DCMNET_BUSY_POLL`` (whole microseconds, 0: off), 0.0 on a
    one-CPU machine. ValueError, with the text for the user, for anything but a whole number from 0 to
    :data:`MAX_BUDGET_US`."""
    text = environ.get(ENV, "").strip()
    if text:
        if not (text.isascii() and text.isdigit()) or int(text) > MAX_BUDGET_US:
            raise ValueError(f"{ENV}={text!r}: expected whole microseconds from 0 (off) to {MAX_BUDGET_US}")
        budget = int(text) * 1e-6
    else:
        budget = DEFAULT_BUDGET
    return budget if cpus >= 2 else 0.0


def _configured() -> float:
    """This process's budget: ``DCMNET_BUSY_POLL`` read once, the default for a value :func:`budget_from`
    refuses (the CLI reported it and exited before any link existed: cli/main.py; a library caller gets
    the default)."""
    try:
        return budget_from(os.environ, cpu_count())
    except ValueError:
        return budget_from({}, cpu_count())


def cpu_count() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class Links:
    """How many polling-capable links this process has open (associations over plain sockets)."""

    def __init__(self) -> None:
        self.open = 0
        self.siblings = False
        """Set before ``listen --workers N`` forks (transport/workers.py): N processes, one link each, could
        all poll at once on fewer CPUs than senders and workers (three storescu → ``--workers 3`` on two CPUs
        went 0.30 → 0.37-0.38 s polling), so none of them polls."""
        self._lock = allocate_lock()

    def opened(self) -> None:
        with self._lock:
            self.open += 1

    def closed(self) -> None:
        with self._lock:
            self.open -= 1


LINKS = Links()

BUDGET = _configured()
"""The budget every link of this process polls with (transport/channel.py)."""


class BusyPoll:
    """One link's reads (see the module docstring). ``clock`` is injectable for tests."""

    __slots__ = ("budget", "last_wait", "links", "clock", "quiet")

    def __init__(self, budget: float, links: Links = LINKS, clock: Callable[[], float] = time.perf_counter) -> None:
        self.budget = budget
        self.last_wait = float("inf")
        """How long the previous read waited for its bytes (infinite before the first)."""
        self.links = links
        self.clock = clock
        self.quiet = 0
        """Reads left that sleep at once because a poll was preempted (see :data:`PREEMPTED`)."""

    def polls(self, wait: float | None) -> bool:
        """Whether the next read (one that may wait ``wait`` seconds) polls first."""
        budget = self.budget
        return 0.0 < budget and self.last_wait <= budget and not self.quiet and self.links.open == 1 \
            and not self.links.siblings and (wait is None or wait > budget)

    def read(self, sock: Socket, into: memoryview, wait: float | None) -> int:
        """``sock.recv_into(into)``, polling first when :meth:`polls`; the socket's own timeout bounds the
        sleep that follows (so a read may wait up to one budget longer than ``wait``). Exceptions are the
        socket's."""
        clock = self.clock
        start = clock()
        if self.polls(wait):
            until, before = start + self.budget, start
            while True:
                try:
                    count = sock.recv_into(into, 0, MSG_DONTWAIT)
                except BlockingIOError:
                    now = clock()
                    if now - before > PREEMPTED:  # the CPU was wanted elsewhere: stop taking it
                        self.quiet = QUIET_READS
                        break
                    if now < until:
                        before = now
                        continue
                    break
                self.last_wait = clock() - start
                return count
        elif self.quiet:
            self.quiet -= 1
        count = sock.recv_into(into)
        self.last_wait = clock() - start
        return count
