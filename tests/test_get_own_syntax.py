"""C-GET from ``dcmnet listen`` with a plain ``dcmnet get``: every object arrives in the transfer syntax it
is stored in, byte for byte (ul/negotiation.py ``sender_preferences``: on the storage contexts where the
requestor takes the SCP role, listen picks the syntaxes its index holds for the class).

``dcmnet get`` proposes, per class, one context with every compressed syntax and one with the uncompressed
ones; listen used to take its receiver's preference in each (the first compressed syntax it knows,
explicit VR little endian), so an RLE object was decompressed and an implicit VR one re-encoded. DCMTK's
getscu (uncompressed only by default) must still get everything, converted where needed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

from helpers.procs import LOOPBACK, listen_server, run_dcmnet, run_tool
from store_helpers import MRImageStorage, make_dataset, write, uid

AET = "ARCHIVE"
RLE_CT = make_dataset("own-syntax-rle", rows=32, columns=32)
PLAIN_CT = make_dataset("own-syntax-plain", rows=32, columns=32)
IMPLICIT_MR = make_dataset("own-syntax-implicit", sop_class=MRImageStorage, rows=16, columns=16)
for _ds in (RLE_CT, PLAIN_CT, IMPLICIT_MR):
    _ds.StudyInstanceUID = uid("own-syntax-study")
    _ds.PatientID = "OWNSYNTAX"
OBJECTS = ((RLE_CT, RLELossless), (PLAIN_CT, ExplicitVRLittleEndian), (IMPLICIT_MR, ImplicitVRLittleEndian))


def meta_and_dataset(path: Path) -> tuple[str, bytes]:
    """(File Meta transfer syntax, the data set bytes after the File Meta group) of a Part-10 file."""
    from dcmnet_cli.services.dicomfiles import read_meta

    data = path.read_bytes()
    assert data[128:132] == b"DICM", path
    return read_meta(path).transfer_syntax, data[144 + int.from_bytes(data[140:144], "little"):]


def files_by_uid(folder: Path) -> dict[str, Path]:
    from dcmnet_cli.services.dicomfiles import read_meta

    return {read_meta(p).sop_instance_uid: p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")}


@pytest.fixture(scope="module")
def archive(tmp_path_factory):  # type: ignore[no-untyped-def]
    """(port, {SOP Instance UID: the file listen stored}): a listen -od holding the three objects as sent
    (pydicom gives the RLE one a new SOP Instance UID when it compresses it)."""
    sources = tmp_path_factory.mktemp("sources")
    root = tmp_path_factory.mktemp("archive")
    with listen_server("-aet", AET, "-od", str(root)) as server:
        for index, (ds, syntax) in enumerate(OBJECTS):
            path = write(sources / f"{index}.dcm", ds, syntax)
            code, out, err = run_dcmnet("store", f"{AET}@{LOOPBACK}:{server.port}", str(path))
            assert code == 0, out + err
        stored = files_by_uid(root)
        assert sorted(meta_and_dataset(p)[0] for p in stored.values()) == sorted(s for _, s in OBJECTS)  # as sent
        yield server.port, stored


def test_plain_dcmnet_get_receives_each_object_in_its_stored_syntax(archive, tmp_path: Path) -> None:
    port, stored = archive
    code, _, err = run_dcmnet("get", "-aec", AET, LOOPBACK, str(port), "-od", str(tmp_path / "got"),
                              "-k", f"StudyInstanceUID={uid('own-syntax-study')}", timeout=30)
    assert code == 0, err
    got = files_by_uid(tmp_path / "got")
    assert set(got) == set(stored)
    for sop_instance, path in got.items():
        assert meta_and_dataset(path) == meta_and_dataset(stored[sop_instance]), sop_instance


def test_getscu_default_still_gets_everything_uncompressed(archive, dcmtk, tmp_path: Path) -> None:
    """getscu proposes uncompressed syntaxes only: the RLE object is decompressed for it, the others go
    as stored (the implicit VR MR in implicit VR: getscu proposes it, and listen holds it so)."""
    from pydicom import dcmread

    port, stored = archive
    out = tmp_path / "got"
    out.mkdir()
    code, text, err = run_tool([shutil.which("getscu") or "getscu", "-aec", AET, "-S", "-od", str(out), "-k",
                                "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={uid('own-syntax-study')}",
                                LOOPBACK, str(port)], timeout=30)
    assert code == 0, text + err
    got = files_by_uid(out)
    assert set(got) == set(stored)
    for sop_instance, path in got.items():
        syntax, data = meta_and_dataset(stored[sop_instance])
        if syntax == RLELossless:
            assert meta_and_dataset(path)[0] != RLELossless and dcmread(path).PixelData == make_dataset("own-syntax-rle", rows=32, columns=32).PixelData
        else:
            assert meta_and_dataset(path) == (syntax, data), sop_instance
