"""Worker processes and stop signals for ``dcmnet listen``: a small process supervisor.

DESIGN.md "Transport": to use more than one core, ``listen --workers N`` runs N processes on one port,
each accepting on its own ``SO_REUSEPORT`` socket. This module forks them, turns SIGTERM and SIGINT
(Ctrl-C) into an orderly stop in every process, and reaps them without polling. With the rest of
``transport/`` it is the only code that forks or installs signal handlers: ``cli/`` imports no
``signal``, ``threading`` or ``select`` (its locks come from ``transport.threads``).

:func:`run_workers` is the whole API (``count`` 1 is the usual single process: no fork, the same stop):

- The parent is worker 0. It serves the server it was given, already bound (so a bind error is reported
  before anything is forked), after forking workers 1..N-1, each of which makes and binds its own server.
- Parent: the first SIGTERM or SIGINT ends serving and forwards SIGTERM to every worker; the previous
  handlers are then restored, so a second Ctrl-C during the grace period interrupts the shutdown
  (KeyboardInterrupt, exit 130). A listener started in the background by a shell inherits SIGINT ignored,
  which is why SIGINT is handled and not just left to KeyboardInterrupt. Then ``on_stop(server, 0)`` runs
  (stop accepting, let in-flight associations finish within the grace), and the workers are reaped: one
  still running ``grace`` + :data:`KILL_MARGIN` seconds after that is SIGKILLed. Each wait is a pidfd in
  ``poll()`` with a deadline: no polling loop.
- Worker: SIGINT is ignored (Ctrl-C reaches the whole process group; the parent forwards SIGTERM instead),
  the first SIGTERM ends serving and later ones are ignored, ``on_stop(server, index)`` runs, and the
  process ends with ``os._exit``: 0, or 70 after ``on_error(index, error)`` when anything raised. A
  worker never returns into the caller's code.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, NoReturn, Protocol, TypeVar

from .busy_poll import LINKS

# signal, select and time are imported where used: the listen command module imports this one, and
# ``dcmnet listen --help`` need not pay for them.

KILL_MARGIN = 5.0
"""Seconds beyond the grace before a worker that has not exited is SIGKILLed."""

INTERNAL_ERROR = 70
"""A worker's exit status when it failed (the exit-code contract's internal error)."""


class Serving(Protocol):
    """What :func:`run_workers` needs of a server (``transport.server.Server`` is one)."""

    def bind(self) -> int: ...

    def serve_forever(self) -> None: ...

    def close_listener(self) -> None: ...


S = TypeVar("S", bound=Serving)


class _Stop(Exception):
    """Raised by the stop handler in the main thread: serving unwinds like Ctrl-C."""


def run_workers(count: int, make_server: Callable[[int], S], on_stop: Callable[[S, int], None], grace: float, *,
                first: S, serve: Callable[[S], None] | None = None,
                on_error: Callable[[int, BaseException], None] | None = None) -> None:
    """Serve ``first`` here and ``count`` - 1 servers from ``make_server()`` in forked workers, until
    SIGTERM or SIGINT; returns in the parent once every worker has been reaped.

    ``first``: worker 0's server, already bound; ``make_server(index)`` must make servers that bind to the
    same port (``SO_REUSEPORT``). A worker closes its copy of ``first``'s socket (it must not sit in the
    port's group with nothing accepting on it) and dies with the parent (PR_SET_PDEATHSIG, SIGTERM). ``on_stop(server, index)`` runs in each process once its serving has
    ended (index 0 in the parent). ``serve(first)`` replaces ``first.serve_forever()`` in the parent
    (e.g. to draw a live view around it). ``on_error(index, error)`` reports a worker's failure
    [default: one line on stderr]. Must run in the main thread (signal handlers live there).
    """
    import signal

    children: list[int] = []
    report = on_error if on_error is not None else _report
    parent = os.getpid()
    if count > 1:  # one link per process no longer means one poller per CPU (busy_poll.py)
        LINKS.siblings = True

    def run() -> None:
        for index in range(1, count):
            pid = os.fork()
            if pid == 0:
                _orphan_proof(parent, first)
                _worker(index, make_server, on_stop, report)
            children.append(pid)
        if serve is not None:
            serve(first)
        else:
            first.serve_forever()

    try:
        _until_stopped(run, (signal.SIGTERM, signal.SIGINT), children, restore=True)
    finally:
        terminate(children)
        try:
            on_stop(first, 0)
        finally:
            reap(children, grace + KILL_MARGIN)


def _orphan_proof(parent: int, first: Serving) -> None:
    """In a new worker: close the parent's listening socket, and die (SIGTERM, a graceful stop) with
    the parent, even a parent killed with SIGKILL; exit at once if the parent is already gone."""
    import signal

    try:
        first.close_listener()
    except OSError:
        pass
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the prctl: nobody would ever stop us
        os._exit(0)


def _worker(index: int, make_server: Callable[[int], S], on_stop: Callable[[S, int], None],
            report: Callable[[int, BaseException], None]) -> NoReturn:
    """A forked worker: serve until SIGTERM, stop, exit; never returns (os._exit skips the parent's code)."""
    import signal

    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        server = make_server(index)
        server.bind()
        try:
            _until_stopped(server.serve_forever, (signal.SIGTERM,), [], restore=False)
        finally:
            on_stop(server, index)
    except _Stop:
        pass  # SIGTERM before this worker installed its own handler: nothing was served yet
    except BaseException as error:  # noqa: BLE001 - a worker must never return into the parent's code
        code = INTERNAL_ERROR
        try:
            report(index, error)
        except BaseException:  # noqa: BLE001
            pass
    finally:
        os._exit(code)


def _until_stopped(run: Callable[[], None], signals: tuple[int, ...], forward_to: list[int], *,
                   restore: bool) -> None:
    """Run ``run`` in the main thread until one of ``signals`` or KeyboardInterrupt arrives.

    The first signal forwards SIGTERM to the processes in ``forward_to`` (only from the process that
    installed the handler: a worker forked under it must not signal its siblings) and raises
    :class:`_Stop` where ``run`` is blocked; later ones are ignored. On the way out the previous handlers
    come back (``restore``) or the signals stay ignored.
    """
    import signal

    owner = os.getpid()
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        if os.getpid() == owner:
            terminate(forward_to)
        raise _Stop()

    previous = {sig: signal.signal(sig, stop) for sig in signals}
    try:
        run()
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        stopping = True
        for sig, handler in previous.items():
            signal.signal(sig, handler if restore else signal.SIG_IGN)


def terminate(pids: list[int]) -> None:
    """SIGTERM to each process; one that is already gone is no error."""
    import signal

    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass


def reap(pids: list[int], timeout: float) -> None:
    """Wait for each child to exit; SIGKILL those still running ``timeout`` seconds from now.

    Each wait is the child's pidfd in ``poll()`` with what is left of the deadline: no polling loop.
    (Without pidfd_open, Linux < 5.3, the wait has no deadline.)
    """
    import select
    import signal
    import time

    deadline = time.monotonic() + timeout
    for pid in pids:
        try:
            fd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):
            fd = None
        if fd is not None:
            try:
                poller = select.poll()
                poller.register(fd, select.POLLIN)
                if not poller.poll(max(0, int((deadline - time.monotonic()) * 1000))):
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
            finally:
                os.close(fd)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _report(index: int, error: BaseException) -> None:
    print(f"worker {index}: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
