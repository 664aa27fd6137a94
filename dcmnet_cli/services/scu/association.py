"""What every SCU does first: open an association (as a :class:`Session`), describe it, find a context."""

from __future__ import annotations

from ... import counted
from ...errors import AssociationRejected, DcmnetError, NoAcceptedContext
from ...transport.channel import Driver
from ...transport.client import Timeouts, open_association, release
from ...ul.items import PresentationContextRQ, RoleSelection, SOPClassExtendedNegotiation, UserIdentityRQ
from ...ul.negotiation import DEFAULT_MAX_PDU, AcceptedContext, build_request
from ..peer import Peer
from ..session import HandlerFactory, Session
from .identity import Identity, IdentityNotConfirmed, identity_of

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence


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
    handlers: Mapping[int, HandlerFactory] | None = None,
    async_ops: int = 1,
) -> Session:
    """Open an association; ``log`` gets a one-line account of what was negotiated (-v).
    ``extended``: SOP Class Extended Negotiation sub-items to propose (e.g. C-FIND relational queries).
    ``handlers``: the requests the peer may send us on it (C-GET's C-STORE sub-operations).
    ``async_ops``: operations we propose to keep outstanding (PS3.7 D.3.3.3, store --async).
    The peer's user identity (``peer.identity``, PS3.7 D.3.3.7) is proposed unless ``user_identity`` is
    given; its answer is recorded there (:func:`check_identity`)."""
    identity = identity_of(peer)
    if user_identity is None and identity is not None:
        user_identity = identity.request
    request = build_request(peer.called_ae, calling_ae, contexts, max_pdu, roles, user_identity, extended)
    if async_ops > 1:
        from ...ul.async_window import propose

        request = propose(request, async_ops)
    try:
        channel = open_association(peer.host, peer.port, request, timeouts, trace=trace, tls=peer.tls)
    except AssociationRejected as rejected:
        if user_identity is None or rejected.source != 1 or rejected.reason != 1:
            raise
        raise AssociationRejected(rejected.result, rejected.source, rejected.reason,
                                  f"{rejected} (we sent a user identity, {user_identity.describe()}: a peer that "
                                  f"checks identities refuses a wrong password or unknown user this way)") from None
    if log is not None:
        log(describe_association(channel))
    if identity is not None and user_identity is identity.request:
        check_identity(channel, identity, timeouts, log)
    return Session(channel, handlers)


def check_identity(channel: Driver, identity: Identity, timeouts: Timeouts, log: Callable[[str], None] | None = None) -> None:
    """Record the peer's User Identity answer (-v says what it was); when a positive response was asked
    for and none came, release the association (nothing was sent on it) and raise IdentityNotConfirmed."""
    ac = channel.assoc.accept_pdu
    try:
        identity.record(ac.user_info.user_identity_response if ac is not None else None)
    except IdentityNotConfirmed:
        try:
            release(channel, timeouts.acse)
        except DcmnetError:
            channel.abort()
        raise
    finally:
        if log is not None:
            log(identity.describe_answer())


def describe_association(channel: Driver) -> str:
    """The -v association line: every accepted context with its abstract and transfer syntax named
    (``Name (uid)`` from static tables, the UID alone when unknown); the tables are loaded only here (-v)."""
    from ...part10.uidnames import described

    assoc = channel.assoc
    ac = assoc.accept_pdu
    info = ac.user_info if ac is not None else None
    accepted = ", ".join(f"{c.context_id}:{described(c.abstract_syntax)}/{described(c.transfer_syntax)}"
                         for c in assoc.contexts.values())
    implementation = f"{info.implementation_class_uid} {info.implementation_version_name or ''}".strip() if info else "?"
    return (f"associated with {channel.peer}{channel.security()}: {counted(len(assoc.contexts), 'context')} accepted [{accepted}], "
            f"peer max PDU {assoc.peer_max_pdu}, peer implementation {implementation}")


def context_for(session: Session, abstract_syntax: str, transfer_syntax: str | None = None) -> AcceptedContext:
    """The accepted context for an abstract syntax (and syntax, if given), or NoAcceptedContext (exit 5)."""
    for context in session.contexts.values():
        if context.abstract_syntax == abstract_syntax and transfer_syntax in (None, context.transfer_syntax):
            return context
    raise NoAcceptedContext(f"the peer accepted no presentation context for {abstract_syntax}")
