"""The application side of ``dcmnet listen``: negotiation policy and the DIMSE dispatch loop.

Services register a handler per command field; C-ECHO is built in. A command nobody handles is answered
with 0x0211 (unrecognised operation); a malformed command with a known Message ID gets a 0xC000-family
failure (scenario F.34), never an exception.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Sequence

from ...dimse.assembler import CommandReceived, DatasetFragment, InvalidCommand, MessageComplete
from ...dimse.commandset import C_ECHO_RQ, VERIFICATION_SOP_CLASS, Message, c_echo_rsp
from ...transport.channel import Channel
from ...transport.server import Server
from ...ul.association import Aborted, ReleaseRequested
from ...ul.negotiation import DEFAULT_MAX_PDU, AcceptorPolicy, describe_rejection, negotiate_acceptor
from ...ul.pdu import AssociateAC, AssociateRJ, AssociateRQ

UNRECOGNIZED_OPERATION = 0x0211
CANNOT_UNDERSTAND = 0xC000
ALL_UNCOMPRESSED = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2")


@dataclass
class AssociationReport:
    """What one association did, for logs and ``--json``."""

    peer: str
    calling_ae: str
    called_ae: str
    started: float = field(default_factory=time.monotonic)
    echoes: int = 0
    stored: int = 0
    failed: int = 0
    bytes: int = 0
    outcome: str = "released"

    def as_dict(self) -> dict:
        return {
            "event": "association",
            "peer": self.peer,
            "calling_ae": self.calling_ae,
            "called_ae": self.called_ae,
            "echoes": self.echoes,
            "stored": self.stored,
            "failed": self.failed,
            "bytes": self.bytes,
            "outcome": self.outcome,
            "duration_ms": round((time.monotonic() - self.started) * 1000, 3),
        }


class MessageHandler:
    """Receives one DIMSE request (command, data set fragments) and answers it."""

    def begin(self, channel: Channel, context_id: int, message: Message, report: AssociationReport) -> None: ...

    def fragment(self, data: memoryview, last: bool) -> None: ...

    def complete(self) -> None: ...

    def abandon(self) -> None:
        """The association ended mid-message: undo partial work (temp files)."""


class EchoHandler(MessageHandler):
    def begin(self, channel: Channel, context_id: int, message: Message, report: AssociationReport) -> None:
        self.channel, self.context_id, self.message, self.report = channel, context_id, message, report

    def complete(self) -> None:
        self.report.echoes += 1
        assert self.message.message_id is not None
        # A C-ECHO-RQ never carries a data set (PS3.7 §9.3.5, scenario F.35).
        status = CANNOT_UNDERSTAND if self.message.has_dataset else 0
        sop_class = self.message.affected_sop_class_uid or VERIFICATION_SOP_CLASS
        self.channel.send_message(self.context_id, c_echo_rsp(self.message.message_id, status, sop_class))


@dataclass
class ApplicationEntity:
    """Policy plus handlers: what ``listen`` is, independent of sockets (the server calls it)."""

    policy: AcceptorPolicy
    handlers: dict[int, Callable[[], MessageHandler]] = field(default_factory=lambda: {C_ECHO_RQ: EchoHandler})
    on_event: Callable[[dict], None] = lambda event: None
    idle_timeout: float | None = None

    def negotiate(self, request: AssociateRQ, peer: str) -> AssociateAC | AssociateRJ:
        answer = negotiate_acceptor(request, self.policy)
        if isinstance(answer, AssociateRJ):
            self.on_event({"event": "rejected", "peer": peer, "calling_ae": request.calling_ae,
                           "called_ae": request.called_ae, "result": answer.result, "source": answer.source,
                           "reason": answer.reason, "reason_text": describe_rejection(answer)[0]})
        return answer

    def serve(self, channel: Channel) -> None:
        request = channel.assoc.request_pdu
        assert request is not None
        report = AssociationReport(channel.peer, request.calling_ae, request.called_ae)
        self.on_event({"event": "associated", "peer": channel.peer, "calling_ae": request.calling_ae,
                       "called_ae": request.called_ae, "contexts": len(channel.assoc.contexts)})
        current: MessageHandler | None = None
        released = False
        try:
            while True:
                event = channel.next_event(self.idle_timeout)
                if event is None or isinstance(event, Aborted):
                    report.outcome = "released" if released and event is None else "aborted"
                    return
                if isinstance(event, ReleaseRequested):
                    released = True
                    channel.assoc.release_response()
                    channel.flush()
                    continue  # Sta13: the peer closes (or ARTIM), then next_event returns None
                if isinstance(event, CommandReceived):
                    current = self._begin(channel, event, report)
                elif isinstance(event, InvalidCommand):
                    self._invalid(channel, event)
                elif isinstance(event, DatasetFragment):
                    report.bytes += len(event.data)
                    if current is not None:
                        current.fragment(event.data, event.last)
                elif isinstance(event, MessageComplete):
                    if current is not None:
                        handler, current = current, None
                        handler.complete()
        except BaseException:
            report.outcome = "aborted"
            raise
        finally:
            if current is not None:
                current.abandon()
            self.on_event(report.as_dict())

    def _begin(self, channel: Channel, event: CommandReceived, report: AssociationReport) -> MessageHandler | None:
        factory = self.handlers.get(event.message.command_field)
        if factory is None:
            if event.message.message_id is not None and not event.message.is_response:
                response = Message(event.message.command_field | 0x8000, message_id_being_responded_to=event.message.message_id,
                                   affected_sop_class_uid=event.message.affected_sop_class_uid, status=UNRECOGNIZED_OPERATION)
                channel.send_message(event.context_id, response)
            return _Discard()
        handler = factory()
        handler.begin(channel, event.context_id, event.message, report)
        return handler

    @staticmethod
    def _invalid(channel: Channel, event: InvalidCommand) -> None:
        error = event.error
        field_ = error.command_field if error.command_field is not None else 0
        response = Message((field_ | 0x8000) & 0xFFFF, message_id_being_responded_to=error.message_id,
                           status=CANNOT_UNDERSTAND, error_comment=str(error)[:64])
        channel.send_message(event.context_id, response)


class _Discard(MessageHandler):
    """Swallows the data set of a request we already answered."""


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


VERIFICATION_ONLY: dict[str, Sequence[str]] = {VERIFICATION_SOP_CLASS: ALL_UNCOMPRESSED}


def build_listener(
    settings: ListenerSettings,
    contexts: Any = None,
    handlers: dict[int, Callable[[], MessageHandler]] | None = None,
    on_event: Callable[[dict], None] = lambda event: None,
    trace: Callable[[str, str, str], None] | None = None,
) -> Server:
    """A Server whose associations run an ApplicationEntity with this policy and these handlers."""
    policy = AcceptorPolicy(
        ae_title=settings.ae_title,
        contexts=VERIFICATION_ONLY if contexts is None else contexts,
        require_called_aet=settings.require_called_aet,
        allowed_calling_aets=settings.allowed_calling_aets,
        max_pdu=settings.max_pdu,
    )
    entity = ApplicationEntity(policy, on_event=on_event, idle_timeout=settings.network_timeout)
    if handlers is not None:
        entity.handlers = handlers
    return Server(entity, host=settings.host, port=settings.port, max_associations=settings.max_associations,
                  artim_timeout=settings.artim_timeout, network_timeout=settings.network_timeout,
                  max_receive=settings.max_pdu, reuse_port=settings.reuse_port, log=on_event, trace=trace,
                  tls=settings.tls)
