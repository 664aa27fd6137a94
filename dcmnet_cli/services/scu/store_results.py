"""What a store run reports: one outcome per file, one log per association, and the callbacks that
see them as they happen (progress, -v, --json).

Plain slotted classes, not dataclasses: this module is on ``dcmnet store``'s start-up path, where building
four dataclasses cost ~3 ms (``bench/importtime.py store``) for nothing a hand-written ``__init__`` lacks.
"""

from __future__ import annotations

from collections.abc import Callable

from ...errors import DcmnetError
from ..peer import Peer


class FileOutcome:
    """What happened to one input. ``status`` is the peer's answer; ``error`` why there is none."""

    __slots__ = ("path", "sop_class_uid", "sop_instance_uid", "transfer_syntax", "sent_syntax", "status", "bytes",
                 "error", "attempts", "elapsed")

    def __init__(self, path: str, sop_class_uid: str | None = None, sop_instance_uid: str | None = None,
                 transfer_syntax: str | None = None, sent_syntax: str | None = None, status: int | None = None,
                 bytes: int = 0, error: DcmnetError | None = None, attempts: int = 0, elapsed: float = 0.0) -> None:
        self.path, self.sop_class_uid, self.sop_instance_uid = path, sop_class_uid, sop_instance_uid
        self.transfer_syntax, self.sent_syntax, self.status, self.bytes = transfer_syntax, sent_syntax, status, bytes
        self.error, self.attempts, self.elapsed = error, attempts, elapsed

    def __repr__(self) -> str:
        return (f"FileOutcome({self.path!r}, status={self.status!r}, error={self.error!r}, bytes={self.bytes}, "
                f"attempts={self.attempts})")

    @property
    def converted(self) -> bool:
        return self.sent_syntax is not None and self.sent_syntax != self.transfer_syntax


class AssociationLog:
    __slots__ = ("index", "files", "contexts", "accepted", "outcome", "detail")

    def __init__(self, index: int, files: int, contexts: int, accepted: int = 0, outcome: str = "released",
                 detail: str = "") -> None:
        self.index, self.files, self.contexts, self.accepted = index, files, contexts, accepted
        self.outcome, self.detail = outcome, detail

    def __repr__(self) -> str:
        return f"AssociationLog({self.index}, files={self.files}, outcome={self.outcome!r}, detail={self.detail!r})"


class StoreResult:
    __slots__ = ("peer", "files", "associations", "elapsed")

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.files: list[FileOutcome] = []
        self.associations: list[AssociationLog] = []
        self.elapsed = 0.0

    @property
    def bytes_sent(self) -> int:
        return sum(f.bytes for f in self.files if f.status is not None)


def _nothing(*args: object) -> None:
    return None


class Callbacks:
    """Hooks the CLI uses for progress and per-file lines; called from worker threads (keep them cheap).
    ``trace`` gets every PDU as a one-line summary (--debug), ``log`` what each association negotiated (-v)."""

    __slots__ = ("on_file", "on_bytes", "on_association", "on_retry", "trace", "log")

    def __init__(self, on_file: Callable[[FileOutcome], None] = _nothing, on_bytes: Callable[[int], None] = _nothing,
                 on_association: Callable[[AssociationLog], None] = _nothing,
                 on_retry: Callable[[str, float], None] = _nothing, trace: Callable[[str, str], None] | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.on_file, self.on_bytes, self.on_association, self.on_retry = on_file, on_bytes, on_association, on_retry
        self.trace, self.log = trace, log
