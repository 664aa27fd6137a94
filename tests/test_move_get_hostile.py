"""``dcmnet move`` / ``dcmnet get`` against a scripted, hostile Q/R SCP built from our own pieces.

The peer is an :class:`ApplicationEntity` whose C-MOVE/C-GET handler runs a script (pending responses,
odd statuses, C-STORE sub-operations, cancel handling) on a :class:`Server` bound to a free 127.0.0.1
port and always stopped. The CLI runs in-process (``main``), so each test costs milliseconds plus the
script's own waits.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pytest
from pydicom import Dataset

from dcmnet_cli.cli.exitcodes import ExitCode
from dcmnet_cli.cli.main import main
from dcmnet_cli.cli.retrieve import operation_code
from dcmnet_cli.dimse.assembler import CommandReceived, MessageComplete
from dcmnet_cli.dimse.commandset import (
    C_CANCEL_RQ,
    C_GET_RQ,
    C_MOVE_RQ,
    C_STORE_RSP,
    Message,
    c_get_rsp,
    c_move_rsp,
    c_store_rq,
)
from dcmnet_cli.services.query import encode_identifier
from dcmnet_cli.services.scu.retrieve import Operation
from dcmnet_cli.services.scu.retrieve_requests import requests_from_ndjson
from dcmnet_cli.services.scp.entity import ApplicationEntity, MessageHandler
from dcmnet_cli.ul.negotiation import AcceptorPolicy
from helpers.procs import serving

LOOPBACK = "127.0.0.1"
SYNTAXES = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
CT = "1.2.840.10008.5.1.4.1.1.2"
STUDY = "1.2.826.0.1.3680043.8.498.1"


class Script:
    """What a script sees: the request and helpers to answer it on the same association."""

    def __init__(self, channel, context_id: int, message: Message, identifier: bytes) -> None:
        self.channel, self.context_id, self.message, self.identifier = channel, context_id, message, identifier
        self.syntax = channel.assoc.contexts[context_id].transfer_syntax
        self.cancelled = False

    def rsp(self, status: int, identifier: Dataset | bytes | None = None, **counts: int) -> None:
        build = c_move_rsp if self.message.command_field == C_MOVE_RQ else c_get_rsp
        data = encode_identifier(identifier, self.syntax) if isinstance(identifier, Dataset) else identifier
        self.channel.send_message(self.context_id, build(self.message.message_id, status, self.message.affected_sop_class_uid,
                                                         has_dataset=data is not None, **counts), data)

    def wait_cancel(self, seconds: float) -> bool:
        """Read for ``seconds``; True once a C-CANCEL-RQ for our request arrived."""
        end = time.monotonic() + seconds
        while not self.cancelled and (left := end - time.monotonic()) > 0:
            try:
                event = self.channel.next_event(left)
            except Exception:  # noqa: BLE001 - a timeout: nothing arrived
                break
            if event is None:
                raise ConnectionError("the requestor went away")
            if isinstance(event, CommandReceived) and event.message.command_field == C_CANCEL_RQ:
                self.cancelled = True
        return self.cancelled

    def store(self, sop_class: str, sop_instance: str, ds: Dataset) -> int:
        """A C-STORE sub-operation (C-GET) on the context for ``sop_class``; returns the answered status."""
        context = next(c for c in self.channel.assoc.contexts.values() if c.abstract_syntax == sop_class)
        self.channel.send_message(context.context_id, c_store_rq(99, sop_class, sop_instance),
                                  encode_identifier(ds, context.transfer_syntax))
        status = None
        while True:
            event = self.channel.next_event(5.0)
            if isinstance(event, CommandReceived) and event.message.command_field == C_STORE_RSP:
                status = event.message.status
            if isinstance(event, MessageComplete) and status is not None:
                return status


class _ScriptHandler(MessageHandler):
    def __init__(self, script: Callable[[Script], None]) -> None:
        self.script, self.data = script, bytearray()

    def begin(self, session, context_id, message) -> None:  # type: ignore[no-untyped-def]
        self.channel, self.context_id, self.message = session.driver, context_id, message

    def fragment(self, data: memoryview, last: bool) -> None:
        self.data += data

    def complete(self, dataset: bytes | None) -> None:
        self.data += dataset or b""
        self.script(Script(self.channel, self.context_id, self.message, bytes(self.data)))


@contextmanager
def hostile_peer(script: Callable[[Script], None]) -> Iterator[int]:
    """A Q/R SCP on a free 127.0.0.1 port running ``script`` for each C-MOVE/C-GET; always stopped."""
    policy = AcceptorPolicy(ae_title="HOSTILE", contexts=lambda uid: SYNTAXES, scp_roles=lambda uid: True)
    entity = ApplicationEntity(policy, handlers={C_MOVE_RQ: lambda: _ScriptHandler(script),
                                                 C_GET_RQ: lambda: _ScriptHandler(script)})
    with serving(entity, "hostile-peer") as port:
        yield port


def dcmnet(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    return int(done.value.code), out, err


def move(capsys, port: int, *extra: str) -> tuple[int, str, str]:
    return dcmnet(capsys, "move", "-aec", "HOSTILE", LOOPBACK, str(port), "--dest", "ELSEWHERE",
                  "-k", f"StudyInstanceUID={STUDY}", *extra)


# ------------------------------------------------------------------------------------------ statuses


def test_pending_response_with_malformed_identifier_is_reported_not_fatal(capsys) -> None:
    def script(s: Script) -> None:
        s.rsp(0xFF00, b"\x08\x00\x58\x00UI\xff\x7f" + b"garbage", remaining=1, completed=0, failed=0, warning=0)
        s.rsp(0x0000, completed=1, failed=0, warning=0)

    with hostile_peer(script) as port:
        code, out, err = move(capsys, port, "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["exit_code"] == 0 and summary["completed"] == 1
    assert summary["operations"][0]["pending_responses"] == 1
    assert summary["operations"][0]["identifier_problems"]


def test_unknown_status_is_a_failure_in_words(capsys) -> None:
    with hostile_peer(lambda s: s.rsp(0x1234, completed=0, failed=0, warning=0)) as port:
        code, _, err = move(capsys, port)
    assert code == ExitCode.FAILURE
    assert "0x1234 unknown status 0x1234" in err


def test_failed_suboperations_list_their_uids(capsys) -> None:
    failed = ["1.2.826.0.1.3680043.8.498.7", "1.2.826.0.1.3680043.8.498.8"]

    def script(s: Script) -> None:
        s.rsp(0xFF00, remaining=2, completed=1, failed=0, warning=0)
        ds = Dataset()
        ds.FailedSOPInstanceUIDList = failed
        s.rsp(0xB000, ds, completed=1, failed=2, warning=0)

    with hostile_peer(script) as port:
        code, _, err = move(capsys, port)
        assert code == ExitCode.FAILURE
        assert failed[0] in err and failed[1] in err and "sub-operations complete" in err
        code, out, _ = move(capsys, port, "--json")
    summary = json.loads(out)
    assert code == ExitCode.FAILURE and summary["failed_sop_instance_uids"] == failed
    assert summary["status"] == "0xB000" and summary["failed"] == 2


def test_warning_only_exits_1_or_0_with_warnings_ok(capsys) -> None:
    with hostile_peer(lambda s: s.rsp(0xB000, completed=1, failed=0, warning=1)) as port:
        assert move(capsys, port)[0] == ExitCode.WARNING
        assert move(capsys, port, "--warnings-ok")[0] == ExitCode.SUCCESS


def test_peer_cancel_unprompted_exits_8(capsys) -> None:
    with hostile_peer(lambda s: s.rsp(0xFE00, remaining=3, completed=1, failed=0, warning=0)) as port:
        code, _, err = move(capsys, port)
    assert code == ExitCode.CANCELLED and "cancel" in err


# ------------------------------------------------------------------------------------------ timing


def test_steady_pending_responses_outlive_the_dimse_timeout(capsys) -> None:
    def script(s: Script) -> None:
        for index in range(6):  # 6 x 0.3 s = 1.8 s, well past -td 1, each gap 0.7 s short of it (a loaded
            time.sleep(0.3)     # machine may run this thread late: 0.15 s gaps and -td 0.5 were too close)
            s.rsp(0xFF00, remaining=6 - index, completed=index, failed=0, warning=0)
        s.rsp(0x0000, completed=6, failed=0, warning=0)

    with hostile_peer(script) as port:
        code, out, err = move(capsys, port, "-td", "1", "--json")
    assert code == 0, err
    assert json.loads(out)["operations"][0]["pending_responses"] == 6


def test_deadline_stops_an_endless_retrieve_with_exit_6(capsys) -> None:
    def script(s: Script) -> None:
        for index in range(100):  # ~10 s unless the requestor gives up
            time.sleep(0.1)
            s.rsp(0xFF00, remaining=100 - index, completed=index, failed=0, warning=0)

    with hostile_peer(script) as port:
        started = time.monotonic()
        code, out, err = move(capsys, port, "-td", "0.5", "--deadline", "0.8", "--json")
        elapsed = time.monotonic() - started
    assert code == ExitCode.ABORTED, err
    assert elapsed < 3.0
    assert "deadline" in json.loads(out)["error"]


def test_silent_peer_hits_the_dimse_timeout(capsys) -> None:
    with hostile_peer(lambda s: s.wait_cancel(3.0)) as port:
        started = time.monotonic()
        code, _, err = move(capsys, port, "-td", "0.4")
    assert code == ExitCode.ABORTED and "DIMSE timeout" in err
    assert time.monotonic() - started < 2.5


def test_cancel_we_asked_for_exits_0(capsys) -> None:
    def script(s: Script) -> None:
        for index in range(50):
            s.rsp(0xFF00, remaining=50 - index, completed=index, failed=0, warning=0)
            if s.wait_cancel(0.1):
                s.rsp(0xFE00, remaining=49 - index, completed=index + 1, failed=0, warning=0)
                return
        s.rsp(0x0000, completed=50, failed=0, warning=0)

    with hostile_peer(script) as port:
        code, out, err = move(capsys, port, "--cancel-after-seconds", "0.3", "--json")
    summary = json.loads(out)
    assert code == 0, err
    assert summary["cancel_sent"] is True and summary["status"] == "0xFE00"
    assert 0 < summary["completed"] < 50


# ------------------------------------------------------------------------------------------ C-GET


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_get_path_traversal_instance_uid_stays_inside_od(capsys, tmp_path: Path) -> None:
    evil = "../../evil"
    answered: list[int] = []

    def script(s: Script) -> None:
        ds = Dataset()
        ds.SOPClassUID = CT
        ds.SOPInstanceUID = evil
        ds.PatientID = "P1"
        answered.append(s.store(CT, evil, ds))
        s.rsp(0x0000, completed=1, failed=0, warning=0)

    out_dir = tmp_path / "a" / "b" / "od"
    with hostile_peer(script) as port:
        code, out, err = dcmnet(capsys, "get", "-aec", "HOSTILE", LOOPBACK, str(port), "-od", str(out_dir),
                                "--storage-class", "CTImageStorage", "-k", f"StudyInstanceUID={STUDY}", "--json")
    assert code == 0, err
    assert answered == [0]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].parent == out_dir
    assert files[0].name.startswith("evil_") and files[0].name.endswith(".dcm")
    assert json.loads(out)["received"][0]["path"] == str(files[0])


def test_get_store_failure_counts_as_failure(capsys, tmp_path: Path) -> None:
    """A data set whose SOP Instance UID differs from the command's is refused (0xA900): exit 7."""
    answered: list[int] = []

    def script(s: Script) -> None:
        ds = Dataset()
        ds.SOPClassUID = CT
        ds.SOPInstanceUID = "1.2.3.4"
        answered.append(s.store(CT, "1.2.3.5", ds))
        s.rsp(0xB000, completed=0, failed=1, warning=0)

    with hostile_peer(script) as port:
        code, _, err = dcmnet(capsys, "get", "-aec", "HOSTILE", LOOPBACK, str(port), "-od", str(tmp_path),
                              "--storage-class", CT, "-k", f"StudyInstanceUID={STUDY}")
    assert code == ExitCode.FAILURE
    assert answered == [0xA900]
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------ units


def test_ndjson_requests_use_each_lines_level_and_the_models_keys() -> None:
    lines = [
        json.dumps({"00080052": {"vr": "CS", "Value": ["SERIES"]}, "0020000D": {"vr": "UI", "Value": ["1.2.1"]},
                    "0020000E": {"vr": "UI", "Value": ["1.2.1.1"]}, "00100020": {"vr": "LO", "Value": ["P1"]}}),
        json.dumps({"00080052": {"vr": "CS", "Value": ["SERIES"]}, "0020000D": {"vr": "UI", "Value": ["1.2.1"]},
                    "0020000E": {"vr": "UI", "Value": ["1.2.1.1"]}}),  # duplicate at study root
        json.dumps({"0020000D": {"vr": "UI", "Value": ["1.2.2"]}}),  # no level: deepest key present
        json.dumps({"00080052": {"vr": "CS", "Value": ["IMAGE"]}, "0020000D": {"vr": "UI", "Value": ["1.2.1"]}}),
        "not json",
        "",
    ]
    requests, problems = requests_from_ndjson(lines, "study", None)
    assert [r.label for r in requests] == ["SERIES 1.2.1.1", "STUDY 1.2.2"]
    assert len(problems) == 2 and "line 4" in problems[0] and "SeriesInstanceUID" in problems[0]
    from pydicom.filereader import read_dataset
    from io import BytesIO

    ds = read_dataset(BytesIO(requests[0].encode("1.2.840.10008.1.2.1")), False, True)
    assert set(ds.dir()) == {"QueryRetrieveLevel", "StudyInstanceUID", "SeriesInstanceUID"}
    patient_root, problems = requests_from_ndjson(lines[:1], "patient", None)
    ds = read_dataset(BytesIO(patient_root[0].encode("1.2.840.10008.1.2")), True, True)
    assert ds.PatientID == "P1" and not problems


@pytest.mark.parametrize(("status", "failed", "warning", "cancel_sent", "expected"), [
    (0x0000, 0, 0, False, ExitCode.SUCCESS),
    (0x0000, 0, 2, False, ExitCode.WARNING),
    (0xB000, 1, 0, False, ExitCode.FAILURE),
    (0xB000, 0, 1, False, ExitCode.WARNING),
    (0xA801, 0, 0, False, ExitCode.FAILURE),
    (0xFE00, 0, 0, False, ExitCode.CANCELLED),
    (0xFE00, 0, 0, True, ExitCode.SUCCESS),
    (0xFE00, 1, 0, True, ExitCode.FAILURE),
])
def test_operation_exit_codes(status: int, failed: int, warning: int, cancel_sent: bool, expected: ExitCode) -> None:
    operation = Operation("x", status=status, completed=1, failed=failed, warning=warning, cancel_sent=cancel_sent)
    assert operation_code(operation) is expected


def test_a_wait_already_due_is_a_timeout_not_a_closed_connection() -> None:
    """Regression (found by --cancel-after-seconds): ``next_event(0)`` used to put the socket in
    non-blocking mode, read BlockingIOError as end-of-file and drop the association."""
    import socket

    from dcmnet_cli.errors import TimeoutExpired
    from dcmnet_cli.transport.channel import Channel
    from dcmnet_cli.ul.association import Association
    from dcmnet_cli.ul.statemachine import Role

    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(1)
        ours = socket.create_connection(listener.getsockname(), timeout=5)
        theirs, _ = listener.accept()
    try:
        assoc = Association(Role.ACCEPTOR)
        assoc.connection_made()
        channel = Channel(ours, assoc)
        with pytest.raises(TimeoutExpired):
            channel.next_event(0.0)
        assert not channel.closed
    finally:
        ours.close()
        theirs.close()
