"""Every SCU and the SCP over the in-memory wire: the services' own logic, with no socket anywhere.

The SCU functions (``echo``, ``store``, ``find``, ``retrieve``) run unchanged; their associations are
routed to one of our ApplicationEntity objects over :func:`wire.memory_peer`. What is asserted is what
a user would see: statuses, counts, the files the SCP wrote, the errors that end a run.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage
from store_helpers import make_dataset, make_file, received, write
from wire import memory_peer

from dcmnet_cli.dimse.commandset import (
    C_CANCEL_RQ,
    C_ECHO_RQ,
    C_FIND_RQ,
    C_GET_RQ,
    Message,
    c_echo_rsp,
    c_find_rsp,
    c_get_rsp,
    c_store_rq,
)
from dcmnet_cli.errors import AssociationAborted
from dcmnet_cli.part10.sopclasses import storage_contexts
from dcmnet_cli.services.peer import Peer
from dcmnet_cli.services.query import MODELS, QuerySpec, decode_identifier, encode_identifier
from dcmnet_cli.services.scp.entity import ALL_UNCOMPRESSED, ApplicationEntity, EchoHandler
from dcmnet_cli.services.scp.storage import StorageConfig, StorageSCP
from dcmnet_cli.services.scp.store_handler import storage_handlers
from dcmnet_cli.services.scu.echo import echo
from dcmnet_cli.services.scu.find import find
from dcmnet_cli.services.scu.retrieve import GET, RetrieveRequest, retrieve
from dcmnet_cli.services.scu.store import store
from dcmnet_cli.services.scu.store_inputs import collect
from dcmnet_cli.services.session import MessageHandler, Session
from dcmnet_cli.transport.client import Timeouts
from dcmnet_cli.ul.negotiation import AcceptorPolicy

PEER = Peer("memory", 104, "MEMSCP")
TIMEOUTS = Timeouts(connect=5, acse=5, dimse=5, network=5)
STUDY = "1.2.826.0.1.3680043.9.7781.900.1"


def entity(handlers: dict | None = None, *, roles: bool = False) -> ApplicationEntity:
    policy = AcceptorPolicy(ae_title="MEMSCP", contexts=lambda uid: ALL_UNCOMPRESSED, scp_roles=lambda uid: roles)
    ae = ApplicationEntity(policy)
    ae.handlers.update(handlers or {})
    return ae


def storage_entity(root: Path, events: list) -> tuple[ApplicationEntity, StorageSCP]:
    scp = StorageSCP(StorageConfig(str(root), fsync=False), events.append)
    scp.prepare()
    policy = AcceptorPolicy(ae_title="MEMSCP", contexts=storage_contexts(ALL_UNCOMPRESSED, False, ALL_UNCOMPRESSED))
    return ApplicationEntity(policy, handlers=storage_handlers(scp), on_event=events.append), scp


# ------------------------------------------------------------------------------------------ C-ECHO


def test_echo_scu_and_scp_in_memory(monkeypatch) -> None:
    events: list = []
    ae = entity()
    ae.on_event = events.append
    with memory_peer(ae, monkeypatch) as failures:
        result = echo(PEER, "MEMSCU", TIMEOUTS, count=3)
    assert result.statuses == [0, 0, 0]
    assert not failures
    ended = [e for e in events if e.event == "association"]
    assert ended and ended[0].echoes == 3 and ended[0].outcome == "released"
    assert ended[0].calling_ae == "MEMSCU" and ended[0].called_ae == "MEMSCP"


def test_echo_status_from_the_scp_reaches_the_scu(monkeypatch) -> None:
    class Busy(MessageHandler):
        def complete(self, dataset: bytes | None) -> None:
            self.session.send(self.context_id, c_echo_rsp(self.message.message_id, 0x0110))

    with memory_peer(entity({C_ECHO_RQ: Busy}), monkeypatch):
        result = echo(PEER, "MEMSCU", TIMEOUTS)
    assert result.statuses == [0x0110]


# ------------------------------------------------------------------------------------------ C-STORE


def test_store_scu_into_storage_scp_in_memory(tmp_path: Path, monkeypatch) -> None:
    sources = [make_file(tmp_path / "in", f"mem-{n}") for n in range(3)]
    sources.append(write(tmp_path / "in" / "mr.dcm", make_dataset("mem-mr", MRImageStorage)))
    files, problems = collect([str(tmp_path / "in")])
    assert not problems
    events: list = []
    ae, scp = storage_entity(tmp_path / "out", events)
    with memory_peer(ae, monkeypatch) as failures:
        result = store(PEER, files, "MEMSCU", TIMEOUTS)
    assert not failures
    assert [o.status for o in result.files] == [0, 0, 0, 0]
    got = received(tmp_path / "out")
    assert len(got) == 4
    for source in sources:
        original = dcmread(source)
        copy = dcmread(got[original.SOPInstanceUID])
        assert copy.PixelData == original.PixelData
        assert copy.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert copy.file_meta.SourceApplicationEntityTitle == "MEMSCU"
    assert scp.totals.stored == 4
    assert [e.event for e in events].count("stored") == 4


def test_store_request_that_does_not_fit_its_context_is_refused(tmp_path: Path, monkeypatch) -> None:
    """PS3.7 §9.1: a CT C-STORE sent on the MR context gets 0x0122, nothing is written, and the
    association goes on (the next, well-formed store succeeds)."""
    ct, mr = make_dataset("fit-ct"), make_dataset("fit-mr", MRImageStorage)
    events: list = []
    ae, scp = storage_entity(tmp_path / "out", events)
    from dcmnet_cli.services.scu.association import associate, context_for
    from dcmnet_cli.transport.client import release
    from dcmnet_cli.ul.negotiation import build_contexts

    raw = {name: _raw(ds) for name, ds in (("ct", ct), ("mr", mr))}
    with memory_peer(ae, monkeypatch) as failures:
        session = associate(PEER, "MEMSCU", build_contexts([(CTImageStorage, (ExplicitVRLittleEndian,)),
                                                            (MRImageStorage, (ExplicitVRLittleEndian,))]), TIMEOUTS)
        mr_context = context_for(session, MRImageStorage).context_id
        wrong = session.request(mr_context, lambda mid: c_store_rq(mid, CTImageStorage, ct.SOPInstanceUID), raw["ct"])
        assert session.response(wrong, 5).message.status == 0x0122
        right = session.request(mr_context, lambda mid: c_store_rq(mid, MRImageStorage, mr.SOPInstanceUID), raw["mr"])
        assert session.response(right, 5).message.status == 0x0000
        release(session.driver, 5)
    assert not failures
    assert set(received(tmp_path / "out")) == {mr.SOPInstanceUID}
    assert scp.totals.stored == 1 and scp.totals.failed == 1
    refused = [e for e in events if e.event == "store-failed"]
    assert refused and refused[0].status == "0x0122" and "does not fit" in refused[0].detail


def test_echo_on_a_storage_context_is_refused(monkeypatch) -> None:
    from dcmnet_cli.dimse.commandset import c_echo_rq
    from dcmnet_cli.services.scu.association import associate, context_for
    from dcmnet_cli.transport.client import release
    from dcmnet_cli.ul.negotiation import build_contexts

    ae = entity()
    with memory_peer(ae, monkeypatch):
        session = associate(PEER, "MEMSCU", build_contexts([(CTImageStorage, (ExplicitVRLittleEndian,))]), TIMEOUTS)
        ct_context = context_for(session, CTImageStorage).context_id
        message_id = session.request(ct_context, c_echo_rq)
        assert session.response(message_id, 5).message.status == 0x0122
        release(session.driver, 5)


def _raw(ds: Dataset) -> bytes:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, ds)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------ C-FIND


class FindSCP:
    """Answers a C-FIND with pending matches; the final response waits for C-CANCEL-RQ if ``hold``."""

    def __init__(self, matches: int, hold: bool) -> None:
        self.matches, self.hold = matches, hold
        self.cancels: list[int] = []
        self.identifiers: list[Dataset] = []
        outer = self

        class Find(MessageHandler):
            def complete(self, dataset: bytes | None) -> None:
                syntax = self.session.contexts[self.context_id].transfer_syntax
                outer.identifiers.append(decode_identifier(dataset or b"", syntax))
                outer.pending = (self.session, self.context_id, self.message)
                for n in range(outer.matches):
                    match = Dataset()
                    match.QueryRetrieveLevel = "STUDY"
                    match.StudyInstanceUID = f"{STUDY}.{n}"
                    self.session.send(self.context_id, c_find_rsp(self.message.message_id, 0xFF00,
                                                                  self.message.affected_sop_class_uid, True),
                                      encode_identifier(match, syntax))
                if not outer.hold:
                    self.session.send(self.context_id, c_find_rsp(self.message.message_id, 0x0000,
                                                                  self.message.affected_sop_class_uid))

        class Cancel(MessageHandler):
            def complete(self, dataset: bytes | None) -> None:
                outer.cancels.append(self.message.message_id_being_responded_to)
                session, context_id, request = outer.pending
                session.send(context_id, c_find_rsp(request.message_id, 0xFE00, request.affected_sop_class_uid))

        self.entity = entity({C_FIND_RQ: Find, C_CANCEL_RQ: Cancel})


def _study_query() -> QuerySpec:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = ""
    return QuerySpec(MODELS["study"], "STUDY", identifier)


def test_find_pending_matches_in_memory(monkeypatch) -> None:
    scp = FindSCP(matches=5, hold=False)
    seen: list[str] = []
    with memory_peer(scp.entity, monkeypatch):
        result = find(PEER, _study_query(), "MEMSCU", TIMEOUTS, on_match=lambda n, ds: seen.append(ds.StudyInstanceUID))
    assert result.status == 0x0000 and result.matches == 5
    assert seen == [f"{STUDY}.{n}" for n in range(5)]
    assert scp.identifiers[0].QueryRetrieveLevel == "STUDY"


def test_find_cancel_reaches_the_scp_and_ends_with_cancel_status(monkeypatch) -> None:
    scp = FindSCP(matches=3, hold=True)
    with memory_peer(scp.entity, monkeypatch):
        result = find(PEER, _study_query(), "MEMSCU", TIMEOUTS, cancel_after=1)
    assert scp.cancels == [1], "the SCP never saw a C-CANCEL-RQ for message 1"
    assert result.cancel_sent and result.status == 0xFE00
    assert result.matches == 1 and result.dropped_after_cancel == 2


def test_find_silent_scp_trips_the_dimse_timeout(monkeypatch) -> None:
    from dcmnet_cli.errors import TimeoutExpired

    scp = FindSCP(matches=0, hold=True)  # never answers the final response
    with memory_peer(scp.entity, monkeypatch):
        with pytest.raises(TimeoutExpired, match="DIMSE timeout"):
            find(PEER, _study_query(), "MEMSCU", TIMEOUTS._replace(dimse=0.3))


# ------------------------------------------------------------------------------------------ C-GET


class GetSCP:
    """A C-GET SCP: sends each object as a C-STORE sub-operation on the same association, awaiting
    each C-STORE-RSP, with a pending C-GET-RSP after each and a final one with the counts."""

    def __init__(self, datasets: list[Dataset]) -> None:
        self.sub_statuses: list[int] = []
        outer = self

        class Get(MessageHandler):
            def complete(self, dataset: bytes | None) -> None:
                session, request = self.session, self.message
                done = failed = 0
                for index, ds in enumerate(datasets):
                    context = next(c for c in session.contexts.values() if c.abstract_syntax == ds.SOPClassUID)
                    mid = session.request(context.context_id, lambda m: c_store_rq(m, ds.SOPClassUID, ds.SOPInstanceUID),
                                          _raw(ds))
                    status = session.response(mid, 5).message.status
                    outer.sub_statuses.append(status)
                    done, failed = (done + 1, failed) if status == 0 else (done, failed + 1)
                    if index < len(datasets) - 1:
                        session.send(self.context_id, c_get_rsp(request.message_id, 0xFF00, request.affected_sop_class_uid,
                                                                remaining=len(datasets) - index - 1, completed=done,
                                                                failed=failed, warning=0))
                final = 0x0000 if not failed else 0xB000
                session.send(self.context_id, c_get_rsp(request.message_id, final, request.affected_sop_class_uid,
                                                        remaining=0, completed=done, failed=failed, warning=0))

        self.entity = entity({C_GET_RQ: Get}, roles=True)


def test_get_with_sub_operations_in_memory(tmp_path: Path, monkeypatch) -> None:
    datasets = [make_dataset("get-1"), make_dataset("get-2"), make_dataset("get-3", MRImageStorage)]
    scp = GetSCP(datasets)
    events: list = []
    storage = StorageSCP(StorageConfig(str(tmp_path / "got"), fsync=False), events.append)
    storage.prepare()
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = STUDY
    request = RetrieveRequest(lambda syntax: encode_identifier(identifier, syntax), f"STUDY {STUDY}")
    with memory_peer(scp.entity, monkeypatch) as failures:
        result = retrieve(GET, PEER, "MEMSCU", MODELS["study"].get, [request], storage=storage,
                          storage_classes=[CTImageStorage, MRImageStorage], timeouts=TIMEOUTS)
    assert result.error is None, result.error
    assert not failures
    operation = result.operations[0]
    assert operation.status == 0x0000 and operation.completed == 3 and operation.failed == 0
    assert operation.pending == 2
    assert scp.sub_statuses == [0, 0, 0]
    got = received(tmp_path / "got")
    assert set(got) == {ds.SOPInstanceUID for ds in datasets}
    assert dcmread(got[datasets[2].SOPInstanceUID]).SOPClassUID == MRImageStorage


# ------------------------------------------------------------------------------------------ protocol errors


def test_scp_aborts_on_a_command_fragment_inside_a_data_set(tmp_path: Path, monkeypatch) -> None:
    """A data set interrupted by a new command is a protocol error: the SCP aborts (reason 5), keeps
    nothing (no file, no temporary), and the SCU sees the association aborted (exit 6)."""
    from dcmnet_cli.dimse.fragment import pdu_bytes, fragment_message
    from dcmnet_cli.services.scu.association import associate, context_for
    from dcmnet_cli.ul.negotiation import build_contexts

    ds = make_dataset("cut-in", rows=128, columns=128)  # 32 KiB: many 4 KiB PDUs
    data = _raw(ds)
    events: list = []
    ae, scp = storage_entity(tmp_path / "out", events)
    with memory_peer(ae, monkeypatch) as failures:
        session = associate(PEER, "MEMSCU", build_contexts([(CTImageStorage, (ExplicitVRLittleEndian,))]), TIMEOUTS)
        context = context_for(session, CTImageStorage).context_id
        command = c_store_rq(1, CTImageStorage, ds.SOPInstanceUID).encode()
        pdus = [pdu_bytes(p) for p in fragment_message(context, command, data, 4096)]
        driver = session.driver
        assert len(pdus) > 4
        driver._send(pdus[:3])  # the command and the first data set fragments
        driver._send(pdus[:1])  # ... then a new command before the data set ended
        event = driver.next_event(5)
        assert type(event).__name__ == "Aborted" and event.source == 2 and event.reason == 5
    assert not failures
    assert not list((tmp_path / "out").rglob("*")), "a partial object or temporary file was left behind"
    assert [e.outcome for e in events if e.event == "association"] == ["aborted"]
    assert scp.totals.stored == 0


def test_scu_aborts_on_a_malformed_response(monkeypatch) -> None:
    class Garbage(MessageHandler):
        def complete(self, dataset: bytes | None) -> None:
            # A C-ECHO-RSP whose command set lies about its group length.
            good = c_echo_rsp(self.message.message_id, 0).encode()
            bad = good[:8] + struct.pack("<I", len(good) + 40) + good[12:]
            self.session.driver.send_message(self.context_id, _Raw(bad))

    with memory_peer(entity({C_ECHO_RQ: Garbage}), monkeypatch):
        with pytest.raises(AssociationAborted) as info:
            echo(PEER, "MEMSCU", TIMEOUTS)
    assert info.value.source == 2


class _Raw(Message):
    """A command set sent as given bytes (for hostile tests)."""

    def __new__(cls, data: bytes) -> "_Raw":
        self = super().__new__(cls, 0x8030)
        self._data = data  # type: ignore[attr-defined]
        return self

    def encode(self) -> bytes:
        return self._data  # type: ignore[attr-defined]


def test_unhandled_request_gets_unrecognised_operation(monkeypatch) -> None:
    """A request the SCP has no service for is answered 0x0211 and the association goes on."""
    from dcmnet_cli.services.scu.association import associate, context_for
    from dcmnet_cli.transport.client import release
    from dcmnet_cli.ul.negotiation import build_contexts
    from dcmnet_cli.dimse.commandset import c_find_rq, c_echo_rq

    ae = entity()
    ae.handlers = {C_ECHO_RQ: EchoHandler}
    with memory_peer(ae, monkeypatch):
        sop = MODELS["study"].find
        session = associate(PEER, "MEMSCU", build_contexts([(sop, (ExplicitVRLittleEndian,)),
                                                            ("1.2.840.10008.1.1", (ExplicitVRLittleEndian,))]), TIMEOUTS)
        mid = session.request(context_for(session, sop).context_id, lambda m: c_find_rq(m, sop), b"")
        assert session.response(mid, 5).message.status == 0x0211
        mid = session.request(context_for(session, "1.2.840.10008.1.1").context_id, c_echo_rq)
        assert session.response(mid, 5).message.status == 0x0000
        release(session.driver, 5)


def test_session_is_the_only_event_consumer() -> None:
    """No service module reads the event stream itself (one consumer: services/session.py)."""
    root = Path(__file__).resolve().parents[1] / "dcmnet_cli" / "services"
    readers = [p.relative_to(root).as_posix() for p in root.rglob("*.py")
               if "next_event(" in p.read_text() and p.name != "session.py"]
    assert readers == []
    assert Session.responses and Session.serve
