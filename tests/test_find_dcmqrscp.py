"""``dcmnet find`` against DCMTK's dcmqrscp (127.0.0.1 only): every model and level, matching kinds,
output formats, --write, --cancel-after, and the same matches as DCMTK's findscu."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom import Dataset

from dcmnet_cli.cli.main import main
from helpers.procs import LOOPBACK, run_tool
from qr_helpers import JAPANESE_NAME, UTF8_NAME, dcmqrscp_server, make_datasets, uid


@pytest.fixture(scope="module")
def archive(tmp_path_factory, dcmtk):
    """One dcmqrscp loaded with the test data for the whole module: (port, aet)."""
    if not all(shutil.which(t) for t in ("dcmqrscp", "storescu", "findscu")):
        import os

        message = "DCMTK dcmqrscp/storescu/findscu not found on PATH"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    with dcmqrscp_server(tmp_path_factory.mktemp("qr"), make_datasets()) as (port, aet):
        yield port, aet


def find(capsys, archive, *args: str, verbose: bool = False) -> tuple[int, str, str]:
    port, aet = archive
    with pytest.raises(SystemExit) as done:
        main([*(["-v"] if verbose else []), "find", "-aec", aet, LOOPBACK, str(port), *args])
    out, err = capsys.readouterr()
    return done.value.code, out, err


def rows(out: str) -> list[dict[str, str]]:
    header, *lines = out.splitlines()
    names = header.split("\t")
    return [dict(zip(names, line.split("\t"))) for line in lines]


S1, S2, S3, S4 = (uid(name) for name in ("s1", "s2", "s3", "s4"))


@pytest.mark.parametrize("args, column, expected", [
    (("-P", "-L", "PATIENT"), "PatientID", {"PAT001", "PAT002", "PAT003"}),
    (("-P", "-L", "STUDY", "-k", "PatientID=PAT001"), "StudyInstanceUID", {S1, S2}),
    (("-P", "-L", "SERIES", "-k", "PatientID=PAT001", "-k", f"StudyInstanceUID={S1}"), "SeriesInstanceUID",
     {uid("s1a"), uid("s1b")}),
    (("-P", "-L", "IMAGE", "-k", "PatientID=PAT001", "-k", f"StudyInstanceUID={S1}", "-k", f"SeriesInstanceUID={uid('s1a')}"),
     "SOPInstanceUID", {uid("s1a-img1"), uid("s1a-img2")}),
    ((), "StudyInstanceUID", {S1, S2, S3, S4}),
    (("-S", "-L", "STUDY", "-k", "PatientID=PAT003"), "StudyInstanceUID", {S4}),
    (("-S", "-L", "SERIES", "-k", f"StudyInstanceUID={S4}"), "SeriesInstanceUID", {uid("s4a"), uid("s4b")}),
    (("-S", "-L", "IMAGE", "-k", f"StudyInstanceUID={S2}", "-k", f"SeriesInstanceUID={uid('s2a')}"), "SOPInstanceUID",
     {uid("s2a-img1"), uid("s2a-img2")}),
    (("-O", "-L", "PATIENT"), "PatientID", {"PAT001", "PAT002", "PAT003"}),
    (("-O", "-L", "STUDY", "-k", "PatientID=PAT002"), "StudyInstanceUID", {S3}),
    # matching kinds: wildcards, ranges, UID lists
    (("-k", "PatientName=Doe*"), "StudyInstanceUID", {S1, S2}),
    (("-k", "PatientID=PAT00?"), "StudyInstanceUID", {S1, S2, S3, S4}),
    (("-k", "PatientID=PAT0?3"), "StudyInstanceUID", {S4}),
    (("-k", "StudyDate=20240101-20241231"), "StudyInstanceUID", {S1, S2, S3}),
    (("-k", "StudyDate=-20231231"), "StudyInstanceUID", {S4}),
    (("-k", f"StudyInstanceUID={S1}\\{S3}"), "StudyInstanceUID", {S1, S3}),
    (("-k", "StudyDescription=NOTHING*"), "StudyInstanceUID", set()),
])
def test_models_levels_and_matching(capsys, archive, args, column, expected) -> None:
    code, out, err = find(capsys, archive, *args)
    assert code == 0, err
    assert {row[column] for row in rows(out)} == expected


def findscu_uids(archive, keys: list[str], model: str, column_tag: str) -> set[str]:
    port, aet = archive
    code, out, err = run_tool(["findscu", model, "-aec", aet, *sum((["-k", k] for k in keys), []), LOOPBACK, str(port)])
    assert code == 0, err
    return set(re.findall(rf"\({column_tag}\) \w\w \[([^\]]*)\]", out + err, re.IGNORECASE))


@pytest.mark.parametrize("model, keys, keyword, tag", [
    ("-S", ["QueryRetrieveLevel=STUDY", "PatientName=*o*", "StudyInstanceUID"], "StudyInstanceUID", "0020,000d"),
    ("-S", ["QueryRetrieveLevel=STUDY", "StudyDate=20240101-20240630", "StudyInstanceUID"], "StudyInstanceUID", "0020,000d"),
    ("-P", ["QueryRetrieveLevel=PATIENT", "PatientID=PAT*", "PatientID"], "PatientID", "0010,0020"),
    ("-S", ["QueryRetrieveLevel=SERIES", f"StudyInstanceUID={S1}", "Modality=CT", "SeriesInstanceUID"],
     "SeriesInstanceUID", "0020,000e"),
])
def test_same_matches_as_findscu(capsys, archive, model, keys, keyword, tag) -> None:
    theirs = {value.strip("\x00 ") for value in findscu_uids(archive, keys, model, tag)}
    code, out, err = find(capsys, archive, model, *sum((["-k", k] for k in keys), []))
    assert code == 0, err
    ours = {row[keyword] for row in rows(out)}
    assert ours == theirs and ours


def test_json_lines_round_trip_and_character_sets(capsys, archive) -> None:
    code, out, err = find(capsys, archive, "-P", "-L", "PATIENT", "--json")
    assert code == 0, err
    matches = [Dataset.from_json(json.loads(line)) for line in out.splitlines()]
    by_id = {ds.PatientID: ds for ds in matches}
    assert set(by_id) == {"PAT001", "PAT002", "PAT003"}
    assert str(by_id["PAT002"].PatientName) == UTF8_NAME
    assert by_id["PAT002"].SpecificCharacterSet == "ISO_IR 192"
    japanese = by_id["PAT003"].PatientName
    assert str(japanese) == JAPANESE_NAME and japanese.ideographic == "山田^太郎"
    for ds in matches:  # every line re-encodes as DICOM JSON the same way
        assert Dataset.from_json(ds.to_json_dict()) == ds


def test_tsv_output(capsys, archive) -> None:
    code, out, err = find(capsys, archive, "-k", "PatientName", "-k", "StudyDate", "-k", "PatientID=PAT00[23]")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split("\t") == ["PatientName", "StudyDate", "PatientID"]  # -k order, no level column
    code, out, err = find(capsys, archive, "-k", "PatientName", "-k", "StudyDate=20240101-")
    names = sorted(row["PatientName"] for row in rows(out))
    assert names == ["Doe^John", "Doe^John", UTF8_NAME]
    code, out, err = find(capsys, archive, "-k", "PatientName", "-k", "PatientID=PAT003")
    assert [row["PatientName"] for row in rows(out)] == [JAPANESE_NAME]


def test_write_matches_as_files(capsys, archive, tmp_path: Path) -> None:
    target = tmp_path / "out" / "matches"
    code, out, err = find(capsys, archive, "-L", "SERIES", "-k", f"StudyInstanceUID={S1}", "--write", str(target))
    assert code == 0, err
    files = sorted(target.iterdir())
    names = [re.fullmatch(r"rsp(\d{5})-([0-9.]+)\.dcm", f.name) for f in files]
    assert all(names) and {n[1] for n in names} == {"00001", "00002"}
    assert {n[2] for n in names} == {uid("s1a"), uid("s1b")}
    uids = {pydicom.dcmread(f).SeriesInstanceUID for f in files}
    assert uids == {uid("s1a"), uid("s1b")}
    assert all(pydicom.dcmread(f).file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.2.2.1" for f in files)


def test_cancel_after_one_match(capsys, archive) -> None:
    code, out, err = find(capsys, archive, "-L", "IMAGE", "-k", f"StudyInstanceUID={S1}", "-k",
                          f"SeriesInstanceUID={uid('s1a')}", "--cancel-after", "1", verbose=True)
    assert code == 0, err
    assert len(rows(out)) == 1
    assert "C-CANCEL" in err
