"""Request/response plumbing shared by every SCU: open an association, await a response, release."""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

from ...dimse.assembler import CommandReceived, DatasetFragment, InvalidCommand, MessageComplete
from ...dimse.commandset import Message
from ...errors import AssociationAborted, DIMSEError, NoAcceptedContext, TimeoutExpired
from ...transport.channel import Channel
from ...transport.client import Timeouts, open_association
from ...ul.association import Aborted, ReleaseRequested
from ...ul.items import PresentationContextRQ, RoleSelection, SOPClassExtendedNegotiation, UserIdentityRQ
from ...ul.negotiation import DEFAULT_MAX_PDU, AcceptedContext, build_request
from ..peer import Peer


def associate(
    peer: Peer,
    calling_ae: str,
    contexts: Sequence[PresentationContextRQ],
    timeouts: Timeouts,
    max_pdu: int = DEFAULT_MAX_PDU,
    roles: Sequence[RoleSelection] = (),
    user_identity: UserIdentityRQ | None = None,
    trace: Callable[[str, str], None] | None = None,
    log: Callable[[str], None] | None = None,
    extended: Sequence[SOPClassExtendedNegotiation] = (),
) -> Channel:
    """Open an association; ``log`` gets a one-line account of what was negotiated (-v).
    ``extended``: SOP Class Extended Negotiation sub-items to propose (e.g. C-FIND relational queries)."""
    request = build_request(peer.called_ae, calling_ae, contexts, max_pdu, roles, user_identity, extended)
    channel = open_association(peer.host, peer.port, request, timeouts, trace=trace, tls=peer.tls)
    if log is not None:
        log(describe_association(channel))
    return channel


def describe_association(channel: Channel) -> str:
    assoc = channel.assoc
    ac = assoc.accept_pdu
    info = ac.user_info if ac is not None else None
    accepted = ", ".join(f"{c.context_id}:{c.abstract_syntax}/{c.transfer_syntax}" for c in assoc.contexts.values())
    implementation = f"{info.implementation_class_uid} {info.implementation_version_name or ''}".strip() if info else "?"
    version = getattr(channel.sock, "version", None)  # an ssl.SSLSocket
    over = f" over {version()} {channel.sock.cipher()[0]}" if callable(version) else ""  # type: ignore[attr-defined]
    return (f"associated with {channel.peer}{over}: {len(assoc.contexts)} context(s) accepted [{accepted}], "
            f"peer max PDU {assoc.peer_max_pdu}, peer implementation {implementation}")


def context_for(channel: Channel, abstract_syntax: str, transfer_syntax: str | None = None) -> AcceptedContext:
    """The accepted context for an abstract syntax (and syntax, if given), or NoAcceptedContext (exit 5)."""
    for context in channel.assoc.contexts.values():
        if context.abstract_syntax == abstract_syntax and transfer_syntax in (None, context.transfer_syntax):
            return context
    raise NoAcceptedContext(f"the peer accepted no presentation context for {abstract_syntax}")


def responses(
    channel: Channel, message_id: int, timeout: float | None, expected: int | None = None, what: str = "DIMSE response"
) -> Iterator[tuple[Message, bytes | None]]:
    """Yield ``(response, data set bytes or None)`` for each response to ``message_id``, pending ones included.

    The timeout (the DIMSE timeout) bounds the silence between two events, so a long run of pending
    responses never trips it. ``expected`` is the response's command field, when only one is valid.
    Anything else from the peer aborts the association and raises.
    """
    dataset: list[bytes] | None = None
    response: Message | None = None
    while True:
        try:
            event = channel.next_event(timeout)
        except TimeoutExpired:
            channel.abort()
            raise TimeoutExpired(f"no {what} within {timeout:g} s (DIMSE timeout)") from None
        if event is None:
            raise AssociationAborted(f"the peer closed the connection while a {what} was outstanding")
        if isinstance(event, Aborted):
            raise AssociationAborted(event.message, event.source, event.reason)
        if isinstance(event, ReleaseRequested):
            channel.abort()
            raise AssociationAborted(f"the peer asked to release while a {what} was outstanding")
        if isinstance(event, InvalidCommand):
            channel.abort()
            raise DIMSEError(f"malformed response from the peer: {event.error}")
        if isinstance(event, CommandReceived):
            response = event.message
            wrong_field = expected is not None and response.command_field != expected
            if wrong_field or not response.is_response or response.message_id_being_responded_to != message_id:
                channel.abort()
                raise DIMSEError(f"unexpected {response.name} from the peer (expected a {what} to message {message_id})")
            dataset = [] if event.has_dataset else None
        elif isinstance(event, DatasetFragment) and dataset is not None:
            dataset.append(bytes(event.data))
        elif isinstance(event, MessageComplete) and response is not None:
            yield response, (b"".join(dataset) if dataset is not None else None)
            response, dataset = None, None


def await_response(channel: Channel, message_id: int, timeout: float | None) -> tuple[Message, bytes | None]:
    """The one (final) response to a request that has no pending responses (C-ECHO, C-STORE)."""
    return next(responses(channel, message_id, timeout))
