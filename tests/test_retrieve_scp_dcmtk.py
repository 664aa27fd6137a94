"""``dcmnet listen`` as a C-MOVE / C-GET SCP (services/scp/retrieve_handler.py), from DCMTK's movescu and
getscu and from our own ``dcmnet move`` / ``dcmnet get``, all on 127.0.0.1.

One ``listen -od`` per module, loaded with storescu (the small Q/R data set of ``qr_helpers``, a larger CT
with pixel data streamed from disk, an RLE-compressed CT and a long series for the cancel test); its move
destinations are a second ``dcmnet listen`` (DEST) and a DCMTK storescp started per test (STORESCP).
What arrives is compared byte for byte (the data set after the File Meta group) with what was stored.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from pydicom.uid import RLELossless

from helpers.procs import LOOPBACK, find_dcmtk, free_port, listen_server, run_dcmnet, run_tool, running_server
from qr_helpers import load_into, make_datasets, uid, write_part10
from store_helpers import make_dataset, write

TOOLS = ("movescu", "getscu", "storescu", "storescp")
DATASETS = make_datasets()
BIG = make_dataset("retrieve-big", rows=256, columns=256)  # 128 KiB of pixels: sent from disk, not inline
RLE = make_dataset("retrieve-rle", rows=64, columns=64)
LONG_SERIES = [make_dataset(f"retrieve-long-{i}") for i in range(60)]
for _ds in (BIG, RLE, *LONG_SERIES):
    _ds.StudyInstanceUID = uid("retrieve-extra")
    _ds.PatientID = "PAT009"
BIG.SeriesInstanceUID, RLE.SeriesInstanceUID = uid("retrieve-big-series"), uid("retrieve-rle-series")
PORTS = {"DEST": free_port(), "STORESCP": free_port(), "ARCHIVE": free_port()}
AET = "ARCHIVE"


def require_tools() -> None:
    """DCMTK missing: fail under CI=true, skip otherwise (as the ``dcmtk`` fixture does)."""
    _, missing = find_dcmtk(TOOLS)
    if missing:
        message = f"DCMTK tool(s) not found on PATH: {', '.join(missing)}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


def dataset_bytes(path: Path) -> bytes:
    """A Part-10 file's data set, after the File Meta group."""
    data = path.read_bytes()
    assert data[128:132] == b"DICM", path
    group_length = int.from_bytes(data[140:144], "little")
    return data[144 + group_length:]


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    """SOP Instance UID → the file loaded into the archive."""
    folder = tmp_path_factory.mktemp("sources")
    files = {ds.SOPInstanceUID: write_part10(folder / f"{i:03d}.dcm", ds) for i, ds in enumerate(DATASETS)}
    files[BIG.SOPInstanceUID] = write_part10(folder / "big.dcm", BIG)
    files[RLE.SOPInstanceUID] = write(folder / "rle.dcm", RLE, RLELossless)
    for i, ds in enumerate(LONG_SERIES):
        files[ds.SOPInstanceUID] = write_part10(folder / f"long{i:03d}.dcm", ds)
    return files


@pytest.fixture(scope="module")
def archive(tmp_path_factory, sources):  # type: ignore[no-untyped-def]
    """(port, the DEST listener's folder, the archive's ServerProcess): the archive listen, loaded."""
    require_tools()
    root = tmp_path_factory.mktemp("archive")
    dest = tmp_path_factory.mktemp("dest")
    with listen_server("-od", str(dest), port=PORTS["DEST"]), \
            listen_server("-aet", AET, "-od", str(root / "od"), "--move-destination", f"DEST={LOOPBACK}:{PORTS['DEST']}",
                          "--move-destination", f"STORESCP={LOOPBACK}:{PORTS['STORESCP']}",
                          "--move-destination", f"{AET}={LOOPBACK}:{PORTS['ARCHIVE']}", port=PORTS["ARCHIVE"]) as server:
        load_into(server.port, AET, [path for key, path in sources.items() if key != RLE.SOPInstanceUID])
        code, out, err = run_dcmnet("store", f"{AET}@{LOOPBACK}:{server.port}", str(sources[RLE.SOPInstanceUID]))
        assert code == 0, out + err  # storescu would propose (and send) it uncompressed; we propose its own RLE
        yield server.port, dest, server


def received(folder: Path) -> dict[str, Path]:
    """Files in ``folder`` (recursively) by SOP Instance UID."""
    from dcmnet_cli.services.dicomfiles import read_meta

    return {read_meta(p).sop_instance_uid: p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")}


def assert_delivered(folder: Path, expected: set[str], sources: dict[str, Path]) -> None:
    got = received(folder)
    assert set(got) == expected
    for sop_instance, path in got.items():
        assert dataset_bytes(path) == dataset_bytes(sources[sop_instance]), sop_instance


def uids(where: str, value: str) -> set[str]:
    return {d.SOPInstanceUID for d in DATASETS if getattr(d, where) == value}


def getscu(port: int, out: Path, *keys: str, flags: tuple[str, ...] = ("-S",)) -> tuple[int, str, str]:
    out.mkdir(parents=True, exist_ok=True)
    argv = [shutil.which("getscu") or "getscu", "-aec", AET, *flags, "-od", str(out)]
    return run_tool([*argv, *(x for key in keys for x in ("-k", key)), LOOPBACK, str(port)], timeout=30)


def movescu(port: int, dest: str, *keys: str, flags: tuple[str, ...] = ("-S",)) -> tuple[int, str, str]:
    argv = [shutil.which("movescu") or "movescu", "-v", "-aec", AET, "-aem", dest, *flags]
    return run_tool([*argv, *(x for key in keys for x in ("-k", key)), LOOPBACK, str(port)], timeout=30)


def storescp(out: Path, *flags: str):  # type: ignore[no-untyped-def]
    out.mkdir(parents=True, exist_ok=True)
    argv = [shutil.which("storescp") or "storescp", "-od", str(out), *flags, str(PORTS["STORESCP"])]
    return running_server(argv, PORTS["STORESCP"], dcmtk=True)


# ------------------------------------------------------------------------------------------ C-GET (getscu)


@pytest.mark.parametrize("level, keys, expected", [
    ("STUDY", (f"StudyInstanceUID={uid('s1')}",), uids("StudyInstanceUID", uid("s1"))),
    ("SERIES", (f"StudyInstanceUID={uid('s4')}", f"SeriesInstanceUID={uid('s4b')}"), uids("SeriesInstanceUID", uid("s4b"))),
    ("IMAGE", (f"StudyInstanceUID={uid('s1')}", f"SeriesInstanceUID={uid('s1a')}", f"SOPInstanceUID={uid('s1a-img2')}"),
     {uid("s1a-img2")}),
])
def test_getscu_retrieves_byte_for_byte(archive, sources, tmp_path: Path, level, keys, expected) -> None:
    port, _, _ = archive
    code, out, err = getscu(port, tmp_path / "got", f"QueryRetrieveLevel={level}", *keys)
    assert code == 0, out + err
    assert_delivered(tmp_path / "got", expected, sources)


def test_getscu_patient_root_streams_a_large_object(archive, sources, tmp_path: Path) -> None:
    port, _, _ = archive
    code, out, err = getscu(port, tmp_path / "got", "QueryRetrieveLevel=SERIES", "PatientID=PAT009",
                            f"StudyInstanceUID={uid('retrieve-extra')}", f"SeriesInstanceUID={BIG.SeriesInstanceUID}",
                            flags=("-P",))
    assert code == 0, out + err
    assert_delivered(tmp_path / "got", {BIG.SOPInstanceUID}, sources)


def test_getscu_gets_a_compressed_object_converted_when_it_accepted_only_uncompressed(archive, sources,
                                                                                    tmp_path: Path) -> None:
    """getscu +xr proposes RLE and the uncompressed syntaxes in one context; listen (the acceptor) takes
    explicit VR little endian there, so the RLE object is decompressed for it (PS3.5 conversion)."""
    from pydicom import dcmread

    port, _, _ = archive
    code, out, err = getscu(port, tmp_path / "got", "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={uid('retrieve-extra')}",
                            f"SeriesInstanceUID={RLE.SeriesInstanceUID}", flags=("-S", "+xr"))
    assert code == 0, out + err
    (path,) = received(tmp_path / "got").values()
    assert dcmread(path).PixelData == make_dataset("retrieve-rle", rows=64, columns=64).PixelData  # decompressed


def test_dcmnet_get_gets_a_compressed_object_in_its_own_syntax(archive, sources, tmp_path: Path) -> None:
    """A requestor whose compressed context proposes RLE: the object goes as stored, byte for byte."""
    port, _, _ = archive
    code, _, err = run_dcmnet("get", "-aec", AET, LOOPBACK, str(port), "-od", str(tmp_path / "got"), "-L", "SERIES",
                              "-k", f"StudyInstanceUID={uid('retrieve-extra')}", "-k", f"SeriesInstanceUID={RLE.SeriesInstanceUID}",
                              "--storage-class", "CTImageStorage", "--accept", "RLELossless", "--accept",
                              "ExplicitVRLittleEndian", timeout=30)
    assert code == 0, err
    assert_delivered(tmp_path / "got", {RLE.SOPInstanceUID}, sources)


# ------------------------------------------------------------------------------------------ C-MOVE (movescu)


def test_movescu_to_dcmtk_storescp(archive, sources, tmp_path: Path) -> None:
    port, _, server = archive
    with storescp(tmp_path / "in"):
        code, out, err = movescu(port, "STORESCP", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={uid('s2')}")
    assert code == 0, out + err
    assert "Final Move Response (Success)" in out + err
    assert_delivered(tmp_path / "in", uids("StudyInstanceUID", uid("s2")), sources)
    assert server.wait_for_stderr("retrieve: C-MOVE to STORESCP: 2 completed, 0 failed, 0 warning, status 0x0000")


def test_movescu_compressed_object_goes_in_its_own_syntax(archive, sources, tmp_path: Path) -> None:
    port, _, _ = archive
    with storescp(tmp_path / "in", "+xr"):  # storescp accepts RLE when proposed: we propose the file's own
        code, out, err = movescu(port, "STORESCP", "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={uid('retrieve-extra')}",
                                 f"SeriesInstanceUID={RLE.SeriesInstanceUID}")
    assert code == 0, out + err
    assert_delivered(tmp_path / "in", {RLE.SOPInstanceUID}, sources)


def test_movescu_to_a_second_dcmnet_listen(archive, sources, tmp_path: Path) -> None:
    port, dest, _ = archive
    code, out, err = movescu(port, "DEST", "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={uid('s1')}",
                             f"SeriesInstanceUID={uid('s1a')}")
    assert code == 0, out + err
    expected = uids("SeriesInstanceUID", uid("s1a"))
    got = {k: v for k, v in received(dest).items() if k in expected}
    assert set(got) == expected
    for sop_instance, path in got.items():
        assert dataset_bytes(path) == dataset_bytes(sources[sop_instance])


def test_movescu_to_the_archive_itself(archive, sources, tmp_path: Path) -> None:
    """The destination is the listener serving the C-MOVE: its sub-association is served by another of its
    own worker threads while this one waits for the answers (duplicates replace themselves)."""
    port, _, _ = archive
    code, out, err = movescu(port, AET, "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={uid('s3')}")
    assert code == 0 and "Final Move Response (Success)" in out + err, out + err


def test_movescu_unknown_destination_is_a801(archive, tmp_path: Path) -> None:
    port, _, _ = archive
    code, out, err = movescu(port, "NOBODY", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={uid('s1')}")
    assert "MoveDestinationUnknown" in out + err or "a801" in (out + err).lower()


def test_movescu_destination_down_fails_every_sub_operation(archive, tmp_path: Path) -> None:
    """STORESCP is not running: the sub-association cannot open; every instance is a failed sub-operation
    (0xA702, the Failed SOP Instance UID List sent) and the requestor's association stays usable."""
    port, _, _ = archive
    code, out, err = movescu(port, "STORESCP", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={uid('s3')}")
    assert "Final Move Response (Refused: OutOfResourcesSubOperations)" in out + err  # 0xA702
    code, _, err = run_dcmnet("move", "-aec", AET, LOOPBACK, str(port), "--dest", "STORESCP",
                              "-k", f"StudyInstanceUID={uid('s3')}", timeout=30)
    assert code == 7 and "0xA702" in err and uid("s3a-img1") in err, err  # the Failed SOP Instance UID List


def test_movescu_cancel_stops_the_sub_operations(archive, tmp_path: Path) -> None:
    port, _, _ = archive
    with storescp(tmp_path / "in"):
        code, out, err = movescu(port, "STORESCP", "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={uid('retrieve-extra')}",
                                 f"SeriesInstanceUID={LONG_SERIES[0].SeriesInstanceUID}", flags=("-S", "--cancel", "1"))
    text = out + err
    assert "Cancel" in text, text
    assert 0 < len(received(tmp_path / "in")) < len(LONG_SERIES)


# ------------------------------------------------------------------------------------------ our own SCUs


def test_dcmnet_get_against_listen(archive, sources, tmp_path: Path) -> None:
    port, _, _ = archive
    code, _, err = run_dcmnet("get", "-aec", AET, LOOPBACK, str(port), "-od", str(tmp_path / "got"),
                              "-k", f"StudyInstanceUID={uid('s3')}", timeout=30)
    assert code == 0, err
    assert_delivered(tmp_path / "got", uids("StudyInstanceUID", uid("s3")), sources)


def test_dcmnet_get_of_classes_not_offered_counts_them_failed(archive, sources, tmp_path: Path) -> None:
    """PAT001 has a CT study and an MR study; offering CT only: the CTs arrive, the MRs are failed
    sub-operations (exit 7, the UIDs named), not a failed retrieve."""
    port, _, _ = archive
    code, _, err = run_dcmnet("get", "-aec", AET, LOOPBACK, str(port), "-od", str(tmp_path / "got"), "-P", "-L", "PATIENT",
                              "-k", "PatientID=PAT001", "--storage-class", "CTImageStorage", timeout=30)
    assert code == 7, err
    mr = uids("StudyInstanceUID", uid("s2"))
    assert f"{len(mr)} failed" in err
    for sop_instance in mr:
        assert sop_instance in err
    assert_delivered(tmp_path / "got", uids("StudyInstanceUID", uid("s1")), sources)


def test_dcmnet_move_against_listen(archive, sources, tmp_path: Path) -> None:
    port, _, _ = archive
    with storescp(tmp_path / "in"):
        code, _, err = run_dcmnet("move", "-aec", AET, LOOPBACK, str(port), "--dest", "STORESCP",
                                  "-k", f"StudyInstanceUID={uid('s4')}", timeout=30)
    assert code == 0, err
    assert_delivered(tmp_path / "in", uids("StudyInstanceUID", uid("s4")), sources)


def test_dcmnet_move_unknown_destination_exits_7(archive) -> None:
    port, _, _ = archive
    code, _, err = run_dcmnet("move", "-aec", AET, LOOPBACK, str(port), "--dest", "NOBODY",
                              "-k", f"StudyInstanceUID={uid('s4')}", timeout=30)
    assert code == 7 and "0xA801" in err, err
