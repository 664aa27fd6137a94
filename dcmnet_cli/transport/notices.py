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


class ConnectionsDropped(NamedTuple):
    """Connections closed before their whole A-ASSOCIATE-RQ (too many pending, ARTIM expired), logged at
    most once per few seconds per reason: ``connections`` since the last such record; ``peer`` the address, or
    "N addresses"."""

    peer: str
    detail: str
    connections: int
    event: str = "dropped"


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
    """The peer broke the protocol (garbage instead of an A-ASSOCIATE-RQ, a PDU its state does not allow):
    a fault of the peer, never of ours."""

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


ServerNotice = Union[ConnectionRefused, ConnectionsDropped, LimitRejected, TLSEstablished, TLSFailed, ProtocolViolation,
                     AssociationFailed, InternalFailure]
