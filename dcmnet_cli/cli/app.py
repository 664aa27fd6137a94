"""The application context built at invoke time: verbosity, colour, where output goes.

stdout carries results only; stderr carries logs, progress and errors. Rich is imported only by commands
that draw progress, never here, so ``dcmnet echo`` starts fast.

Every line a command prints goes through one :class:`App` method: :meth:`App.result` and :meth:`App.json`
for stdout, :meth:`App.say` (by level) and :meth:`App.trace` for stderr. Lines come whole from any thread
(the store jobs, a move's receiver, the listener's associations), and above a live display (a progress
bar, the listen dashboard) while one is showing (:meth:`App.showing`).
"""

from __future__ import annotations

import os
import sys
from ..ul.typenames import IO, Any, Protocol

from ..transport.threads import Lock
from .text import one_line

LEVELS = ("error", "warning", "info", "detail")
"""Levels of :meth:`App.say`: error (always shown), warning and info (unless -q), detail (-v only)."""

_STYLES = {"error": "red", "warning": "yellow"}


class LiveDisplay(Protocol):
    """A progress bar or dashboard drawn on stderr: it prints log lines above itself."""

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: Any) -> Any: ...

    def print(self, text: str, style: str | None = None) -> None: ...


class App:
    """Verbosity, colour and the two streams; built by the group callback, passed to every command.

    The output options given after the command name are merged in by :meth:`apply`.
    """

    def __init__(
        self,
        quiet: bool = False,
        verbose: int = 0,
        debug: bool = False,
        color: bool = True,
        out: IO[str] | None = None,
        err: IO[str] | None = None,
        command: str = "dcmnet",
        json_output: bool = False,
    ) -> None:
        self.quiet, self.verbose, self.debug, self.command = quiet, verbose, debug, command
        self.json_output = json_output
        """--json given before the command name (commands OR it with their own --json)."""
        self.color = color and not os.environ.get("NO_COLOR")
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self._live: LiveDisplay | None = None
        self._lock = Lock()
        self.stdout_optional = False
        """Set by commands whose stdout is a side stream (``listen --json``): when its reader goes away
        (broken pipe) the command goes on without it, after one warning on stderr."""
        self._out_gone = False

    def apply(self, quiet: bool = False, verbose: int = 0, debug: bool = False, no_color: bool = False,
              json_output: bool = False) -> None:
        """Merge output options given after the command name into those given before it.

        The same flag means the same in both places, and the two combine: -v counts add up
        (``dcmnet -v echo ... -v`` is -vv); -q, --debug, --no-color and --json are switches that either
        place turns on. -q wins over -v (only errors are printed); --debug implies -vv.
        """
        self.quiet = self.quiet or quiet
        self.verbose += verbose + (2 if debug and not self.debug else 0)
        self.debug = self.debug or debug
        self.color = self.color and not no_color
        self.json_output = self.json_output or json_output

    @property
    def err_is_terminal(self) -> bool:
        return self.err.isatty()

    def showing(self, display: LiveDisplay | None) -> _Showing:
        """``with app.showing(display):`` draws ``display`` (None: nothing) for the length of the block;
        stderr lines go above it."""
        return _Showing(self, display)

    def capture_warnings(self) -> None:
        """Send Python warnings (pydicom's, about values a peer sent) to the -v log as one escaped line each,
        from any thread: one ``warnings.showwarning`` hook for the process (``catch_warnings`` is not
        thread-safe), installed once by commands that serve peers."""
        import warnings

        def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
            self.say(f"{category.__name__}: {escape(str(message))}", "detail")

        warnings.showwarning = show

    # ------------------------------------------------------------------ stdout

    def result(self, text: str) -> None:
        """A result line on stdout (silenced by -q)."""
        if not self.quiet:
            self._write(self.out, text)

    def json(self, obj: dict[str, Any]) -> None:
        """One JSON object per line on stdout; never silenced (it is the requested output)."""
        import json  # only --json runs pay for it

        self._write_out(json.dumps(obj, separators=(",", ":"), default=str))

    def _write_out(self, line: str) -> None:
        """One line on stdout in one ``os.write`` when stdout is a file descriptor, so lines from several
        processes (``listen --workers``) or threads never interleave, whatever the buffering."""
        if self._out_gone:
            return
        data = (line + "\n").encode("utf-8", "surrogateescape")
        try:
            with self._lock:
                try:
                    fd = self.out.fileno()
                except (AttributeError, OSError, ValueError):
                    self.out.write(line + "\n")
                    self.out.flush()
                    return
                self.out.flush()  # anything written through the text layer goes first
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
        except (BrokenPipeError, ConnectionResetError) if self.stdout_optional else ():
            self._out_gone = True
            self.say("stdout was closed (its reader went away): events are no longer printed; "
                     "receiving goes on", "warning")

    # ------------------------------------------------------------------ stderr

    def say(self, text: str, level: str = "info") -> None:
        """One line on stderr by level (:data:`LEVELS`): "error" always, prefixed ``dcmnet CMD: error:``
        (red on a terminal); "warning" (prefixed, yellow) and "info" unless -q; "detail" only with -v."""
        if level != "error" and (self.quiet or level == "detail" and not self.verbose):
            return
        text = one_line(text)  # a path or name with a line break in it must not make two lines
        prefix = {"error": f"{self.command}: error: ", "warning": f"{self.command}: warning: "}.get(level, "")
        style = _STYLES.get(level) if self.color else None
        live = self._live
        if live is not None:
            with self._lock:
                live.print(prefix + text, style=style)
            return
        if style is not None and level == "error" and self.err_is_terminal:
            prefix = f"\x1b[31m{prefix}\x1b[0m"
        self._write(self.err, prefix + text)

    def info(self, text: str) -> None:
        """``say(text, "info")``: shown unless -q."""
        self.say(text, "info")

    def detail(self, text: str) -> None:
        """``say(text, "detail")``: association and DIMSE detail, shown with -v."""
        self.say(text, "detail")

    def error(self, text: str) -> None:
        """``say(text, "error")``: always shown."""
        self.say(text, "error")

    def trace(self, direction: str, summary: str) -> None:
        """A PDU summary (--debug), shown even with -q: it was asked for."""
        line = f"{'->' if direction == 'sent' else '<-'} {escape(summary)}"
        live = self._live
        if live is not None:
            with self._lock:
                live.print(line)
        else:
            self._write(self.err, line)

    def _write(self, stream: IO[str], line: str) -> None:
        """One whole line, flushed; never interleaved with another thread's."""
        with self._lock:
            stream.write(line + "\n")
            stream.flush()


def escape(text: str) -> str:
    """Peer-supplied text made safe for one log line (scenario C.22)."""
    return text.encode("unicode_escape").decode("ascii").replace('"', '\\"')


class _Showing:
    """:meth:`App.showing`'s block (a class, not ``contextlib.contextmanager``: ``contextlib`` is start-up
    every ``dcmnet store`` would pay). The display is entered first and left last, as a ``with`` around
    the block; what it returns on leaving (suppressing an exception or not) is the block's answer."""

    __slots__ = ("app", "display")

    def __init__(self, app: App, display: LiveDisplay | None) -> None:
        self.app, self.display = app, display

    def __enter__(self) -> None:
        if self.display is not None:
            self.display.__enter__()
            self.app._live = self.display

    def __exit__(self, *exc: Any) -> bool | None:
        if self.display is None:
            return None
        self.app._live = None
        return self.display.__exit__(*exc)
