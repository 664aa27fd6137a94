"""The sans-IO DIMSE connection (dimse/connection.py): two of them joined by an in-memory wire.

What the layer promises its users: one event stream, one context check, one place that ends an
association on a protocol error (exactly one Aborted), refusals of requests that do not fit their
context, collected vs streamed data sets, bounded send batches, and a clear error for a late send.
"""

from __future__ import annotations

import pytest
from wire import events, pump

from dcmnet_cli.dimse import commandset as cs
from dcmnet_cli.dimse.connection import (
    BATCH_BUFFERS,
    BATCH_BYTES,
    Aborted,
    AssociationAccepted,
    AssociationRequested,
    CommandReceived,
    DatasetFragment,
    DIMSEConnection,
    MessageComplete,
    RequestRefused,
    Role,
)
from dcmnet_cli.errors import AbortReason, AssociationAborted
from dcmnet_cli.ul.negotiation import AcceptorPolicy, build_contexts, build_request, negotiate_acceptor
from dcmnet_cli.ul.pdu import PDV, PDataTF
from dcmnet_cli.ul.statemachine import State

VERIFICATION = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"
EXPLICIT = "1.2.840.10008.1.2.1"
POLICY = AcceptorPolicy(ae_title="ACC", contexts={VERIFICATION: [EXPLICIT], CT: [EXPLICIT], FIND: [EXPLICIT]},
                        max_pdu=16384)


def established(pairs=((VERIFICATION, (EXPLICIT,)), (CT, (EXPLICIT,)), (FIND, (EXPLICIT,))), max_pdu: int = 16384):
    req, acc = DIMSEConnection(Role.REQUESTOR, max_pdu), DIMSEConnection(Role.ACCEPTOR, max_pdu)
    acc.connection_made()
    req.request(build_request("ACC", "REQ", build_contexts(list(pairs)), max_pdu))
    req.connection_made()
    pump(req, acc)
    (requested,) = events(acc)
    assert isinstance(requested, AssociationRequested)
    acc.accept(negotiate_acceptor(requested.request, POLICY))
    pump(req, acc)
    assert [type(e) for e in events(req)] == [AssociationAccepted]
    assert req.is_established and acc.is_established
    return req, acc


def context(conn: DIMSEConnection, abstract: str) -> int:
    return next(c.context_id for c in conn.contexts.values() if c.abstract_syntax == abstract)


def send(conn: DIMSEConnection, other: DIMSEConnection, context_id: int, message: cs.Message, dataset=None) -> None:
    conn.send_message(context_id, message, dataset)
    pump(conn, other)


@pytest.mark.parametrize("context_id", [2, 5, 0, 255], ids=["even", "never-proposed", "zero", "255"])
def test_pdv_on_unaccepted_context_aborts_once(context_id: int) -> None:
    """Scenario E.29: a PDV on an unaccepted, never proposed or even context -> A-ABORT reason 6, and
    the user hears of it exactly once."""
    req, acc = established()
    req.association.send_pdata([PDataTF((PDV(context_id, 3, b"x"),)).encode()])
    pump(req, acc)
    got = events(acc)
    assert len(got) == 1 and isinstance(got[0], Aborted) and got[0].reason == AbortReason.INVALID_PDU_PARAMETER_VALUE
    assert acc.state is State.STA13
    pump(req, acc)  # the A-ABORT, queued when the PDV was read
    got = events(req)
    assert len(got) == 1 and isinstance(got[0], Aborted) and (got[0].source, got[0].reason) == (2, 6)
    assert req.state is State.STA1


def test_pdv_on_a_rejected_context_aborts() -> None:
    req, acc = established(((VERIFICATION, (EXPLICIT,)), (MR, (EXPLICIT,))))
    assert set(acc.contexts) == {1} and set(req.contexts) == {1}
    acc.association.send_pdata([PDataTF((PDV(3, 3, b"x"),)).encode()])
    pump(acc, req)
    got = events(req)
    assert req.association.data_to_send(), "no A-ABORT was queued"
    assert len(got) == 1 and isinstance(got[0], Aborted) and (got[0].source, got[0].reason) == (2, 6)


def test_a_broken_message_never_reaches_the_user() -> None:
    """A data set cut by a new command: the fragments already decoded from that PDU are dropped with
    it; the user sees the command received earlier and then one Aborted (reason 5)."""
    req, acc = established()
    ct = context(req, CT)
    command = cs.c_store_rq(1, CT, "1.2.3").encode()
    header = PDataTF((PDV(ct, 1 | 2, command), PDV(ct, 0, b"ab"))).encode()
    cut = PDataTF((PDV(ct, 0, b"cd"), PDV(ct, 1 | 2, command))).encode()
    req.association.send_pdata([header])
    req.association.send_pdata([cut])
    pump(req, acc)
    got = events(acc)
    assert [type(e) for e in got] == [CommandReceived, DatasetFragment, Aborted]
    assert got[-1].reason == AbortReason.UNEXPECTED_PDU_PARAMETER


def test_store_data_set_streams_and_query_identifier_is_collected() -> None:
    req, acc = established()
    data = bytes(range(256)) * 200  # 51 200 bytes: several 16 KiB PDUs
    send(req, acc, context(req, CT), cs.c_store_rq(1, CT, "1.2.3"), data)
    got = events(acc)
    fragments = [e for e in got if isinstance(e, DatasetFragment)]
    assert len(fragments) >= 3 and b"".join(bytes(f.data) for f in fragments) == data
    assert isinstance(got[-1], MessageComplete) and got[-1].dataset is None
    identifier = b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY "
    send(req, acc, context(req, FIND), cs.c_find_rq(2, FIND), identifier)
    got = events(acc)
    assert [type(e) for e in got] == [CommandReceived, MessageComplete]
    assert got[-1].dataset == identifier


@pytest.mark.parametrize("message,on", [
    (cs.c_store_rq(1, MR, "1.2.3"), CT),  # an MR object on the CT context
    (cs.c_store_rq(1, CT, "1.2.3"), VERIFICATION),  # a CT object on the Verification context
    (cs.c_echo_rq(1), CT),  # C-ECHO on a CT context
    (cs.c_find_rq(1, FIND), CT),
], ids=["mr-on-ct", "ct-on-verification", "echo-on-ct", "find-on-ct"])
def test_request_that_does_not_fit_its_context_is_refused(message: cs.Message, on: str) -> None:
    """PS3.7 §9.1: the layer refuses (0x0122) for every role; the data set is swallowed; the association
    stays usable (the next request goes through)."""
    req, acc = established()
    dataset = b"\x00" * 40_000 if message.has_dataset else None
    send(req, acc, context(req, on), message, dataset)
    got = events(acc)
    assert [type(e) for e in got] == [RequestRefused]
    assert got[0].status == 0x0122 and got[0].message.message_id == 1 and "does not fit" in got[0].reason
    send(req, acc, context(req, VERIFICATION), cs.c_echo_rq(2))
    assert [type(e) for e in events(acc)] == [CommandReceived, MessageComplete]
    assert acc.is_established


def test_responses_and_cancel_are_not_refused() -> None:
    """Only requests carry an Affected SOP Class to check; C-CANCEL-RQ carries none."""
    req, acc = established()
    send(req, acc, context(req, FIND), cs.c_cancel_rq(1))
    assert [type(e) for e in events(acc)] == [CommandReceived, MessageComplete]
    send(acc, req, context(acc, CT), cs.c_echo_rsp(1, 0, VERIFICATION))
    assert [type(e) for e in events(req)] == [CommandReceived, MessageComplete]


def test_send_batches_are_bounded_and_lazy() -> None:
    """A data set far larger than a batch is pulled a batch at a time: memory bounded by the batch."""
    req, acc = established(max_pdu=1 << 20)
    pulled = []

    def chunks():
        for n in range(64):
            pulled.append(n)
            yield bytes(64 * 1024)

    req.send_message(context(req, CT), cs.c_store_rq(1, CT, "1.2.3"), chunks())
    assert pulled == [] and req.sending
    first = req.data_to_send()
    size = sum(len(b) for b in first)
    assert size <= BATCH_BYTES + (1 << 20) and len(first) <= BATCH_BUFFERS + 8
    assert len(pulled) < 64, "the whole data set was pulled for the first batch"
    total = size
    while batch := req.data_to_send():
        total += sum(len(b) for b in batch)
    assert not req.sending and len(pulled) == 64 and total > 64 * 64 * 1024


def test_send_after_the_peer_aborted_names_the_abort() -> None:
    req, acc = established()
    acc.abort(2, 6)
    pump(acc, req)
    with pytest.raises(AssociationAborted) as info:
        req.send_message(1, cs.c_echo_rq(1))
    assert (info.value.source, info.value.reason) == (2, 6)


def test_message_ids_wrap_and_skip_zero() -> None:
    conn = DIMSEConnection(Role.REQUESTOR)
    ids = [conn.next_message_id() for _ in range(0x10001)]
    assert ids[0] == 1 and ids[0xFFFE] == 0xFFFF and ids[0xFFFF] == 1 and 0 not in ids
