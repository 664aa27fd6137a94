"""The C-STORE handler of ``listen`` (services/scp/store_handler.py, storage.py) in-process, over the
in-memory wire (issue 15): what the peer and the user see for each request. The C-STORE-RSP status and
Error Comment, the files on disk (final names, no temporary left, nothing partial), the ``stored`` /
``store-failed`` / ``received`` events with their fields, the association's counts, the hooks' argv and
environment, and the hand-off to the index. ``make mutate`` runs these against both modules; the same
paths through the real ``dcmnet listen`` process are in test_storage_scp.py and test_storage_failures.py.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from scp_units import (TEMP_PREFIX, WALKER_BAD_VR, WALKER_END, Index, Node, on_disk, raw, request)
from store_helpers import make_dataset
from temp_modes import MODES, creates_temporary, placing_call, use_mode


@pytest.fixture(autouse=True, params=MODES)
def temp_mode(request, monkeypatch) -> str:
    """Every test runs with unnamed temporaries (O_TMPFILE) and with named ones (the fallback)."""
    return use_mode(request.param, monkeypatch)


# --------------------------------------------------------------------------- success: events, counts, hooks

def test_stored_event_fields_counts_and_hooks(tmp_path, monkeypatch):
    node = Node(tmp_path / "out", exec_on_receive=["hook", "-x"], exec_on_association_end=["end"])
    sop_class, uid, data = request("unit-ok")
    (answer,) = node.send(monkeypatch, [(sop_class, uid, data)])
    assert answer.status == 0 and answer.error_comment is None
    assert answer.affected_sop_instance_uid == uid and answer.affected_sop_class_uid == sop_class
    path = str(Path(node.scp.root) / f"{uid}.dcm")
    assert on_disk(node.out) == [f"{uid}.dcm"] and node.temporaries() == []
    size = os.path.getsize(path)
    assert size > len(data)  # File Meta + the data set
    (outcome,) = node.outcomes()
    assert tuple(outcome) == ("stored", path, sop_class, uid, size, "0x0000", "MEMSCU", "scu:1", None, None)
    assert (node.scp.totals.stored, node.scp.totals.failed, node.scp.totals.bytes) == (1, 0, size)
    assert node.ended == [(1, 0)]
    assert node.hooks.runs[0] == (["hook", "-x", path], {
        "DCMNET_PATH": path, "DCMNET_SOP_CLASS_UID": sop_class, "DCMNET_SOP_INSTANCE_UID": uid,
        "DCMNET_REMOTE_AET": "MEMSCU", "DCMNET_LOCAL_AET": "MEMSCP", "DCMNET_PEER": "scu:1"}, None)
    assert node.hooks.runs[1] == (["end", node.scp.root], {
        "DCMNET_COUNT": 1, "DCMNET_DIR": node.scp.root, "DCMNET_REMOTE_AET": "MEMSCU", "DCMNET_LOCAL_AET": "MEMSCP",
        "DCMNET_PEER": "scu:1"}, [path])
    assert len(node.hooks.runs) == 2


def test_association_end_hook_lists_each_association_s_own_files(tmp_path, monkeypatch):
    node = Node(tmp_path / "out", exec_on_association_end=["end"])
    first, second = request("unit-a1"), request("unit-a2")
    node.send(monkeypatch, [first, second])
    node.send(monkeypatch, [request("unit-b1")])
    root = node.scp.root
    assert [run[2] for run in node.hooks.runs] == [
        [f"{root}/{first[1]}.dcm", f"{root}/{second[1]}.dcm"], [f"{root}/{request('unit-b1')[1]}.dcm"]]
    assert [run[1]["DCMNET_COUNT"] for run in node.hooks.runs] == [2, 1]
    assert node.scp._stored == {}


def test_no_hook_without_the_option_nor_for_failures_nor_for_a_kept_duplicate(tmp_path, monkeypatch):
    node = Node(tmp_path / "out", exec_on_receive=["hook"], exec_on_association_end=["end"], on_duplicate="keep")
    sop_class, uid, data = request("unit-keep")
    answers = node.send(monkeypatch, [(sop_class, uid, data), (sop_class, uid, data), (sop_class, uid + ".9", data)])
    assert [a.status for a in answers] == [0, 0, 0xA900]
    assert [run[0][0] for run in node.hooks.runs] == ["hook", "end"]  # the kept copy and the failure start none
    assert [e.duplicate for e in node.outcomes()] == [None, "kept", None]
    assert on_disk(node.out) == [f"{uid}.dcm"] and node.temporaries() == []  # the kept copy's temporary removed
    assert node.ended == [(2, 1)]
    bare = Node(tmp_path / "bare")
    bare.send(monkeypatch, [request("unit-bare")])
    assert bare.hooks.runs == []


def test_association_end_hook_not_run_when_nothing_was_stored(tmp_path, monkeypatch):
    node = Node(tmp_path / "out", exec_on_association_end=["end"])
    sop_class, uid, data = request("unit-none")
    assert [a.status for a in node.send(monkeypatch, [(sop_class, uid + ".1", data)])] == [0xA900]
    assert node.hooks.runs == [] and node.ended == [(0, 1)]


def test_replaced_and_renamed_duplicates_are_reported(tmp_path, monkeypatch):
    for policy, names, duplicate in (("replace", ["{}.dcm"], "replaced"), ("rename", ["{}.dcm", "{}_1.dcm"], "renamed")):
        node = Node(tmp_path / policy, on_duplicate=policy, exec_on_receive=["hook"])
        sop_class, uid, data = request("unit-dup")
        assert [a.status for a in node.send(monkeypatch, [(sop_class, uid, data)] * 2)] == [0, 0]
        assert on_disk(node.out) == [n.format(uid) for n in names] and node.temporaries() == []
        assert [e.duplicate for e in node.outcomes()] == [None, duplicate]
        assert [run[0][-1] for run in node.hooks.runs] == [str(Path(node.scp.root) / n.format(uid)) for n in (names[0], names[-1])]


def test_ignore_answers_success_writes_nothing_and_counts_received_bytes(tmp_path, monkeypatch):
    node = Node(tmp_path / "out", ignore=True, exec_on_receive=["hook"], output=False)  # as `listen --ignore`
    sop_class, uid, data = request("unit-ignore")
    (answer,) = node.send(monkeypatch, [(sop_class, uid, data)])
    assert answer.status == 0
    assert not node.out.exists() and node.temporaries() == []
    (outcome,) = node.outcomes()
    assert tuple(outcome) == ("received", None, sop_class, uid, len(data), "0x0000", "MEMSCU", "scu:1", None, None)
    assert node.hooks.runs == [] and node.ended == [(1, 0)]
    assert (node.scp.totals.stored, node.scp.totals.bytes) == (1, len(data))


# --------------------------------------------------------------------------- failures: status, comment, disk

def test_read_only_refuses_with_0124_and_writes_nothing(tmp_path, monkeypatch):
    node = Node(tmp_path / "out", read_only=True, exec_on_receive=["hook"])
    sop_class, uid, data = request("unit-ro", rows=256, columns=256)  # 128 KiB: many fragments, all counted
    (answer,) = node.send(monkeypatch, [(sop_class, uid, data)])
    assert answer.status == 0x0124 and answer.error_comment == "read-only node: storage refused"
    assert on_disk(node.out) == [] and node.temporaries() == []
    (outcome,) = node.outcomes()
    assert tuple(outcome) == ("store-failed", None, sop_class, uid, len(data), "0x0124", "MEMSCU", "scu:1", None,
                              "read-only node: storage refused")
    assert node.ended == [(0, 1)] and node.hooks.runs == []
    assert (node.scp.totals.stored, node.scp.totals.failed, node.scp.totals.bytes) == (0, 1, 0)


def test_read_only_wins_over_ignore(tmp_path, monkeypatch):
    node = Node(tmp_path / "out", read_only=True, ignore=True)
    assert [a.status for a in node.send(monkeypatch, [request("unit-ro-ignore")])] == [0x0124]
    assert node.ended == [(0, 1)]


@pytest.mark.parametrize("which", ["class", "instance"])
def test_uid_mismatch_is_a900_and_nothing_is_kept(tmp_path, monkeypatch, which):
    node = Node(tmp_path / "out")
    sop_class, uid, data = request("unit-mismatch", rows=128, columns=128)  # 32 KiB: the check comes mid-stream
    if which == "class":
        data = raw(make_dataset("unit-mismatch", sop_class="1.2.840.10008.5.1.4.1.1.7"))
        expected = "data set SOP Class UID differs from the command's"
    else:
        uid += ".2"
        expected = "data set SOP Instance UID differs from the command's"
    good = request("unit-after")
    answers = node.send(monkeypatch, [(sop_class, uid, data), good])
    assert [(a.status, a.error_comment) for a in answers] == [(0xA900, expected), (0, None)]
    assert on_disk(node.out) == [f"{good[1]}.dcm"] and node.temporaries() == []
    failed = node.outcomes()[0]
    assert (failed.event, failed.path, failed.bytes, failed.status, failed.detail) == (
        "store-failed", None, len(data), "0xA900", expected)
    assert node.ended == [(1, 1)]
    assert (node.scp.totals.stored, node.scp.totals.failed) == (1, 1)


def test_uid_missing_from_a_short_data_set_is_found_at_the_end(tmp_path, monkeypatch):
    """A data set without SOP Instance UID: the walk never passes it, the check at the end answers 0xA900."""
    node = Node(tmp_path / "out")
    ds = make_dataset("unit-no-uid")
    uid = ds.SOPInstanceUID
    del ds.SOPInstanceUID
    (answer,) = node.send(monkeypatch, [(CTImageStorage, uid, raw(ds))])
    assert answer.status == 0xA900 and "SOP Instance UID differs" in answer.error_comment
    assert on_disk(node.out) == [] and node.temporaries() == []


def test_malformed_data_set_is_c000_with_the_reason_and_the_association_goes_on(tmp_path, monkeypatch):
    node = Node(tmp_path / "out")
    sop_class, uid, data = request("unit-cut")
    cut = data[:-3]  # the last element's value is short
    good = request("unit-after-cut")
    answers = node.send(monkeypatch, [(sop_class, uid, cut), good])
    assert answers[0].status == 0xC000 and answers[0].error_comment == WALKER_END
    assert answers[1].status == 0
    assert on_disk(node.out) == [f"{good[1]}.dcm"] and node.temporaries() == []
    failed = node.outcomes()[0]
    assert (failed.event, failed.status, failed.bytes, failed.detail) == (
        "store-failed", "0xC000", len(cut), answers[0].error_comment)
    assert node.ended == [(1, 1)]


def test_malformed_header_mid_stream_is_c000_and_drops_the_temporary_at_once(tmp_path, monkeypatch):
    node = Node(tmp_path / "out")
    sop_class, uid, data = request("unit-bad-vr", rows=128, columns=128)
    bad = data[:200] + b"\x10\x00\x10\x00zz\x04\x00abcd" + data[200:]  # a header with VR "zz"
    (answer,) = node.send(monkeypatch, [(sop_class, uid, bad)])
    assert (answer.status, answer.error_comment) == (0xC000, WALKER_BAD_VR)
    assert on_disk(node.out) == [] and node.temporaries() == []


def test_store_without_a_data_set_is_c000(tmp_path, monkeypatch):
    node = Node(tmp_path / "out")
    sop_class, uid, _data = request("unit-nodata")
    good = request("unit-after-nodata")
    answers = node.send(monkeypatch, [(sop_class, uid, None), good])
    assert (answers[0].status, answers[0].error_comment) == (0xC000, "C-STORE-RQ without a data set")
    assert answers[1].status == 0
    assert on_disk(node.out) == [f"{good[1]}.dcm"] and node.temporaries() == []
    assert node.outcomes()[0].bytes == 0 and node.ended == [(1, 1)]


def test_file_meta_elements_at_the_data_set_start_are_dropped_and_reported(tmp_path, monkeypatch):
    from pydicom import dcmread

    node = Node(tmp_path / "out")
    sop_class, uid, data = request("unit-meta")
    meta = b"\x02\x00\x13\x00SH\x06\x00FOOBAR"  # (0002,0013) Implementation Version Name, 14 bytes
    (answer,) = node.send(monkeypatch, [(sop_class, uid, meta + data)])
    assert answer.status == 0
    unsafe = [tuple(e) for e in node.events if e.event == "unsafe-value"]
    assert unsafe == [("scu:1", "14 bytes of File Meta elements (group 0002) at the start of the data set not stored",
                       "unsafe-value")]
    copy = dcmread(node.out / f"{uid}.dcm")
    assert copy.file_meta.ImplementationVersionName != "FOOBAR" and copy.SOPInstanceUID == uid
    assert node.outcomes()[0].bytes == os.path.getsize(node.out / f"{uid}.dcm")


def test_only_file_meta_elements_still_writes_the_header(tmp_path, monkeypatch):
    """A data set of nothing but group 0002: the walk keeps nothing, the header is written at the end,
    and the UID check (nothing found) answers 0xA900."""
    node = Node(tmp_path / "out")
    sop_class, uid, _ = request("unit-only-meta")
    (answer,) = node.send(monkeypatch, [(sop_class, uid, b"\x02\x00\x13\x00SH\x06\x00FOOBAR")])
    assert answer.status == 0xA900
    assert on_disk(node.out) == [] and node.temporaries() == []


def test_implicit_little_endian_is_walked_as_implicit(tmp_path, monkeypatch):
    from pydicom import dcmread

    node = Node(tmp_path / "out")
    ds = make_dataset("unit-implicit", rows=128, columns=128)
    (answer,) = node.send(monkeypatch, [(CTImageStorage, ds.SOPInstanceUID, raw(ds, implicit=True))],
                          syntax=ImplicitVRLittleEndian)
    assert answer.status == 0
    copy = dcmread(node.out / f"{ds.SOPInstanceUID}.dcm")
    assert copy.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian and copy.PixelData == ds.PixelData


# --------------------------------------------------------------------------- operating-system failures

def _failing(monkeypatch, name: str, when) -> None:
    real = getattr(os, name)

    def fail(*args, **kwargs):
        if when(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(os, name, fail)


@pytest.mark.parametrize(("fault", "comment"), [
    ("temp", "cannot create file: No space left on device"),
    ("root", "cannot create file: No space left on device"),
    ("write", "write failed: No space left on device"),
    ("rename", "cannot store file: No space left on device"),
])
def test_os_failures_answer_a700_with_what_failed(tmp_path, monkeypatch, fault, comment, temp_mode):
    node = Node(tmp_path / "out", exec_on_receive=["hook"])
    sop_class, uid, data = request("unit-os", rows=128, columns=128)
    if fault == "temp":
        _failing(monkeypatch, "open", creates_temporary)
    elif fault == "root":
        _failing(monkeypatch, "open", lambda name, *a, **k: str(name) == node.scp.root)
    elif fault == "write":
        _failing(monkeypatch, "write", lambda fd, data: True)
        _failing(monkeypatch, "writev", lambda fd, bufs: True)
    else:  # the link (unnamed) or the rename (named) to the final name, not the unnamed path's probe
        _failing(monkeypatch, placing_call(temp_mode), lambda *a, **k: "dst_dir_fd" in k and TEMP_PREFIX not in a[1])
    answers = node.send(monkeypatch, [(sop_class, uid, data), (sop_class, uid + ".1", data)])
    monkeypatch.undo()
    assert (answers[0].status, answers[0].error_comment) == (0xA700, comment)
    assert answers[1].status in (0xA700, 0xA900)
    assert on_disk(node.out) == [] and node.temporaries() == []
    failed = node.outcomes()[0]
    assert (failed.event, failed.path, failed.status, failed.detail, failed.bytes) == (
        "store-failed", None, "0xA700", comment, len(data))
    assert node.hooks.runs == [] and node.ended == [(0, 2)]


def test_write_failing_only_after_the_first_fragment(tmp_path, monkeypatch):
    """The header goes out with the first fragment (writev); a later write fails: 0xA700, no temporary."""
    node = Node(tmp_path / "out")
    sop_class, uid, data = request("unit-late", rows=256, columns=256)
    _failing(monkeypatch, "write", lambda fd, data: True)
    (answer,) = node.send(monkeypatch, [(sop_class, uid, data)])
    monkeypatch.undo()
    assert (answer.status, answer.error_comment) == (0xA700, "write failed: No space left on device")
    assert on_disk(node.out) == [] and node.temporaries() == []


def test_an_unexpected_error_answers_c000_internal_error_and_leaves_nothing(tmp_path, monkeypatch):
    from dcmnet_cli.services.scp import store_handler

    node = Node(tmp_path / "out")

    def broken(*args, **kwargs):
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(store_handler, "relative_path", broken)
    (answer,) = node.send(monkeypatch, [request("unit-bug")])
    assert (answer.status, answer.error_comment) == (0xC000, "internal error: ZeroDivisionError")
    assert on_disk(node.out) == [] and node.temporaries() == []


def test_descriptors_are_closed_after_each_store(tmp_path, monkeypatch):
    node = Node(tmp_path / "out")
    node.send(monkeypatch, [request("unit-fd-0")])
    before = len(os.listdir("/proc/self/fd"))
    sop_class, uid, data = request("unit-fd-1")
    node.send(monkeypatch, [(sop_class, uid, data), (sop_class, uid + ".x", data), request("unit-fd-2")])
    assert len(os.listdir("/proc/self/fd")) == before


# --------------------------------------------------------------------------- more of what the peer sees

def test_refused_request_carries_the_reason_in_64_characters(tmp_path, monkeypatch):
    """A CT object on the MR context (PS3.7 §9.1): 0x0122 with the DIMSE layer's reason as Error Comment
    (cut to the 64 characters of LO), counted as a failure, nothing written."""
    from pydicom.uid import MRImageStorage

    node = Node(tmp_path / "out", exec_on_receive=["hook"])
    sop_class, uid, data = request("unit-refused")
    (answer,) = node.send(monkeypatch, [(sop_class, uid, data)], sop_class=MRImageStorage)
    (outcome,) = node.outcomes()
    assert answer.status == 0x0122 and outcome.detail.startswith(f"SOP class {sop_class} does not fit")
    assert len(outcome.detail) > 64 and answer.error_comment == outcome.detail[:64]
    assert tuple(outcome)[:8] == ("store-failed", None, sop_class, uid, 0, "0x0122", "MEMSCU", "scu:1")
    assert on_disk(node.out) == [] and node.ended == [(0, 1)] and node.hooks.runs == []


def test_uids_found_in_a_later_fragment(tmp_path, monkeypatch):
    """A big element before SOP Class/Instance UID (a private one in group 0007): the UIDs arrive in a
    later fragment; the check waits for them instead of failing on the first fragment."""
    node = Node(tmp_path / "out")
    ds = make_dataset("unit-late-uids")
    ds.add_new(0x00070010, "LO", "DCMNET TEST")
    ds.add_new(0x00071000, "OB", bytes(200_000))
    (answer,) = node.send(monkeypatch, [(CTImageStorage, ds.SOPInstanceUID, raw(ds))])
    assert answer.status == 0 and on_disk(node.out) == [f"{ds.SOPInstanceUID}.dcm"]


def test_template_folders_dataset_values_and_unsafe_values(tmp_path, monkeypatch):
    """``--filepath {PatientID}/{SOPInstanceUID}.dcm``: the value read back from the temporary file names
    the folder; a value unsafe for a path is changed and reported (peer, words); the event, the hook and
    the index get the path with its folder."""
    from dcmnet_cli.part10.filenames import parse_template

    template = parse_template("{PatientID}/{SOPInstanceUID}.dcm", lambda keyword: True)
    index = Index()
    node = Node(tmp_path / "out", template=template, exec_on_receive=["hook"], index=index)
    ds = make_dataset("unit-template")
    ds.PatientID = "../evil"
    (answer,) = node.send(monkeypatch, [(CTImageStorage, ds.SOPInstanceUID, raw(ds))])
    assert answer.status == 0
    (stored,) = on_disk(node.out)
    folder = stored.split("/")[0]
    assert stored == f"{folder}/{ds.SOPInstanceUID}.dcm" and folder != ".." and ".." not in stored
    path = str(Path(node.scp.root) / stored)
    assert node.outcomes()[0].path == path and node.hooks.runs[0][0][-1] == path and index.added[0][0] == path
    unsafe = [tuple(e) for e in node.events if e.event == "unsafe-value"]
    assert unsafe == [("scu:1", f"PatientID '../evil' stored as {folder!r}", "unsafe-value")]


def test_deflated_data_set_is_walked_inflated_and_stored_as_sent(tmp_path, monkeypatch):
    import zlib

    from pydicom import dcmread

    deflated_le = "1.2.840.10008.1.2.1.99"
    node = Node(tmp_path / "out", syntaxes=(deflated_le, ExplicitVRLittleEndian))
    ds = make_dataset("unit-deflated")
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = packer.compress(raw(ds)) + packer.flush()
    (answer,) = node.send(monkeypatch, [(CTImageStorage, ds.SOPInstanceUID, data)], syntax=deflated_le)
    assert answer.status == 0
    copy = dcmread(node.out / f"{ds.SOPInstanceUID}.dcm")
    assert copy.file_meta.TransferSyntaxUID == deflated_le and copy.PixelData == ds.PixelData
