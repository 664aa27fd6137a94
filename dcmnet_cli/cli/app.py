"""The application context built at invoke time: verbosity, colour, where output goes.

stdout carries results only; stderr carries logs, progress and errors. Rich is imported only by commands
that draw progress, never here, so ``dcmnet echo`` starts fast.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any


class App:
    """Verbosity, colour and the two streams; built by the group callback, passed to every command."""

    def __init__(
        self,
        quiet: bool = False,
        verbose: int = 0,
        debug: bool = False,
        color: bool = True,
        out: IO[str] | None = None,
        err: IO[str] | None = None,
        command: str = "dcmnet",
    ) -> None:
        self.quiet, self.verbose, self.debug, self.command = quiet, verbose, debug, command
        self.color = color and not os.environ.get("NO_COLOR")
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr

    @property
    def err_is_terminal(self) -> bool:
        return self.err.isatty()

    def result(self, text: str) -> None:
        """A result line on stdout (silenced by -q)."""
        if not self.quiet:
            print(text, file=self.out, flush=True)

    def json(self, obj: dict[str, Any]) -> None:
        """One JSON object per line on stdout; never silenced (it is the requested output)."""
        import json  # only --json runs pay for it

        print(json.dumps(obj, separators=(",", ":"), default=str), file=self.out, flush=True)

    def info(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.err, flush=True)

    def detail(self, text: str) -> None:
        """Association and DIMSE detail, shown with -v."""
        if self.verbose and not self.quiet:
            print(text, file=self.err, flush=True)

    def trace(self, direction: str, summary: str) -> None:
        """A PDU summary (--debug)."""
        arrow = "->" if direction == "sent" else "<-"
        print(f"{arrow} {escape(summary)}", file=self.err, flush=True)

    def error(self, text: str) -> None:
        prefix = f"{self.command}: error: "
        if self.color and self.err_is_terminal:
            prefix = f"\x1b[31m{prefix}\x1b[0m"
        print(prefix + text, file=self.err, flush=True)


def escape(text: str) -> str:
    """Peer-supplied text made safe for one log line (scenario C.22)."""
    return text.encode("unicode_escape").decode("ascii").replace('"', '\\"')
