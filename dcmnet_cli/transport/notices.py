"""What the accept loop and its workers report about connections, as typed records (logs, ``--json``).

Each record names its kind in ``event`` (the JSON object's first key); the rest are its fields.
"""

from __future__ import annotations

from typing import NamedTuple, Union


class ConnectionRefused(NamedTuple):
    """Closed at once: more half-open connections than the server keeps threads for."""

    peer: str
    reason: str
    event: str = "connection-refused"


class LimitRejected(NamedTuple):
    """A-ASSOCIATE-RJ (transient, local limit exceeded): ``--max-associations`` are busy."""

    peer: str
    reason: str = "local limit exceeded"
    event: str = "rejected"


class TLSEstablished(NamedTuple):
    peer: str
    detail: str
    event: str = "tls"


class TLSFailed(NamedTuple):
    peer: str
    detail: str
    event: str = "tls-error"


class ProtocolViolation(NamedTuple):
    """The connection ended before a whole A-ASSOCIATE-RQ (garbage, an abort, a close)."""

    peer: str
    detail: str
    event: str = "protocol-error"


class AssociationFailed(NamedTuple):
    """An association ended by one of the package's errors (a timeout, a broken peer)."""

    peer: str
    detail: str
    event: str = "error"


class InternalFailure(NamedTuple):
    """A bug in a handler: the association was aborted, the server goes on."""

    peer: str
    detail: str
    event: str = "internal-error"


ServerNotice = Union[ConnectionRefused, LimitRejected, TLSEstablished, TLSFailed, ProtocolViolation,
                     AssociationFailed, InternalFailure]
