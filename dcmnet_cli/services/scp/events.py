"""What ``listen`` (and the receiver inside ``move``/``get``) reports, as typed records.

Every record names its kind in ``event``; :func:`event_dict` turns any of them into the JSON object
``--json`` prints (``event`` first, optional fields left out when empty). The server's own notices
(:mod:`dcmnet_cli.transport.notices`) are part of the same stream.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Union

from ...transport.notices import ServerNotice
from ..session import AssociationReport


class Associated(NamedTuple):
    peer: str
    calling_ae: str
    called_ae: str
    contexts: int
    event: str = "associated"
    user: str | None = None
    """The user identity the requestor gave (PS3.7 D.3.3.7), e.g. ``'alice'``; never a password or token."""


class Rejected(NamedTuple):
    """We answered A-ASSOCIATE-RJ; ``reason_text`` says why in words (PS3.8 Table 9-21)."""

    peer: str
    calling_ae: str
    called_ae: str
    result: int
    source: int
    reason: int
    reason_text: str
    event: str = "rejected"


class AssociationEnded(NamedTuple):
    """One association is over: what it did and how it ended ("released" or "aborted")."""

    peer: str
    calling_ae: str
    called_ae: str
    echoes: int
    stored: int
    failed: int
    bytes: int
    outcome: str
    duration_ms: float
    queries: int = 0
    """C-FIND requests answered (Query/Retrieve and worklist)."""
    retrievals: int = 0
    """C-MOVE and C-GET requests served."""
    event: str = "association"

    @classmethod
    def of(cls, report: AssociationReport) -> "AssociationEnded":
        return cls(report.peer, report.calling_ae, report.called_ae, report.echoes, report.stored, report.failed,
                   report.bytes, report.outcome, report.duration_ms, report.queries, report.retrievals)


STORED, RECEIVED, STORE_FAILED = "stored", "received", "store-failed"


class ObjectOutcome(NamedTuple):
    """One C-STORE answered: ``event`` is "stored" (on disk at ``path``), "received" (``--ignore``) or
    "store-failed" (a failure status; nothing kept)."""

    event: str
    path: str | None
    sop_class_uid: str | None
    sop_instance_uid: str | None
    bytes: int
    status: str
    calling_ae: str
    peer: str
    duplicate: str | None = None
    detail: str | None = None


class UnsafeValue(NamedTuple):
    """A value used in a file name was made path-safe (scenario G)."""

    peer: str
    detail: str
    event: str = "unsafe-value"


class HookFailed(NamedTuple):
    detail: str
    event: str = "hook-error"


ListenEvent = Union[ServerNotice, Associated, Rejected, AssociationEnded, ObjectOutcome, UnsafeValue,
                    HookFailed]
_OPTIONAL = frozenset({"duplicate", "detail", "user"})


def event_dict(record: Any) -> dict[str, Any]:
    """The JSON object of one record: ``event`` first, optional fields only when set."""
    out: dict[str, Any] = {"event": record.event}
    for key, value in record._asdict().items():
        if key != "event" and not (key in _OPTIONAL and value is None):
            out[key] = value
    return out
