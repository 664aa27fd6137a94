"""DCMTK storescu -> ``dcmnet listen -od``: every transfer syntax family, and a multi-frame object of a few MB.

Every received file is compared with its source: all elements equal, pixel data byte-identical, and the
file stored in the negotiated transfer syntax. 127.0.0.1 only; DCMTK runs with TCP_NODELAY=1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from helpers.procs import listen_server, run_tool
from storage_helpers import (
    DEFLATED,
    EXPLICIT_BE,
    EXPLICIT_LE,
    IMPLICIT_LE,
    RLE,
    assert_same_dataset,
    image_dataset,
    require_tool,
)

CASES = [
    # (name, listener --accept, storescu proposal flags, expected stored syntax)
    ("explicit-le", [], [], EXPLICIT_LE),
    ("implicit-le", ["--accept", "ImplicitVRLittleEndian"], ["-xi"], IMPLICIT_LE),
    ("explicit-be", ["--accept", EXPLICIT_BE], ["-xb"], EXPLICIT_BE),
    ("deflated", ["--accept", "DeflatedExplicitVRLittleEndian"], ["-xd"], DEFLATED),
]


def _stored(out: Path, server) -> list[dict]:
    return [json.loads(line) for line in server.stdout().splitlines() if '"event":"stored"' in line]


@pytest.mark.parametrize("name,accept,flags,syntax", CASES, ids=[c[0] for c in CASES])
def test_storescu_uncompressed_and_deflated(tmp_path, name, accept, flags, syntax):
    storescu = require_tool("storescu")
    out = tmp_path / "out"
    source = tmp_path / "src.dcm"
    instance = f"1.2.826.0.1.3680043.9.7781.99.2.{len(name)}"
    image_dataset(instance).save_as(source, enforce_file_format=True)
    with listen_server("--json", "-od", str(out), *accept) as server:
        rc, stdout, stderr = run_tool([storescu, *flags, "127.0.0.1", str(server.port), str(source)])
        assert rc == 0, stderr
        received = out / f"{instance}.dcm"
        assert received.is_file()
        assert pydicom.dcmread(received).file_meta.TransferSyntaxUID == syntax
        assert_same_dataset(source, received, swap16=syntax == EXPLICIT_BE)
        events = _stored(out, server)
        assert events and events[0]["path"] == str(received.resolve()) and events[0]["status"] == "0x0000"
        assert events[0]["calling_ae"] == "STORESCU" and events[0]["bytes"] == received.stat().st_size


def test_storescu_rle_stored_as_sent(tmp_path):
    storescu = require_tool("storescu")
    from pydicom.uid import RLELossless

    out = tmp_path / "out"
    source = tmp_path / "rle.dcm"
    instance = "1.2.826.0.1.3680043.9.7781.99.3.1"
    ds = image_dataset(instance, rows=32, cols=32, frames=2)
    ds.compress(RLELossless, generate_instance_uid=False)
    ds.save_as(source, enforce_file_format=True)
    with listen_server("-od", str(out), "--accept", "RLELossless") as server:
        rc, _stdout, stderr = run_tool([storescu, "-xr", "127.0.0.1", str(server.port), str(source)])
        assert rc == 0, stderr
    received = out / f"{instance}.dcm"
    assert pydicom.dcmread(received).file_meta.TransferSyntaxUID == RLE
    assert_same_dataset(source, received)  # encapsulated fragments byte-identical


def test_storescu_multiframe_few_mb_and_template(tmp_path):
    storescu = require_tool("storescu")
    out = tmp_path / "out"
    source = tmp_path / "mf.dcm"
    instance = "1.2.826.0.1.3680043.9.7781.99.4.1"
    image_dataset(instance, rows=256, cols=256, frames=30, seed=7, patient_id="PAT/../9").save_as(
        source, enforce_file_format=True)
    assert source.stat().st_size > 3_500_000
    with listen_server("-od", str(out), "--filepath", "{PatientID}/{StudyInstanceUID}/{SOPInstanceUID}.dcm") as server:
        rc, _stdout, stderr = run_tool([storescu, "127.0.0.1", str(server.port), str(source)])
        assert rc == 0, stderr
    found = [p for p in out.rglob("*.dcm")]
    assert len(found) == 1
    received = found[0]
    patient_dir = received.parent.parent.name
    assert patient_dir.startswith("PAT_") and patient_dir != "PAT-9"  # hashed, inside out/
    assert received.parent.name == "1.2.826.0.1.3680043.9.7781.99.1"
    assert received.resolve().is_relative_to(out.resolve())
    assert_same_dataset(source, received)
