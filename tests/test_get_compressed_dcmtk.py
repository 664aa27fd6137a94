"""``dcmnet get`` receives compressed objects as they are stored: DCMTK's dcmqrscp (``+xr``: it accepts
and keeps RLE) holds an RLE Lossless CT loaded as-is with ``storescu -xr``; it cannot transcode, so the
object arrives only if we accepted RLE. 127.0.0.1 only; dcmqrscp always stopped."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from helpers.procs import LOOPBACK, base_env, run_dcmnet
from qr_helpers import CT_IMAGE_STORAGE, dcmqrscp_server, uid
from test_move_dcmtk import dataset_bytes, require_tools

STUDY = uid("rle-study")
INSTANCE = uid("rle-img1")


def rle_file(path: Path) -> Path:
    """A 16 x 16 CT image, RLE Lossless, as a Part-10 file."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = CT_IMAGE_STORAGE, INSTANCE
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY, uid("rle-series")
    ds.PatientID, ds.PatientName, ds.StudyDate, ds.StudyTime = "PATRLE", "Rle^Pat", "20240101", "101500"
    ds.StudyID, ds.AccessionNumber, ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "R1", "ACCR", "CT", 1, 1
    ds.Rows = ds.Columns = 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PixelData = (np.arange(256, dtype=np.uint16) * 7 % 4096).tobytes()
    ds.compress(RLELossless, encoding_plugin="pydicom", generate_instance_uid=False)
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = CT_IMAGE_STORAGE, INSTANCE
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> tuple[int, str, Path]:
    require_tools()
    folder = tmp_path_factory.mktemp("rle")
    source = rle_file(folder / "src" / "rle.dcm")
    with dcmqrscp_server(folder, [], extra_args=["+xr"]) as (port, aet):
        done = subprocess.run([shutil.which("storescu") or "storescu", "-xr", "-aet", "LOADER", "-aec", aet, LOOPBACK,
                               str(port), str(source)], capture_output=True, text=True, timeout=30,
                              env=base_env(dcmtk=True), stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
        yield port, aet, source


def get(archive, out: Path, *args: str) -> tuple[int, str, str]:
    port, aet, _ = archive
    return run_dcmnet("get", "-aec", aet, LOOPBACK, str(port), "-od", str(out), "-k", f"StudyInstanceUID={STUDY}", *args)


def test_get_stores_an_rle_object_byte_identical_in_its_own_syntax(archive, tmp_path: Path) -> None:
    code, out, err = get(archive, tmp_path / "out", "--json")
    assert code == 0, err
    assert json.loads(out)["completed"] == 1
    files = list((tmp_path / "out").iterdir())
    assert [p.stem for p in files] == [INSTANCE]
    assert dcmread(files[0], stop_before_pixels=True).file_meta.TransferSyntaxUID == RLELossless
    assert dataset_bytes(files[0]) == dataset_bytes(archive[2])


@pytest.mark.parametrize("accept", [("RLELossless",), ("1.2.840.10008.1.2.5", "ExplicitVRLittleEndian")])
def test_accept_names_the_syntaxes(archive, tmp_path: Path, accept: tuple[str, ...]) -> None:
    code, _, err = get(archive, tmp_path / "out", *(arg for ts in accept for arg in ("--accept", ts)))
    assert code == 0, err
    assert dataset_bytes(next((tmp_path / "out").iterdir())) == dataset_bytes(archive[2])


def test_accepting_uncompressed_only_fails_the_object_with_a_hint(archive, tmp_path: Path) -> None:
    code, _, err = get(archive, tmp_path / "out", "--accept", "ExplicitVRLittleEndian", "--accept", "1.2.840.10008.1.2")
    assert code == 7, err
    assert INSTANCE in err and "--accept" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_accept_usage_errors(archive, tmp_path: Path) -> None:
    code, _, err = get(archive, tmp_path / "out", "--accept", "NoSuchSyntax")
    assert code == 2 and "--accept" in err and "NoSuchSyntax" in err, err
