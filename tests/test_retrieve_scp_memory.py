"""The C-MOVE / C-GET SCP (services/scp/retrieve_handler.py) over the in-memory wire: our own SCU
(``services.scu.retrieve``) against it, no socket. What is asserted is what a requestor sees: statuses,
sub-operation counts, failed UID lists, and the files that arrive (byte for byte the stored data sets).
"""

from __future__ import annotations

from pathlib import Path

from pydicom import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, RLELossless
from store_helpers import assert_same, make_dataset, received, write
from wire import memory_peer

from dcmnet_cli.dimse.commandset import C_GET_RSP, c_cancel_rq, c_get_rq
from dcmnet_cli.part10.sopclasses import all_transfer_syntaxes, storage_contexts
from dcmnet_cli.services.dicomfiles import read_meta
from dcmnet_cli.services.peer import Peer
from dcmnet_cli.services.query import MODELS, decode_identifier, encode_identifier
from dcmnet_cli.services.scp.entity import ALL_UNCOMPRESSED, ApplicationEntity
from dcmnet_cli.services.scp.retrieve_handler import (RETRIEVE_CLASSES, Counts, RetrieveSCP, StoredInstance,
                                                      retrieve_handlers, storage_role)
from dcmnet_cli.services.scp.retrieve_send import StoreOutcome
from dcmnet_cli.services.scp.storage import StorageConfig, StorageSCP
from dcmnet_cli.services.scp.store_handler import storage_handlers
from dcmnet_cli.services.scu.association import associate, context_for
from dcmnet_cli.services.scu.retrieve import GET, MOVE, RetrieveRequest, retrieve, storage_roles
from dcmnet_cli.transport.client import Timeouts, release
from dcmnet_cli.ul.negotiation import AcceptorPolicy, build_contexts

PEER = Peer("memory", 104, "MEMSCP")
TIMEOUTS = Timeouts(connect=5, acse=5, dimse=5, network=5)


class FakeArchive:
    """``Index.instances`` over a list of files: every instance of the study (or series / instance) named."""

    def __init__(self, paths: list[Path]) -> None:
        self.items = []
        for path in paths:
            meta = read_meta(path)
            from pydicom import dcmread

            ds = dcmread(path, stop_before_pixels=True)
            self.items.append((ds, StoredInstance(str(path), meta.sop_class_uid, meta.sop_instance_uid,
                                                  meta.transfer_syntax, meta.size)))
        self.calls: list[tuple[str, str]] = []

    def instances(self, model: str, level: str, identifier: Dataset) -> list[StoredInstance]:
        self.calls.append((model, level))
        keys = {"STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID", "IMAGE": "SOPInstanceUID"}
        wanted = {key: str(identifier.get(key)) for key in keys.values() if identifier.get(key)}
        return [inst for ds, inst in self.items if all(str(ds.get(k)) == v for k, v in wanted.items())]


def archive_of(folder: Path, datasets: list[Dataset], syntax: str = ExplicitVRLittleEndian) -> tuple[FakeArchive, list[Path]]:
    paths = [write(folder / f"{i:03d}.dcm", ds, syntax) for i, ds in enumerate(datasets)]
    return FakeArchive(paths), paths


def node(archive: FakeArchive, inbox: Path, events: list, destinations: dict[str, Peer] | None = None
         ) -> ApplicationEntity:
    """A listen-like entity: storage into ``inbox`` plus C-MOVE/C-GET from ``archive``."""
    storage = StorageSCP(StorageConfig(str(inbox), fsync=False), events.append)
    storage.prepare()
    scp = RetrieveSCP(archive, "MEMSCP", lambda aet: (destinations or {}).get(aet), TIMEOUTS, on_event=events.append)
    syntaxes = storage_contexts(all_transfer_syntaxes(), False, ALL_UNCOMPRESSED)  # as listen

    def contexts(uid: str):  # type: ignore[no-untyped-def]
        return ALL_UNCOMPRESSED if uid in RETRIEVE_CLASSES else syntaxes(uid)

    policy = AcceptorPolicy(ae_title="MEMSCP", contexts=contexts, scp_roles=storage_role)
    return ApplicationEntity(policy, handlers={**storage_handlers(storage), **retrieve_handlers(scp)})


def study_request(ds: Dataset, level: str = "STUDY") -> RetrieveRequest:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = level
    identifier.StudyInstanceUID = ds.StudyInstanceUID
    if level in ("SERIES", "IMAGE"):
        identifier.SeriesInstanceUID = ds.SeriesInstanceUID
    if level == "IMAGE":
        identifier.SOPInstanceUID = ds.SOPInstanceUID
    return RetrieveRequest(lambda syntax: encode_identifier(identifier, syntax), f"{level}")


def getter(folder: Path) -> StorageSCP:
    storage = StorageSCP(StorageConfig(str(folder), fsync=False), lambda event: None)
    storage.prepare()
    return storage


def test_get_study_delivers_every_instance_byte_for_byte(tmp_path: Path, monkeypatch) -> None:
    datasets = [make_dataset(f"g{i}") for i in range(3)] + [make_dataset("g-mr", MRImageStorage)]
    archive, paths = archive_of(tmp_path / "archive", datasets)
    with memory_peer(node(archive, tmp_path / "inbox", []), monkeypatch) as failures:
        result = retrieve(GET, PEER, "MEMSCU", MODELS["study"].get, [study_request(datasets[0])],
                          storage=getter(tmp_path / "got"), storage_classes=[CTImageStorage, MRImageStorage],
                          timeouts=TIMEOUTS)
    assert result.error is None and not failures
    operation = result.operations[0]
    assert (operation.status, operation.completed, operation.failed, operation.warning) == (0, 4, 0, 0)
    assert operation.pending >= 1  # after the first sub-operation, then at most every 0.1 s
    got = received(tmp_path / "got")
    assert set(got) == {ds.SOPInstanceUID for ds in datasets}
    for path in paths:
        assert_same(path, got[read_meta(path).sop_instance_uid])
    assert archive.calls == [("study", "STUDY")]


def test_get_series_and_image_levels_send_only_what_they_name(tmp_path: Path, monkeypatch) -> None:
    datasets = [make_dataset("s-ct1"), make_dataset("s-ct2"), make_dataset("s-mr", MRImageStorage)]
    archive, _ = archive_of(tmp_path / "archive", datasets)
    requests = [study_request(datasets[2], "SERIES"), study_request(datasets[0], "IMAGE")]
    with memory_peer(node(archive, tmp_path / "inbox", []), monkeypatch):
        result = retrieve(GET, PEER, "MEMSCU", MODELS["study"].get, requests, storage=getter(tmp_path / "got"),
                          storage_classes=[CTImageStorage, MRImageStorage], timeouts=TIMEOUTS)
    assert [op.completed for op in result.operations] == [1, 1]
    assert set(received(tmp_path / "got")) == {datasets[2].SOPInstanceUID, datasets[0].SOPInstanceUID}


def test_get_of_a_class_the_requestor_did_not_offer_counts_it_failed(tmp_path: Path, monkeypatch) -> None:
    """PS3.4 C.4.3.3.1: an instance of a class without a context (with the SCP role) for the requestor is
    a failed sub-operation, not a failed retrieve: the rest is delivered, status 0xB000, the UID listed."""
    datasets = [make_dataset("o-ct1"), make_dataset("o-mr", MRImageStorage), make_dataset("o-ct2")]
    archive, _ = archive_of(tmp_path / "archive", datasets)
    with memory_peer(node(archive, tmp_path / "inbox", []), monkeypatch):
        result = retrieve(GET, PEER, "MEMSCU", MODELS["study"].get, [study_request(datasets[0])],
                          storage=getter(tmp_path / "got"), storage_classes=[CTImageStorage], timeouts=TIMEOUTS)
    operation = result.operations[0]
    assert (operation.status, operation.completed, operation.failed) == (0xB000, 2, 1)
    assert operation.failed_uids == [datasets[1].SOPInstanceUID]
    assert set(received(tmp_path / "got")) == {datasets[0].SOPInstanceUID, datasets[2].SOPInstanceUID}


def test_get_sends_a_compressed_object_in_its_own_syntax(tmp_path: Path, monkeypatch) -> None:
    ds = make_dataset("rle", rows=32, columns=32)
    archive, paths = archive_of(tmp_path / "archive", [ds], RLELossless)
    with memory_peer(node(archive, tmp_path / "inbox", []), monkeypatch):
        result = retrieve(GET, PEER, "MEMSCU", MODELS["study"].get, [study_request(ds)],
                          storage=getter(tmp_path / "got"), storage_classes=[CTImageStorage], timeouts=TIMEOUTS,
                          storage_syntaxes=[RLELossless, ExplicitVRLittleEndian])
    assert result.operations[0].status == 0
    copy = received(tmp_path / "got")[ds.SOPInstanceUID]
    assert read_meta(copy).transfer_syntax == RLELossless
    assert_same(paths[0], copy)


def test_move_to_a_known_destination(tmp_path: Path, monkeypatch) -> None:
    """The sub-operations go over a new association to the destination (here the same in-memory node,
    whose storage writes into its inbox), each file in its own syntax."""
    datasets = [make_dataset(f"m{i}") for i in range(3)]
    archive, paths = archive_of(tmp_path / "archive", datasets)
    events: list = []
    entity = node(archive, tmp_path / "inbox", events, {"DEST": Peer("memory", 105, "DEST")})
    with memory_peer(entity, monkeypatch) as failures:
        result = retrieve(MOVE, PEER, "MEMSCU", MODELS["study"].move, [study_request(datasets[0])],
                          destination="DEST", timeouts=TIMEOUTS)
    assert result.error is None and not failures
    operation = result.operations[0]
    assert (operation.status, operation.completed, operation.failed) == (0, 3, 0)
    got = received(tmp_path / "inbox")
    for path in paths:
        assert_same(path, got[read_meta(path).sop_instance_uid])
    (served,) = [e for e in events if getattr(e, "event", None) == "retrieve"]
    assert (served.service, served.destination, served.status, served.completed) == ("C-MOVE", "DEST", "0x0000", 3)
    assert served.calling_ae == "MEMSCU"


def test_move_to_an_unknown_destination_is_refused_a801(tmp_path: Path, monkeypatch) -> None:
    ds = make_dataset("u1")
    archive, _ = archive_of(tmp_path / "archive", [ds])
    with memory_peer(node(archive, tmp_path / "inbox", []), monkeypatch):
        result = retrieve(MOVE, PEER, "MEMSCU", MODELS["study"].move, [study_request(ds)], destination="NOWHERE",
                          timeouts=TIMEOUTS)
    assert result.operations[0].status == 0xA801
    assert archive.calls == []  # refused before the index was asked
    assert not list((tmp_path / "inbox").rglob("*.dcm"))


def test_move_to_a_destination_that_refuses_connections_fails_every_sub_operation(tmp_path: Path,
                                                                                   monkeypatch) -> None:
    datasets = [make_dataset("r1"), make_dataset("r2")]
    archive, _ = archive_of(tmp_path / "archive", datasets)
    entity = node(archive, tmp_path / "inbox", [], {"DEST": Peer("memory", 105, "DEST")})
    with memory_peer(entity, monkeypatch):
        entity.policy = entity.policy._replace(allowed_calling_aets=frozenset({"MEMSCU"}))  # rejects MEMSCP
        result = retrieve(MOVE, PEER, "MEMSCU", MODELS["study"].move, [study_request(datasets[0])],
                          destination="DEST", timeouts=TIMEOUTS)
    operation = result.operations[0]
    assert (operation.status, operation.completed, operation.failed) == (0xA702, 0, 2)
    assert sorted(operation.failed_uids) == sorted(ds.SOPInstanceUID for ds in datasets)


def test_bad_identifiers_are_refused_a900(tmp_path: Path, monkeypatch) -> None:
    ds = make_dataset("b1")
    archive, _ = archive_of(tmp_path / "archive", [ds])
    no_level, wrong_level, no_key = Dataset(), Dataset(), Dataset()
    no_level.StudyInstanceUID = ds.StudyInstanceUID
    wrong_level.QueryRetrieveLevel = "PATIENT"  # not a level of the study root model
    wrong_level.PatientID = "X"
    no_key.QueryRetrieveLevel = "SERIES"
    no_key.StudyInstanceUID = ds.StudyInstanceUID
    requests = [RetrieveRequest(lambda s, i=i: encode_identifier(i, s), "bad") for i in (no_level, wrong_level, no_key)]
    with memory_peer(node(archive, tmp_path / "inbox", []), monkeypatch):
        result = retrieve(GET, PEER, "MEMSCU", MODELS["study"].get, requests, storage=getter(tmp_path / "got"),
                          storage_classes=[CTImageStorage], timeouts=TIMEOUTS)
    assert [op.status for op in result.operations] == [0xA900] * 3
    assert archive.calls == []


def test_nothing_matched_is_success_with_zero_counts(tmp_path: Path, monkeypatch) -> None:
    archive, _ = archive_of(tmp_path / "archive", [make_dataset("z1")])
    other = make_dataset("z2")
    other.StudyInstanceUID = "1.2.3.4.5"
    with memory_peer(node(archive, tmp_path / "inbox", []), monkeypatch):
        result = retrieve(GET, PEER, "MEMSCU", MODELS["study"].get, [study_request(other)],
                          storage=getter(tmp_path / "got"), storage_classes=[CTImageStorage], timeouts=TIMEOUTS)
    operation = result.operations[0]
    assert (operation.status, operation.completed, operation.failed) == (0, 0, 0)


def test_cancel_stops_a_get_before_the_next_sub_operation(tmp_path: Path, monkeypatch) -> None:
    """A C-CANCEL-RQ sent right after the C-GET-RQ: the SCP finishes the sub-operation under way, then
    answers Cancel (0xFE00) with the counts (1 completed, the rest remaining) and sends nothing more."""
    datasets = [make_dataset(f"c{i}") for i in range(5)]
    archive, _ = archive_of(tmp_path / "archive", datasets)
    storage = getter(tmp_path / "got")
    sop_class = MODELS["study"].get
    with memory_peer(node(archive, tmp_path / "inbox", []), monkeypatch) as failures:
        contexts = build_contexts([(sop_class, (ExplicitVRLittleEndian,)), (CTImageStorage, (ExplicitVRLittleEndian,))])
        session = associate(PEER, "MEMSCU", contexts, TIMEOUTS, roles=storage_roles([CTImageStorage]),
                            handlers=storage_handlers(storage))
        context = context_for(session, sop_class)
        message_id = session.request(context.context_id, lambda mid: c_get_rq(mid, sop_class),
                                     study_request(datasets[0]).encode(ExplicitVRLittleEndian))
        session.send(context.context_id, c_cancel_rq(message_id))
        from dcmnet_cli.services.session import DimseTimeout

        answers = []
        for response in session.responses(message_id, DimseTimeout(5), C_GET_RSP):
            answers.append(response)
            if response.message.status != 0xFF00:
                break
        release(session.driver, 5)
    assert not failures
    final = answers[-1].message
    assert final.status == 0xFE00
    assert (final.completed, final.remaining, final.failed) == (1, 4, 0)
    assert len(received(tmp_path / "got")) == 1


def test_final_status_rules() -> None:
    def counts(ok: int, failed: int, warning: int) -> Counts:
        c = Counts(ok + failed + warning)
        for i in range(ok):
            c.record(f"ok{i}", StoreOutcome(0))
        for i in range(failed):
            c.record(f"f{i}", StoreOutcome(0xA700))
        for i in range(warning):
            c.record(f"w{i}", StoreOutcome(0xB000))
        return c

    assert counts(3, 0, 0).final_status() == 0x0000
    assert counts(2, 1, 0).final_status() == 0xB000
    assert counts(2, 0, 1).final_status() == 0xB000
    assert counts(0, 2, 0).final_status() == 0xA702
    assert counts(0, 0, 0).final_status() == 0x0000
    assert counts(1, 2, 0).failed_uids == ["f0", "f1"]
    assert decode_identifier  # the failed list round-trips in the SCU tests above


def test_a_file_gone_from_disk_is_a_failed_sub_operation(tmp_path: Path, monkeypatch) -> None:
    """The index lists a file someone deleted: that instance fails (listed), the others still go."""
    datasets = [make_dataset(f"gone{i}") for i in range(3)]
    archive, paths = archive_of(tmp_path / "archive", datasets)
    paths[1].unlink()
    with memory_peer(node(archive, tmp_path / "inbox", []), monkeypatch):
        result = retrieve(GET, PEER, "MEMSCU", MODELS["study"].get, [study_request(datasets[0])],
                          storage=getter(tmp_path / "got"), storage_classes=[CTImageStorage], timeouts=TIMEOUTS)
    operation = result.operations[0]
    assert (operation.status, operation.completed, operation.failed) == (0xB000, 2, 1)
    assert operation.failed_uids == [datasets[1].SOPInstanceUID]


def test_a_file_without_a_group_length_is_still_sent_whole(tmp_path: Path, monkeypatch) -> None:
    """Files dropped into the folder by hand may lack (0002,0000): the element walker finds the data set."""
    from pydicom import dcmread

    ds = make_dataset("no-group-length", rows=256, columns=256)  # large: sent from disk
    archive, paths = archive_of(tmp_path / "archive", [ds])
    original = dcmread(paths[0])
    del original.file_meta.FileMetaInformationGroupLength
    original.save_as(paths[0], enforce_file_format=False)
    assert paths[0].read_bytes()[132:136] != b"\x02\x00\x00\x00"
    with memory_peer(node(archive, tmp_path / "inbox", []), monkeypatch):
        result = retrieve(GET, PEER, "MEMSCU", MODELS["study"].get, [study_request(ds)],
                          storage=getter(tmp_path / "got"), storage_classes=[CTImageStorage], timeouts=TIMEOUTS)
    assert result.operations[0].status == 0
    assert_same(paths[0], received(tmp_path / "got")[ds.SOPInstanceUID])


def test_cancels_for_requests_never_sent_are_bounded(monkeypatch) -> None:
    """A hostile peer sending C-CANCEL-RQs for message IDs it never used: noted up to a bound, no answer,
    and the association goes on (an echo still works afterwards)."""
    from dcmnet_cli.dimse.commandset import C_ECHO_RSP, VERIFICATION_SOP_CLASS, c_echo_rq
    from dcmnet_cli.services import session as session_module
    from dcmnet_cli.services.scp.entity import EchoHandler

    seen: list = []

    class Spy(EchoHandler):
        def complete(self, dataset: bytes | None) -> None:
            seen.append(len(self.session.cancelled))
            super().complete(dataset)

    policy = AcceptorPolicy(ae_title="MEMSCP", contexts=lambda uid: ALL_UNCOMPRESSED)
    entity = ApplicationEntity(policy)
    entity.handlers[0x0030] = Spy
    with memory_peer(entity, monkeypatch) as failures:
        session = associate(PEER, "MEMSCU", build_contexts([(VERIFICATION_SOP_CLASS, (ExplicitVRLittleEndian,))]),
                            TIMEOUTS)
        context = context_for(session, VERIFICATION_SOP_CLASS).context_id
        for n in range(session_module.MAX_CANCELLED + 50):
            session.send(context, c_cancel_rq(1000 + n))
        message_id = session.request(context, lambda mid: c_echo_rq(mid))
        assert session.response(message_id, 5, C_ECHO_RSP).message.status == 0
        release(session.driver, 5)
    assert not failures
    assert seen == [session_module.MAX_CANCELLED]
