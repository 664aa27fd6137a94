"""``dcmnet listen --worklist DIR``: the Modality Worklist SCP answers DCMTK ``findscu -W`` and our own
``dcmnet find -W`` from items generated here (DICOM and DICOM JSON files): scheduled date ranges, modality,
station AE title; an item added or changed while listen runs is found at the next query; a broken file is
skipped with one log line and never fails a query; C-CANCEL stops the answers (0xFE00)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from helpers.procs import LOOPBACK, find_dcmtk, listen_server, run_dcmnet, run_tool

MWL = "1.2.840.10008.5.1.4.31"


def item(number: int, name: str, modality: str, station: str, date: str, time_: str = "0900") -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName, ds.PatientID, ds.AccessionNumber = name, f"PAT{number}", f"ACC{number}"
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.10.543.{number}"
    step = Dataset()
    step.Modality, step.ScheduledStationAETitle = modality, station
    step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime = date, time_
    step.ScheduledProcedureStepID, step.ScheduledProcedureStepDescription = f"SPS{number}", f"{modality} exam"
    ds.ScheduledProcedureStepSequence = Sequence([step])
    return ds


def save(ds: Dataset, path: Path) -> None:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = MWL
    ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.10.543.9{len(str(path))}"
    ds.save_as(path, enforce_file_format=True)


def fill(folder: Path) -> Path:
    folder.mkdir()
    save(item(1, "Doe^John", "CT", "CT1", "20240115"), folder / "1.wl")
    save(item(2, "Müller^Jörg", "MR", "MR1", "20240120", "1400"), folder / "2.wl")
    (folder / "3.json").write_text(json.dumps(item(3, "Roe^Jane", "CT", "CT2", "20240201").to_json_dict()))
    (folder / "broken.wl").write_bytes(b"\x00" * 10 + b"not a worklist item")
    return folder


@pytest.fixture(scope="session")
def tools() -> None:
    """DCMTK findscu: a missing one fails under CI=true, else skips."""
    _found, missing = find_dcmtk(("findscu",))
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("DCMTK findscu not found on PATH")
        pytest.skip("DCMTK findscu not found on PATH")


@pytest.fixture
def worklist(tmp_path: Path) -> Path:
    return fill(tmp_path / "worklist")


@pytest.fixture
def node(worklist: Path, tmp_path: Path):
    """A listen of its own (for tests that change the folder)."""
    with listen_server("-od", str(tmp_path / "stored"), "--worklist", str(worklist)) as server:
        yield server


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One listen for the tests that only query."""
    base = tmp_path_factory.mktemp("worklist-shared")
    with listen_server("-od", str(base / "stored"), "--worklist", str(fill(base / "worklist"))) as server:
        yield server


def findscu(tools: None, port: int, out: Path, *keys: str, extra: tuple[str, ...] = ()) -> list[Dataset]:
    """findscu -W with these keys (a later -k of the same attribute wins); the pending identifiers it received (written by -X into ``out``)."""
    out.mkdir(exist_ok=True)
    for old in out.iterdir():
        old.unlink()
    argv = ["findscu", "-W", "-X", "-od", str(out), *extra, LOOPBACK, str(port)]
    for key in keys:
        argv += ["-k", key]
    code, stdout, stderr = run_tool(argv)
    assert code == 0, stdout + stderr
    return [pydicom.dcmread(path) for path in sorted(out.iterdir())]


SPS = "ScheduledProcedureStepSequence[0]"
RETURN_KEYS = ("PatientName", "PatientID", f"{SPS}.ScheduledStationAETitle", f"{SPS}.Modality",
               f"{SPS}.ScheduledProcedureStepStartDate")


def ids(answers: list[Dataset]) -> set[str]:
    return {answer.PatientID for answer in answers}


@pytest.mark.parametrize("key, expected", [
    (f"{SPS}.Modality=CT", {"PAT1", "PAT3"}),
    (f"{SPS}.Modality=MR", {"PAT2"}),
    (f"{SPS}.ScheduledStationAETitle=CT1", {"PAT1"}),
    (f"{SPS}.ScheduledStationAETitle=*2", {"PAT3"}),
    (f"{SPS}.ScheduledProcedureStepStartDate=20240116-20240131", {"PAT2"}),
    (f"{SPS}.ScheduledProcedureStepStartDate=20240120-", {"PAT2", "PAT3"}),
    (f"{SPS}.ScheduledProcedureStepStartDate=-20240115", {"PAT1"}),
    (f"{SPS}.ScheduledProcedureStepStartTime=1200-", {"PAT2"}),
    ("PatientName=M?ller*", {"PAT2"}),
    (f"{SPS}.Modality=US", set()),
])
def test_findscu_worklist_matching(tools, shared, tmp_path, key, expected) -> None:
    answers = findscu(tools, shared.port, tmp_path / "answers", *RETURN_KEYS, key)
    assert ids(answers) == expected


def test_answers_hold_the_requested_keys_with_utf8(tools, shared, tmp_path) -> None:
    answers = findscu(tools, shared.port, tmp_path / "answers", *RETURN_KEYS, f"{SPS}.Modality=MR")
    [answer] = answers
    assert str(answer.PatientName) == "Müller^Jörg" and answer.SpecificCharacterSet == "ISO_IR 192"
    step = answer.ScheduledProcedureStepSequence[0]
    assert (step.Modality, step.ScheduledStationAETitle, step.ScheduledProcedureStepStartDate) == (
        "MR", "MR1", "20240120")
    assert "ScheduledProcedureStepDescription" not in step and "AccessionNumber" not in answer  # not asked
    assert "QueryRetrieveLevel" not in answer


def test_item_added_or_changed_while_running_is_found(tools, node, worklist, tmp_path) -> None:
    assert ids(findscu(tools, node.port, tmp_path / "a", *RETURN_KEYS, f"{SPS}.Modality=US")) == set()
    save(item(4, "New^Patient", "US", "US1", "20240301"), worklist / "4.wl")
    assert ids(findscu(tools, node.port, tmp_path / "a", *RETURN_KEYS, f"{SPS}.Modality=US")) == {"PAT4"}
    changed = item(1, "Doe^John", "US", "US1", "20240115")  # same file, another modality (and size)
    changed.ScheduledProcedureStepSequence[0].ScheduledProcedureStepDescription = "moved to ultrasound"
    save(changed, worklist / "1.wl")
    assert ids(findscu(tools, node.port, tmp_path / "a", *RETURN_KEYS, f"{SPS}.Modality=US")) == {"PAT1", "PAT4"}
    (worklist / "4.wl").unlink()
    assert ids(findscu(tools, node.port, tmp_path / "a", *RETURN_KEYS, f"{SPS}.Modality=US")) == {"PAT1"}


def test_broken_file_is_skipped_with_one_log_line(tools, node, worklist, tmp_path) -> None:
    assert node.wait_for_stderr("broken.wl")
    for _ in range(2):  # queried twice: still one line for the unchanged broken file
        assert ids(findscu(tools, node.port, tmp_path / "a", *RETURN_KEYS)) == {"PAT1", "PAT2", "PAT3"}
    (worklist / "half.json").write_text('{"00100010": {"vr": "PN", "Val')  # a file still being written
    (worklist / "no-steps.json").write_text(json.dumps({"00100020": {"vr": "LO", "Value": ["X"]}}))
    assert ids(findscu(tools, node.port, tmp_path / "a", *RETURN_KEYS)) == {"PAT1", "PAT2", "PAT3"}
    assert node.alive()
    log = node.stderr()
    lines = [line for line in log.splitlines() if "worklist-skipped" in line]
    assert len(lines) == 3, log
    assert sum("broken.wl" in line for line in lines) == 1
    assert any("half.json" in line and "not DICOM JSON" in line for line in lines)
    assert any("no-steps.json" in line and "Scheduled Procedure Step Sequence" in line for line in lines)
    assert "Traceback" not in log


def test_dcmnet_find_worklist_mode(shared) -> None:
    code, out, err = run_dcmnet("find", "-W", LOOPBACK, str(shared.port), "-k", f"{SPS}.Modality=CT",
                                "-k", "PatientID", "-k", "PatientName", "--json")
    assert code == 0, err
    found = [json.loads(line) for line in out.splitlines()]
    assert sorted(answer["00100020"]["Value"][0] for answer in found) == ["PAT1", "PAT3"]


def test_listen_worklist_folder_missing_exits_3(tmp_path) -> None:
    code, out, err = run_dcmnet("listen", "--bind", LOOPBACK, "-od", str(tmp_path / "od"),
                                "--worklist", str(tmp_path / "nowhere"), "0")
    assert code == 3 and out == ""
    assert "worklist" in err and "nowhere" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_query_retrieve_find_still_answered_next_to_the_worklist(shared) -> None:
    code, out, err = run_dcmnet("find", LOOPBACK, str(shared.port), "-k", "PatientName")
    assert code == 0, err  # the study root class goes to the index's C-FIND SCP, not to the worklist


# ---------------------------------------------------------------- the handler over a scripted session


class _Context:
    transfer_syntax = "1.2.840.10008.1.2.1"


class FakeSession:
    """Records what the handler sends; ``serve_arrived`` delivers a C-CANCEL-RQ after ``cancel_after``."""

    def __init__(self, cancel_after: int | None = None) -> None:
        self.sent: list[tuple[Any, bytes | None]] = []
        self.cancelled: set[int] = set()
        self.contexts = {1: _Context()}
        self.cancel_after = cancel_after
        from dcmnet_cli.services.session import AssociationReport

        self.report = AssociationReport("127.0.0.1:1", "SCU", "SCP")

    def send(self, context_id: int, message: Any, dataset: Any = None) -> None:
        self.sent.append((message, dataset))

    def serve_arrived(self, what: str = "") -> None:
        if self.cancel_after is not None and len(self.sent) >= self.cancel_after:
            self.cancelled.add(7)


def run_handler(folder: Path, session: FakeSession, sop_class: str = MWL, **keys: Any) -> list[int]:
    from dcmnet_cli.dimse.commandset import c_find_rq
    from dcmnet_cli.services.query import encode_identifier
    from dcmnet_cli.services.scp.worklist import WorklistFolder, WorklistHandler

    identifier = Dataset()
    identifier.PatientID = ""
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    handler = WorklistHandler(WorklistFolder(str(folder)))
    handler.begin(session, 1, c_find_rq(7, sop_class))  # type: ignore[arg-type]
    handler.complete(encode_identifier(identifier, "1.2.840.10008.1.2.1"))
    return [message.status for message, _data in session.sent]


def many_items(folder: Path, count: int) -> None:
    folder.mkdir(exist_ok=True)
    items = [item(number, f"P^{number}", "CT", "CT1", "20240115").to_json_dict() for number in range(count)]
    (folder / "many.json").write_text(json.dumps(items))


def test_statuses_pending_then_success(tmp_path) -> None:
    many_items(tmp_path / "wl", 5)
    assert run_handler(tmp_path / "wl", FakeSession()) == [0xFF00] * 5 + [0x0000]


def test_c_cancel_stops_the_answers_with_fe00(tmp_path) -> None:
    many_items(tmp_path / "wl", 20)
    assert run_handler(tmp_path / "wl", FakeSession(cancel_after=3)) == [0xFF00] * 3 + [0xFE00]


def test_other_sop_class_a900_and_unreadable_folder_c000(tmp_path) -> None:
    many_items(tmp_path / "wl", 2)
    assert run_handler(tmp_path / "wl", FakeSession(), sop_class="1.2.840.10008.5.1.4.1.2.2.1") == [0xA900]
    assert run_handler(tmp_path / "gone", FakeSession()) == [0xC000]


def test_oversized_file_is_skipped_unread(tmp_path, monkeypatch) -> None:
    from dcmnet_cli.services.scp import worklist as module

    many_items(tmp_path / "wl", 2)
    monkeypatch.setattr(module, "MAX_ITEM_FILE", 100)
    events: list[Any] = []
    assert module.WorklistFolder(str(tmp_path / "wl"), events.append).items() == []
    assert len(events) == 1 and "MiB" in events[0].detail and "many.json" in events[0].detail


def test_unchanged_folder_is_not_read_again(tmp_path, monkeypatch) -> None:
    from dcmnet_cli.services.scp import worklist as module

    many_items(tmp_path / "wl", 3)
    reads: list[str] = []
    original = module.read_items
    monkeypatch.setattr(module, "read_items", lambda path: reads.append(path) or original(path))
    folder = module.WorklistFolder(str(tmp_path / "wl"))
    assert len(folder.items()) == 3 and len(folder.items()) == 3
    assert len(reads) == 1
    path = tmp_path / "wl" / "many.json"
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # touched: read again
    assert len(folder.items()) == 3 and len(reads) == 2


def test_findscu_cancel_ends_with_cancel_status(tools, tmp_path) -> None:
    many_items(tmp_path / "wl", 300)
    with listen_server("-od", str(tmp_path / "stored"), "--worklist", str(tmp_path / "wl")) as server:
        code, out, err = run_tool(["findscu", "-v", "-W", "--cancel", "3", LOOPBACK, str(server.port),
                                   "-k", "PatientName"])
        assert code == 0, out + err
        log = out + err
        assert "Received Final Find Response (Cancel" in log, log[-2000:]
        assert log.count("(Pending)") < 300
        assert server.alive()


def test_undecodable_identifier_is_c000_and_the_handler_goes_on(tmp_path) -> None:
    from dcmnet_cli.dimse.commandset import c_find_rq
    from dcmnet_cli.services.scp.worklist import WorklistFolder, WorklistHandler

    many_items(tmp_path / "wl", 2)
    for garbage in (b"\x10\x00\x10\x00\xff\xff\xff\x7f", b"", None):
        session = FakeSession()
        handler = WorklistHandler(WorklistFolder(str(tmp_path / "wl")))
        handler.begin(session, 1, c_find_rq(7, MWL))  # type: ignore[arg-type]
        handler.complete(garbage)
        assert [message.status for message, _data in session.sent] == [0xC000]
        assert session.sent[0][0].error_comment
