"""A 200 MB multi-frame object both ways against DCMTK, with memory bounded by the PDU size.

DCMTK storescu → ``dcmnet listen -od`` and ``dcmnet store`` → DCMTK storescp: the received file's pixel data
must be byte-identical to the source, the other elements equal, and the listener's peak RSS (VmHWM)
must stay under 100 MiB while a 200 MB object goes through it. 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path

import pydicom
import pytest
from helpers.procs import dcmnet_argv, free_port, listen_server, run_tool
from store_helpers import storescp_argv
from storage_helpers import require_tool

ROWS = COLUMNS = 512
FRAMES = 400  # 512 x 512 x 2 bytes x 400 = 209.7 MB
CT_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT Image Storage
INSTANCE = "1.2.826.0.1.3680043.9.7781.99.200.1"
RSS_LIMIT_KIB = 100 * 1024


def _big_source(path: Path) -> str:
    """Write the 200 MB object; return the SHA-256 of its pixel data (a deterministic pattern)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    frame = bytes((i * 7 + i // 512) & 0xFF for i in range(ROWS * COLUMNS * 2))
    pixels = frame * FRAMES
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CT_MULTIFRAME
    ds.file_meta.MediaStorageSOPInstanceUID = INSTANCE
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = CT_MULTIFRAME, INSTANCE
    ds.StudyInstanceUID = INSTANCE + ".1"
    ds.SeriesInstanceUID = INSTANCE + ".2"
    ds.PatientID, ds.PatientName, ds.Modality = "BIG-1", "Big^Object", "CT"
    ds.Rows, ds.Columns, ds.NumberOfFrames = ROWS, COLUMNS, FRAMES
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = pixels
    ds["PixelData"].VR = "OW"
    ds.save_as(path, enforce_file_format=True)
    return hashlib.sha256(pixels).hexdigest()


def _pixel_hash(path: Path) -> str:
    """Pixel data is the last element: hash the file's tail instead of loading 200 MB into pydicom."""
    size = ROWS * COLUMNS * 2 * FRAMES
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        handle.seek(-size, 2)
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _same_header(source: Path, received: Path) -> None:
    a = pydicom.dcmread(source, stop_before_pixels=True)
    b = pydicom.dcmread(received, stop_before_pixels=True)
    assert [(e.tag, e.value) for e in a] == [(e.tag, e.value) for e in b]


def _vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("big") / "big.dcm"
    return path, _big_source(path)


def test_storescu_to_listen_200mb_bounded_memory(big_file: tuple[Path, str], tmp_path: Path) -> None:
    source, pixel_hash = big_file
    storescu = require_tool("storescu")
    out = tmp_path / "out"
    with listen_server("-od", str(out), "--no-fsync") as server:
        rc, _out, err = run_tool([storescu, "-xe", "127.0.0.1", str(server.port), str(source)], timeout=120)
        assert rc == 0, err
        peak = _vm_hwm_kib(server.pid)
    received = out / f"{INSTANCE}.dcm"
    assert received.is_file()
    assert _pixel_hash(received) == pixel_hash
    _same_header(source, received)
    assert peak < RSS_LIMIT_KIB, f"listen peak RSS {peak} KiB for a 200 MB object"


def test_store_to_storescp_200mb_bounded_memory(big_file: tuple[Path, str], tmp_path: Path, dcmtk,
                                               start_server) -> None:  # type: ignore[no-untyped-def]
    source, pixel_hash = big_file
    out = tmp_path / "scp"
    out.mkdir()
    port = free_port()
    start_server(storescp_argv(port, out), port, dcmtk=True)
    proc = subprocess.Popen(dcmnet_argv("store", "127.0.0.1", str(port), str(source)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = 0
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            peak = max(peak, _vm_hwm_kib(proc.pid))
        except (OSError, AssertionError):
            pass
        time.sleep(0.02)
    stdout, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr.decode(errors="replace")
    received = [p for p in out.rglob("*") if p.is_file()]
    assert len(received) == 1
    assert _pixel_hash(received[0]) == pixel_hash
    _same_header(source, received[0])
    assert 0 < peak < RSS_LIMIT_KIB, f"store peak RSS {peak} KiB for a 200 MB object"
