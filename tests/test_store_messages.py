"""What a user sees from ``dcmnet store``: one line per connection failure, a summary line on every run,
Ctrl-C's progress, retries through a restarting peer, DICOMDIRs from a case-folding CD, hints for
swapped arguments, and compressed files decoded for a peer that takes only uncompressed syntaxes.

Every peer listens on 127.0.0.1 on a free port and is stopped by the test (fixtures, ``listen_server``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import (
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from helpers.procs import base_env, dcmnet_argv, free_port, listen_server, run_dcmnet, stop_process
from store_helpers import closed_port, make_dataset, make_file, received, write

HOST = "127.0.0.1"
SUMMARY = re.compile(r"^stored (\d+) of (\d+) files.*, [\d.]+ (?:bytes|kB|MB|GB) in [\d.]+ s", re.M)


def store(port: int, *args: str, timeout: float = 60.0) -> tuple[int, str, str]:
    return run_dcmnet("store", HOST, str(port), *args, timeout=timeout)


def many(folder: Path, count: int, **kwargs) -> list[Path]:  # type: ignore[no-untyped-def]
    return [make_file(folder, f"m{n}", rows=8, columns=8, **kwargs) for n in range(count)]


# --------------------------------------------------------------------------- messages


def test_peer_down_is_reported_once_with_a_summary(tmp_path: Path) -> None:
    many(tmp_path / "src", 200)
    (tmp_path / "src" / "notes.txt").write_text("not dicom")
    code, out, err = store(closed_port(), str(tmp_path / "src"))
    assert code == 4
    assert err.count("connection refused") == 1, err
    assert err.count("not a DICOM file") == 1
    summary = SUMMARY.search(err)
    assert summary and summary.groups() == ("0", "201"), err
    assert "1 not DICOM or unreadable" in err and "200 not sent" in err
    assert out == ""
    code, _, err = store(closed_port(), str(tmp_path / "src"), "-q")  # -q: the errors, once; no summary
    assert code == 4 and err.count("connection refused") == 1 and not SUMMARY.search(err)


def test_summary_on_success_even_when_not_a_terminal(storescp, tmp_path: Path) -> None:
    many(tmp_path / "src", 3)
    (tmp_path / "src" / "a.txt").write_text("x")
    (tmp_path / "src" / "b.txt").write_text("y")
    port, out = storescp()
    code, stdout, err = store(port, str(tmp_path / "src"))
    assert code == 3 and stdout == ""
    assert SUMMARY.search(err).groups() == ("3", "5"), err
    assert "(2 not DICOM or unreadable)" in err
    assert len(received(out)) == 3


def test_empty_stdin_says_so(tmp_path: Path) -> None:
    done = subprocess.run(dcmnet_argv("store", HOST, str(closed_port()), "-"), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=20, env=base_env())
    assert done.returncode == 3
    assert "stdin held no paths" in done.stderr and "Traceback" not in done.stderr


def test_swapped_host_and_port_and_forgotten_k(tmp_path: Path) -> None:
    path = make_file(tmp_path, "swap")
    code, _, err = run_dcmnet("store", "104", "pacs.example.org", str(path))
    assert code == 2 and "did you swap HOST and PORT" in err and "pacs.example.org 104" in err
    code, _, err = run_dcmnet("echo", "104", "pacs.example.org")
    assert code == 2 and "did you swap HOST and PORT" in err
    code, _, err = run_dcmnet("find", "127.0.0.1", "104", "PatientName=DOE*")
    assert code == 2 and "Invalid value for PEER" in err and "-k PatientName=DOE*" in err
    code, _, err = run_dcmnet("move", "PatientID=1")
    assert code == 2 and "-k PatientID=1" in err


def test_ctrl_c_prints_how_far_it_got(storescp, tmp_path: Path) -> None:
    for n in range(40):
        make_file(tmp_path / "src", f"big-{n}")  # 8 KB each: 16 s at 0.02 MB/s
    port, out = storescp()
    proc = subprocess.Popen(dcmnet_argv("store", HOST, str(port), str(tmp_path / "src"), "--max-rate", "0.02"),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=base_env(), preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 15  # wait for two files to have arrived whole (the first is then
        while len(list(out.iterdir())) < 2:  # answered), instead of sleeping and hoping
            assert time.monotonic() < deadline and proc.poll() is None, "nothing arrived"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    finally:
        stop_process(proc)
    assert proc.returncode == 130, err
    match = re.search(r"interrupted: stored (\d+) of 40 files", err)
    assert match and 0 < int(match.group(1)) < 40, err
    assert "Traceback" not in err


def test_dicomdir_upper_case_ids_found_on_lower_case_disk(storescp, tmp_path: Path) -> None:
    from pydicom.fileset import FileSet

    cd = tmp_path / "cd"
    fs = FileSet()
    for n in range(3):
        ds = make_dataset(f"cd-{n}")
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        fs.add(ds)
    fs.write(cd)
    for path in sorted(cd.rglob("*"), key=lambda p: -len(p.parts)):  # the CD mounted on Linux: lower case
        if path.name != path.name.lower():
            path.rename(path.with_name(path.name.lower()))
    dicomdir = cd / "dicomdir"
    assert dicomdir.exists()
    port, out = storescp()
    code, _, err = store(port, str(dicomdir))
    assert code == 0, err
    assert SUMMARY.search(err).groups() == ("3", "3")
    assert len(received(out)) == 3


# --------------------------------------------------------------------------- retries


def test_restarting_peer_every_file_stored_with_retries(tmp_path: Path) -> None:
    files = [make_file(tmp_path / "src", f"r{n}") for n in range(30)]  # 8 KB each: 2.4 s at 0.1 MB/s
    out = tmp_path / "out"
    out.mkdir()
    port = free_port()
    argv = dcmnet_argv("store", HOST, str(port), str(tmp_path / "src"), "--retries", "5", "--retry-delay", "0.5",
                       "--max-rate", "0.1")
    with listen_server("-od", str(out), port=port) as first:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=base_env())
        try:
            # The peer goes away mid-run, once a file has arrived: waited for, not slept for (a slow start on
            # a busy machine would otherwise reach only the second listener, with no retry to see) ...
            deadline = time.monotonic() + 20
            while not [p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")]:
                assert time.monotonic() < deadline and proc.poll() is None, "nothing arrived"
                time.sleep(0.02)
            first.proc.kill()
            first.proc.wait(5)
            time.sleep(1.5)  # ... and needs longer than the first retry delay to come back
            with listen_server("-od", str(out), port=port):
                _, err = proc.communicate(timeout=40)
        finally:
            stop_process(proc)
    assert proc.returncode == 0, err
    assert "retrying in" in err
    assert SUMMARY.search(err).groups() == ("30", "30"), err
    uids = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}
    assert set(received(out)) == uids


def test_refused_without_retries_is_one_line_exit_4(tmp_path: Path) -> None:
    many(tmp_path / "src", 5)
    code, _, err = store(closed_port(), str(tmp_path / "src"), "-j", "3", "--retries", "1", "--retry-delay", "0.1")
    assert code == 4
    assert err.count("error: connection refused") == 1 and err.count("retrying in") == 1, err


# --------------------------------------------------------------------------- codecs


def _dcmtk_encode(tool: str, flag: str, source: Path, target: Path) -> Path:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} (DCMTK) not installed")
    subprocess.run([tool, flag, str(source), str(target)], check=True, capture_output=True, timeout=30)
    return target


def _compressed(tmp_path: Path, kind: str) -> Path:
    """A compressed file: DCMTK encodes JPEG and JPEG-LS (pydicom has no encoder for them), pydicom with
    pylibjpeg-openjpeg encodes JPEG 2000, pydicom's own encoder RLE."""
    bits = 8 if kind == "baseline" else 16
    plain = write(tmp_path / f"{kind}-plain.dcm", make_dataset(f"codec-{kind}", bits=bits, rows=32, columns=32))
    target = tmp_path / "src" / f"{kind}.dcm"
    target.parent.mkdir(exist_ok=True)
    if kind == "baseline":
        return _dcmtk_encode("dcmcjpeg", "+eb", plain, target)
    if kind == "lossless":
        return _dcmtk_encode("dcmcjpeg", "+e1", plain, target)
    if kind == "jpeg-ls":
        return _dcmtk_encode("dcmcjpls", "+el", plain, target)
    ds = pydicom.dcmread(plain)
    if kind == "j2k":
        ds.BitsStored = ds.HighBit + 1
        ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
    else:
        ds.compress(RLELossless, encoding_plugin="pydicom")
    ds.save_as(target, enforce_file_format=True)
    return target


SYNTAX = {"baseline": JPEGBaseline8Bit, "lossless": JPEGLosslessSV1, "jpeg-ls": JPEGLSLossless,
          "j2k": JPEG2000Lossless, "rle": RLELossless}


@pytest.mark.parametrize("kind", sorted(SYNTAX))
def test_compressed_files_decoded_for_an_uncompressed_peer(storescp, tmp_path: Path, kind: str) -> None:
    pytest.importorskip("pylibjpeg")  # the codecs extra (make install puts it in the venv)
    source = _compressed(tmp_path, kind)
    original = pydicom.dcmread(source)
    assert original.file_meta.TransferSyntaxUID == SYNTAX[kind]
    port, out = storescp()  # no +xa: uncompressed syntaxes only
    code, _, err = store(port, str(source), "-v")
    assert code == 0, err
    assert "converted from" in err
    by_uid = received(out)
    assert list(by_uid) == [original.SOPInstanceUID]  # the SOP Instance UID survives the decoding
    copy = pydicom.dcmread(by_uid[original.SOPInstanceUID])
    assert copy.SOPInstanceUID == original.SOPInstanceUID  # in the data set too (pydicom would make a new one)
    assert not copy.file_meta.TransferSyntaxUID.is_compressed
    assert (copy.pixel_array == original.pixel_array).all()


def test_missing_decoder_names_the_codecs_extra(storescp, tmp_path: Path) -> None:
    """Without the decoders (hidden from the child), a JPEG file for an uncompressed-only peer: exit 5 and
    the install hint."""
    source = _compressed(tmp_path, "baseline")
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    for name in ("pylibjpeg", "libjpeg", "openjpeg", "rle", "numpy", "gdcm", "PIL"):
        (blocker / f"{name}.py").write_text("raise ImportError('hidden by the test')\n")
    port, out = storescp()
    env = dict(base_env(), PYTHONPATH=str(blocker) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(dcmnet_argv("store", HOST, str(port), str(source)), capture_output=True, text=True,
                          timeout=30, env=env, stdin=subprocess.DEVNULL)
    assert done.returncode == 5, done.stderr
    assert 'pip install "dcmnet[codecs]"' in done.stderr
    assert "Traceback" not in done.stderr and received(out) == {}
