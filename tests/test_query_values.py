"""``-k`` values and keywords checked before anything is sent: ISO dates and times accepted (and sent in
DICOM form), impossible dates, reversed ranges, words, over-long strings and bad ages refused with exit 2
naming the key, the value and the expected form; keyword typos get a suggestion, case slips a note."""

from __future__ import annotations

import pytest

from dcmnet_cli.cli.main import main
from dcmnet_cli.services.query_values import normalize, value_problem
from helpers.procs import LOOPBACK, free_port
from qr_helpers import scripted_find_scp

SUCCESS = 0x0000


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    return done.value.code, out, err


@pytest.mark.parametrize("key, sent", [
    ("StudyDate=2024-01-01", ("StudyDate", "20240101")),
    ("StudyDate=2024-01-01-2024-12-31", ("StudyDate", "20240101-20241231")),
    ("StudyDate=2024-01-01-", ("StudyDate", "20240101-")),
    ("StudyDate=-2024-12-31", ("StudyDate", "-20241231")),
    ("StudyDate=20240101-2024-06-30", ("StudyDate", "20240101-20240630")),
    ("StudyTime=10:15", ("StudyTime", "1015")),
    ("StudyTime=08:00-17:30:15", ("StudyTime", "0800-173015")),
    ("AcquisitionDateTime=2024-01-01T10:15", ("AcquisitionDateTime", "202401011015")),
    ("AcquisitionDateTime=2024-01-01T10:15+01:00", ("AcquisitionDateTime", "202401011015+0100")),
    ("patientname=Doe*", ("PatientName", "Doe*")),
    ("QueryRetrieveLevel=study", ("QueryRetrieveLevel", "STUDY")),
])
def test_iso_forms_and_case_slips_are_sent_in_dicom_form(capsys, key: str, sent: tuple[str, str]) -> None:
    with scripted_find_scp(lambda ident: [(SUCCESS, None)]) as (port, scp):
        code, _out, err = run(capsys, "find", "-aec", "FINDSCP", LOOPBACK, str(port), "-k", key)
    assert code == 0, err
    keyword, value = sent
    assert str(scp.requests[0][2].get(keyword)) == value
    if key.startswith("patientname"):
        assert "'patientname' read as PatientName" in err


@pytest.mark.parametrize("key, fragments", [
    ("StudyDate=yesterday", ["'yesterday'", "word", "YYYYMMDD"]),
    ("StudyDate=20241301-2024", ["'20241301-2024'", "month 13 does not exist", "YYYYMMDD"]),
    ("StudyDate=2024-13-01", ["month 13 does not exist"]),
    ("StudyDate=20241231-20240101", ["reversed", "did you mean 20240101-20241231?"]),
    ("StudyDate=2024-12-31-2024-01-01", ["reversed", "did you mean 20240101-20241231?"]),
    ("StudyDate=20240230", ["February 2024 has no day 30"]),
    ("StudyDate=2023-02-29", ["February 2023 has no day 29"]),
    ("StudyTime=25:00", ["hour 25 does not exist"]),
    ("StudyTime=1700-0800", ["reversed"]),
    ("Modality=ABCDEFGHIJKLMNOPQ", ["17 characters", "16", "CS"]),
    ("Modality=ct", ["upper case", "did you mean CT?"]),
    ("StudyID=12345678901234567", ["17 characters", "SH"]),
    ("StudyDescription=" + "x" * 65, ["65 characters", "64", "LO"]),
    ("PatientName=" + "x" * 65, ["65 characters", "64", "PN"]),
    ("ScheduledProcedureStepSequence[0].ScheduledStationAETitle=" + "A" * 17, ["17 characters", "AE"]),
    ("PatientAge=12X", ["'12X'", "nnnY"]),
    ("PatientAge=45Y", ["'45Y'", "nnnY"]),
])
def test_bad_values_exit_2_naming_key_value_and_form(capsys, key: str, fragments: list[str]) -> None:
    code, out, err = run(capsys, "find", LOOPBACK, str(free_port()), "-k", key)
    assert code == 2 and out == "", err  # 2, not 4: nothing was even tried on the (closed) port
    one_line = " ".join(err.split())
    assert key.partition("=")[0] in one_line
    for fragment in fragments:
        assert fragment in one_line, (fragment, err)


def test_keyword_typo_suggests_the_keyword(capsys) -> None:
    code, out, err = run(capsys, "find", LOOPBACK, str(free_port()), "-k", "PatientNme=Doe")
    assert code == 2 and out == ""
    assert "did you mean PatientName?" in " ".join(err.split())


@pytest.mark.parametrize("vr, value", [("AS", "045Y"), ("AS", "0*"), ("CS", "CT"), ("CS", "C?"), ("CS", ""),
                                       ("PN", "Doe^John=" + "x" * 64), ("DA", "20240101-20240101")])
def test_values_that_fit(vr: str, value: str) -> None:
    assert value_problem(vr, value) is None


def test_normalize_leaves_dicom_forms_and_other_vrs_alone() -> None:
    assert normalize("DA", "20240101-20241231") == "20240101-20241231"
    assert normalize("DT", "20240101120000.5-0500") == "20240101120000.5-0500"
    assert normalize("LO", "2024-01-01") == "2024-01-01"
    assert normalize("DA", "2024-01-01\\2024-02-01") == "20240101\\20240201"
