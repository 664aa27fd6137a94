"""The per-request shortcuts of listen's receive and response path (issue 13) against what they shortcut.

Each fast path must do what the general path does: the Sta6 P-DATA-TF paths of the Association what
PS3.8 Table 9-10 says (through :func:`transition`), the one-PDV decode what the PDV loop does, the inline
header check what ``check_header`` does, the one-PDU response what ``fragment_message`` makes, and a
flush that did nothing must not hide an event from :meth:`Driver.next_event`. Both sides of each are run.
"""

from __future__ import annotations

import struct

import pytest
from helpers.scripted_link import ScriptedLink
from test_dimse_connection import CT, VERIFICATION, context, established
from wire import events, pump

from dcmnet_cli.dimse import commandset as cs
from dcmnet_cli.dimse.assembler import Assembler, CommandReceived, DatasetFragment, MessageComplete
from dcmnet_cli.dimse.connection import Aborted, DIMSEConnection, Role
from dcmnet_cli.dimse.fragment import fragment_message
from dcmnet_cli.errors import AbortReason, PDUDecodeError, RemoteProtocolError
from dcmnet_cli.services.store_commands import store_rsp
from dcmnet_cli.ul.association import Association, DataReceived
from dcmnet_cli.ul.framing import PDUReader
from dcmnet_cli.ul.pdu import PDV, PDataTF, PDUType, decode_pdata
from dcmnet_cli.ul.statemachine import Effect, Event, State, transition


def _pdv(context_id: int, control: int, data: bytes) -> bytes:
    return struct.pack(">IBB", len(data) + 2, context_id, control) + data


def _pdu(body: bytes) -> bytes:
    return struct.pack(">BBI", PDUType.P_DATA_TF, 0, len(body)) + body


# --------------------------------------------------------------------------- the Association's Sta6 paths


@pytest.mark.parametrize("role", list(Role))
def test_table_cells_the_sta6_paths_stand_for(role: Role) -> None:
    """Evt10 in Sta6 is DT-2 (indicate P-DATA) and Evt9 is DT-1 (send it), staying in Sta6, for both
    roles: what receive_data and send_pdata do without stepping the table."""
    received = transition(State.STA6, Event.EVT10, role)
    assert (received.effects, received.next_state) == ((Effect.INDICATE_PDATA,), State.STA6)
    sent = transition(State.STA6, Event.EVT9, role)
    assert (sent.effects, sent.next_state) == ((Effect.SEND_PDATA,), State.STA6)


def _established_pair() -> tuple[Association, Association]:
    req, acc = established()
    return req.association, acc.association


def test_sta6_receive_fast_path_equals_the_table_walk() -> None:
    """A P-DATA-TF read in Sta6 gives the same event, state and output as the same PDU stepped through
    the table (_receive_pdu, the path every other state takes)."""
    _, fast = _established_pair()
    _, slow = _established_pair()
    body = _pdv(1, 3, b"command") + _pdv(1, 2, b"data")
    fast.receive_data(_pdu(body))
    slow._receive_pdu(decode_pdata(memoryview(body)))
    got_fast, got_slow = events(fast), events(slow)
    assert [type(e) for e in got_fast] == [type(e) for e in got_slow] == [DataReceived]
    as_tuples = [[(p.context_id, p.control, bytes(p.data)) for p in e.pdata.pdvs] for e in got_fast + got_slow]
    assert as_tuples[0] == as_tuples[1] == [(1, 3, b"command"), (1, 2, b"data")]
    assert fast.state is slow.state is State.STA6
    assert fast.data_to_send() == slow.data_to_send() == []


def test_pdata_outside_sta6_still_walks_the_table() -> None:
    """Past Sta6 the fast path is not taken: a P-DATA-TF in Sta13 is ignored (AA-6), not indicated."""
    _, acc = _established_pair()
    acc.abort()
    assert acc.state is State.STA13
    acc.data_to_send()
    acc.receive_data(_pdu(_pdv(1, 3, b"late")))
    assert events(acc) == [] and acc.state is State.STA13


def test_sta6_send_fast_path_equals_the_table_walk() -> None:
    """send_pdata in Sta6 queues the buffers as the table's SEND_PDATA effect does (Sta8: AR-7)."""
    req, acc = _established_pair()
    pdu = [_pdu(_pdv(1, 3, b"x"))]
    acc.send_pdata(pdu)
    assert acc.data_to_send() == pdu and acc.state is State.STA6
    req.release()
    pump(req, acc)
    assert acc.state is State.STA8
    acc.send_pdata(pdu)  # the table's path: Evt9 in Sta8
    assert acc.data_to_send() == pdu and acc.state is State.STA8


def test_bytes_body_still_gives_memoryview_pdvs() -> None:
    """A P-DATA-TF the reader hands out as bytes (its assembling fallback) is decoded as a view all the
    same: the DIMSE layer's fragments are memoryviews whatever the framing did."""
    _, acc = _established_pair()

    class Reader:
        framed = iter([(PDUType.P_DATA_TF, _pdv(1, 3, b"a" * 10)), (PDUType.P_DATA_TF, memoryview(_pdv(1, 3, b"b")))])

        def feed(self, data: bytes) -> None:
            pass

        def next_pdu(self) -> tuple[int, bytes | memoryview] | None:
            return next(self.framed, None)

    acc._reader = Reader()  # type: ignore[assignment]
    acc.receive_data(b"")
    got = events(acc)
    assert [bytes(e.pdata.pdvs[0].data) for e in got] == [b"a" * 10, b"b"]
    assert all(type(e.pdata.pdvs[0].data) is memoryview for e in got)


# --------------------------------------------------------------------------- decode_pdata's one-PDV path


def _general(body: bytes) -> list[tuple[int, int, bytes]]:
    """The PDV loop, as the reference (a trailing empty PDV keeps the one-PDV shortcut out)."""
    out, offset = [], 0
    while offset < len(body):
        length, ctx, ctl = struct.unpack_from(">IBB", body, offset)
        out.append((ctx, ctl, body[offset + 6:offset + 4 + length]))
        offset += 4 + length
    return out


@pytest.mark.parametrize("body", [
    _pdv(1, 3, b"cmd"), _pdv(255, 0, b""), _pdv(3, 2, bytes(9000)),
    _pdv(1, 3, b"cmd") + _pdv(1, 2, b"ds"), _pdv(5, 0, b"xy") + _pdv(5, 2, b""),
], ids=["command", "empty", "data", "two", "two-empty-last"])
def test_decode_pdata_one_pdv_equals_the_loop(body: bytes) -> None:
    view = memoryview(body)
    pdata = decode_pdata(view)
    assert type(pdata) is PDataTF and all(type(p) is PDV for p in pdata.pdvs)
    assert [(p.context_id, p.control, bytes(p.data)) for p in pdata.pdvs] == _general(body)
    assert all(p.data.obj is body for p in pdata.pdvs)  # views of the body, no copy
    assert pdata == PDataTF(tuple(PDV(c, k, memoryview(d)) for c, k, d in _general(body)))


@pytest.mark.parametrize("body, message", [
    (b"", "without any PDV"),
    (b"\x00\x00\x00\x02\x01", "truncated PDV header at offset 0"),
    (_pdv(1, 3, b"ab")[:-1], "PDV length 4 is invalid at offset 0"),
    (_pdv(1, 3, b"ab") + b"\x00", "truncated PDV header at offset 8"),
    (struct.pack(">IBB", 1, 1, 3), "PDV length 1 is invalid at offset 0"),
    (_pdv(1, 3, b"ab") + struct.pack(">IBB", 9, 1, 3), "PDV length 9 is invalid at offset 8"),
])
def test_decode_pdata_refusals_unchanged(body: bytes, message: str) -> None:
    with pytest.raises(PDUDecodeError, match=message):
        decode_pdata(memoryview(body))


# --------------------------------------------------------------------------- the reader's inline header check


def test_inline_header_check_refuses_as_check_header() -> None:
    """A whole P-DATA-TF over the maximum, and every other PDU type, still go through check_header."""
    reader = PDUReader(100)
    reader.feed(_pdu(_pdv(1, 3, bytes(94))))
    assert reader.next_pdu()[0] == PDUType.P_DATA_TF  # exactly the maximum: no call needed
    reader.feed(_pdu(_pdv(1, 3, bytes(95))))
    with pytest.raises(PDUDecodeError, match="101 bytes exceeds our maximum of 100") as error:
        reader.next_pdu()
    assert error.value.reason == AbortReason.INVALID_PDU_PARAMETER_VALUE
    for raw, match in ((b"\x05\x00\x00\x00\x00\x05" + bytes(5), "A-RELEASE-RQ with length 5"),
                       (b"\x09\x00\x00\x00\x00\x04" + bytes(4), "unrecognised PDU type 0x09")):
        reader = PDUReader(100)
        reader.feed(raw)
        with pytest.raises(PDUDecodeError, match=match):
            reader.next_pdu()


# --------------------------------------------------------------------------- the assembler's inline checks


@pytest.mark.parametrize("check", [None, {1, 3}, lambda cid: cid in (1, 3)], ids=["none", "container", "callable"])
def test_inline_context_check(check: object) -> None:
    echo = cs.c_echo_rq(1).encode()
    assembler = Assembler(valid_context_ids=check)  # type: ignore[arg-type]
    assert [type(e) for e in assembler.receive_pdv(3, 3, memoryview(echo))] == [CommandReceived, MessageComplete]
    for bad in (2, 5) if check is not None else (2,):
        with pytest.raises(RemoteProtocolError, match=f"context {bad}, which is not accepted") as error:
            Assembler(valid_context_ids=check).receive_pdv(bad, 3, memoryview(echo))  # type: ignore[arg-type]
        assert error.value.reason == AbortReason.INVALID_PDU_PARAMETER_VALUE


def test_event_records_built_directly_are_the_records() -> None:
    """The records built without their __new__ equal (and are typed as) the ones built the usual way."""
    store = cs.c_store_rq(1, CT, "1.2.3").encode()
    assembler = Assembler()
    (command,) = assembler.receive_pdv(1, 3, memoryview(store))
    assert type(command) is CommandReceived and command == CommandReceived(1, command.message, True)
    fragment, complete = assembler.receive_pdv(1, 2, memoryview(b"ds"))
    assert type(fragment) is DatasetFragment and fragment == DatasetFragment(1, memoryview(b"ds"), True)
    assert type(complete) is MessageComplete and complete == MessageComplete(1, command.message)
    assert complete.dataset is None


# --------------------------------------------------------------------------- the one-PDU response


def _sent(conn: DIMSEConnection) -> bytes:
    out = b""
    while batch := conn.data_to_send():
        out += b"".join(bytes(piece) for piece in batch)
    return out


@pytest.mark.parametrize("max_pdu", [0, 16384, 131072])
def test_one_pdu_response_is_what_fragment_message_makes(max_pdu: int) -> None:
    req, acc = established(max_pdu=max_pdu)
    ctx = context(acc, CT)
    for command in (store_rsp(7, 0, CT, "1.2.3.4"), cs.c_store_rsp(7, 0xA700, CT, "1.2.3", "no room"), cs.c_echo_rsp(3)):
        acc.send_message(ctx, command)
        assert acc.sending
        expected = b"".join(bytes(p) for pdu in fragment_message(ctx, command.encode(), None, acc.association.peer_max_pdu)
                            for p in pdu)
        raw = _sent(acc)
        assert raw == expected and not acc.sending
        req.receive_data(raw)
        got = events(req)
        assert [type(e) for e in got] == [CommandReceived, MessageComplete]
        assert got[1].message == cs.decode(command.encode())


def test_one_pdu_response_is_one_batch_after_what_was_queued() -> None:
    """What the association queued before comes first, and the response leaves in the same batch."""
    _, acc = established()
    acc.association.send_pdata([b"queued"])
    acc.send_message(context(acc, CT), store_rsp(1, 0, CT, "1.2"))
    batch = acc.data_to_send()
    assert batch[0] == b"queued" and len(batch) == 3 and not acc.sending
    assert acc.data_to_send() == []


def test_responses_that_need_the_generator() -> None:
    """A command over one PDU, a data set, an invalid context ID: the general path, as before (the ID
    is refused when the PDUs are made, by data_to_send)."""
    req, acc = established(max_pdu=16384)
    acc.association.peer_max_pdu = 64  # forced: a command of 80 bytes then takes two PDUs
    command = cs.Message(cs.C_ECHO_RSP, message_id_being_responded_to=9, status=0x0110, error_comment="e" * 40)
    assert len(command.encode()) + 6 > 64
    acc.send_message(1, command)
    raw = _sent(acc)
    assert raw == b"".join(bytes(p) for pdu in fragment_message(1, command.encode(), None, 64) for p in pdu)
    first = struct.unpack_from(">I", raw, 2)[0]
    assert first <= 64 and len(raw) > 6 + first  # more than one P-DATA-TF
    acc.association.peer_max_pdu = 16384
    acc.send_message(context(acc, CT), cs.c_store_rsp(1, 0, CT, "1.2"), b"\x00\x00")
    assert _sent(acc).endswith(b"\x00\x00")
    acc.send_message(2, cs.c_echo_rsp(1))
    with pytest.raises(ValueError, match="must be odd"):
        acc.data_to_send()
    acc._sending = None
    acc.association.peer_max_pdu = 4  # below any PDV: refused when the PDUs are made, not by send_message
    acc.send_message(1, cs.c_echo_rsp(1))
    with pytest.raises(ValueError, match="too small"):
        acc.data_to_send()


def test_one_pdu_response_pending_then_aborted_or_doubled() -> None:
    """Held, not yet queued: an abort drops it (only the A-ABORT leaves), a second send_message raises."""
    _, acc = established()
    acc.send_message(context(acc, CT), store_rsp(1, 0, CT, "1.2"))
    with pytest.raises(RuntimeError, match="previous message"):
        acc.send_message(context(acc, CT), store_rsp(2, 0, CT, "1.2"))
    acc.abort()
    assert _sent(acc) == bytes.fromhex("07000000000400000000")


def test_one_pdu_response_refused_by_the_table_stays_pending() -> None:
    """send_pdata raising (Evt9 where the table has no cell) leaves the message pending, as the
    generator did: the send is not silently forgotten."""
    req, acc = established()
    acc.send_message(context(acc, CT), store_rsp(1, 0, CT, "1.2"))
    acc.association.state = State.STA3  # no Evt9 cell for Sta3
    with pytest.raises(Exception):
        acc.data_to_send()
    assert acc.sending


# --------------------------------------------------------------------------- the driver: flush, then events


def _store_chunks(acc_ctx: int) -> bytes:
    command = _pdu(_pdv(acc_ctx, 3, cs.c_store_rq(1, CT, "1.2.3").encode()))
    return command + _pdu(_pdv(acc_ctx, 2, b"\x00\x00"))


def test_flush_reports_whether_it_acted() -> None:
    _, acc = established()
    link = ScriptedLink(acc, [])
    assert link.flush() is False
    acc.send_message(context(acc, VERIFICATION), cs.c_echo_rsp(1))
    assert link.flush() is True and link.sent
    acc.association.close_requested = True
    assert link.flush() is True and link.closed


def test_next_event_after_a_flush_that_acted_or_not() -> None:
    """A flush that wrote nothing is not followed by a second look for events (there can be none); one
    that lost the link is, and its Aborted comes out before any read."""
    _, acc = established()
    ctx = context(acc, CT)
    link = ScriptedLink(acc, [_store_chunks(ctx)])
    got = [type(link.next_event(1.0)) for _ in range(3)]
    assert got == [CommandReceived, DatasetFragment, MessageComplete]
    event = link.next_event(1.0)  # the end of the stream
    assert type(event) is Aborted and event.initiator == "transport"
    assert link.next_event(1.0) is None and link.closed

    class Losing(ScriptedLink):  # a write that returns, having lost the link underneath (an event, no raise)
        def _send(self, buffers: list) -> int:
            self.conn.connection_lost()
            return super()._send(buffers)

    _, acc = established()
    link = Losing(acc, [_store_chunks(ctx)])
    acc.association.send_pdata([b"anything"])
    event = link.next_event(1.0)
    assert type(event) is Aborted and event.initiator == "transport"
    assert link.chunks  # found after the flush, before any read

    class Broken(ScriptedLink):
        def _send(self, buffers: list) -> int:
            raise ConnectionResetError(104, "reset")

    _, acc = established()
    link = Broken(acc, [_store_chunks(ctx)])
    acc.association.send_pdata([b"anything"])
    with pytest.raises(Exception, match="connection lost while sending"):
        link.next_event(1.0)
    event = link.next_event(1.0)
    assert type(event) is Aborted and event.initiator == "transport"
    assert link.chunks  # nothing was read after the link was lost


# --------------------------------------------------------------------------- a C-STORE-RQ's command set


def test_store_request_tuple_is_the_general_reading() -> None:
    """The tuple the C-STORE-RQ shortcut lays out by position is the element loop's reading, slot for slot,
    and decode makes a Message of it."""
    for message_id, priority in ((0, 0), (257, 2), (0xFFFF, 1)):
        raw = cs.c_store_rq(message_id, CT, "1.2.826.0.1.3680043.2.1143.1", priority).encode()
        values = cs._store_rq_values(raw)
        assert values is not None and values == tuple(cs._general(raw)) and len(values) == len(cs.Message._fields)
        message = cs.decode(raw)
        assert type(message) is cs.Message and message == cs.Message(*values)
        assert (message.message_id, message.priority, message.extra, message.foreign) == (message_id, priority, (), ())
