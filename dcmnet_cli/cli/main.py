"""The ``dcmnet`` program: the fast path or the click group, and the one place errors become exit codes.

This module imports no click: :func:`main` first offers the command line to :mod:`.fastpath` (``echo``,
``find``, ``store`` parsed from the generated :mod:`.argspec`), and only when it declines loads the click
group (:mod:`.group`), which then behaves exactly as if there were no fast path. ``cli``, ``LazyGroup``,
``command_sources`` ... are still importable from here (loaded on first use).
"""

from __future__ import annotations

import os
import sys
from ..ul.typenames import Any

from ..errors import DcmnetError
from .commands import COMMANDS
from .exitcodes import ExitCode, for_error

__all__ = ["COMMANDS", "entry", "main"]



def __getattr__(name: str) -> Any:
    """``cli``, ``LazyGroup``, ``command_sources`` ...: the click group's names, loaded on first use."""
    if name.startswith("__"):
        raise AttributeError(name)
    from . import group

    try:
        return getattr(group, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def _run(argv: list[str]) -> int:
    from .fastpath import run_fast

    code = run_fast(argv)
    if code is not None:
        return code
    from .group import run

    return run(argv)


def _failed(error: BaseException, debug: bool) -> int:
    """The exit code of what ``error`` says happened, after its one line on stderr."""
    click = sys.modules.get("click")
    if not hasattr(click, "ClickException"):
        click = None  # not imported, or interrupted while being imported
    if click is not None and isinstance(error, click.exceptions.Exit):
        return int(error.exit_code)
    if click is not None and isinstance(error, click.ClickException):
        error.show()
        return int(error.exit_code)
    if isinstance(error, KeyboardInterrupt) or click is not None and isinstance(error, click.Abort):
        print("dcmnet: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    if isinstance(error, DcmnetError):
        print(f"dcmnet: error: {error}", file=sys.stderr)
        return for_error(error)
    if isinstance(error, BrokenPipeError):
        return ExitCode.SUCCESS
    if debug:  # a bug: one line unless --debug
        import traceback

        traceback.print_exception(error)
    print(f"dcmnet: internal error: {type(error).__name__}: {error} (please report this; --debug shows the traceback)",
          file=sys.stderr)
    return ExitCode.INTERNAL


def _checked_environment() -> int:
    """A usage error (its line printed) for a tuning variable the transport cannot use, else 0."""
    if os.environ.get("DCMNET_BUSY_POLL", "").strip():
        from ..transport.busy_poll import budget_from

        try:
            budget_from(os.environ, 2)  # any CPU count: only the value is checked
        except ValueError as error:
            print(f"dcmnet: error: {error}", file=sys.stderr)
            return ExitCode.USAGE
    return 0


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command line and turn whatever happened into the exit-code contract."""
    args = list(argv if argv is not None else sys.argv[1:])
    try:
        code = _checked_environment() or _run(args)
    except (Exception, KeyboardInterrupt) as error:
        code = _failed(error, "--debug" in args)
    sys.exit(int(code))


def entry() -> None:
    """The ``dcmnet`` program: :func:`main`, then exit without the interpreter's teardown.

    Module clean-up and garbage collection at exit cost ~4 ms of every run and do nothing useful here:
    every file was closed by its ``with``, worker threads were joined, and the streams are flushed below.
    (Tests call :func:`main` in-process and get a normal ``SystemExit``.)
    """
    try:
        main()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):  # AttributeError: None, a stream closed at start (>&-)
            pass
    os._exit(code)
