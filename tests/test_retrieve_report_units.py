"""What ``move`` and ``get`` tell the user about a run, in-process (cli/retrieve.py: the human lines of
``finish``, the JSON summary, the keys a retrieve must name, --from-json's usage errors and the progress
bar's counts). The exit codes themselves are in test_retrieve_exit_units.py; the same output through the
real CLI against real peers is in test_move*.py / test_get*.py. ``make mutate`` runs these against
cli/retrieve.py.
"""

from __future__ import annotations

import io
from types import SimpleNamespace

import click
import pytest
from pydicom.dataset import Dataset

from dcmnet_cli.cli.exitcodes import ExitCode
from dcmnet_cli.cli.retrieve import RetrieveProgress, build_requests, finish, require_keys, summary
from dcmnet_cli.dimse.status import describe
from dcmnet_cli.errors import AssociationAborted, ConnectError
from dcmnet_cli.services.peer import Peer
from dcmnet_cli.services.query import MODELS, QuerySpec
from dcmnet_cli.services.scu.retrieve import Operation, RetrieveResult

from test_retrieve_exit_units import STORE_FAILED, STORED, App

PEER = Peer("memory", 104, "PACS")


def op(status=None, label="STUDY 1.2.3", **kwargs) -> Operation:
    return Operation(label, status=status, **kwargs)


def run(*operations: Operation, **kwargs) -> RetrieveResult:
    return RetrieveResult("move", PEER, operations=list(operations), **kwargs)


def human(result, kind="move", received=None, problems=(), hints=None):
    app = App()
    options = {"warnings_ok": False, "as_json": False, "calling_aet": "DCMNET"}
    code = finish(app, options, kind, PEER, result, received, list(problems), hints=hints)
    return code, app.err


def meaning(status: int, kind: str = "move") -> str:
    return describe(status, kind).meaning


# --------------------------------------------------------------------------- the human summary (stderr)

def test_a_success_is_one_info_line_with_the_counts():
    code, err = human(run(op(0x0000, completed=3, failed=0, warning=0)))
    assert code is ExitCode.SUCCESS
    assert err == [("info", f"C-MOVE 0x0000 {meaning(0)}: 3 completed, 0 failed, 0 warning")]


def test_get_names_c_get_and_a_warning_is_a_warning_line():
    code, err = human(run(op(0xB000, completed=2, warning=1)), kind="get")
    assert code is ExitCode.WARNING
    assert err == [("warning", f"C-GET 0xB000 {meaning(0xB000, 'get')}: 2 completed, 0 failed, 1 warning")]


def test_a_failure_is_an_error_line_with_the_peers_comment_the_hint_and_the_failed_uids():
    code, err = human(run(op(0xA801, failed=2, failed_uids=["1.2.3.4", "1.2.3.5"], error_comment="who is DEST?")),
                      hints={"destination": "DEST", "peer": "PACS"})
    assert code is ExitCode.FAILURE
    assert err == [
        ("error", f"C-MOVE 0xA801 {meaning(0xA801)}: 0 completed, 2 failed, 0 warning; peer says: who is DEST?"),
        ("error", "hint: the peer does not know AE DEST: add DEST (with its host and port) to PACS's list of move "
                  "destinations, or give the --dest it knows"),
        ("error", "failed SOP Instance UIDs: 1.2.3.4, 1.2.3.5"),
    ]


def test_failed_sub_operations_without_uids_are_said_so():
    _code, err = human(run(op(0x0000, completed=1, failed=2)))
    assert err[-1] == ("error", "2 sub-operations failed; the peer did not list their SOP Instance UIDs")
    _code, err = human(run(op(0x0000, completed=1, failed=1)))
    assert err[-1] == ("error", "1 sub-operation failed; the peer did not list their SOP Instance UIDs")


def test_a_cancel_is_marked_and_a_cancel_the_peer_chose_is_an_error():
    code, err = human(run(op(0xFE00, completed=1, remaining=2, cancel_sent=True)))
    assert code is ExitCode.SUCCESS
    assert err == [("info", f"C-MOVE 0xFE00 {meaning(0xFE00)}: 2 remaining, 1 completed, 0 failed, 0 warning "
                            "(cancel requested)")]
    code, err = human(run(op(0xFE00, completed=1)))
    assert code is ExitCode.CANCELLED
    assert err[0][0] == "error" and "(cancel requested)" not in err[0][1]


def test_several_operations_are_prefixed_with_their_labels():
    _code, err = human(run(op(0x0000, label="STUDY 1", completed=1),
                           op(0xA702, label="STUDY 2", failed=1, failed_uids=["9.9"])))
    assert err[0] == ("info", f"STUDY 1: C-MOVE 0x0000 {meaning(0)}: 1 completed, 0 failed, 0 warning")
    assert err[1] == ("error", f"STUDY 2: C-MOVE 0xA702 {meaning(0xA702)}: 0 completed, 1 failed, 0 warning")
    assert err[2][1].startswith("STUDY 2: hint: the peer could not start or finish sending to the destination")
    assert err[3] == ("error", "STUDY 2: failed SOP Instance UIDs: 9.9")


def test_one_operation_has_no_label_prefix():
    _code, err = human(run(op(0xA702, label="STUDY 2", failed=1, failed_uids=["9.9"])))
    assert all(not text.startswith("STUDY 2") for _kind, text in err)


def test_an_operation_without_a_final_status_says_what_ended_it():
    code, err = human(run(op(None, label="STUDY 1", error=AssociationAborted("the peer aborted"))))
    assert code is ExitCode.ABORTED
    assert err == [("error", "C-MOVE ended without a final status: the peer aborted")]
    code, err = human(run(op(None)))  # never sent: nothing to say
    assert code is ExitCode.SUCCESS and err == []


def test_foreign_command_elements_and_malformed_identifiers_are_told():
    _code, err = human(run(op(0x0000, completed=1, foreign_elements=["(0008,0018)"],
                              identifier_problems=["bad \x1b bytes"])))
    assert err[0] == ("detail", "the peer put (0008,0018) (outside group 0000) in its command set: ignored")
    assert err[-1][0] == "warning"
    assert err[-1][1].startswith("ignored a malformed response identifier: bad ") and "\x1b" not in err[-1][1]


def test_no_hint_when_the_table_has_none():
    _code, err = human(run(op(0xA701, failed=1, failed_uids=["1"])), kind="move")
    assert any("hint:" in text for _k, text in err)
    _code, err = human(run(op(0xB000, failed=1, failed_uids=["1"])), kind="move")  # no move row for 0xB000
    assert not any("hint:" in text for _k, text in err)


def test_received_objects_are_counted_once_each():
    _code, err = human(run(op(0x0000, completed=2)), kind="get", received=[STORED, STORED])
    assert err[-1] == ("info", "received 2 objects")
    _code, err = human(run(op(0x0000, completed=1)), kind="get", received=[STORED])
    assert err[-1] == ("info", "received 1 object")
    _code, err = human(run(op(0x0000, completed=1)), kind="get", received=[])
    assert not any(text.startswith("received") for _k, text in err)


# --------------------------------------------------------------------------- the JSON summary (stdout)

def json_of(result, kind="move", received=None, problems=(), destination=None, code=None):
    from dcmnet_cli.cli.retrieve import exit_code

    code = exit_code(result, received, list(problems), False) if code is None else code
    return summary(kind, PEER, result, received, list(problems), destination, code, "DCMNET")


def test_json_summary_totals_every_operation_and_names_the_deciding_status():
    result = run(op(0x0000, label="STUDY 1", completed=2, warning=1),
                 op(0xA702, label="STUDY 2", completed=1, failed=2, remaining=0, failed_uids=["1.9", "1.8"]),
                 elapsed=1.23456)
    obj = json_of(result, destination="DEST")
    assert obj["operation"] == "move"
    assert obj["peer"] == str(PEER) and obj["called_ae"] == "PACS" and obj["calling_ae"] == "DCMNET"
    assert obj["status"] == "0xA702" and obj["meaning"] == meaning(0xA702)  # the operation that decided 7
    assert (obj["completed"], obj["failed"], obj["warning"], obj["remaining"]) == (3, 2, 1, 0)
    assert obj["failed_sop_instance_uids"] == ["1.9", "1.8"]
    assert [o["label"] for o in obj["operations"]] == ["STUDY 1", "STUDY 2"]
    assert obj["cancel_sent"] is False and obj["input_errors"] == [] and obj["error"] is None
    assert obj["not_attempted"] == [] and obj["destination"] == "DEST" and "received" not in obj
    assert obj["elapsed_s"] == 1.235 and obj["exit_code"] == 7


def test_json_status_falls_back_to_the_last_answered_operation():
    # the run's code (6, the abort) matches no answered operation: the last answered one is shown
    result = run(op(0x0000, label="STUDY 1", completed=1), op(0xB000, label="STUDY 2", warning=1),
                 op(None, label="STUDY 3", error=AssociationAborted("gone")))
    obj = json_of(result)
    assert obj["exit_code"] == 6 and obj["status"] == "0xB000"
    assert obj["error"] == "STUDY 3: gone"
    obj = json_of(run(op(None, error=AssociationAborted("gone"))))
    assert obj["status"] is None and obj["meaning"] is None


def test_json_of_a_run_that_never_started():
    obj = json_of(None, problems=["x.dcm: not DICOM"], code=ExitCode.INPUT)
    assert obj["operations"] == [] and obj["status"] is None and obj["cancel_sent"] is False
    assert obj["input_errors"] == ["x.dcm: not DICOM"] and obj["not_attempted"] == [] and obj["elapsed_s"] == 0.0
    assert obj["exit_code"] == 3 and (obj["completed"], obj["failed"]) == (0, 0)
    obj = json_of(run(error=ConnectError("refused"), not_attempted=["STUDY 1"], cancel_sent=True))
    assert obj["error"] == "refused" and obj["not_attempted"] == ["STUDY 1"] and obj["cancel_sent"] is True


def test_json_received_objects_carry_their_detail_only_when_there_is_one():
    obj = json_of(run(op(0x0000, completed=2)), kind="get", received=[STORED, STORE_FAILED])
    assert obj["received"] == [
        {"path": "/out/1.dcm", "sop_class_uid": "1.2", "sop_instance_uid": "1.2.3.1", "status": "0x0000", "bytes": 9},
        {"path": None, "sop_class_uid": "1.2", "sop_instance_uid": "1.2.3.2", "status": "0xA700", "bytes": 9,
         "detail": "cannot store file: No space left on device"},
    ]
    assert obj["exit_code"] == 7 and "destination" not in obj


def test_json_operation_fields():
    operation = op(0xA702, remaining=4, completed=1, failed=0, warning=2, pending=3, cancel_sent=True,
                   error_comment="busy", identifier_problems=["p"], foreign_elements=["(0008,0018)"],
                   error=AssociationAborted("gone"))
    (obj,) = json_of(run(operation))["operations"]
    assert obj == {
        "label": "STUDY 1.2.3", "status": "0xA702", "meaning": meaning(0xA702), "remaining": 4, "completed": 1,
        "failed": 0, "warning": 2, "failed_sop_instance_uids": [], "pending_responses": 3, "cancel_sent": True,
        "error_comment": "busy", "identifier_problems": ["p"], "error": "gone",
        "ignored_command_elements": ["(0008,0018)"], "exit_code": 7,  # the status decides, not the error
    }
    (obj,) = json_of(run(op(None)))["operations"]
    assert obj["status"] is None and obj["meaning"] is None and obj["error"] is None and obj["exit_code"] == 0


def test_json_mode_prints_the_object_and_the_errors():
    app = App()
    options = {"warnings_ok": False, "as_json": True, "calling_aet": "DCMNET"}
    result = run(op(None, label="STUDY 1", error=AssociationAborted("gone")), error=ConnectError("refused"))
    code = finish(app, options, "move", PEER, result, None, [])
    assert code is ExitCode.ABORTED  # 6 outranks 4
    assert len(app.out) == 1 and app.out[0]["exit_code"] == int(code)
    assert app.err == [("error", "STUDY 1: gone"), ("error", "refused")]


# --------------------------------------------------------------------------- what a retrieve must name

def spec(level: str, model: str = "study", **keys) -> QuerySpec:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return QuerySpec(MODELS[model], level, ds)


@pytest.mark.parametrize(("query", "missing"), [
    (spec("SERIES"), ["StudyInstanceUID", "SeriesInstanceUID"]),
    (spec("SERIES", StudyInstanceUID="1.2"), ["SeriesInstanceUID"]),
    (spec("IMAGE", StudyInstanceUID="1.2", SeriesInstanceUID="*"), ["SeriesInstanceUID", "SOPInstanceUID"]),
    (spec("IMAGE", "patient", StudyInstanceUID="1.2", SeriesInstanceUID="1.3", SOPInstanceUID="1.4"),
     ["PatientID"]),
])
def test_a_series_or_image_retrieve_needs_the_unique_keys_above(query, missing):
    with pytest.raises(click.UsageError) as caught:
        require_keys(query)
    assert caught.value.message == (f"a {query.level} retrieve needs {', '.join(missing)}: add "
                                    + " ".join(f"-k {key}=..." for key in missing)
                                    + " (or --all to retrieve everything that matches)")


@pytest.mark.parametrize("query", [
    spec("SERIES", StudyInstanceUID="1.2", SeriesInstanceUID="1.3"),
    spec("IMAGE", StudyInstanceUID="1.2", SeriesInstanceUID="1.3", SOPInstanceUID="1.4"),
    spec("STUDY", StudyInstanceUID="1.2"),
    spec("STUDY", PatientName="DOE*"),  # a value with a wildcard still matches something
    spec("PATIENT", "patient", PatientID="P1"),
    spec("STUDY", PatientID="P1\\P2"),  # a multi-valued key naming two patients
])
def test_keys_that_name_something_are_enough(query):
    require_keys(query)


@pytest.mark.parametrize(("query", "example"), [
    (spec("STUDY"), "-k StudyInstanceUID=..."),
    (spec("STUDY", PatientName="*", StudyInstanceUID=""), "-k StudyInstanceUID=..."),
    (spec("STUDY", PatientID=" ?\\ "), "-k StudyInstanceUID=..."),  # only wildcards and separators
    (spec("PATIENT", "patient", SpecificCharacterSet="ISO_IR 100"), "-k PatientID=..."),
])
def test_a_study_or_patient_retrieve_without_a_matching_value_asks_for_all(query, example):
    with pytest.raises(click.UsageError) as caught:
        require_keys(query)
    assert caught.value.message == (f"no matching key: this would retrieve the whole archive; add {example} "
                                    "(or another -k KEY=VALUE), or --all if that is what you want")


# --------------------------------------------------------------------------- --from-json

def options(**kwargs):
    return {"retrieve_all": False, "keys": (), "query_file": None, "model": None, "level": None, **kwargs}


def ndjson(tmp_path, text: str = "") -> str:
    """--from-json FILE as the command gets it: a path."""
    path = tmp_path / "matches.ndjson"
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(("given", "message"), [
    (options(retrieve_all=True), "--all is for -k/-f retrieves: --from-json names what to retrieve"),
    (options(keys=("PatientID=1",)), "--from-json takes the keys from its lines: drop -k/-f"),
    (options(query_file="q.dcm"), "--from-json takes the keys from its lines: drop -k/-f"),
    (options(model="worklist"), "the modality worklist model (-W) supports find only"),
])
def test_from_json_usage_errors(given, message, tmp_path):
    with pytest.raises(click.UsageError) as caught:
        build_requests(given, ndjson(tmp_path))
    assert caught.value.message == message


def test_from_json_takes_one_request_per_line_and_the_study_model_by_default(tmp_path):
    lines = ndjson(tmp_path, '{"00080052": {"vr": "CS", "Value": ["STUDY"]}, "0020000D": {"vr": "UI", "Value": ["1.2.3"]}}\n'
                             '{"0020000D": {"vr": "UI", "Value": ["1.2.4"]}}\n\n')
    model, requests, problems = build_requests(options(), lines)
    assert model is MODELS["study"] and problems == [] and len(requests) == 2
    model, _requests, _problems = build_requests(options(model=True), ndjson(tmp_path))
    assert model is MODELS["study"]
    model, _requests, _problems = build_requests(options(model="patient"), ndjson(tmp_path))
    assert model is MODELS["patient"]


# --------------------------------------------------------------------------- the progress bar's counts

def test_progress_counts_what_is_done_out_of_the_announced_total():
    stream = io.StringIO()
    bar = RetrieveProgress(stream, "get", color=False)
    task = bar._progress.tasks[0]
    bar.update(SimpleNamespace(completed=3, failed=1, warning=2, remaining=4))
    assert (task.completed, task.total) == (6, 10)
    assert task.fields == {"count": "6/10", "detail": "1 failed, 2 warning"}
    bar.update(SimpleNamespace(completed=None, failed=None, warning=None, remaining=None))
    assert (task.completed, task.total) == (0, 1) and task.fields == {"count": "0/0", "detail": "0 failed, 0 warning"}
    bar.update(SimpleNamespace(completed=5, failed=0, warning=0, remaining=None))  # no total announced
    assert (task.completed, task.total) == (5, 5)


@pytest.mark.parametrize("command", ["move", "get"])
def test_a_multi_valued_key_of_wildcards_alone_is_no_matching_key(command, tmp_path):
    """``-k PatientID=*\\?`` names nothing (it was read as the list's text and let through, so the
    peer was asked for everything): exit 2 before any connection (port 9 has no listener)."""
    from helpers.procs import LOOPBACK, run_dcmnet

    extra = ["--dest", "X"] if command == "move" else ["-od", str(tmp_path)]
    code, _out, err = run_dcmnet(command, LOOPBACK, "9", *extra, "-k", "PatientID=*\\?")
    assert code == 2, err
    assert "no matching key: this would retrieve the whole archive" in err


# --------------------------------------------------------------------------- run_retrieve: what reaches the SCU

class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def retrieve_options(**kwargs):
    return {"calling_aet": "ME", "connect_timeout": 1.5, "acse_timeout": 2.5, "dimse_timeout": 3.5,
            "network_timeout": 4.5, "max_pdu": 32768, "deadline": 60.0, "cancel_after": 5.0, "no_progress": False,
            **kwargs}


def fake_run(monkeypatch, app, options, kind="move", **kwargs):
    """run_retrieve with the SCU replaced: it answers one pending and one final response through the
    callbacks it was given and records its arguments."""
    import dcmnet_cli.services.scu.retrieve as scu
    from dcmnet_cli.cli.retrieve import run_retrieve

    seen: dict = {}
    pending = op(0xFF00, remaining=2, completed=1, failed=0, warning=0)
    final = op(0x0000, completed=3, failed=0, warning=0)

    def retrieve(*args, **kw):
        seen["args"], seen["kw"] = args, kw
        for operation in (pending, final):
            kw["callbacks"].on_response(operation, SimpleNamespace(status=operation.status))
        kw["callbacks"].log("a log line")
        if kw["callbacks"].trace is not None:
            kw["callbacks"].trace("sent", "P-DATA-TF")
        return "the result"

    monkeypatch.setattr(scu, "retrieve", retrieve)
    assert run_retrieve(app, options, kind, PEER, "1.2.3", ["request"], **kwargs) == "the result"
    return seen


def test_run_retrieve_passes_every_option_to_the_scu(monkeypatch):
    from dcmnet_cli.cli.app import App as RealApp
    from dcmnet_cli.transport.client import Timeouts

    app = RealApp(err=io.StringIO(), color=False)
    seen = fake_run(monkeypatch, app, retrieve_options(), kind="get", destination="DEST", storage="the scp",
                    storage_classes=("1.2",), storage_syntaxes=("1.2.840.10008.1.2",))
    assert seen["args"] == ("get", PEER, "ME", "1.2.3", ["request"])
    kw = seen["kw"]
    assert kw["timeouts"] == Timeouts(connect=1.5, acse=2.5, dimse=3.5, network=4.5)
    assert (kw["max_pdu"], kw["deadline"], kw["cancel_after"]) == (32768, 60.0, 5.0)
    assert (kw["destination"], kw["storage"], kw["storage_classes"]) == ("DEST", "the scp", ("1.2",))
    assert kw["storage_syntaxes"] == ("1.2.840.10008.1.2",)


def test_run_retrieve_logs_each_response_with_v_and_traces_only_with_debug(monkeypatch):
    from dcmnet_cli.cli.app import App as RealApp

    err = io.StringIO()
    fake_run(monkeypatch, RealApp(err=err, color=False, verbose=1), retrieve_options(), kind="get")
    assert err.getvalue().splitlines() == [
        f"STUDY 1.2.3: 0xFF00 {meaning(0xFF00, 'get')} (2 remaining, 1 completed, 0 failed, 0 warning)",
        f"STUDY 1.2.3: 0x0000 {meaning(0x0000, 'get')} (3 completed, 0 failed, 0 warning)",
        "a log line",
    ]
    err = io.StringIO()
    fake_run(monkeypatch, RealApp(err=err, color=False), retrieve_options())
    assert err.getvalue() == ""  # no -v: nothing
    err = io.StringIO()
    fake_run(monkeypatch, RealApp(err=err, color=False, debug=True, verbose=2), retrieve_options())
    assert "-> P-DATA-TF" in err.getvalue().splitlines()


@pytest.mark.parametrize(("terminal", "options", "quiet", "drawn"), [
    (True, retrieve_options(), False, True),
    (True, retrieve_options(no_progress=True), False, False),
    (True, retrieve_options(), True, False),
    (False, retrieve_options(), False, False),
])
def test_the_progress_bar_is_drawn_on_a_terminal_unless_told_not_to(monkeypatch, terminal, options, quiet, drawn):
    from dcmnet_cli.cli.app import App as RealApp

    err = Terminal() if terminal else io.StringIO()
    fake_run(monkeypatch, RealApp(err=err, color=False, quiet=quiet), options)
    text = err.getvalue()
    assert ("3/3" in text and "move" in text) is drawn, text


# --------------------------------------------------------------------------- make_storage: the receiver's events

def test_make_storage_builds_listens_storage_and_routes_its_events(monkeypatch, tmp_path):
    import dcmnet_cli.cli.retrieve as retrieve_cli
    from dcmnet_cli.cli.app import App as RealApp

    built: dict = {}

    def build_storage(*args):
        built["args"] = args
        return "scp", "negotiate"

    monkeypatch.setattr(retrieve_cli, "build_storage", build_storage)
    err = io.StringIO()
    app = RealApp(err=err, color=False, verbose=1, command="dcmnet get")
    received: list = []
    assert retrieve_cli.make_storage(app, str(tmp_path), "{SOPInstanceUID}", "rename", True, received) == \
        ("scp", "negotiate")
    args = built["args"]
    assert args[0] is app and args[1] == str(tmp_path) and args[2:10] == \
        ("{SOPInstanceUID}", "rename", False, (), False, True, None, None)
    assert args[10] == 60.0
    on_event = args[11]

    def event(kind, **kw):
        base = dict(event=kind, peer="127.0.0.1:5", path="/o/x.dcm", duplicate=None, detail=None,
                    sop_instance_uid="1.2", status="0x0000", bytes=10)
        return SimpleNamespace(**{**base, **kw})

    stored, failed = event("stored"), event("store-failed", status="0xA700", path=None, detail="disk full")
    association = event("association", calling_ae="PACS", called_ae="ME", outcome="released", echoes=0,
                        stored=1, failed=1, duration_ms=5.0)
    for item in (stored, failed, association, event("received", path=None)):
        on_event(item)
    assert [e.event for e in received] == ["stored", "store-failed", "received"]
    lines = err.getvalue().splitlines()
    assert lines[0].startswith("127.0.0.1:5 stored 1.2 0x0000 /o/x.dcm")
    assert lines[1].startswith("dcmnet get: warning: receiver: 127.0.0.1:5 store-failed 1.2 0xA700")
    assert lines[2].startswith("127.0.0.1:5 PACS -> ME: released")  # the association line is detail (-v)
    err.truncate(0)
    err.seek(0)
    app.verbose = 0
    on_event(failed)
    on_event(association)
    on_event(stored)
    assert len(err.getvalue().splitlines()) == 1  # without -v only the failure


def test_make_storage_defaults_to_the_current_folder(monkeypatch, tmp_path):
    import dcmnet_cli.cli.retrieve as retrieve_cli
    from dcmnet_cli.cli.app import App as RealApp

    built: dict = {}
    monkeypatch.setattr(retrieve_cli, "build_storage", lambda *args: built.setdefault("args", args))
    monkeypatch.chdir(tmp_path)
    retrieve_cli.make_storage(RealApp(err=io.StringIO()), None, None, "rename", False, [])
    assert built["args"][1] == str(tmp_path.resolve())


def test_from_json_lines_without_a_level_take_the_level_option_in_any_case(tmp_path):
    line = ndjson(tmp_path, '{"0020000D": {"vr": "UI", "Value": ["1.2"]}, "0020000E": {"vr": "UI", "Value": ["1.3"]}}\n')
    _model, deepest, _problems = build_requests(options(), line)
    _model, study, problems = build_requests(options(level="study"), line)
    assert problems == [] and deepest[0].level == "SERIES" and study[0].level == "STUDY"
    _model, study, problems = build_requests(options(level="STUDY"), line)
    assert problems == [] and study[0].level == "STUDY"


def test_finish_json_names_the_command_destination_and_our_ae():
    app = App()
    options_ = {"warnings_ok": False, "as_json": True, "calling_aet": "ME"}
    finish(app, options_, "move", PEER, run(op(0x0000, completed=1)), [STORED], [], destination="DEST")
    (obj,) = app.out
    assert (obj["operation"], obj["destination"], obj["calling_ae"]) == ("move", "DEST", "ME")
    assert obj["completed"] == 1 and [r["path"] for r in obj["received"]] == ["/out/1.dcm"]


def test_objects_received_without_storing_are_counted_too():
    discarded = SimpleNamespace(**{**vars(STORED), "event": "received", "path": None})
    _code, err = human(run(op(0x0000, completed=2)), kind="get", received=[STORED, discarded])
    assert err[-1] == ("info", "received 2 objects")


def test_every_foreign_command_element_is_named():
    _code, err = human(run(op(0x0000, completed=1, foreign_elements=["(0008,0018)", "(0010,0010)"])))
    assert err[0] == ("detail", "the peer put (0008,0018), (0010,0010) (outside group 0000) in its command set: "
                                "ignored")


def test_an_x_is_a_value_and_a_retrieve_without_a_level_suggests_the_study_key():
    require_keys(spec("STUDY", PatientID="X"))
    query = QuerySpec(MODELS["study"], None, Dataset())
    with pytest.raises(click.UsageError, match="add -k StudyInstanceUID=... "):
        require_keys(query)


def test_log_lines_go_above_the_bar_literally_and_unwrapped(monkeypatch):
    """-v lines while the bar is drawn: printed by the bar's console (never interleaved with it), as the
    text itself (peer text may hold [brackets] that rich would read as markup), one line however long."""
    import dcmnet_cli.services.scu.retrieve as scu
    from dcmnet_cli.cli.app import App as RealApp
    from dcmnet_cli.cli.retrieve import run_retrieve

    text = "[bold]peer said[/bold] " + "x" * 300

    def retrieve(*args, **kw):
        kw["callbacks"].log(text)
        return None

    monkeypatch.setattr(scu, "retrieve", retrieve)
    err = Terminal()
    run_retrieve(RealApp(err=err, color=False, verbose=1), retrieve_options(), "get", PEER, "1.2", [])
    assert "\x1b[2K" + text + "\n" in err.getvalue()  # the bar's line cleared, then the text, one line
