"""The live view of ``dcmnet listen`` on a terminal: associations, objects, throughput.

Only built when stderr is a terminal (never for --json, -q, --no-progress or several workers), so rich is
imported only then. Counters are fed from the listener's events under a lock; rich's own refresher
redraws four times a second, and log lines are printed above the live view instead of through it.
"""

from __future__ import annotations

import time
from collections import deque
from typing import IO, Any

from ..transport.threads import Lock

RATE_WINDOW = 5.0
"""Seconds of history behind the MB/s figure."""


class Dashboard:
    def __init__(self, stream: IO[str], title: str, color: bool = True) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=stream, no_color=not color, highlight=False)
        self.title = title
        self._lock = Lock()
        self.active = self.associations = self.rejected = self.stored = self.failed = self.bytes = 0
        self.dropped = 0
        """Connections closed before their A-ASSOCIATE-RQ (idle, slow, too many pending)."""
        self._samples: deque[tuple[float, int]] = deque()
        self._started = time.monotonic()
        self._live = Live(get_renderable=self._render, console=self.console, refresh_per_second=4, transient=True)

    def __enter__(self) -> Dashboard:
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()

    def print(self, text: str, style: str | None = None) -> None:
        """A log line above the live view (App.say sends them here while the dashboard shows)."""
        self.console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)

    def event(self, event: Any) -> None:
        """Count one listener event record."""
        kind = event.event
        with self._lock:
            if kind == "associated":
                self.active += 1
                self.associations += 1
            elif kind == "association":
                self.active = max(0, self.active - 1)
            elif kind == "rejected":
                self.rejected += 1
            elif kind in ("stored", "received"):
                self.stored += 1
                size = int(event.bytes or 0)
                self.bytes += size
                self._samples.append((time.monotonic(), size))
            elif kind == "store-failed":
                self.failed += 1
            elif kind == "dropped":
                self.dropped += int(getattr(event, "connections", 1) or 1)

    def _rate(self) -> float:
        now = time.monotonic()
        while self._samples and self._samples[0][0] < now - RATE_WINDOW:
            self._samples.popleft()
        window = min(RATE_WINDOW, max(now - self._started, 1e-3))
        return sum(size for _, size in self._samples) / window / 1e6

    def _render(self) -> Any:
        from rich.table import Table

        with self._lock:
            rate = self._rate()
            table = Table.grid(padding=(0, 2))
            table.add_row(f"[bold]{self.title}[/bold]")
            table.add_row(
                f"associations: {self.active} active, {self.associations} total, {self.rejected} rejected"
                + (f", {self.dropped} connections dropped" if self.dropped else ""),
                f"objects: {self.stored} stored, {self.failed} failed",
                f"{self.bytes / 1e6:,.1f} MB, {rate:,.1f} MB/s",
            )
        return table
