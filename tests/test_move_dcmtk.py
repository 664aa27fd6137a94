"""``dcmnet move`` against DCMTK's dcmqrscp (127.0.0.1 only), compared with DCMTK's movescu.

One dcmqrscp per module, loaded with the small deterministic data set of ``qr_helpers``; its HostTable
names the three move destinations used here (our --store-port, a separate ``dcmnet listen``, movescu).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread

from helpers.procs import LOOPBACK, base_env, dcmnet_argv, find_dcmtk, free_port, listen_server, run_dcmnet, run_tool
from qr_helpers import dcmqrscp_server, make_datasets, uid, write_part10

TOOLS = ("dcmqrscp", "movescu", "getscu", "storescu")
DATASETS = make_datasets()
PORTS = {"DCMNET": free_port(), "LISTENER": free_port(), "MOVESCU": free_port()}


def require_tools() -> None:
    """DCMTK missing: fail under CI=true, skip otherwise (as the ``dcmtk`` fixture does)."""
    _, missing = find_dcmtk(TOOLS)
    if missing:
        message = f"DCMTK tool(s) not found on PATH: {', '.join(missing)}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> tuple[int, str]:
    require_tools()
    destinations = {aet: (LOOPBACK, port) for aet, port in PORTS.items()}
    with dcmqrscp_server(tmp_path_factory.mktemp("qr"), DATASETS, move_destinations=destinations) as served:
        yield served


def dataset_bytes(path: Path) -> bytes:
    """A Part-10 file's data set, after the File Meta group (byte comparison of what was sent)."""
    data = path.read_bytes()
    assert data[128:132] == b"DICM", path
    group_length = int.from_bytes(data[140:144], "little")
    return data[144 + group_length:]


def source_bytes(tmp_path: Path, sop_instance: str) -> bytes:
    ds = next(d for d in DATASETS if d.SOPInstanceUID == sop_instance)
    return dataset_bytes(write_part10(tmp_path / "src" / f"{sop_instance}.dcm", ds))


def instances(where: str, value: str) -> set[str]:
    return {d.SOPInstanceUID for d in DATASETS if getattr(d, where) == value}


def received_uids(folder: Path) -> set[str]:
    return {dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".dcmnet-index")}


def move_here(archive, out: Path, *args: str, timeout: float = 30.0) -> tuple[int, str, str]:
    port, aet = archive
    return run_dcmnet("move", "-aec", aet, LOOPBACK, str(port), "--store-port", str(PORTS["DCMNET"]),
                      "--bind", LOOPBACK, "-od", str(out), *args, timeout=timeout)


def test_move_to_store_port_receives_the_sources_byte_for_byte(archive, tmp_path: Path) -> None:
    study = uid("s1")
    code, out, err = move_here(archive, tmp_path / "out", "-k", f"StudyInstanceUID={study}", "--json")
    assert code == 0, err
    summary = json.loads(out)
    expected = instances("StudyInstanceUID", study)
    assert summary["completed"] == len(expected) == 3 and summary["failed"] == 0 and summary["exit_code"] == 0
    assert {r["sop_instance_uid"] for r in summary["received"]} == expected
    for path in (tmp_path / "out").iterdir():
        if path.name.startswith(".dcmnet-index"):  # listen's index beside the objects (issue 11)
            continue
        assert dataset_bytes(path) == source_bytes(tmp_path, path.stem), path.name
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".dcmnet-tmp-")]


def test_move_to_a_separate_listener(archive, tmp_path: Path) -> None:
    port, aet = archive
    out = tmp_path / "listener"
    with listen_server("-aet", "LISTENER", "-od", str(out), port=PORTS["LISTENER"]):
        code, _, err = run_dcmnet("move", "-aec", aet, LOOPBACK, str(port), "--dest", "LISTENER", "-P",
                                  "-L", "PATIENT", "-k", "PatientID=PAT003")
    assert code == 0, err
    assert "2 completed, 0 failed" in err
    assert received_uids(out) == instances("PatientID", "PAT003")


def test_move_to_an_unknown_destination_exits_7_in_words(archive) -> None:
    port, aet = archive
    code, _, err = run_dcmnet("move", "-aec", aet, LOOPBACK, str(port), "--dest", "NOBODY", "-k", f"StudyInstanceUID={uid('s2')}")
    assert code == 7, err
    assert "0xA801" in err and "move destination unknown" in err


def test_move_without_a_destination_is_a_usage_error(archive) -> None:
    port, aet = archive
    code, _, err = run_dcmnet("move", "-aec", aet, LOOPBACK, str(port), "-k", "StudyInstanceUID=1.2.3")
    assert code == 2 and "--dest" in err


SLOW_DISK = """
    import os, time
    _real_fsync = os.fsync
    def _slow_fsync(fd):
        time.sleep(0.4)  # each received object takes 0.4 s to be stored: the move is still running
        return _real_fsync(fd)
    os.fsync = _slow_fsync
"""


def test_cancel_against_dcmqrscp_exits_0(archive, tmp_path: Path) -> None:
    """A cancel we asked for, while dcmqrscp is still moving (our receiver stores each object slowly):
    dcmqrscp confirms it with 0xFE00 after fewer than the 5 sub-operations, and that is exit 0."""
    from helpers.patched import patched_argv

    port, aet = archive
    argv = patched_argv(SLOW_DISK, "move", "-aec", aet, LOOPBACK, str(port), "--store-port", str(PORTS["DCMNET"]),
                        "--bind", LOOPBACK, "-od", str(tmp_path / "out"), "-P", "-L", "PATIENT",
                        "-k", "PatientID=PAT001", "--cancel-after-seconds", "0.3", "--json")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=base_env(), stdin=subprocess.DEVNULL)
    summary = json.loads(done.stdout)
    assert done.returncode == 0, done.stderr
    assert summary["status"] == "0xFE00", summary
    assert summary["cancel_sent"] and summary["completed"] < 5
    assert len(summary["received"]) == summary["completed"]


def test_same_instances_as_movescu(archive, tmp_path: Path) -> None:
    port, aet = archive
    theirs, ours = tmp_path / "movescu", tmp_path / "ours"
    theirs.mkdir()
    code, out, err = run_tool([shutil.which("movescu") or "movescu", "-P", "-aet", "MOVESCU", "-aec", aet, "-aem", "MOVESCU",
                               "--port", str(PORTS["MOVESCU"]), "-od", str(theirs), "-k", "QueryRetrieveLevel=PATIENT",
                               "-k", "PatientID=PAT001", LOOPBACK, str(port)])
    assert code == 0, out + err
    code, _, err = move_here(archive, ours, "-P", "-L", "PATIENT", "-k", "PatientID=PAT001")
    assert code == 0, err
    assert received_uids(ours) == received_uids(theirs) == instances("PatientID", "PAT001")


def test_find_json_piped_into_move_from_json(archive, tmp_path: Path) -> None:
    port, aet = archive
    study = uid("s1")
    find = subprocess.Popen(dcmnet_argv("find", "-aec", aet, LOOPBACK, str(port), "-L", "SERIES",
                                        "-k", f"StudyInstanceUID={study}", "--json"),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=base_env())
    try:
        move = subprocess.run(dcmnet_argv("move", "-aec", aet, LOOPBACK, str(port), "--store-port", str(PORTS["DCMNET"]),
                                          "--bind", LOOPBACK, "-od", str(tmp_path / "out"), "--from-json", "-", "--json"),
                              stdin=find.stdout, capture_output=True, text=True, env=base_env(), timeout=30)
    finally:
        assert find.stdout is not None
        find.stdout.close()
        find.wait(10)
    assert find.returncode == 0 and move.returncode == 0, move.stderr
    summary = json.loads(move.stdout)
    assert [op["label"].split()[0] for op in summary["operations"]] == ["SERIES", "SERIES"]
    assert received_uids(tmp_path / "out") == instances("StudyInstanceUID", study)


def test_from_json_with_hand_written_lines_and_a_bad_one(archive, tmp_path: Path) -> None:
    """Exit 3 for the unusable line; the good ones are still moved."""
    port, aet = archive
    lines = tmp_path / "matches.ndjson"
    image = next(d for d in DATASETS if d.StudyInstanceUID == uid("s3"))
    lines.write_text("\n".join([
        json.dumps({"00080052": {"vr": "CS", "Value": ["IMAGE"]}, "0020000D": {"vr": "UI", "Value": [image.StudyInstanceUID]},
                    "0020000E": {"vr": "UI", "Value": [image.SeriesInstanceUID]},
                    "00080018": {"vr": "UI", "Value": [image.SOPInstanceUID]}}),
        json.dumps({"00080052": {"vr": "CS", "Value": ["IMAGE"]}}),
    ]) + "\n")
    code, out, err = move_here(archive, tmp_path / "out", "--from-json", str(lines), "--json")
    assert code == 3, err
    summary = json.loads(out)
    assert summary["completed"] == 1 and len(summary["input_errors"]) == 1
    assert received_uids(tmp_path / "out") == {image.SOPInstanceUID}


def test_store_port_in_use_exits_4(archive, tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind((LOOPBACK, 0))
        busy.listen(1)
        taken = busy.getsockname()[1]
        port, aet = archive
        code, _, err = run_dcmnet("move", "-aec", aet, LOOPBACK, str(port), "--store-port", str(taken), "--bind", LOOPBACK,
                                  "-od", str(tmp_path), "-k", "StudyInstanceUID=1.2.3")
    assert code == 4 and "--store-port" in err


