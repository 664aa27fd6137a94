"""A transfer progress bar on stderr (files, bytes, rate, ETA), built only when stderr is a terminal.

Rich is imported here, lazily, by the commands that draw progress; ``dcmnet echo`` never loads it.
Updates come from worker threads: rich's Progress takes its own lock, and its refresh thread is joined
when the bar stops, so no thread outlives the command.
"""

from __future__ import annotations

from typing import IO, Any

from ..transport.threads import Lock


class TransferProgress:
    """``with TransferProgress(err, files, total_bytes) as bar: bar.advance(n); bar.file_done()``."""

    def __init__(self, stream: IO[str], files: int, total_bytes: int, color: bool = True, label: str = "store") -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.console = Console(file=stream, no_color=not color, highlight=False)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[done]}/{task.fields[files]} files"),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._task = self._progress.add_task(label, total=max(total_bytes, 1), done=0, files=files)
        self._done = 0
        self._lock = Lock()

    def __enter__(self) -> "TransferProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.stop()

    def advance(self, count: int) -> None:
        self._progress.update(self._task, advance=count)

    def file_done(self) -> None:
        with self._lock:
            self._done += 1
            done = self._done
        self._progress.update(self._task, done=done)

    def adjust_total(self, delta: int) -> None:
        """A converted file's size differs from its size on disk."""
        task = self._progress.tasks[0]
        self._progress.update(self._task, total=max((task.total or 0) + delta, 1))

    def print(self, text: str, style: str | None = None) -> None:
        """A log line above the bar (never interleaved with it)."""
        self.console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)
