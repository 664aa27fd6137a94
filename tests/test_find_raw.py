"""``dcmnet find`` against a scripted SCP of our own (127.0.0.1 only): hostile and odd responses, the
exit codes they map to, worklist, sequence keys, extended negotiation and character sets."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydicom import Dataset

from dcmnet_cli.cli.main import main
from dcmnet_cli.services.query import MODELS, encode_identifier
from dcmnet_cli.ul.items import SOPClassExtendedNegotiation
from helpers.procs import LOOPBACK, base_env, dcmnet_argv, free_port, run_on_pty
from qr_helpers import JAPANESE_NAME, UTF8_NAME, scripted_find_scp

PENDING, SUCCESS = 0xFF00, 0x0000
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def run(capsys, *args: str) -> tuple[int, str, str]:
    """``dcmnet ARGS`` in-process; returns (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    return done.value.code, out, err


def study(name: str, uid: str, charset: str | list[str] | None = None) -> Dataset:
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = name
    ds.PatientID = "X1"
    ds.StudyInstanceUID = uid
    return ds


def find(capsys, port: int, *args: str) -> tuple[int, str, str]:
    return run(capsys, "find", "-aec", "FINDSCP", LOOPBACK, str(port), *args)


def test_zero_matches_is_success_and_prints_the_header(capsys) -> None:
    with scripted_find_scp(lambda ident: [(SUCCESS, None)]) as (port, _scp):
        code, out, err = find(capsys, port, "-k", "PatientName=Nobody")
    assert code == 0, err
    assert out.splitlines() == [out.splitlines()[0]] and "PatientName" in out
    assert "0 matches" in err


@pytest.mark.parametrize("status, code", [(0xC000, 7), (0xA700, 7), (0xA900, 7), (0x1234, 7), (0xFE00, 8), (0xB000, 1)])
def test_final_status_exit_codes(capsys, status: int, code: int) -> None:
    script = lambda ident: [(PENDING, study("A^B", "1.2.3")), (status, None)]  # noqa: E731
    with scripted_find_scp(script, error_comment="scripted") as (port, _scp):
        got, out, err = find(capsys, port)
    assert got == code, err
    assert len(out.splitlines()) == 2  # header + the one match before the final status
    if code == 7:
        assert f"0x{status:04X}" in err and "scripted" in err
        assert len(err.strip().splitlines()) == 1
    if status == 0x1234:
        assert "unknown status 0x1234" in err


def test_cancel_after_confirmed_by_the_peer_is_success(capsys) -> None:
    script = lambda ident: [(PENDING, study("A^B", "1.2.1")), (PENDING, study("C^D", "1.2.2")), (0xFE00, None)]  # noqa: E731
    with scripted_find_scp(script) as (port, _scp):
        code, out, err = find(capsys, port, "--cancel-after", "1")
    assert code == 0, err
    assert len(out.splitlines()) == 2 and "A^B" in out and "C^D" not in out
    assert "cancelled after 1 as asked" in err


def test_malformed_pending_identifier_aborts_with_exit_6(capsys) -> None:
    garbage = b"\x10\x00\x10\x00PN\xff\x7f" + b"Doe"  # an element whose length runs past the end
    with scripted_find_scp(lambda ident: [(PENDING, garbage), (SUCCESS, None)]) as (port, _scp):
        code, out, err = find(capsys, port)
    assert code == 6, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "undecodable identifier" in lines[0]


def test_pending_without_identifier_is_a_protocol_error(capsys) -> None:
    with scripted_find_scp(lambda ident: [(PENDING, None), (SUCCESS, None)]) as (port, _scp):
        code, _out, err = find(capsys, port)
    assert code == 6 and "without an identifier" in err


def test_character_sets_are_decoded(capsys) -> None:
    script = lambda ident: [  # noqa: E731
        (PENDING, study(UTF8_NAME, "1.2.1", "ISO_IR 192")),
        (PENDING, study(JAPANESE_NAME, "1.2.2", ["", "ISO 2022 IR 87"])),
        (PENDING, study("Διονυσιος", "1.2.3", "ISO_IR 126")),
        (SUCCESS, None),
    ]
    with scripted_find_scp(script) as (port, _scp):
        code, out, err = find(capsys, port, "--json")
    assert code == 0, err
    names = [Dataset.from_json(json.loads(line)).PatientName for line in out.splitlines()]
    assert str(names[0]) == UTF8_NAME
    assert names[1].ideographic == "山田^太郎" and names[1].phonetic == "やまだ^たろう"
    assert str(names[2]) == "Διονυσιος"
    with scripted_find_scp(script) as (port, _scp):
        code, out, _err = find(capsys, port)
    assert UTF8_NAME in out and JAPANESE_NAME in out and "Διονυσιος" in out


def test_worklist_proposes_mwl_and_flattens_sequences(capsys) -> None:
    def script(ident: Dataset):
        item = Dataset()
        item.Modality = "CT"
        item.ScheduledStationAETitle = "CT01"
        item.ScheduledProcedureStepStartDate = "20240301"
        match = Dataset()
        match.PatientName = "Work^List"
        match.PatientID = "WL1"
        match.ScheduledProcedureStepSequence = [item]
        return [(PENDING, match), (SUCCESS, None)]

    with scripted_find_scp(script, sop_classes=[MODELS["worklist"].find]) as (port, scp):
        code, out, err = find(capsys, port, "-W", "-k", "ScheduledProcedureStepSequence[0].Modality=CT",
                              "-k", "PatientName", "-k", "ScheduledProcedureStepSequence[0].ScheduledStationAETitle")
    assert code == 0, err
    abstract, _ts, identifier, _rq = scp.requests[0]
    assert abstract == "1.2.840.10008.5.1.4.31"
    assert "QueryRetrieveLevel" not in identifier
    step = identifier.ScheduledProcedureStepSequence[0]
    assert step.Modality == "CT" and step.ScheduledStationAETitle == ""
    assert identifier.PatientName == ""
    header, row = out.splitlines()
    columns = dict(zip(header.split("\t"), row.split("\t")))
    assert columns["ScheduledProcedureStepSequence[0].Modality"] == "CT"
    assert columns["PatientName"] == "Work^List"


def test_worklist_default_return_keys(capsys) -> None:
    with scripted_find_scp(lambda ident: [(SUCCESS, None)]) as (port, scp):
        code, _out, err = find(capsys, port, "-W", "-k", "ScheduledProcedureStepSequence[0].Modality=MR")
    assert code == 0, err
    identifier = scp.requests[0][2]
    assert "PatientName" in identifier and "AccessionNumber" in identifier
    step = identifier.ScheduledProcedureStepSequence[0]
    assert step.Modality == "MR" and "ScheduledProcedureStepStartDate" in step


def test_sequence_and_tag_keys_are_encoded(capsys) -> None:
    with scripted_find_scp(lambda ident: [(SUCCESS, None)]) as (port, scp):
        code, _out, err = find(capsys, port, "-k", "0010,0020=ID*", "-k", "(0008,0030)",
                               "-k", "ProcedureCodeSequence[0].CodeValue=XR1", "-k", "StudyDate=20240101-")
    assert code == 0, err
    identifier = scp.requests[0][2]
    assert identifier.PatientID == "ID*" and identifier.StudyTime == ""
    assert identifier.ProcedureCodeSequence[0].CodeValue == "XR1"
    assert identifier.StudyDate == "20240101-" and identifier.QueryRetrieveLevel == "STUDY"


def test_extended_negotiation_flags(capsys) -> None:
    with scripted_find_scp(lambda ident: [(SUCCESS, None)]) as (port, scp):
        code, _out, err = find(capsys, port, "-P", "--relational", "--fuzzy", "--timezone-adjust")
        assert code == 0, err
        code, _out, err = find(capsys, port, "-P")
    assert code == 0, err
    first, second = scp.requests[0][3], scp.requests[1][3]
    assert first.user_info.extended == (SOPClassExtendedNegotiation(MODELS["patient"].find, b"\x01\x00\x01\x01"),)
    assert second.user_info.extended == ()


def test_no_accepted_context_is_exit_5(capsys) -> None:
    with scripted_find_scp(lambda ident: [(SUCCESS, None)], sop_classes=[MODELS["patient"].find]) as (port, _scp):
        code, _out, err = find(capsys, port, "-S")
    assert code == 5, err  # our acceptor rejects an association with no usable context


def test_dimse_timeout_is_exit_6(capsys) -> None:
    import threading

    release = threading.Event()
    with scripted_find_scp(lambda ident: release.wait(5) and []) as (port, _scp):
        try:
            code, _out, err = find(capsys, port, "-td", "0.3")
        finally:
            release.set()
    assert code == 6 and "DIMSE timeout" in err


def test_connect_refused_is_exit_4(capsys) -> None:
    code, _out, _err = run(capsys, "find", LOOPBACK, str(free_port()), "--connect-timeout", "2")
    assert code == 4


@pytest.mark.parametrize("args", [
    ("-k", "NoSuchKeyword=1"),
    ("-k", "PatientName[0].X=1"),
    ("-k", "ScheduledProcedureStepSequence=CT"),
    ("-W", "-L", "STUDY"),
    ("-S", "-L", "PATIENT"),
    ("-P", "-S"),
    ("--cancel-after", "0"),
])
def test_usage_errors_exit_2(capsys, args: tuple[str, ...]) -> None:
    code, _out, err = run(capsys, "find", LOOPBACK, "1", *args)
    assert code == 2, err


def test_query_file_json_overridden_by_keys(capsys, tmp_path) -> None:
    base = Dataset()
    base.QueryRetrieveLevel = "SERIES"
    base.StudyInstanceUID = "1.2.3"
    base.Modality = "MR"
    base.SeriesNumber = None
    path = tmp_path / "q.json"
    path.write_text(json.dumps(base.to_json_dict()))
    with scripted_find_scp(lambda ident: [(SUCCESS, None)]) as (port, scp):
        code, _out, err = find(capsys, port, "-f", str(path), "-k", "Modality=CT")
    assert code == 0, err
    identifier = scp.requests[0][2]
    assert identifier.QueryRetrieveLevel == "SERIES" and identifier.Modality == "CT"
    assert identifier.StudyInstanceUID == "1.2.3" and "SeriesNumber" in identifier


def test_table_on_a_terminal_and_no_rich_otherwise(tmp_path) -> None:
    """Through a pty the matches are a Rich table; piped, rich is never imported."""
    script = lambda ident: [(PENDING, study("Doe^Jane", "1.2.9")), (SUCCESS, None)]  # noqa: E731
    with scripted_find_scp(script) as (port, _scp):
        returncode, table, stderr = run_on_pty(dcmnet_argv("find", "-aec", "FINDSCP", LOOPBACK, str(port)),
                                               {**base_env(), "COLUMNS": "300"}, timeout=20)
        assert returncode == 0, stderr
        assert "Doe^Jane" in table and "┃" in table and "Patient Name" in table  # headers split into words
        probe = ("import sys\nfrom dcmnet_cli.cli.main import main\n"
                 "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
                 "print('RICH' if 'rich' in sys.modules else 'NORICH', code, file=sys.stderr)\n")
        done = subprocess.run([sys.executable, "-c", probe, "find", "-aec", "FINDSCP", LOOPBACK, str(port)],
                              capture_output=True, text=True, env=base_env(), timeout=20)
    assert "NORICH 0" in done.stderr, done.stderr
    assert "Doe^Jane" in done.stdout


def test_encode_identifier_round_trips_in_every_uncompressed_syntax() -> None:
    from dcmnet_cli.services.query import decode_identifier

    ds = study(JAPANESE_NAME, "1.2.3", ["", "ISO 2022 IR 87"])
    for syntax in (EXPLICIT_LE, "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"):
        back = decode_identifier(encode_identifier(ds, syntax), syntax)
        assert str(back.PatientName) == JAPANESE_NAME
