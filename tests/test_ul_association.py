"""The sans-IO Association (PS3.8 §9.2) joined in memory, and negotiation (PS3.7 D.3.3) as pure functions."""

from __future__ import annotations

import struct

import pytest

from dcmnet_cli.errors import AbortReason, LocalProtocolError
from dcmnet_cli.ul.association import (
    Aborted,
    Association,
    AssociationAccepted,
    AssociationRejected,
    AssociationRequested,
    DataReceived,
    ReleaseConfirmed,
    ReleaseRequested,
)
from dcmnet_cli.ul.framing import UNLIMITED_PDATA_CAP
from dcmnet_cli.ul.items import (
    ContextResult,
    PresentationContextAC,
    PresentationContextRQ,
    RoleSelection,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
)
from dcmnet_cli.ul.negotiation import (
    MAX_CONTEXTS,
    SEND_CAP,
    AcceptorPolicy,
    acceptor_contexts,
    build_contexts,
    build_request,
    describe_rejection,
    negotiate_acceptor,
    requestor_contexts,
    send_limit,
)
from dcmnet_cli.ul.pdu import (
    PDV,
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    PDataTF,
    ReleaseRP,
    ReleaseRQ,
    decode_pdu_bytes,
)
from dcmnet_cli.ul.statemachine import Role, State
from tests.wire import events, pump

VERIFICATION = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
BIG = "1.2.840.10008.1.2.2"

POLICY = AcceptorPolicy(ae_title="STORESCP", contexts={VERIFICATION: [EXPLICIT, IMPLICIT], CT: [EXPLICIT, IMPLICIT]})


def _request(contexts=((VERIFICATION, [IMPLICIT]), (CT, [IMPLICIT, EXPLICIT])), **kw) -> AssociateRQ:
    return build_request("STORESCP", "STORESCU", build_contexts(contexts), **kw)


def _sent(assoc: Association) -> list:
    """Decode everything the association queued for the wire."""
    data = b"".join(bytes(x) for x in assoc.data_to_send())
    out, offset = [], 0
    while offset < len(data):
        length = struct.unpack_from(">I", data, offset + 2)[0]
        out.append(decode_pdu_bytes(data[offset : offset + 6 + length]))
        offset += 6 + length
    return out


def _pair(rq: AssociateRQ | None = None, chunk: int | None = None) -> tuple[Association, Association, AssociateRQ]:
    """A requestor and an acceptor with the RQ delivered: the acceptor is in Sta3."""
    rq = rq or _request()
    req, acc = Association(Role.REQUESTOR), Association(Role.ACCEPTOR)
    acc.connection_made()
    assert acc.state is State.STA2 and acc.artim_running
    req.request(rq)
    assert req.data_to_send() == []  # nothing before the transport is up (Sta4)
    req.connection_made()
    assert req.state is State.STA5
    pump(req, acc, chunk)
    evs = events(acc)
    assert evs == [AssociationRequested(rq)]
    assert acc.state is State.STA3 and not acc.artim_running
    return req, acc, evs[0].request


def _established(rq: AssociateRQ | None = None, policy: AcceptorPolicy = POLICY, chunk: int | None = None):
    req, acc, received = _pair(rq, chunk)
    ac = negotiate_acceptor(received, policy)
    assert isinstance(ac, AssociateAC)
    acc.accept(ac)
    pump(req, acc, chunk)
    assert events(req) == [AssociationAccepted(ac)]
    assert req.is_established and acc.is_established
    return req, acc


def _pdata(context_id: int, payload: bytes, control: int = 3) -> bytes:
    return PDataTF((PDV(context_id, control, payload),)).encode()


# --------------------------------------------------------------------------- the normal life


def _full_exchange(chunk: int | None) -> list:
    """Associate, P-DATA both ways, release; returns every event seen by either side, in order."""
    log = []
    req, acc = _established(chunk=chunk)
    assert set(req.contexts) == {1, 3} and set(acc.contexts) == {1, 3}
    assert req.contexts[1].transfer_syntax == IMPLICIT
    assert req.contexts[3].transfer_syntax == EXPLICIT  # the acceptor's preference
    assert acc.contexts[3].transfer_syntax == EXPLICIT
    req.send_pdata([_pdata(1, b"command"), _pdata(3, b"dataset", 2)])
    pump(req, acc, chunk)
    got = events(acc)
    assert [type(e) for e in got] == [DataReceived, DataReceived]
    assert bytes(got[0].pdata.pdvs[0].data) == b"command" and got[0].pdata.pdvs[0].context_id == 1
    assert bytes(got[1].pdata.pdvs[0].data) == b"dataset" and got[1].pdata.pdvs[0].control == 2
    log += [(type(e).__name__, bytes(e.pdata.pdvs[0].data)) for e in got]
    acc.send_pdata([_pdata(1, b"response")])
    pump(req, acc, chunk)
    got = events(req)
    assert [bytes(e.pdata.pdvs[0].data) for e in got] == [b"response"]
    log += [(type(e).__name__, bytes(e.pdata.pdvs[0].data)) for e in got]
    req.release()
    assert req.state is State.STA7
    pump(req, acc, chunk)
    assert events(acc) == [ReleaseRequested()]
    assert acc.state is State.STA8
    acc.release_response()
    pump(req, acc, chunk)
    assert events(req) == [ReleaseConfirmed()]
    log.append("released")
    assert req.state is State.STA1 and req.close_requested
    assert acc.state is State.STA13 and acc.artim_running and not acc.close_requested
    acc.connection_lost()
    assert acc.state is State.STA1 and not acc.artim_running
    req.connection_lost()  # after a local close: a no-op
    assert events(acc) == [] and events(req) == []
    return log


def test_associate_data_both_ways_release():
    _full_exchange(None)


def test_one_byte_chunks_same_result():
    assert _full_exchange(1) == _full_exchange(None) == _full_exchange(5)


def test_pdata_in_sta8_allowed_before_release_response():
    req, acc = _established()
    req.release()
    pump(req, acc)
    assert events(acc) == [ReleaseRequested()]
    acc.send_pdata([_pdata(1, b"late")])  # AR-7: still allowed in Sta8
    pump(req, acc)
    assert [bytes(e.pdata.pdvs[0].data) for e in events(req)] == [b"late"]  # AR-6 in Sta7
    acc.release_response()
    pump(req, acc)
    assert events(req) == [ReleaseConfirmed()]


def test_user_abort():
    req, acc = _established()
    req.abort()
    assert req.state is State.STA13 and req.artim_running
    pump(req, acc)
    got = events(acc)
    assert len(got) == 1 and isinstance(got[0], Aborted)
    assert (got[0].initiator, got[0].source, got[0].reason) == ("peer", 0, 0)
    assert acc.state is State.STA1 and acc.close_requested
    req.connection_lost()
    assert req.state is State.STA1
    assert events(req) == []


def test_abort_in_sta13_and_sta1_is_noop():
    req, acc = _established()
    req.abort()
    req.data_to_send()
    req.abort()
    assert req.data_to_send() == []
    fresh = Association(Role.REQUESTOR)
    fresh.abort()
    assert fresh.data_to_send() == [] and fresh.state is State.STA1


def test_release_collision():
    """Scenario A.7: both ends release at once; both close cleanly through Sta9-Sta12."""
    req, acc = _established()
    req.release()
    acc.release()
    assert req.state is State.STA7 and acc.state is State.STA7
    pump(req, acc)
    assert req.state is State.STA9 and acc.state is State.STA10
    assert events(req) == [ReleaseRequested()] and events(acc) == [ReleaseRequested()]
    with pytest.raises(LocalProtocolError):
        acc.release_response()  # the acceptor must wait for the requestor's RP (Sta10)
    assert acc.data_to_send() == []
    req.release_response()
    assert req.state is State.STA11
    pump(req, acc)
    assert acc.state is State.STA12
    assert events(acc) == [ReleaseConfirmed()]
    acc.release_response()
    assert acc.state is State.STA13 and acc.artim_running
    pump(req, acc)
    assert events(req) == [ReleaseConfirmed()]
    assert req.state is State.STA1 and req.close_requested
    acc.connection_lost()
    assert acc.state is State.STA1


# --------------------------------------------------------------------------- rejection


@pytest.mark.parametrize(
    "rq,policy,expected",
    [
        # wrong called AE with require_called_aet -> permanent, service user, reason 7
        (build_request("OTHER", "STORESCU", build_contexts([(VERIFICATION, [IMPLICIT])])),
         AcceptorPolicy("STORESCP", POLICY.contexts, require_called_aet=True), AssociateRJ(1, 1, 7)),
        # calling AE not on the allow-list -> reason 3
        (build_request("STORESCP", "INTRUDER", build_contexts([(VERIFICATION, [IMPLICIT])])),
         AcceptorPolicy("STORESCP", POLICY.contexts, allowed_calling_aets=frozenset({"STORESCU"})), AssociateRJ(1, 1, 3)),
        # wrong application context name -> reason 2
        (AssociateRQ("STORESCP", "STORESCU", UserInformation(), application_context="1.2.3.4",
                     presentation_contexts=build_contexts([(VERIFICATION, [IMPLICIT])])),
         POLICY, AssociateRJ(1, 1, 2)),
        # no acceptable contexts -> reason 1 (no reason given)
        (build_request("STORESCP", "STORESCU", build_contexts([(MR, [IMPLICIT]), (CT, [BIG])])),
         POLICY, AssociateRJ(1, 1, 1)),
        # no contexts at all
        (build_request("STORESCP", "STORESCU", ()), POLICY, AssociateRJ(1, 1, 1)),
    ],
    ids=["called-ae", "calling-ae", "application-context", "no-acceptable-context", "no-context"],
)
def test_reject_over_the_wire(rq, policy, expected):
    req, acc, received = _pair(rq)
    answer = negotiate_acceptor(received, policy)
    assert answer == expected
    acc.reject(answer)
    assert acc.state is State.STA13 and acc.artim_running
    pump(req, acc)
    assert events(req) == [AssociationRejected(expected)]
    assert req.state is State.STA1 and req.close_requested
    acc.artim_expired()  # the requestor never closes: ARTIM does (scenario A.4)
    assert acc.state is State.STA1 and acc.close_requested and not acc.artim_running


def test_allowed_calling_and_required_called_pass():
    policy = AcceptorPolicy("STORESCP", POLICY.contexts, require_called_aet=True, allowed_calling_aets=frozenset({"STORESCU"}))
    assert isinstance(negotiate_acceptor(_request(), policy), AssociateAC)


def test_protocol_version_bit_clear_rejected():
    """Scenario C.14: RJ (permanent, service-provider ACSE, protocol version not supported)."""
    rq = AssociateRQ("STORESCP", "STORESCU", UserInformation(), protocol_version=2,
                     presentation_contexts=build_contexts([(VERIFICATION, [IMPLICIT])]))
    req, acc = Association(Role.REQUESTOR), Association(Role.ACCEPTOR)
    acc.connection_made()
    req.request(rq)
    req.connection_made()
    acc.receive_data(b"".join(bytes(x) for x in req.data_to_send()))
    assert events(acc) == []  # never shown to the user
    assert acc.state is State.STA13 and acc.artim_running
    sent = _sent(acc)
    assert sent == [AssociateRJ(1, 2, 2)]
    req.receive_data(sent[0].encode())
    assert events(req) == [AssociationRejected(AssociateRJ(1, 2, 2))]
    acc.artim_expired()
    assert acc.close_requested and acc.state is State.STA1


def test_protocol_version_other_bits_accepted():
    rq = AssociateRQ("STORESCP", "STORESCU", UserInformation(), protocol_version=3,
                     presentation_contexts=build_contexts([(VERIFICATION, [IMPLICIT])]))
    _pair(rq)


# --------------------------------------------------------------------------- hostile requests (C.18)


def _contexts(ids) -> tuple[PresentationContextRQ, ...]:
    return tuple(PresentationContextRQ(cid, VERIFICATION, (IMPLICIT,)) for cid in ids)


@pytest.mark.parametrize(
    "ids",
    [[2], [0], [1, 4], [1, 1], [3, 5, 3], list(range(1, 2 * MAX_CONTEXTS, 2)) + [1]],
    ids=["even", "zero", "even-second", "duplicate", "duplicate-later", "over-128"],
)
def test_bad_context_ids_abort(ids):
    acc = Association(Role.ACCEPTOR)
    acc.connection_made()
    rq = AssociateRQ("STORESCP", "STORESCU", UserInformation(), presentation_contexts=_contexts(ids))
    acc.receive_data(rq.encode())
    sent = _sent(acc)
    assert len(sent) == 1 and isinstance(sent[0], Abort)
    assert sent[0].source == 2
    assert sent[0].reason == AbortReason.INVALID_PDU_PARAMETER_VALUE
    got = events(acc)
    assert len(got) == 1 and isinstance(got[0], Aborted) and got[0].initiator == "local"
    assert not any(isinstance(e, AssociationRequested) for e in got)
    assert acc.state is State.STA13 and acc.artim_running
    acc.connection_lost()
    assert acc.state is State.STA1


def test_exactly_128_contexts_accepted():
    acc = Association(Role.ACCEPTOR)
    acc.connection_made()
    rq = AssociateRQ("STORESCP", "STORESCU", UserInformation(), presentation_contexts=_contexts(range(1, 257, 2)))
    acc.receive_data(rq.encode())
    assert events(acc) == [AssociationRequested(rq)]


def test_build_contexts_limits():
    assert [c.context_id for c in build_contexts([(VERIFICATION, [IMPLICIT])] * 3)] == [1, 3, 5]
    assert len(build_contexts([(VERIFICATION, [IMPLICIT])] * 128)) == 128
    with pytest.raises(ValueError):
        build_contexts([(VERIFICATION, [IMPLICIT])] * 129)


def test_unknown_items_association_proceeds():
    """Scenario C.17 over the wire: unknown item and sub-item types do not stop the association."""
    rq = _request()
    raw = rq.encode()
    extra_item = bytes.fromhex("99000002abcd")
    body = raw[6:] + extra_item
    # an unknown sub-item appended to the user information item would need its length fixed: add an item only
    raw = bytes((1, 0)) + struct.pack(">I", len(body)) + body
    acc = Association(Role.ACCEPTOR)
    acc.connection_made()
    acc.receive_data(raw)
    got = events(acc)
    assert len(got) == 1 and isinstance(got[0], AssociationRequested)
    assert got[0].request.presentation_contexts == rq.presentation_contexts


# --------------------------------------------------------------------------- unexpected PDUs


GARBAGE = {
    "associate-ac": AssociateAC("A", "B", UserInformation(), presentation_contexts=(PresentationContextAC(1, 0, IMPLICIT),)).encode(),
    "associate-rj": AssociateRJ(1, 1, 1).encode(),
    "p-data": _pdata(1, b"x"),
    "release-rq": ReleaseRQ().encode(),
    "release-rp": ReleaseRP().encode(),
    "unknown-type": bytes.fromhex("99 00 00000004 00000000"),
    "bad-length": bytes.fromhex("05 00 00000005 0000000000"),
    "short-rq": bytes.fromhex("01 00 00000004 00010000"),
    "huge": bytes.fromhex("01 00 FFFFFFFF"),
}
GARBAGE_REASON = {"unknown-type": 1, "bad-length": 6, "short-rq": 6, "huge": 6}


@pytest.mark.parametrize("name", list(GARBAGE))
def test_before_request_aborts(name):
    """Scenario D.25: anything but an A-ASSOCIATE-RQ in Sta2 -> A-ABORT (source 2), then closed."""
    acc = Association(Role.ACCEPTOR)
    acc.connection_made()
    acc.receive_data(GARBAGE[name])
    sent = _sent(acc)
    assert len(sent) == 1 and isinstance(sent[0], Abort) and sent[0].source == 2
    assert sent[0].reason == GARBAGE_REASON.get(name, AbortReason.UNEXPECTED_PDU)
    got = events(acc)
    assert len(got) == 1 and isinstance(got[0], Aborted) and got[0].source == 2
    assert acc.state is State.STA13 and acc.artim_running
    acc.receive_data(ReleaseRQ().encode())  # ignored in Sta13 (AA-6)
    assert acc.data_to_send() == []
    acc.artim_expired()
    assert acc.state is State.STA1 and acc.close_requested


def test_abort_before_request_just_closes():
    acc = Association(Role.ACCEPTOR)
    acc.connection_made()
    acc.receive_data(Abort().encode())  # AA-2 in Sta2: close, nothing sent
    assert acc.data_to_send() == []
    assert acc.state is State.STA1 and acc.close_requested


@pytest.mark.parametrize("side", ["requestor", "acceptor"])
@pytest.mark.parametrize("what", ["associate-rq", "associate-ac", "associate-rj"])
def test_second_associate_on_established_aborts(side, what):
    """Scenario D.26: a second RQ, or an AC/RJ, in Sta6 -> A-ABORT (2, 2) and an Aborted event (AA-8)."""
    req, acc = _established()
    victim, peer = (req, acc) if side == "requestor" else (acc, req)
    pdu = {"associate-rq": _request(), "associate-ac": req.accept_pdu, "associate-rj": AssociateRJ(1, 1, 1)}[what]
    victim.receive_data(pdu.encode())
    sent = _sent(victim)
    assert sent == [Abort(2, AbortReason.UNEXPECTED_PDU)]
    got = events(victim)
    assert len(got) == 1 and isinstance(got[0], Aborted)
    assert (got[0].initiator, got[0].source, got[0].reason) == ("local", 2, 2)
    assert victim.state is State.STA13 and victim.artim_running
    peer.receive_data(sent[0].encode())
    got = events(peer)
    assert len(got) == 1 and isinstance(got[0], Aborted) and (got[0].initiator, got[0].source, got[0].reason) == ("peer", 2, 2)
    assert peer.state is State.STA1 and peer.close_requested
    victim.connection_lost()
    assert victim.state is State.STA1


def test_pdus_after_abort_are_discarded():
    req, acc = _established()
    acc.receive_data(_request().encode() + _pdata(1, b"after"))
    assert _sent(acc) == [Abort(2, 2)]
    got = events(acc)
    assert [type(e) for e in got] == [Aborted]  # the P-DATA behind the bad PDU never reaches the user


def test_garbage_on_established_aborts():
    req, acc = _established()
    acc.receive_data(bytes.fromhex("99 00 00000004 00000000"))
    assert _sent(acc) == [Abort(2, 1)]
    req2, acc2 = _established()
    req2.receive_data(bytes.fromhex("04 00 00000003 000000"))
    assert _sent(req2) == [Abort(2, 6)]


def test_pdata_over_advertised_max_aborts():
    req, acc = _established(_request(max_pdu=1024))
    acc.send_pdata([_pdata(1, b"x" * 2000)])
    pump(req, acc)
    got = events(req)
    assert len(got) == 1 and isinstance(got[0], Aborted) and got[0].reason == 6
    assert req.state is State.STA13


def test_requestor_advertising_unlimited_accepts_large_pdata():
    """We advertise 0 (no limit): a P-DATA-TF above our default max PDU must not be refused."""
    req, acc = _established(_request(max_pdu=0))
    assert acc.peer_max_pdu == SEND_CAP
    payload = b"y" * 300_000
    acc.send_pdata([_pdata(1, payload)])
    pump(req, acc)
    got = events(req)
    assert [type(e) for e in got] == [DataReceived]
    assert bytes(got[0].pdata.pdvs[0].data) == payload


def test_acceptor_advertising_unlimited_accepts_large_pdata():
    req, acc = _established(policy=AcceptorPolicy("STORESCP", POLICY.contexts, max_pdu=0))
    assert req.peer_max_pdu == SEND_CAP
    req.send_pdata([_pdata(1, b"z" * 300_000)])
    pump(req, acc)
    assert [type(e) for e in events(acc)] == [DataReceived]


def test_peer_max_pdu_tracked():
    req, acc = _established(_request(max_pdu=4096), policy=AcceptorPolicy("STORESCP", POLICY.contexts, max_pdu=8192))
    assert acc.peer_max_pdu == 4096
    assert req.peer_max_pdu == 8192


# --------------------------------------------------------------------------- ARTIM


def test_artim_in_sta2_closes():
    acc = Association(Role.ACCEPTOR)
    acc.connection_made()
    assert acc.artim_running and acc.artim_starts == 1
    acc.artim_expired()
    assert acc.state is State.STA1 and acc.close_requested and not acc.artim_running
    assert acc.data_to_send() == []


def test_artim_ignored_outside_sta2_and_sta13():
    req, acc = _established()
    req.artim_expired()
    acc.artim_expired()
    assert req.is_established and acc.is_established
    assert req.data_to_send() == [] and acc.data_to_send() == []


def test_artim_after_abort_closes():
    req, acc = _established()
    acc.abort()
    assert acc.state is State.STA13 and acc.artim_running
    acc.artim_expired()
    assert acc.close_requested and acc.state is State.STA1


def test_connection_lost_while_established():
    req, acc = _established()
    req.connection_lost()
    got = events(req)
    assert len(got) == 1 and isinstance(got[0], Aborted) and got[0].initiator == "transport"
    assert req.state is State.STA1


def test_connection_lost_in_sta2():
    acc = Association(Role.ACCEPTOR)
    acc.connection_made()
    acc.connection_lost()
    assert acc.state is State.STA1 and not acc.artim_running


# --------------------------------------------------------------------------- local misuse


def test_local_requests_in_wrong_state_raise_and_send_nothing():
    req = Association(Role.REQUESTOR)
    calls = [
        lambda a: a.send_pdata([_pdata(1, b"x")]),
        lambda a: a.release(),
        lambda a: a.release_response(),
        lambda a: a.reject(AssociateRJ(1, 1, 1)),
        lambda a: a.accept(AssociateAC("A", "B", UserInformation())),
    ]
    for call in calls:
        with pytest.raises(LocalProtocolError):
            call(req)
        assert req.data_to_send() == [] and req.state is State.STA1
    # acceptor waiting for the RQ (Sta2)
    acc = Association(Role.ACCEPTOR)
    acc.connection_made()
    for call in calls + [lambda a: a.request(_request())]:
        with pytest.raises(LocalProtocolError):
            call(acc)
        assert acc.data_to_send() == [] and acc.state is State.STA2
    # established: no second request, no accept/reject, no release response without a release request
    req, acc = _established()
    for victim in (req, acc):
        for call in (
            lambda a: a.request(_request()),
            lambda a: a.accept(req.accept_pdu),
            lambda a: a.reject(AssociateRJ(1, 1, 1)),
            lambda a: a.release_response(),
        ):
            with pytest.raises(LocalProtocolError):
                call(victim)
            assert victim.data_to_send() == [] and victim.state is State.STA6
    # waiting for the AC (Sta5): no P-DATA, no release
    req2 = Association(Role.REQUESTOR)
    req2.request(_request())
    req2.connection_made()
    req2.data_to_send()
    for call in calls[:3]:
        with pytest.raises(LocalProtocolError):
            call(req2)
        assert req2.data_to_send() == [] and req2.state is State.STA5
    # after a release request (Sta7): no P-DATA (the requestor may not send after releasing)
    req.release()
    req.data_to_send()
    with pytest.raises(LocalProtocolError):
        req.send_pdata([_pdata(1, b"x")])
    assert req.data_to_send() == []


# --------------------------------------------------------------------------- negotiation


def test_transfer_syntax_acceptor_preference():
    rq = _request(contexts=((CT, [IMPLICIT, BIG, EXPLICIT]),))
    policy = AcceptorPolicy("STORESCP", {CT: [EXPLICIT, IMPLICIT]})
    ac = negotiate_acceptor(rq, policy)
    assert ac.presentation_contexts == (PresentationContextAC(1, ContextResult.ACCEPTANCE, EXPLICIT),)
    policy2 = AcceptorPolicy("STORESCP", {CT: [IMPLICIT, EXPLICIT]})
    assert negotiate_acceptor(rq, policy2).presentation_contexts[0].transfer_syntax == IMPLICIT


def test_callable_contexts_policy():
    policy = AcceptorPolicy("STORESCP", lambda uid: [EXPLICIT] if uid.startswith("1.2.840.10008.5.1.4.1.1.") else None)
    ac = negotiate_acceptor(_request(contexts=((CT, [EXPLICIT]), (VERIFICATION, [EXPLICIT]))), policy)
    assert [(c.context_id, c.result) for c in ac.presentation_contexts] == [(1, 0), (3, 3)]


def test_context_results_3_and_4():
    rq = _request(contexts=((MR, [IMPLICIT]), (CT, [BIG]), (VERIFICATION, [IMPLICIT])))
    ac = negotiate_acceptor(rq, POLICY)
    assert [(c.context_id, c.result) for c in ac.presentation_contexts] == [
        (1, ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED),
        (3, ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED),
        (5, ContextResult.ACCEPTANCE),
    ]
    assert set(requestor_contexts(rq, ac)) == {5}
    assert set(acceptor_contexts(rq, ac)) == {5}
    # an empty transfer syntax list cannot match
    rq = AssociateRQ("A", "B", UserInformation(), presentation_contexts=(PresentationContextRQ(1, CT, ()), *_contexts([3])))
    assert negotiate_acceptor(rq, POLICY).presentation_contexts[0].result == ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED


def test_accept_fields():
    rq = _request()
    ac = negotiate_acceptor(rq, POLICY)
    assert (ac.called_ae, ac.calling_ae) == (rq.called_ae, rq.calling_ae)
    assert ac.application_context == "1.2.840.10008.3.1.1.1"
    assert ac.user_info.max_length == POLICY.max_pdu
    assert ac.user_info.implementation_class_uid == POLICY.implementation_class_uid
    assert ac.user_info.implementation_version_name == POLICY.implementation_version_name
    assert ac.user_info.user_identity_response is None
    assert decode_pdu_bytes(ac.encode()) == ac


def test_role_selection_answers():
    roles = (RoleSelection(CT, 0, 1), RoleSelection(MR, 1, 1))
    rq = _request(contexts=((CT, [IMPLICIT]), (MR, [IMPLICIT]), (VERIFICATION, [IMPLICIT])), roles=roles)
    policy = AcceptorPolicy("STORESCP", {CT: [IMPLICIT], MR: [IMPLICIT], VERIFICATION: [IMPLICIT]}, scp_roles=lambda uid: uid == CT)
    ac = negotiate_acceptor(rq, policy)
    assert ac.user_info.roles == (RoleSelection(CT, 0, 1), RoleSelection(MR, 1, 0))
    mine = requestor_contexts(rq, ac)
    assert (mine[1].scu_role, mine[1].scp_role) == (False, True)  # we asked to be SCP only, granted
    assert (mine[3].scu_role, mine[3].scp_role) == (True, False)  # SCP refused
    assert (mine[5].scu_role, mine[5].scp_role) == (True, False)  # no role selection: default SCU
    theirs = acceptor_contexts(rq, ac)
    assert (theirs[1].scu_role, theirs[1].scp_role) == (True, False)  # mirrored: acceptor is SCU for CT
    assert (theirs[5].scu_role, theirs[5].scp_role) == (False, True)
    # no role answer from the acceptor: the default roles apply
    ac_no_roles = AssociateAC(ac.called_ae, ac.calling_ae, UserInformation(), presentation_contexts=ac.presentation_contexts)
    assert (requestor_contexts(rq, ac_no_roles)[1].scu_role, requestor_contexts(rq, ac_no_roles)[1].scp_role) == (True, False)


def test_requestor_ignores_unproposed_syntax_and_context():
    rq = _request(contexts=((CT, [IMPLICIT]), (VERIFICATION, [IMPLICIT])))
    ac = AssociateAC("STORESCP", "STORESCU", UserInformation(), presentation_contexts=(
        PresentationContextAC(1, 0, EXPLICIT),  # a syntax we never proposed for this context
        PresentationContextAC(3, 0, IMPLICIT),
        PresentationContextAC(7, 0, IMPLICIT),  # a context we never proposed
    ))
    assert set(requestor_contexts(rq, ac)) == {3}


def test_requestor_unproposed_syntax_over_the_wire():
    rq = _request(contexts=((CT, [IMPLICIT]), (VERIFICATION, [IMPLICIT])))
    req, acc, received = _pair(rq)
    ac = AssociateAC("STORESCP", "STORESCU", UserInformation.build(max_length=16384), presentation_contexts=(
        PresentationContextAC(1, 0, BIG), PresentationContextAC(3, 0, IMPLICIT)))
    acc.accept(ac)
    pump(req, acc)
    assert events(req) == [AssociationAccepted(ac)]
    assert set(req.contexts) == {3}


def test_send_limit():
    assert send_limit(0) == SEND_CAP
    assert send_limit(None) == SEND_CAP
    assert send_limit(16384) == 16384
    assert SEND_CAP <= UNLIMITED_PDATA_CAP


IDENTITY = UserIdentityRQ(2, True, b"alice", b"secret")


@pytest.mark.parametrize(
    "identity,accept,expected",
    [
        (IDENTITY, lambda i: i.primary == b"alice" and i.secondary == b"secret", "answer"),
        (UserIdentityRQ(2, False, b"alice", b"secret"), lambda i: True, "no-answer"),  # not requested
        (IDENTITY, None, "no-answer"),  # the policy does not check identities
        (IDENTITY, lambda i: False, "reject"),
        (None, lambda i: True, "no-answer"),
    ],
    ids=["requested-accepted", "not-requested", "no-policy", "refused", "absent"],
)
def test_user_identity(identity, accept, expected):
    rq = _request(user_identity=identity)
    policy = AcceptorPolicy("STORESCP", POLICY.contexts, accept_user_identity=accept)
    answer = negotiate_acceptor(rq, policy)
    if expected == "reject":
        assert answer == AssociateRJ(1, 1, 1)
        return
    assert isinstance(answer, AssociateAC)
    if expected == "answer":
        assert answer.user_info.user_identity_response == UserIdentityAC(b"")
        assert answer.encode().endswith(bytes.fromhex("59 00 0002 0000"))
    else:
        assert answer.user_info.user_identity_response is None
    assert "secret" not in repr(rq)


def test_describe_rejection():
    for source, reason in [(1, 1), (1, 2), (1, 3), (1, 7), (2, 1), (2, 2), (3, 1), (3, 2)]:
        text, hint = describe_rejection(AssociateRJ(1, source, reason))
        assert text and hint and "permanent" in text
    text, _ = describe_rejection(AssociateRJ(2, 3, 2))
    assert "transient" in text and "local limit" in text
    text, hint = describe_rejection(AssociateRJ(9, 9, 9))
    assert "9" in text and hint
