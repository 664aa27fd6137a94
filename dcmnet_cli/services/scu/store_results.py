"""What a store run reports: one outcome per file, one log per association, and the callbacks that
see them as they happen (progress, -v, --json)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ...errors import DcmnetError
from ..peer import Peer


@dataclass
class FileOutcome:
    """What happened to one input. ``status`` is the peer's answer; ``error`` why there is none."""

    path: str
    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None
    transfer_syntax: str | None = None
    sent_syntax: str | None = None
    status: int | None = None
    bytes: int = 0
    error: DcmnetError | None = None
    attempts: int = 0
    elapsed: float = 0.0

    @property
    def converted(self) -> bool:
        return self.sent_syntax is not None and self.sent_syntax != self.transfer_syntax


@dataclass
class AssociationLog:
    index: int
    files: int
    contexts: int
    accepted: int = 0
    outcome: str = "released"
    detail: str = ""


@dataclass
class StoreResult:
    peer: Peer
    files: list[FileOutcome] = field(default_factory=list)
    associations: list[AssociationLog] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def bytes_sent(self) -> int:
        return sum(f.bytes for f in self.files if f.status is not None)


@dataclass(frozen=True)
class Callbacks:
    """Hooks the CLI uses for progress and per-file lines; called from worker threads (keep them cheap)."""

    on_file: Callable[[FileOutcome], None] = lambda outcome: None
    on_bytes: Callable[[int], None] = lambda count: None
    on_association: Callable[[AssociationLog], None] = lambda log: None
    on_retry: Callable[[str, float], None] = lambda reason, delay: None
    trace: Callable[[str, str], None] | None = None
    """Every PDU as a one-line summary (--debug)."""
    log: Callable[[str], None] | None = None
    """What each association negotiated (-v)."""
