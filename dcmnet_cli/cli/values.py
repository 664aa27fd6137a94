"""Checks of option values that both parsers share: click's callbacks (:mod:`.options`) and the click-free
fast path (:mod:`.fastpath`) call these, so the two accept exactly the same values.

Each check returns the value to use or raises :class:`ValueError` with the message click shows (the click
callbacks turn it into ``click.BadParameter``). No click import here: ``dcmnet echo`` starts without it.
"""

from __future__ import annotations

from ..ul.typenames import Any


class UsageProblem(Exception):
    """A usage error (exit 2) found without click: ``bad`` is click's BadParameter (``Invalid value``,
    ``for PARAM_HINT`` when given), else click's UsageError."""

    def __init__(self, message: str, bad: bool = True, param_hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.bad, self.param_hint = message, bad, param_hint



def ae_title(value: str | None) -> str | None:
    """AE titles: 1-16 characters, no backslash or control characters (PS3.5 AE VR)."""
    if value is None:
        return value
    if not 0 < len(value.strip(" ")) <= 16 or "\\" in value or any(ord(c) < 32 or ord(c) > 126 for c in value):
        raise ValueError(f"{value!r} is not a valid AE title (1-16 printable ASCII characters, no backslash)")
    return value


_INF = float("inf")
MAX_SECONDS = 1_000_000
"""The longest wait an option takes (11.6 days): ``nan``, ``inf`` and ``1e999`` are floats to Python, and a
finite 1e20 overflows ``settimeout``, ``time.sleep`` and ``Event.wait``; each is refused here, not found
by one of them in the middle of a run."""


def positive_seconds(value: float | None) -> float | None:
    if value is not None and not 0 < value <= MAX_SECONDS:
        raise ValueError(f"must be a positive number of seconds, at most {MAX_SECONDS}")
    return value


def seconds_or_unlimited(value: float | None) -> float | None:
    """Timeouts a CI run must be able to rely on: finite by default, 0 lifts the limit."""
    if value is None or value == 0:
        return None
    if not 0 < value <= MAX_SECONDS:
        raise ValueError(f"must be a number of seconds up to {MAX_SECONDS} (0 = no limit)")
    return value


def seconds_from_zero(value: float | None) -> float | None:
    """An interval or a grace period: 0 to :data:`MAX_SECONDS` seconds."""
    if value is not None and not 0 <= value <= MAX_SECONDS:
        raise ValueError(f"must be a number of seconds from 0 to {MAX_SECONDS}")
    return value


def finite_number(value: float | None) -> float | None:
    """Any other float option (a rate: its range is click's): not ``nan`` nor infinite."""
    if value is not None and not -_INF < value < _INF:
        raise ValueError(f"{value} is not a finite number")
    return value


def jobs_value(value: Any) -> int:
    """``store -j``: a number of associations (1 to 64), or ``auto`` (0: chosen once the files are known)."""
    if isinstance(value, int):
        return value
    text = str(value).strip().lower()
    if text == "auto":
        return 0
    if text.isascii() and text.isdigit() and 1 <= int(text) <= 64:
        return int(text)
    raise ValueError(f"{value!r} is not a number from 1 to 64 or 'auto'")


TYPES: dict[str, Any] = {"Jobs": jobs_value}
"""Our own click parameter types (by the class name :mod:`.argspec` records): the conversion each one's
``convert`` calls, for the fast path."""

CHECKS: dict[str, Any] = {
    "dcmnet_cli.cli.options.ae_title": ae_title,
    "dcmnet_cli.cli.options.positive_seconds": positive_seconds,
    "dcmnet_cli.cli.options.seconds_or_unlimited": seconds_or_unlimited,
    "dcmnet_cli.cli.options.finite_number": finite_number,
    "dcmnet_cli.cli.options.seconds_from_zero": seconds_from_zero,
}
"""The click callbacks (by the name :mod:`.argspec` records) the fast path can apply itself: each is a
one-line wrapper of the check here. A parameter with any other callback makes the fast path decline."""
