"""The fields every ``--json`` summary shares (echo, store, move, get), with one name and type each.

    peer        "host:port" of the node called (str)
    called_ae   the peer's AE title (str)
    calling_ae  our AE title (str)
    status      the DIMSE status that decided the outcome, "0x0000" form (str, null when none was received)
    elapsed_s   wall-clock seconds of the whole operation (float, 3 decimals)
    exit_code   the process's exit code (int)
    identity    only when a user identity was presented (--user, --jwt-env...): {type, user,
                response_requested, confirmed, server_response_bytes}; never a password or token

``listen --json`` events use the same names where they carry the same thing (``peer``, ``calling_ae``,
``called_ae``, ``status``, and ``elapsed_s`` on association events).
"""

from __future__ import annotations

from typing import Any


def status_text(status: int | None) -> str | None:
    """A DIMSE status as the JSON shows it: ``"0x0000"``, or None."""
    return None if status is None else f"0x{status:04X}"


def head(target: Any, calling_ae: str, status: int | None) -> dict[str, Any]:
    """The leading shared fields of a summary: peer, called_ae, calling_ae, status (and identity)."""
    from ..services.scu.identity import json_field

    return {"peer": str(target), "called_ae": target.called_ae, "calling_ae": calling_ae, "status": status_text(status),
            **json_field(target)}


def tail(elapsed_s: float, exit_code: int) -> dict[str, Any]:
    """The trailing shared fields of a summary: elapsed_s, exit_code."""
    return {"elapsed_s": round(elapsed_s, 3), "exit_code": int(exit_code)}
