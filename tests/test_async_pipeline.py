"""Answers to pipelined C-STOREs (store --async → an SCP serving a granted window) leave several to a write.

:meth:`Driver.send_answer` holds a C-STORE-RSP while the peer's next PDUs are already received, up to half the
window the peer was granted, and writes it at once when nothing more is waiting; :meth:`Session.serve` uses
it only for C-STOREs and only when the peer was granted a window of 4 or more: without one, nothing changes.
"""

from __future__ import annotations

import threading
from pathlib import Path

from dcmnet_cli.dimse.commandset import C_ECHO_RQ, C_STORE_RQ, c_store_rsp
from dcmnet_cli.services.dicomfiles import read_meta
from dcmnet_cli.services.peer import Peer
from dcmnet_cli.services.scp.entity import ALL_UNCOMPRESSED, ApplicationEntity, MessageHandler
from dcmnet_cli.services.scu.store import store
from dcmnet_cli.transport.channel import HOLD_ANSWERS_MAX, Driver
from dcmnet_cli.ul.negotiation import AcceptorPolicy

from store_helpers import make_file
from wire import memory_peer

HOST = "127.0.0.1"


# --------------------------------------------------------------------------- Driver.send_answer (a stub connection)


class _Conn:
    """What :meth:`Driver.send_answer` and :meth:`Driver.flush` use of a DIMSE connection."""

    def __init__(self) -> None:
        self.queued: list[bytes] = []
        self.events_waiting = True
        self.close_requested = False

    def send_message(self, context_id: int, message: bytes, dataset: object = None) -> None:
        self.queued.append(message)

    def data_to_send(self) -> list[bytes]:
        out, self.queued = self.queued, []
        return out


class _Recording(Driver):
    def __init__(self) -> None:
        super().__init__(_Conn())  # type: ignore[arg-type]
        self.writes: list[list[bytes]] = []

    def _send(self, buffers):  # type: ignore[no-untyped-def]
        self.writes.append(list(buffers))
        return sum(map(len, buffers))

    def _close_link(self) -> None:
        pass


def test_hold_is_half_the_window_at_most_the_cap() -> None:
    driver = _Recording()
    assert driver.hold_answers == 1  # by default nothing is held
    for window, hold in ((1, 1), (2, 1), (3, 1), (4, 2), (8, 4), (9, 4), (32, HOLD_ANSWERS_MAX), (0xFFFF, HOLD_ANSWERS_MAX)):
        driver.hold_answers_for(window)
        assert driver.hold_answers == hold, window


def test_answers_held_while_requests_wait_then_written_together_in_order() -> None:
    driver = _Recording()
    driver.hold_answers_for(8)
    for n in range(3):
        driver.send_answer(1, b"rsp%d" % n)
    assert driver.writes == []  # the peer's next requests are here: held
    driver.send_answer(1, b"rsp3")
    assert driver.writes == [[b"rsp0", b"rsp1", b"rsp2", b"rsp3"]]  # the 4th: all four in one write
    driver.send_answer(1, b"rsp4")
    assert len(driver.writes) == 1  # counting starts again after a write
    driver.conn.events_waiting = False  # type: ignore[misc]
    driver.send_answer(1, b"rsp5")  # nothing more to serve: written now, with the one held
    assert driver.writes[1:] == [[b"rsp4", b"rsp5"]]
    driver.send_answer(1, b"rsp6")
    assert driver.writes[2:] == [[b"rsp6"]]


def test_without_a_hold_every_answer_is_written_at_once() -> None:
    driver = _Recording()
    driver.hold_answers_for(3)  # a window too small to share: nothing held
    for n in range(3):
        driver.send_answer(1, b"rsp%d" % n)
    assert driver.writes == [[b"rsp0"], [b"rsp1"], [b"rsp2"]]


def test_a_held_answer_goes_before_any_later_message() -> None:
    driver = _Recording()
    driver.hold_answers_for(8)
    driver.send_answer(1, b"rsp0")
    driver.send_message(1, b"refusal")  # type: ignore[arg-type]  # written at once, after what was held
    assert driver.writes == [[b"rsp0", b"refusal"]]
    driver.send_answer(1, b"rsp1")
    assert driver.flush() and driver.writes[1:] == [[b"rsp1"]]
    assert not driver.flush()  # nothing left held


# --------------------------------------------------------------------------- Session.serve over the in-memory wire


class _Answering(MessageHandler):
    """Answers each C-STORE when it is complete (as listen's handler does); failing UIDs get 0xA700."""

    def __init__(self, scp: "_SCP") -> None:
        self.scp = scp

    def complete(self, dataset: bytes | None) -> None:
        message = self.message
        uid = message.affected_sop_instance_uid
        with self.scp.lock:
            self.scp.answered.append(message.message_id)
        self.session.send(self.context_id, c_store_rsp(message.message_id, 0xA700 if uid in self.scp.failing else 0,
                                                       message.affected_sop_class_uid, uid))


class _SCP(ApplicationEntity):
    def __init__(self, window: int, failing: set[str]) -> None:
        super().__init__(AcceptorPolicy(ae_title="SCP", contexts=lambda uid: ALL_UNCOMPRESSED), async_window=window)
        self.handlers[C_STORE_RQ] = lambda: _Answering(self)
        self.failing, self.lock, self.answered = failing, threading.Lock(), []


def _store_counting_writes(tmp_path: Path, monkeypatch, window: int, count: int) -> tuple[list[tuple[str, int]], int, _SCP]:
    """Store ``count`` files (every third failing) with ``window`` proposed and granted; the outcomes and how
    many writes the SCP made."""
    writes: list[str] = []
    original = Driver._write

    def counting(self, buffers) -> None:  # type: ignore[no-untyped-def]
        writes.append(self.peer)
        original(self, buffers)

    monkeypatch.setattr(Driver, "_write", counting)
    paths = [make_file(tmp_path, f"{'bad' if n % 3 == 1 else 'good'}-{n}", rows=8, columns=8) for n in range(count)]
    files = [read_meta(p) for p in paths]
    scp = _SCP(window, {f.sop_instance_uid for f in files if "bad" in f.path})
    with memory_peer(scp, monkeypatch) as failures:
        result = store(Peer(HOST, 104), files, window=window)
    assert not failures
    outcomes = [(Path(o.path).name, o.status) for o in result.files]
    assert outcomes == [(p.name, 0xA700 if "bad" in p.name else 0) for p in paths]  # per file, in order
    scp_writes = sum(1 for peer in writes if peer != f"{HOST}:104")
    return outcomes, scp_writes, scp


def test_pipelined_answers_leave_several_to_a_write(tmp_path: Path, monkeypatch) -> None:
    _, scp_writes, scp = _store_counting_writes(tmp_path, monkeypatch, 8, 24)
    assert scp.answered == list(range(1, 25))
    # The A-ASSOCIATE-AC, the A-RELEASE-RP and the 24 answers, several to a write (at most 4: half of 8).
    assert 2 + 24 // 4 <= scp_writes < 2 + 24, scp_writes


def test_without_a_window_each_answer_is_written_at_once(tmp_path: Path, monkeypatch) -> None:
    _, scp_writes, _ = _store_counting_writes(tmp_path, monkeypatch, 1, 12)
    assert scp_writes == 2 + 12  # nothing changes for a peer granted no window


def test_only_c_store_answers_are_held(monkeypatch) -> None:
    """A C-ECHO answer on a windowed association is written at once (Session._complete holds C-STOREs only)."""
    from dcmnet_cli.dimse.commandset import Message
    from dcmnet_cli.dimse.connection import MessageComplete
    from dcmnet_cli.services.session import Session

    sent: list[str] = []
    driver = _Recording()
    driver.hold_answers = 4
    monkeypatch.setattr(driver, "send_answer", lambda cid, message: sent.append("held"))
    monkeypatch.setattr(driver, "send_message", lambda cid, message, dataset=None: sent.append("now"))
    session = Session(driver, {})

    class Answer(MessageHandler):
        def complete(self, dataset: bytes | None) -> None:
            self.session.send(1, b"rsp")

    for field in (C_STORE_RQ, C_ECHO_RQ):
        handler = Answer()
        handler.begin(session, 1, Message(field, message_id=1))
        session._handler = handler
        session._complete(MessageComplete(1, Message(field, message_id=1)))
    assert sent == ["held", "now"]
    assert not session._storing  # only while the C-STORE's handler completes
