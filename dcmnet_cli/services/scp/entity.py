"""The application side of ``dcmnet listen``: negotiation policy, handlers, and one association's service.

Services register a handler per command field; C-ECHO is built in. The event loop, the answers to
requests nobody handles (0x0211), to malformed ones (0xC000) and to requests that do not fit their
context (0x0122) are the :class:`~dcmnet_cli.services.session.Session`'s, shared with every SCU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Sequence

from ...dimse.commandset import C_ECHO_RQ, VERIFICATION_SOP_CLASS, c_echo_rsp
from ...dimse.status import CANNOT_UNDERSTAND
from ...part10.syntaxes import UNCOMPRESSED as ALL_UNCOMPRESSED
from ...transport.channel import Driver
from ...transport.server import Server
from ...ul.negotiation import (DEFAULT_MAX_PDU, AcceptorPolicy, describe_rejection, identity_label,
                               negotiate_acceptor_explained)
from ...ul.async_window import grant
from ...ul.pdu import AssociateAC, AssociateRJ, AssociateRQ
from ..session import AssociationReport, HandlerFactory, MessageHandler, Session
from .events import Associated, AssociationEnded, ListenEvent, Rejected


class EchoHandler(MessageHandler):
    def complete(self, dataset: bytes | None) -> None:
        self.session.report.echoes += 1
        message = self.message
        assert message.message_id is not None
        # A C-ECHO-RQ never carries a data set (PS3.7 §9.3.5, scenario F.35).
        status = CANNOT_UNDERSTAND if message.has_dataset else 0
        sop_class = message.affected_sop_class_uid or VERIFICATION_SOP_CLASS
        self.session.send(self.context_id, c_echo_rsp(message.message_id, status, sop_class))


@dataclass
class ApplicationEntity:
    """Policy plus handlers: what ``listen`` is, independent of sockets (the server calls it)."""

    policy: AcceptorPolicy
    handlers: dict[int, HandlerFactory] = field(default_factory=lambda: {C_ECHO_RQ: EchoHandler})
    on_event: Callable[[ListenEvent], None] = lambda event: None
    idle_timeout: float | None = None
    on_association_end: Callable[[AssociationReport], None] | None = None
    """Run after every association (e.g. ``--exec-on-association-end``), after its event is logged."""
    on_release: Callable[[AssociationReport], None] | None = None
    """Run when the peer asks to release, before the A-RELEASE-RP is sent."""
    async_window: int = 1
    """Requests a requestor may keep outstanding when it proposes a window (PS3.7 D.3.3.3); answered in order."""

    def negotiate(self, request: AssociateRQ, peer: str) -> AssociateAC | AssociateRJ:
        answer, problem = negotiate_acceptor_explained(request, self.policy)
        if isinstance(answer, AssociateRJ):
            text = describe_rejection(answer)[0] + (f" ({problem})" if problem else "")
            self.on_event(Rejected(peer, request.calling_ae, request.called_ae, answer.result, answer.source,
                                   answer.reason, text))
            return answer
        from .find_handler import extended_answer  # relational C-FIND (no reply unless the peer asked)

        return extended_answer(request, grant(request, answer, self.async_window))

    def serve(self, channel: Driver) -> None:
        request = channel.assoc.request_pdu
        assert request is not None
        report = AssociationReport(channel.peer, request.calling_ae, request.called_ae)
        self.on_event(Associated(channel.peer, request.calling_ae, request.called_ae, len(channel.assoc.contexts),
                                 user=identity_label(request, self.policy)))
        report.outcome = "aborted"
        try:
            on_release = self.on_release
            report.outcome = Session(channel, self.handlers, report).serve(
                self.idle_timeout, None if on_release is None else lambda: on_release(report))
        finally:
            self.on_event(AssociationEnded.of(report))
            if self.on_association_end is not None:
                self.on_association_end(report)


class ListenerSettings(NamedTuple):
    """Who we are and how the accept loop behaves; one record for `listen` and `move --store-port`."""

    ae_title: str
    host: str
    port: int
    max_pdu: int = DEFAULT_MAX_PDU
    require_called_aet: bool = False
    allowed_calling_aets: frozenset[str] | None = None
    max_associations: int = 64
    artim_timeout: float = 30.0
    network_timeout: float | None = None
    reuse_port: bool = False
    tls: Any = None
    """An ``ssl.SSLContext`` for the server side, or None for plain TCP."""
    async_window: int = 16
    """Outstanding requests granted to a requestor that proposes a window (``listen --async-window``)."""
    identity: Any = None
    """A :class:`~.identity.IdentityPolicy` (``listen --users/--jwt-key/--require-identity``), or None."""
    scp_roles: Any = None
    """``AcceptorPolicy.scp_roles``: classes a C-GET requestor may take the SCP role for (with an index)."""
    held_syntaxes: Any = None
    """``AcceptorPolicy.held_syntaxes``: per class, the syntaxes the index holds (C-GET contexts prefer them)."""


VERIFICATION_ONLY: dict[str, Sequence[str]] = {VERIFICATION_SOP_CLASS: ALL_UNCOMPRESSED}


def build_listener(
    settings: ListenerSettings,
    contexts: Any = None,
    handlers: dict[int, HandlerFactory] | None = None,
    on_event: Callable[[ListenEvent], None] = lambda event: None,
    trace: Callable[[str, str, str], None] | None = None,
    on_association_end: Callable[[AssociationReport], None] | None = None,
    on_release: Callable[[AssociationReport], None] | None = None,
) -> Server:
    """A Server whose associations run an ApplicationEntity with this policy and these handlers."""
    policy = AcceptorPolicy(
        ae_title=settings.ae_title,
        contexts=VERIFICATION_ONLY if contexts is None else contexts,
        require_called_aet=settings.require_called_aet,
        allowed_calling_aets=settings.allowed_calling_aets,
        max_pdu=settings.max_pdu,
    )
    if settings.scp_roles is not None:
        policy = policy._replace(scp_roles=settings.scp_roles, held_syntaxes=settings.held_syntaxes)
    if settings.identity is not None:
        policy = settings.identity.apply(policy)
    entity = ApplicationEntity(policy, on_event=on_event, idle_timeout=settings.network_timeout,
                               on_association_end=on_association_end, on_release=on_release,
                               async_window=settings.async_window)
    if handlers is not None:
        entity.handlers = handlers
    return Server(entity, host=settings.host, port=settings.port, max_associations=settings.max_associations,
                  artim_timeout=settings.artim_timeout, network_timeout=settings.network_timeout,
                  max_receive=settings.max_pdu, reuse_port=settings.reuse_port, log=on_event, trace=trace,
                  tls=settings.tls)
