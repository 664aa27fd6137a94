"""``dcmnet get`` against DCMTK's dcmqrscp (127.0.0.1 only), compared with DCMTK's getscu."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers.procs import LOOPBACK, run_dcmnet, run_tool
from qr_helpers import dcmqrscp_server, uid
from test_move_dcmtk import DATASETS, dataset_bytes, instances, received_uids, require_tools, source_bytes


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> tuple[int, str]:
    require_tools()
    with dcmqrscp_server(tmp_path_factory.mktemp("qr"), DATASETS) as served:
        yield served


def get(archive, out: Path, *args: str) -> tuple[int, str, str]:
    port, aet = archive
    return run_dcmnet("get", "-aec", aet, LOOPBACK, str(port), "-od", str(out), *args)


def test_get_receives_the_sources_byte_for_byte(archive, tmp_path: Path) -> None:
    study = uid("s1")
    code, out, err = get(archive, tmp_path / "out", "-k", f"StudyInstanceUID={study}", "--json")
    assert code == 0, err
    summary = json.loads(out)
    expected = instances("StudyInstanceUID", study)
    assert summary["completed"] == 3 and summary["failed"] == 0
    assert {r["sop_instance_uid"] for r in summary["received"]} == expected
    files = sorted((tmp_path / "out").iterdir())
    assert {p.stem for p in files} == expected
    for path in files:
        assert dataset_bytes(path) == source_bytes(tmp_path, path.stem), path.name


def test_same_instances_as_getscu(archive, tmp_path: Path) -> None:
    port, aet = archive
    theirs, ours = tmp_path / "getscu", tmp_path / "ours"
    theirs.mkdir()
    code, out, err = run_tool([shutil.which("getscu") or "getscu", "-P", "-aec", aet, "-od", str(theirs),
                               "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=PAT001", LOOPBACK, str(port)])
    assert code == 0, out + err
    code, _, err = get(archive, ours, "-P", "-L", "PATIENT", "-k", "PatientID=PAT001", "--filepath",
                       "{PatientID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm")
    assert code == 0, err
    assert received_uids(ours) == received_uids(theirs) == instances("PatientID", "PAT001")
    assert {p.parent.parent.name for p in ours.rglob("*.dcm")} == {"PAT001"}


def test_unproposed_storage_class_fails_with_the_uids_listed(archive, tmp_path: Path) -> None:
    """Only MR proposed: the CT sub-operations fail and dcmqrscp lists them (exit 7)."""
    study = uid("s1")
    code, out, err = get(archive, tmp_path / "out", "--storage-class", "MRImageStorage", "-k", f"StudyInstanceUID={study}")
    assert code == 7
    assert "3 failed" in err
    for sop_instance in instances("StudyInstanceUID", study):
        assert sop_instance in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_get_a_series_from_json(archive, tmp_path: Path) -> None:
    series = uid("s4b")
    lines = tmp_path / "m.ndjson"
    lines.write_text(json.dumps({"00080052": {"vr": "CS", "Value": ["SERIES"]},
                                 "0020000D": {"vr": "UI", "Value": [uid("s4")]},
                                 "0020000E": {"vr": "UI", "Value": [series]}}) + "\n")
    code, _, err = get(archive, tmp_path / "out", "--from-json", str(lines))
    assert code == 0, err
    assert received_uids(tmp_path / "out") == instances("SeriesInstanceUID", series)


def test_bad_storage_class_is_a_usage_error(archive, tmp_path: Path) -> None:
    code, _, err = get(archive, tmp_path, "--storage-class", "NoSuchStorage", "-k", "StudyInstanceUID=1.2.3")
    assert code == 2 and "--storage-class" in err
