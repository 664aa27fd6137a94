"""A call that might block, made so that blocking fails the test instead of hanging the run."""

from __future__ import annotations

import threading
from typing import Any, Callable

QUICK = 15.0
"""Generous: the calls checked this way end at once when they work, and never when they do not."""


def bounded(call: Callable[..., Any], *args: Any, timeout: float = QUICK) -> Any:
    """``call(*args)`` in a daemon thread: its result, or its exception raised here; fails after ``timeout``."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = call(*args)
        except BaseException as error:  # noqa: BLE001 - handed to the test
            result["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{getattr(call, '__name__', call)}{args} blocked"
    if "error" in result:
        raise result["error"]
    return result["value"]
