"""A scripted Q/R + storage + verification SCP (our own ``Server`` in a thread) for the exit-code and wire
tests: every request goes to ``script(handler)``, which answers a status, aborts, hangs until released, or
sends a C-STORE sub-operation. The called AE title must be MATRIX (``-aec WRONG`` is rejected)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import contextmanager
from typing import Iterator

from pydicom import Dataset

from dcmnet_cli.dimse.commandset import (C_ECHO_RQ, C_FIND_RQ, C_GET_RQ, C_MOVE_RQ, C_STORE_RQ, C_STORE_RSP,
                                         c_get_rsp, c_store_rq)
from dcmnet_cli.services.query import encode_identifier
from dcmnet_cli.services.scp.entity import ALL_UNCOMPRESSED, ApplicationEntity
from dcmnet_cli.services.session import MessageHandler
from dcmnet_cli.ul.negotiation import AcceptorPolicy

from .procs import serving

CT = "1.2.840.10008.5.1.4.1.1.2"
STUDY = "1.2.826.0.1.3680043.9.7781.1515.1"
INSTANCE = "1.2.826.0.1.3680043.9.7781.1515.2"


class Handler(MessageHandler):
    def __init__(self, peer: "MatrixPeer") -> None:
        self.peer = peer

    def complete(self, dataset: bytes | None) -> None:
        self.peer.received.append(self.message.command_field)
        self.peer.script(self)

    def status(self, status: int, **counts: int) -> None:
        if self.message.command_field == C_GET_RQ and counts:
            self.session.send(self.context_id, c_get_rsp(self.message.message_id, status,
                                                         self.message.affected_sop_class_uid, **counts))
        else:
            self.session.answer(self.context_id, self.message, status)

    def sub_store(self) -> int:
        """A C-STORE sub-operation of a C-GET (a CT object, UIDs consistent); returns the answered status."""
        channel = self.session.driver
        context = next(c for c in channel.assoc.contexts.values() if c.abstract_syntax == CT)
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID, ds.StudyInstanceUID = CT, INSTANCE, STUDY
        channel.send_message(context.context_id, c_store_rq(77, CT, INSTANCE),
                             encode_identifier(ds, context.transfer_syntax))
        from dcmnet_cli.dimse.assembler import CommandReceived
        while True:
            event = channel.next_event(5.0)
            if isinstance(event, CommandReceived) and event.message.command_field == C_STORE_RSP:
                return event.message.status


class MatrixPeer:
    def __init__(self, script: Callable[[Handler], None]) -> None:
        self.script = script
        self.received: list[int] = []
        self.requested = threading.Event()
        self.release = threading.Event()
        policy = AcceptorPolicy(ae_title="MATRIX", contexts=lambda uid: ALL_UNCOMPRESSED, scp_roles=lambda uid: True,
                                require_called_aet=True)
        factory = lambda: Handler(self)  # noqa: E731
        self.entity = ApplicationEntity(policy, handlers={C_ECHO_RQ: factory, C_STORE_RQ: factory, C_FIND_RQ: factory,
                                                          C_MOVE_RQ: factory, C_GET_RQ: factory})


@contextmanager
def matrix_peer(script: Callable[[Handler], None]) -> Iterator[tuple[int, MatrixPeer]]:
    peer = MatrixPeer(script)
    with serving(peer.entity, "matrix-peer") as port:
        try:
            yield port, peer
        finally:
            peer.release.set()  # a hanging handler returns before the server stops


def answer(status: int, **counts: int) -> Callable[[Handler], None]:
    return lambda h: h.status(status, **counts)


def abort(h: Handler) -> None:
    h.session.driver.abort()


def hang(h: Handler) -> None:
    h.peer.requested.set()
    h.peer.release.wait(15)


def get_stores_then_success(h: Handler) -> None:
    h.sub_store()
    h.status(0x0000, remaining=0, completed=1, failed=0, warning=0)
