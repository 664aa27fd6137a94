"""The exit-code contract (DESIGN.md), once: the table, the mapping from errors, the precedence."""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from types import MappingProxyType
from ..ul.typenames import TYPE_CHECKING

from ..errors import (
    AssociationAborted,
    AssociationRejected,
    ConnectError,
    DcmnetError,
    DIMSEError,
    InputError,
    LocalDIMSEError,
    LocalProtocolError,
    NoAcceptedContext,
    PDUDecodeError,
    ProtocolError,
    QueryKeyError,
    RemoteDIMSEError,
    RemoteProtocolError,
    TimeoutExpired,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..dimse.status import Category


class ExitCode(IntEnum):
    SUCCESS = 0
    WARNING = 1
    USAGE = 2
    INPUT = 3
    CONNECT = 4
    REJECTED = 5
    ABORTED = 6
    FAILURE = 7
    CANCELLED = 8
    INTERNAL = 70
    INTERRUPTED = 130


MEANINGS: dict[ExitCode, str] = {
    ExitCode.SUCCESS: "every operation succeeded (for find, zero matches is still 0)",
    ExitCode.WARNING: "completed, at least one Warning status, no failure",
    ExitCode.USAGE: "usage error: bad flag, argument or config",
    ExitCode.INPUT: "local input problem: a file unreadable, not DICOM, or without SOP Class/Instance",
    ExitCode.CONNECT: "cannot connect: refused, unreachable, name not resolved, TCP/TLS handshake failed or timed out",
    ExitCode.REJECTED: "association rejected, or no presentation context accepted for what must be sent",
    ExitCode.ABORTED: "association aborted, protocol error, or ACSE/DIMSE/network timeout mid-operation",
    ExitCode.FAILURE: "at least one operation answered a Failure status, or retrieve sub-operations failed",
    ExitCode.CANCELLED: "cancelled: the peer answered Cancel (0xFE00)",
    ExitCode.INTERNAL: "internal error (a bug): please report it; --debug shows the traceback",
    ExitCode.INTERRUPTED: "interrupted by the user (Ctrl-C)",
}

# When several apply in one run, the first in this list wins (DESIGN.md).
PRECEDENCE = (
    ExitCode.INTERNAL,
    ExitCode.INTERRUPTED,
    ExitCode.USAGE,
    ExitCode.ABORTED,
    ExitCode.REJECTED,
    ExitCode.CONNECT,
    ExitCode.FAILURE,
    ExitCode.CANCELLED,
    ExitCode.INPUT,
    ExitCode.WARNING,
    ExitCode.SUCCESS,
)


def combine(codes: list[ExitCode] | set[ExitCode], warnings_ok: bool = False) -> ExitCode:
    """The one code for a run of many operations: the highest severity wins."""
    present = {ExitCode.SUCCESS if (warnings_ok and c is ExitCode.WARNING) else c for c in codes}
    for code in PRECEDENCE:
        if code in present:
            return code
    return ExitCode.SUCCESS


_BY_CATEGORY: "dict[Category, ExitCode] | None" = None  # built on first use (dimse.status loads lazily)


def for_status(status: int) -> ExitCode:
    """Exit code of one DIMSE status, by the category of PS3.7 Annex C."""
    global _BY_CATEGORY
    from ..dimse.status import Category, category_of

    if _BY_CATEGORY is None:
        _BY_CATEGORY = {
            Category.SUCCESS: ExitCode.SUCCESS,
            Category.WARNING: ExitCode.WARNING,
            Category.CANCEL: ExitCode.CANCELLED,
            Category.PENDING: ExitCode.SUCCESS,
        }
    return _BY_CATEGORY.get(category_of(status), ExitCode.FAILURE)


# Exception class → exit code, one entry per class of errors.py (a test checks none is missing). The
# most-derived class wins: for_error walks the exception's MRO, so a class defined elsewhere (e.g.
# dimse.commandset.CommandSetError, a RemoteDIMSEError) gets the code of its nearest listed base.
# Anything not listed at all is a bug: 70.
ERROR_CODES: Mapping[type[BaseException], ExitCode] = MappingProxyType({
    KeyboardInterrupt: ExitCode.INTERRUPTED,
    DcmnetError: ExitCode.INTERNAL,  # raised bare only by mistake: a more specific class is always meant
    QueryKeyError: ExitCode.USAGE,  # a -k value its VR cannot hold, found before any association
    LocalDIMSEError: ExitCode.INPUT,  # our identifier does not encode: nothing was sent for it
    InputError: ExitCode.INPUT,
    ConnectError: ExitCode.CONNECT,
    AssociationRejected: ExitCode.REJECTED,
    NoAcceptedContext: ExitCode.REJECTED,
    AssociationAborted: ExitCode.ABORTED,
    TimeoutExpired: ExitCode.ABORTED,
    ProtocolError: ExitCode.ABORTED,
    RemoteProtocolError: ExitCode.ABORTED,
    PDUDecodeError: ExitCode.ABORTED,
    # Our side broke the state table (e.g. sending after the peer's abort raced ours): the association is
    # gone all the same, and the contract counts a protocol error as 6.
    LocalProtocolError: ExitCode.ABORTED,
    DIMSEError: ExitCode.ABORTED,  # unclassified DIMSE error: treated as the peer's, as before the split
    RemoteDIMSEError: ExitCode.ABORTED,
})


def for_error(error: BaseException) -> ExitCode:
    """Exit code for an exception reaching the CLI: the entry of its most-derived class in ERROR_CODES."""
    for cls in type(error).__mro__:
        code = ERROR_CODES.get(cls)
        if code is not None:
            return code
    return ExitCode.INTERNAL


def table_text() -> str:
    """The table as shown in ``dcmnet --help`` and the man pages."""
    return "\n".join(f"{int(code):>4}  {MEANINGS[code]}" for code in ExitCode)
