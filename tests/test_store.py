"""``dcmnet store`` against DCMTK storescp and our own scripted SCP, and the exit-code contract.

Every peer listens on 127.0.0.1 on a free port and is stopped in ``finally`` (``running_server`` /
``scripted_scp``). storescp runs with ``+B`` (bit-preserving) so a streamed file's data set bytes can be
compared with the source byte for byte.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
    RLELossless,
)

from dcmnet_cli.services.dicomfiles import DicomFile, read_meta
from dcmnet_cli.services.scu.store_convert import convert
from dcmnet_cli.services.scu.store_plan import choose_context, partition, proposed_contexts
from dcmnet_cli.ul.negotiation import AcceptedContext

from helpers.procs import base_env, dcmnet_argv, run_dcmnet
from store_helpers import (
    SYNTAXES,
    assert_same,
    closed_port,
    make_dataset,
    make_file,
    received,
    scripted_scp,
    uid,
    words,
    write,
)

HOST = "127.0.0.1"


def store(port: int, *args: str, timeout: float = 30.0) -> tuple[int, str, str]:
    return run_dcmnet("store", HOST, str(port), *args, timeout=timeout)


def no_traceback(err: str) -> None:
    assert "Traceback" not in err and "internal error" not in err, err




# --------------------------------------------------------------------------- against DCMTK storescp


def test_every_syntax_streamed_byte_identical_with_json(storescp, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = [make_file(src, f"syntax-{kind}", kind) for kind in SYNTAXES]
    files.append(make_file(src, "multiframe", "explicit", rows=256, columns=256, frames=24))  # 3 MiB
    files.append(make_file(src, "mr-implicit", "implicit", sop_class=MRImageStorage, bits=8))
    files.append(write(src / "bare.dcm", make_dataset("bare"), ImplicitVRLittleEndian, meta=False))
    port, out = storescp("+xa")
    code, stdout, err = store(port, str(src), "--json")
    no_traceback(err)
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["exit_code"] == 0 and summary["totals"]["files"] == len(files) == summary["totals"]["succeeded"]
    assert summary["totals"]["bytes"] == sum(read_meta(f).dataset_length for f in files)
    for entry in summary["files"]:
        assert entry["status"] == "0x0000" and entry["meaning"] == "success"
        assert entry["sent_transfer_syntax"] == entry["transfer_syntax"]
    by_uid = received(out)
    for path in files:
        assert_same(path, by_uid[read_meta(path).sop_instance_uid], streamed=read_meta(path).has_meta)
    assert len(by_uid) == len(files)


def test_folders_recursive_pattern_and_non_dicom(storescp, tmp_path: Path) -> None:
    src = tmp_path / "tree"
    top = make_file(src, "top")
    deep = [make_file(src / "a" / "b", "deep-1"), make_file(src / "a", "deep-2", "implicit")]
    (src / "a" / "notes.txt").write_text("not DICOM\n" * 20)
    port, out = storescp()
    code, _, err = store(port, str(src), "--pattern", "*.dcm", "-R")  # top level only
    assert code == 0, err
    assert set(received(out)) == {uid("top")}
    code, _, err = store(port, str(src))  # recursive by default: the text file is reported, the rest go
    no_traceback(err)
    assert code == 3
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 2 and "notes.txt" in lines[0] and "not a DICOM file" in lines[0], err
    assert lines[1].startswith("stored 3 of 4 files (1 not DICOM or unreadable)")  # the summary line
    by_uid = received(out)
    for path in [top, *deep]:
        assert_same(path, by_uid[read_meta(path).sop_instance_uid])


def test_paths_from_stdin_and_a_missing_path(storescp, tmp_path: Path) -> None:
    files = [make_file(tmp_path / "in", f"stdin-{n}", kind) for n, kind in enumerate(("explicit", "big", "deflated"))]
    port, out = storescp("+xa")
    listing = "\n".join(str(f) for f in files) + "\n\n" + str(tmp_path / "missing.dcm") + "\n"
    done = subprocess.run(dcmnet_argv("store", HOST, str(port), "-"), input=listing, capture_output=True, text=True,
                          timeout=30, env=base_env())
    no_traceback(done.stderr)
    assert done.returncode == 3 and "missing.dcm" in done.stderr
    by_uid = received(out)
    for path in files:
        assert_same(path, by_uid[read_meta(path).sop_instance_uid])


def test_dicomdir_sends_referenced_files_not_itself(storescp, tmp_path: Path) -> None:
    from pydicom.fileset import FileSet

    fileset = FileSet()
    datasets = [make_dataset(f"dicomdir-{n}", MRImageStorage if n % 2 else CTImageStorage) for n in range(3)]
    for n, ds in enumerate(datasets):
        written = write(tmp_path / "staging" / f"{n}.dcm", ds)
        fileset.add(str(written))
    fileset.write(tmp_path / "media")
    dicomdir = tmp_path / "media" / "DICOMDIR"
    assert dicomdir.exists()
    port, out = storescp()
    code, stdout, err = store(port, str(dicomdir), "--json")
    assert code == 0, err
    assert {e["sop_instance_uid"] for e in json.loads(stdout)["files"]} == {ds.SOPInstanceUID for ds in datasets}
    assert set(received(out)) == {ds.SOPInstanceUID for ds in datasets}


def test_two_jobs_forty_files(storescp, tmp_path: Path) -> None:
    src = tmp_path / "forty"
    files = [make_file(src, f"job-{n:02d}", "implicit" if n % 3 else "explicit", rows=16, columns=16) for n in range(40)]
    port, out = storescp("--fork")
    code, stdout, err = run_dcmnet("-v", "store", HOST, str(port), str(src), "-j", "2", "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["associations"] == 2 and summary["totals"]["succeeded"] == 40
    assert err.count("association to") == 2 and err.count("0x0000 success") == 40
    assert set(received(out)) == {read_meta(f).sop_instance_uid for f in files}


def test_more_than_128_contexts_uses_several_associations(storescp, tmp_path: Path) -> None:
    import pydicom._uid_dict as registry

    classes = sorted(k for k, v in registry.UID_dictionary.items()
                     if v[1] == "SOP Class" and v[0].endswith(" Storage") and "Retired" not in v[3]
                     and not k.startswith("1.2.840.10008.5.1.4.1.1.200.")  # storescp -pm refuses protocols
                     and k != "1.2.840.10008.1.3.10")[:130]  # a DICOMDIR is never sent
    assert len(classes) == 130
    src = tmp_path / "classes"
    for n, sop_class in enumerate(classes):
        ds = make_dataset(f"class-{n}", sop_class)
        del ds.PixelData
        write(src / f"{n:03d}.dcm", ds)
    port, out = storescp("-pm", "+xa")
    code, stdout, err = store(port, str(src), "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["associations"] >= 2  # 130 classes x (own syntax + LE fallback) = 260 contexts
    assert len(received(out)) == 130


def test_implicit_only_peer_gets_converted_files(storescp, tmp_path: Path) -> None:
    src = tmp_path / "convert"
    files = {kind: make_file(src, f"conv-{kind}", kind) for kind in ("explicit", "big", "deflated", "implicit")}
    files["big8"] = write(src / "big8.dcm", make_dataset("big8", bits=8), ExplicitVRBigEndian)
    port, out = storescp("+xi")
    code, stdout, err = store(port, *(str(p) for p in files.values()), "--json")
    no_traceback(err)
    assert code == 0, err
    summary = {Path(e["path"]).name: e for e in json.loads(stdout)["files"]}
    assert all(e["sent_transfer_syntax"] == ImplicitVRLittleEndian for e in summary.values())
    by_uid = received(out)
    for kind, path in files.items():
        copy = by_uid[read_meta(path).sop_instance_uid]
        assert read_meta(copy).transfer_syntax == ImplicitVRLittleEndian
        assert_same(path, copy, streamed=kind == "implicit")


def test_compressed_file_to_uncompressed_only_peer(storescp, tmp_path: Path) -> None:
    """RLE → implicit with the codecs extra (numpy and the decoders, installed by `make install`):
    converted, exit 0, and storescp got the same pixels in implicit VR little endian."""
    import importlib.util

    import pydicom

    assert importlib.util.find_spec("numpy") is not None, "the codecs extra is not installed: run make install"
    path = make_file(tmp_path, "rle-only", "rle")
    port, out = storescp("+xi")
    code, stdout, err = store(port, str(path), "--json")
    no_traceback(err)
    entry = json.loads(stdout)["files"][0]
    assert code == 0 and entry["status"] == "0x0000", err
    [copy] = received(out).values()
    got, source = pydicom.dcmread(copy), pydicom.dcmread(path)
    assert got.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
    assert (got.pixel_array == source.pixel_array).all()


def test_compressed_file_to_uncompressed_only_peer_without_decoder(storescp, tmp_path: Path) -> None:
    """The same without numpy (imports of it fail in the child): exit 5 with the reason, nothing sent."""
    from helpers.patched import patched_argv

    path = make_file(tmp_path, "rle-only", "rle")
    port, out = storescp("+xi")
    argv = patched_argv("import sys\nsys.modules['numpy'] = None  # as if not installed\n",
                        "store", "127.0.0.1", str(port), str(path), "--json")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=base_env(), stdin=subprocess.DEVNULL)
    no_traceback(done.stderr)
    entry = json.loads(done.stdout)["files"][0]
    assert done.returncode == 5, done.stderr
    assert entry["status"] is None and "converting it to implicit VR little endian failed" in entry["error"]
    assert "converting" in done.stderr and received(out) == {}


def test_rejected_association_exits_5(storescp, tmp_path: Path) -> None:
    path = make_file(tmp_path, "refused")
    port, _ = storescp("--refuse")
    code, stdout, err = store(port, str(path), "--json")
    no_traceback(err)
    assert code == 5 and "rejected" in err
    assert json.loads(stdout)["files"][0]["exit_code"] == 5


def test_closed_port_exits_4(tmp_path: Path) -> None:
    path = make_file(tmp_path, "closed")
    code, _, err = store(closed_port(), str(path))
    no_traceback(err)
    assert code == 4 and "refused" in err


def test_max_rate_and_report(storescp, tmp_path: Path) -> None:
    path = make_file(tmp_path, "slow", rows=256, columns=256, frames=8)  # 1 MiB
    port, _ = storescp()
    report = tmp_path / "report.json"
    code, stdout, err = store(port, str(path), "--max-rate", "2", "--json", "--report", str(report))
    assert code == 0, err
    summary = json.loads(stdout)
    assert json.loads(report.read_text()) == summary
    # 1.05 MB at 2 MB/s with a 0.1 s burst: at least ~0.42 s
    assert summary["elapsed_s"] >= 0.35 and summary["mb_per_s"] <= 3


# --------------------------------------------------------------------------- against our scripted SCP


@pytest.mark.parametrize("status, args, expected", [
    (0xA700, (), 7),
    (0xB000, (), 1),
    (0xB000, ("--warnings-ok",), 0),
    (0xC123, (), 7),
])
def test_status_to_exit_code(tmp_path: Path, status: int, args: tuple[str, ...], expected: int) -> None:
    files = [make_file(tmp_path, f"status-{n}", rows=8, columns=8) for n in range(3)]
    with scripted_scp(status) as (port, scp):
        code, stdout, err = store(port, *map(str, files), "--json", *args)
    no_traceback(err)
    assert code == expected, err
    assert [e["status"] for e in json.loads(stdout)["files"]] == [f"0x{status:04X}"] * 3
    assert len(scp.stored) == 3
    if expected == 7:
        assert "refused: out of resources" in err or "cannot understand" in err


def test_dropped_association_is_retried_for_unanswered_files(tmp_path: Path) -> None:
    files = [make_file(tmp_path, f"retry-{n}", rows=8, columns=8) for n in range(4)]
    with scripted_scp(abort_after=1) as (port, scp):
        code, stdout, err = store(port, *map(str, files), "--retries", "2", "--retry-delay", "0.05", "--json")
        assert code == 0, err
        stored = [u for u, _, _ in scp.stored]
    assert sorted(stored) == sorted(read_meta(f).sop_instance_uid for f in files)  # each exactly once
    assert json.loads(stdout)["associations"] == 2
    with scripted_scp(abort_after=1) as (port, scp):
        code, stdout, err = store(port, *map(str, files), "--json")  # no retries: the rest are reported
    assert code == 6
    assert [e["exit_code"] for e in json.loads(stdout)["files"]] == [0, 6, 6, 6]


def test_streaming_path_imports_neither_pydicom_nor_rich(tmp_path: Path) -> None:
    files = [make_file(tmp_path, f"lean-{n}", kind) for n, kind in enumerate(("explicit", "big"))]
    script = ("import sys; from dcmnet_cli.cli.main import cli; "
              f"code = cli.main(args=['store', '{HOST}', sys.argv[1], *sys.argv[2:]], standalone_mode=False); "
              "print(code, 'pydicom' in sys.modules, any(m == 'rich' or m.startswith('rich.') for m in sys.modules))")
    with scripted_scp() as (port, _):
        done = subprocess.run([sys.executable, "-c", script, str(port), *map(str, files)], capture_output=True,
                              text=True, timeout=30, env=base_env())
    assert done.stdout.split() == ["0", "False", "False"], done.stderr


# --------------------------------------------------------------------------- planning (no network)


def _file(sop_class: str, syntax: str, name: str = "x") -> DicomFile:
    return DicomFile(name, sop_class, "1.2.3", syntax, 132, 1000)


def test_contexts_own_syntax_plus_fallback() -> None:
    files = [_file(CTImageStorage, RLELossless), _file(CTImageStorage, ExplicitVRLittleEndian),
             _file(MRImageStorage, ExplicitVRLittleEndian), _file(MRImageStorage, ImplicitVRLittleEndian)]
    assert proposed_contexts(files) == [
        (CTImageStorage, (RLELossless,)), (CTImageStorage, (ExplicitVRLittleEndian,)),
        (CTImageStorage, (ExplicitVRLittleEndian, ImplicitVRLittleEndian)),
        (MRImageStorage, (ExplicitVRLittleEndian,)), (MRImageStorage, (ImplicitVRLittleEndian,)),
    ]


def test_partition_keeps_each_class_whole_and_under_the_limit() -> None:
    files = [_file(f"1.2.3.{n}", syntax) for n in range(100) for syntax in (ExplicitVRLittleEndian, RLELossless)]
    groups = partition(files)
    assert sum(len(g) for g in groups) == 200
    for group in groups:
        assert len(proposed_contexts(group)) <= 128
    assert len(groups) == 3  # 3 contexts per class, 42 classes per association


def test_choose_context_prefers_own_syntax_then_little_endian() -> None:
    contexts = [AcceptedContext(1, CTImageStorage, ImplicitVRLittleEndian), AcceptedContext(3, CTImageStorage, ExplicitVRBigEndian),
                AcceptedContext(5, MRImageStorage, ExplicitVRBigEndian)]
    assert choose_context(_file(CTImageStorage, ExplicitVRBigEndian), contexts) == (contexts[1], False)
    assert choose_context(_file(CTImageStorage, DeflatedExplicitVRLittleEndian), contexts) == (contexts[0], True)
    assert choose_context(_file(MRImageStorage, ImplicitVRLittleEndian), contexts) == (contexts[2], True)
    assert choose_context(_file("1.2.3", ImplicitVRLittleEndian), contexts) == (None, False)


def test_convert_big_endian_round_trip(tmp_path: Path) -> None:
    import io

    import pydicom
    from pydicom.filereader import read_dataset

    path = write(tmp_path / "be.dcm", make_dataset("be"), ExplicitVRBigEndian)
    meta = read_meta(path)
    for target, implicit, little in ((ImplicitVRLittleEndian, True, True), (ExplicitVRLittleEndian, False, True)):
        data = convert(meta, target)
        ds = read_dataset(io.BytesIO(data), implicit, little)
        assert words(ds, target) == words(pydicom.dcmread(path), ExplicitVRBigEndian)
        assert ds.SOPInstanceUID == uid("be") and ds.PixelSpacing == [0.5, 0.5]
    start = time.thread_time()  # CPU time, not wall time: a loaded CI machine does not stretch it
    assert convert(read_meta(write(tmp_path / "le.dcm", make_dataset("le"))), ExplicitVRBigEndian)
    assert time.thread_time() - start < 5
