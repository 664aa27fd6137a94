"""One exception tree for the whole package.

The CLI maps these to exit codes (see ``cli/exitcodes.py``, one table entry per class here); services and
the core raise only these. Protocol errors carry the A-ABORT reason to send (PS3.8 §9.3.8, Table 9-26) so
the driver never has to guess what to put on the wire.

Whose fault, as in h11: a ``Local…`` error is our side (our input, or our own code), a ``Remote…`` error
is the peer's (bytes or messages we cannot accept). The split decides the exit code: our bad input is a
usage (2) or input (3) problem, never reported as the peer's fault (6) or as a bug (70).
"""

from __future__ import annotations

from enum import IntEnum


class AbortReason(IntEnum):
    """A-ABORT reason/diag when the source is the service provider (PS3.8 Table 9-26)."""

    NOT_SPECIFIED = 0
    UNRECOGNIZED_PDU = 1
    UNEXPECTED_PDU = 2
    UNRECOGNIZED_PDU_PARAMETER = 4
    UNEXPECTED_PDU_PARAMETER = 5
    INVALID_PDU_PARAMETER_VALUE = 6


class DcmnetError(Exception):
    """Base of every error dcmnet raises on purpose."""


class ProtocolError(DcmnetError):
    """The protocol was broken; ``reason`` is the A-ABORT reason that describes it."""

    def __init__(self, message: str, reason: AbortReason = AbortReason.INVALID_PDU_PARAMETER_VALUE) -> None:
        super().__init__(message)
        self.reason = reason


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes or a PDU sequence we cannot accept: abort the association."""


class LocalProtocolError(ProtocolError):
    """Our own code asked for something the state machine forbids: nothing was sent (a bug or misuse)."""


class PDUDecodeError(RemoteProtocolError):
    """A PDU, item or sub-item could not be decoded."""


class DIMSEError(DcmnetError):
    """A DIMSE message (command set or data set) could not be built or read. Raise a subclass, which
    says whose fault it is; ``except DIMSEError`` catches both."""


class LocalDIMSEError(DIMSEError):
    """We cannot build a message from our own input (e.g. an identifier that does not encode): nothing
    was sent for it (exit 3)."""


class QueryKeyError(LocalDIMSEError, ValueError):
    """A query/retrieve key typed by the user (``-k``) has a value its attribute's VR cannot hold, e.g.
    ``Rows=70000`` (US: 0..65535): a usage error caught before any association (exit 2). Also a
    ValueError, so key-parsing callers that catch ValueError see it."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class RemoteDIMSEError(DIMSEError):
    """The peer sent a malformed or unexpected DIMSE message (bad command set, undecodable identifier,
    a response to another request): the association is aborted (exit 6)."""


class InputError(DcmnetError):
    """A local input (a file, a path) is unusable: nothing was sent for it (exit 3)."""


class ConnectError(DcmnetError):
    """The TCP (or TLS) connection could not be set up (exit 4)."""


class AssociationRejected(DcmnetError):
    """The peer answered A-ASSOCIATE-RJ (exit 5). result/source/reason are the PS3.8 Table 9-21 values."""

    def __init__(self, result: int, source: int, reason: int, message: str | None = None) -> None:
        self.result = result
        self.source = source
        self.reason = reason
        super().__init__(message or f"association rejected (result {result}, source {source}, reason {reason})")


class NoAcceptedContext(DcmnetError):
    """No presentation context was accepted for what must be sent (exit 5)."""


class AssociationAborted(DcmnetError):
    """The association was aborted by the peer (A-ABORT) or the provider (A-P-ABORT) (exit 6)."""

    def __init__(self, message: str, source: int | None = None, reason: int | None = None) -> None:
        super().__init__(message)
        self.source = source
        self.reason = reason


class TimeoutExpired(DcmnetError):
    """An ACSE, DIMSE or network timeout expired mid-operation (exit 6)."""
