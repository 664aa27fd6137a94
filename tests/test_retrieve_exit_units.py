"""The exit code of ``move``/``get`` from what the peer answered (cli/retrieve.py ``operation_code`` and
``exit_code``), in-process (issue 15: ``make mutate`` runs these against cli/retrieve.py). DESIGN.md:
failed sub-operations are a failure (7) whatever the final status; a Cancel we asked for is 0, one the
peer chose is 8; an object we could not store is 7; the run's own error decides when there is no status.
The same codes against real peers are in test_exit_matrix.py and test_move_get_hostile.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dcmnet_cli.cli.exitcodes import ExitCode
from dcmnet_cli.cli.retrieve import _counts, _errors, _status_words, exit_code, operation_code
from dcmnet_cli.errors import AssociationAborted, ConnectError, InputError, TimeoutExpired
from dcmnet_cli.services.peer import Peer
from dcmnet_cli.services.scu.retrieve import Operation, RetrieveResult

PEER = Peer("memory", 104, "SCP")


def op(status=None, **kwargs) -> Operation:
    return Operation("STUDY 1.2.3", status=status, **kwargs)


@pytest.mark.parametrize(("operation", "code"), [
    (op(), ExitCode.SUCCESS),  # never sent (no status, no error): nothing failed
    (op(error=AssociationAborted("gone")), ExitCode.ABORTED),
    (op(error=TimeoutExpired("DIMSE timeout")), ExitCode.ABORTED),
    (op(0x0000), ExitCode.SUCCESS),
    (op(0x0000, completed=3, failed=0, warning=0), ExitCode.SUCCESS),
    (op(0x0000, completed=3, warning=1), ExitCode.WARNING),  # warnings counted on a Success
    (op(0xB000, completed=2, warning=1), ExitCode.WARNING),
    (op(0xB000, completed=2, failed=1), ExitCode.FAILURE),  # failed sub-operations: 7 whatever the status
    (op(0x0000, completed=2, failed=1), ExitCode.FAILURE),
    (op(0xA701), ExitCode.FAILURE),
    (op(0xA701, warning=2), ExitCode.FAILURE),  # a failure stays a failure with warnings counted
    (op(0xC000), ExitCode.FAILURE),
    (op(0xFE00), ExitCode.CANCELLED),  # the peer chose to cancel
    (op(0xFE00, cancel_sent=True), ExitCode.SUCCESS),  # we asked for it
    (op(0xFE00, cancel_sent=True, warning=2), ExitCode.SUCCESS),  # a cancel we asked for is not a warning
    (op(0xFE00, warning=2), ExitCode.CANCELLED),
    (op(0xFE00, cancel_sent=True, failed=1), ExitCode.FAILURE),
    (op(0xFE00, failed=1), ExitCode.FAILURE),  # 7 outranks 8
    (op(0x0001), ExitCode.WARNING),
])
def test_operation_code(operation, code):
    assert operation_code(operation) is code


def result(*operations: Operation, **kwargs) -> RetrieveResult:
    return RetrieveResult("move", PEER, operations=list(operations), **kwargs)


STORE_FAILED = SimpleNamespace(event="store-failed", path=None, sop_class_uid="1.2", sop_instance_uid="1.2.3.2",
                               status="0xA700", bytes=9, detail="cannot store file: No space left on device")
STORED = SimpleNamespace(event="stored", path="/out/1.dcm", sop_class_uid="1.2", sop_instance_uid="1.2.3.1",
                         status="0x0000", bytes=9, detail=None)


@pytest.mark.parametrize(("args", "code"), [
    ((None, None, [], False), ExitCode.SUCCESS),
    ((None, None, ["x.dcm: not DICOM"], False), ExitCode.INPUT),
    ((result(op(0x0000)), None, [], False), ExitCode.SUCCESS),
    ((result(op(0x0000)), [STORED, STORED], [], False), ExitCode.SUCCESS),
    ((result(op(0x0000)), [STORED, STORE_FAILED], [], False), ExitCode.FAILURE),  # an object not stored here
    ((result(op(0x0000)), [], ["bad"], False), ExitCode.INPUT),
    ((result(op(0xB000, warning=1)), None, [], False), ExitCode.WARNING),
    ((result(op(0xB000, warning=1)), None, [], True), ExitCode.SUCCESS),  # --warnings-ok
    ((result(op(0xA701)), None, [], True), ExitCode.FAILURE),
    ((result(op(0x0000), op(0xFE00)), None, [], False), ExitCode.CANCELLED),
    ((result(op(0x0000), op(0xA701), op(0xB000)), None, [], False), ExitCode.FAILURE),
    # an operation's own error counts even when a status came first
    ((result(op(0x0000, error=AssociationAborted("gone"))), None, [], False), ExitCode.ABORTED),
    # requests never sent after an operation's error (the deadline): aborted
    ((result(op(0x0000), not_attempted=["STUDY 2"]), None, [], False), ExitCode.ABORTED),
    # ... not when we cancelled
    ((result(op(0xFE00, cancel_sent=True), not_attempted=["STUDY 2"], cancel_sent=True), None, [], False),
     ExitCode.SUCCESS),
    # ... and the run's own error decides when there is one
    ((result(op(0x0000), not_attempted=["STUDY 2"], error=ConnectError("refused")), None, [], False),
     ExitCode.CONNECT),
    ((result(error=ConnectError("refused")), None, [], False), ExitCode.CONNECT),
    ((result(error=InputError("no such file")), None, [], False), ExitCode.INPUT),
    ((result(op(0x0000), error=AssociationAborted("gone")), None, ["bad"], False), ExitCode.ABORTED),
])
def test_exit_code(args, code):
    assert exit_code(*args) is code


def test_status_words_and_counts_name_what_happened():
    assert _status_words(None, "move") == "no final status"
    assert _status_words(0xA701, "move").startswith("0xA701 ")
    assert _status_words(0x0000, "get") == "0x0000 " + __import__("dcmnet_cli.dimse.status", fromlist=["x"]).describe(
        0, "get").meaning
    assert _counts(op(0x0000)) == "0 completed, 0 failed, 0 warning"
    assert _counts(op(0xFF00, remaining=4, completed=1, failed=2, warning=3)) == \
        "4 remaining, 1 completed, 2 failed, 3 warning"


def test_errors_lists_each_operation_then_the_run():
    assert _errors(None) == []
    run = result(op(0x0000), Operation("SERIES 9", error=AssociationAborted("gone")), error=ConnectError("refused"))
    assert _errors(run) == ["SERIES 9: gone", "refused"]


class App:
    """Stands in for cli.app.App: records what would go to stdout (json) and stderr (the rest)."""

    def __init__(self) -> None:
        self.out: list = []
        self.err: list[tuple[str, str]] = []

    def json(self, obj) -> None:
        self.out.append(obj)

    def error(self, text: str) -> None:
        self.err.append(("error", text))

    def info(self, text: str) -> None:
        self.err.append(("info", text))

    def detail(self, text: str) -> None:
        self.err.append(("detail", text))

    def say(self, text: str, style: str | None = None) -> None:
        self.err.append((style or "say", text))


def _finish(run, received=None, problems=(), as_json=False, warnings_ok=False):
    from dcmnet_cli.cli.retrieve import finish

    app = App()
    options = {"warnings_ok": warnings_ok, "as_json": as_json, "calling_aet": "DCMNET"}
    code = finish(app, options, "get", PEER, run, received, list(problems))
    return code, app


@pytest.mark.parametrize("as_json", [False, True])
def test_finish_returns_the_exit_code_of_what_was_received_and_the_inputs(as_json):
    """``get``: an object received but not stored makes the run 7 even when the peer said Success; an
    input problem 3; the JSON object carries the same exit code."""
    code, app = _finish(result(op(0x0000, completed=2)), [STORED, STORE_FAILED], as_json=as_json)
    assert code is ExitCode.FAILURE
    code, app = _finish(result(op(0x0000, completed=1)), [STORED], ["x.dcm: not DICOM"], as_json=as_json)
    assert code is ExitCode.INPUT
    if as_json:
        assert app.out[0]["exit_code"] == 3 and app.out[0]["input_errors"] == ["x.dcm: not DICOM"]
    code, app = _finish(result(op(0xB000, warning=1)), [STORED], warnings_ok=True, as_json=as_json)
    assert code is ExitCode.SUCCESS


def test_finish_tells_what_was_received_and_what_was_not_attempted():
    code, app = _finish(result(op(0x0000, completed=2), not_attempted=["STUDY 2", "STUDY 3"],
                               error=ConnectError("refused")), [STORED, STORED, STORE_FAILED])
    assert code is ExitCode.CONNECT
    errors = [text for kind, text in app.err if kind == "error"]
    assert "refused" in errors and "2 requests not attempted: STUDY 2, STUDY 3" in errors
    assert ("info", "received 2 objects, 1 could not be stored") in app.err
    code, app = _finish(None, None, ["bad"])
    assert code is ExitCode.INPUT and app.err == []
