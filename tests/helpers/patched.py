"""Run ``dcmnet`` in a child process with a fault injected first: ``python -c PRELUDE; main()``.

The prelude is ordinary Python run before the CLI starts (e.g. replace ``os.replace`` with a function
that raises for one kind of call, or count ``os.fsync`` calls into a file). The code under test is the
real CLI, unchanged: only the operating-system call (or the one function named) misbehaves.
"""

from __future__ import annotations

import os
import stat
import sys
import textwrap

from .procs import LOOPBACK, free_port, running_server

LAUNCH = "\nfrom dcmnet_cli.cli.main import entry\nimport sys\nsys.argv[0] = 'dcmnet'\nentry()\n"


def patched_argv(prelude: str, *args: str) -> list[str]:
    """argv running ``dcmnet ARGS`` after ``prelude`` (dedented) in the same interpreter."""
    return [sys.executable, "-c", textwrap.dedent(prelude) + LAUNCH, *args]


def patched_listen(prelude: str, *args: str, port: int | None = None, **kwargs):  # type: ignore[no-untyped-def]
    """``dcmnet -v listen`` on 127.0.0.1 after ``prelude``; a context manager yielding the ServerProcess."""
    port = port or free_port()
    argv = patched_argv(prelude, "-v", "listen", "--bind", LOOPBACK, "--shutdown-grace", "1", *args, str(port))
    return running_server(argv, port, **kwargs)


def raising(name: str, when: str, errno_name: str = "EIO", times: int | None = None) -> str:
    """A prelude replacing ``os.<name>`` by a wrapper that raises OSError(errno_name) when the Python
    expression ``when`` (over ``args``, ``kw`` and ``os``) is true (only the first ``times`` such calls,
    when given), and calls the real one otherwise."""
    return f"""
        import errno, os
        _real_{name} = os.{name}
        _left_{name} = [{times!r}]
        def _fault_{name}(*args, **kw):
            if _left_{name}[0] != 0 and ({when}):
                if _left_{name}[0] is not None:
                    _left_{name}[0] -= 1
                raise OSError(errno.{errno_name}, "injected " + {name!r} + " failure")
            return _real_{name}(*args, **kw)
        os.{name} = _fault_{name}
    """


def count_fsync(monkeypatch) -> list[str]:
    """Record every ``os.fsync`` as "dir" or "file" (and still do it)."""
    calls: list[str] = []
    real = os.fsync

    def counting(fd):
        calls.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        return real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls
