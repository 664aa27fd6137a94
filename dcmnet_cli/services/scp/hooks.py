"""``--exec-on-receive`` / ``--exec-on-association-end``: run a program, never a shell (scenario G.39).

The command line is split with :func:`shlex.split` once, at start; each run appends one argument (the
stored file, or the output directory) and passes details in ``DCMNET_*`` environment variables, so no
peer value is ever parsed by a shell. Runs are bounded without a thread: at most ``limit`` hooks run at
once (a further one makes its association wait for the oldest), each is killed after ``timeout`` seconds
(checked whenever a hook starts and at shutdown) with its whole process group (each hook runs in a
session of its own, so children it left in the background die with it, and at shutdown), finished ones are reaped when the next one starts, and
:meth:`HookRunner.close` waits for the rest within the shutdown grace. Hook output goes to our stderr,
never into the JSON on stdout.

``files`` (``--exec-on-association-end``): the files the association stored are written, one absolute
path per line (UTF-8, ``\n``-terminated), to a private temporary file (mode 0600) whose path the hook
gets as ``DCMNET_FILES``; it is removed once the hook has exited (or was killed). ``env`` (the runner's
own, e.g. ``DCMNET_NODE_ID``) is added to every hook's environment.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable

from ...transport.processes import group_alive, kill_group
from .events import HookFailed


def split_command(text: str) -> list[str]:
    argv = shlex.split(text)
    if not argv:
        raise ValueError("empty command")
    return argv


DCMTK_PLACEHOLDERS = ("#p", "#f", "#a", "#c", "#r")
"""storescp's --exec-on-reception placeholders; dcmnet passes the same facts as DCMNET_* variables."""


def dcmtk_placeholders(argv: list[str]) -> list[str]:
    """The DCMTK placeholders used in a hook's command line (none are expanded here)."""
    return [mark for mark in DCMTK_PLACEHOLDERS if any(mark in arg for arg in argv)]


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the hook's whole process group (it runs in a session of its own): its background
    children go with it."""
    if not kill_group(proc.pid):
        try:
            proc.kill()
        except OSError:
            pass


def _env_value(value: object) -> str:
    return str(value).replace("\0", "\\0")


class HookRunner:
    def __init__(self, limit: int = 8, timeout: float = 60.0, log: Callable[[HookFailed], None] = lambda e: None) -> None:
        self.limit = max(1, limit)
        self.timeout = timeout
        self.log = log
        self._lock = threading.Lock()
        self._running: list[tuple[subprocess.Popen, float, str, str | None]] = []
        self.env: dict[str, str] = {}
        """Set in every hook's environment (``DCMNET_NODE_ID``)."""
        self._lingering: set[int] = set()
        """Process groups of finished hooks whose background children still run: killed at close."""
        self.started = 0
        self.failed = 0

    def run(self, argv: list[str], env: dict[str, object], files: list[str] | None = None) -> None:
        """Start ``argv`` with ``env`` added (and ``DCMNET_FILES`` naming a list of ``files`` when given)."""
        self._reap()
        while True:
            with self._lock:
                if len(self._running) < self.limit:
                    break
                proc, deadline, name, _listed = self._running[0]
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            self._reap()
        environment = dict(os.environ)
        environment.update(self.env)
        environment.update({key: _env_value(value) for key, value in env.items()})
        listed = None
        if files is not None:
            try:
                listed = environment["DCMNET_FILES"] = _file_list(files)
            except OSError as error:
                self.failed += 1
                self.log(HookFailed(f"{argv[0]}: cannot write the list of files: {error.strerror or error}"))
                return
        try:
            stdout = sys.stderr.fileno()
        except (AttributeError, OSError, ValueError):
            stdout = subprocess.DEVNULL
        try:
            proc = subprocess.Popen(argv, env=environment, stdin=subprocess.DEVNULL, stdout=stdout, close_fds=True,
                                    start_new_session=True)
        except OSError as error:
            self.failed += 1
            self.log(HookFailed(f"{argv[0]}: {error.strerror or error}"))
            _remove(listed)
            return
        with self._lock:
            self.started += 1
            self._running.append((proc, time.monotonic() + self.timeout, argv[0], listed))

    def _reap(self) -> None:
        now = time.monotonic()
        with self._lock:
            running, self._running = self._running, []
        keep = []
        for proc, deadline, name, listed in running:
            code = proc.poll()
            if code is None and now >= deadline:
                _kill_group(proc)
                code = proc.wait()
                self.log(HookFailed(f"{name}: killed after {self.timeout:g} s"))
            if code is None:
                keep.append((proc, deadline, name, listed))
                continue
            _remove(listed)
            if group_alive(proc.pid):
                self._lingering.add(proc.pid)
            if code != 0:
                self.failed += 1
                self.log(HookFailed(f"{name}: exit status {code}"))
        with self._lock:
            self._running = keep + self._running

    def close(self, grace: float) -> None:
        """Wait for running hooks at most ``grace`` seconds (and their own timeout), then kill them."""
        end = time.monotonic() + grace
        with self._lock:
            running = list(self._running)
        for proc, deadline, _name, _listed in running:
            try:
                proc.wait(max(0.0, min(end, deadline) - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        with self._lock:
            running, self._running = self._running, []
        for proc, _deadline, name, listed in running:
            if proc.poll() is None:
                _kill_group(proc)
                self.log(HookFailed(f"{name}: killed at shutdown"))
            elif group_alive(proc.pid):
                _kill_group(proc)  # the hook is done, but what it left running in the background is not
            if proc.wait() != 0:
                self.failed += 1
            _remove(listed)
        self._kill_lingering()

    def _kill_lingering(self) -> None:
        with self._lock:
            groups, self._lingering = self._lingering, set()
        for pgid in groups:
            kill_group(pgid)


def _file_list(files: list[str]) -> str:
    """A private temporary file listing ``files``, one per line; its path."""
    fd, path = tempfile.mkstemp(prefix="dcmnet-files-", suffix=".txt")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            out.write("".join(f"{name}\n" for name in files))
    except BaseException:
        _remove(path)
        raise
    return path


def _remove(path: str | None) -> None:
    if path is not None:
        try:
            os.unlink(path)
        except OSError:
            pass
