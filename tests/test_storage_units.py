"""storage.py (the StorageSCP a listener keeps for its whole run) and the index hand-off of the C-STORE
handler, in-process (issue 15, ``make mutate``): folder preparation and resolution, the output folder's
descriptor kept across objects (and opened again when the folder was removed), temporaries tracked from
begin to end and removed at shutdown or abandon, the association-end hook, the index's values and
failures. Fixtures: tests/scp_units.py."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from scp_units import TEMP_PREFIX, Hooks, Index, Node, on_disk, raw, request
from store_helpers import make_dataset
from temp_modes import MODES, use_mode

from dcmnet_cli.dimse.commandset import c_store_rq
from dcmnet_cli.services.scp.storage import StorageConfig, StorageSCP




@pytest.fixture(autouse=True, params=MODES)
def temp_mode(request, monkeypatch) -> str:
    """Every test runs with unnamed temporaries (O_TMPFILE) and with named ones (the fallback)."""
    return use_mode(request.param, monkeypatch)


# --------------------------------------------------------------------------- the index hand-off

def test_index_gets_each_stored_file_after_the_response(tmp_path, monkeypatch):
    index = Index()
    node = Node(tmp_path / "out", index=index)
    sop_class, uid, data = request("unit-index")
    answers = node.send(monkeypatch, [(sop_class, uid, data), (sop_class, uid + ".1", data)])
    assert [a.status for a in answers] == [0, 0xA900]
    (added,) = index.added
    path = str(Path(node.scp.root) / f"{uid}.dcm")
    assert added[0] == path and added[2] == ExplicitVRLittleEndian and added[3] == os.path.getsize(path)
    assert added[1]["SOPInstanceUID"] == uid and added[1]["StudyInstanceUID"] == make_dataset("x").StudyInstanceUID
    assert (added[1]["Rows"], added[1]["Columns"]) == ("64", "64")  # US values, little endian
    assert index.synced == 30.0  # the association's rows committed before its end hook
    idle = Index()
    Node(tmp_path / "idle", index=idle).send(monkeypatch, [(sop_class, uid + ".2", data)])
    assert not hasattr(idle, "synced")  # nothing stored: nothing to wait for


def test_index_skips_a_kept_duplicate(tmp_path, monkeypatch):
    index = Index()
    node = Node(tmp_path / "out", index=index, on_duplicate="keep")
    item = request("unit-index-keep")
    assert [a.status for a in node.send(monkeypatch, [item, item])] == [0, 0]
    assert len(index.added) == 1


@pytest.mark.parametrize("how", ["raise", "later"])
def test_index_failure_after_success_is_logged_and_the_file_stays(tmp_path, monkeypatch, how):
    node = Node(tmp_path / "out", index=Index(fail=OSError("disk gone"), how=how))
    sop_class, uid, data = request("unit-index-fail")
    (answer,) = node.send(monkeypatch, [(sop_class, uid, data)])
    assert answer.status == 0 and on_disk(node.out) == [f"{uid}.dcm"]
    path = str(Path(node.scp.root) / f"{uid}.dcm")
    errors = [(e.event, e.detail) for e in node.events if e.event == "index-error"]
    assert errors == [("index-error", f"cannot index {path}: OSError: disk gone")]
    assert node.ended == [(1, 0)]


def test_shared_index_commits_before_success_and_fails_the_store_without_its_row(tmp_path, monkeypatch):
    index = Index(commit_before_success=True)
    node = Node(tmp_path / "out", index=index)
    item = request("unit-shared")
    assert [a.status for a in node.send(monkeypatch, [item])] == [0]
    assert len(index.added) == 1  # once, before the response; not again after it
    failing = Node(tmp_path / "out2", index=Index(fail=OSError("db down " + "x" * 80), commit_before_success=True))
    (answer,) = failing.send(monkeypatch, [item])
    assert (answer.status, answer.error_comment) == (0xA700, ("cannot index: db down " + "x" * 80)[:64])
    assert [e.event for e in failing.events if e.event == "index-error"] == []
    assert on_disk(failing.out) == []  # a failure answered: nothing left under a final name


@pytest.mark.parametrize(("on_duplicate", "left"), [("rename", 1), ("replace", 1), ("keep", 1)])
def test_shared_index_failure_takes_back_only_the_file_it_placed(tmp_path, monkeypatch, on_duplicate, left):
    """A retry after 0xA700 lands exactly one copy; a name that already held an acknowledged object
    keeps it (``replace``: removing the new file would lose that object too; ``keep``: nothing placed)."""
    index = Index(commit_before_success=True)
    node = Node(tmp_path / "out", index=index, on_duplicate=on_duplicate)
    item = request("unit-shared-dup")
    assert [a.status for a in node.send(monkeypatch, [item])] == [0]
    index.fail = OSError("db down")
    (answer,) = node.send(monkeypatch, [item])
    assert answer.status == (0 if on_duplicate == "keep" else 0xA700)  # a kept duplicate is not indexed again
    assert len(on_disk(node.out)) == left, on_disk(node.out)
    index.fail = None
    (answer,) = node.send(monkeypatch, [request("unit-shared-new")])
    index.fail = OSError("db down")
    (answer,) = node.send(monkeypatch, [request("unit-shared-new2")])
    assert answer.status == 0xA700 and len(on_disk(node.out)) == left + 1


def test_without_an_index_nothing_is_decoded(tmp_path, monkeypatch):
    from dcmnet_cli.services.archive import extraction

    def refuse(*args, **kwargs):
        raise AssertionError("decoded without an index")

    monkeypatch.setattr(extraction, "decode_values", refuse)
    node = Node(tmp_path / "out")
    assert [a.status for a in node.send(monkeypatch, [request("unit-noindex")])] == [0]


# --------------------------------------------------------------------------- storage.py

def test_prepare_creates_the_folder_and_removes_leftovers_unless_ignoring(tmp_path):
    out = tmp_path / "a" / "b"
    scp = StorageSCP(StorageConfig(str(out)))
    assert scp.prepare() == 0 and out.is_dir()
    (out / f"{TEMP_PREFIX}old-1.part").write_bytes(b"x")
    assert scp.prepare() == 1 and list(out.iterdir()) == []
    ignoring = StorageSCP(StorageConfig(str(tmp_path / "c"), ignore=True))
    assert ignoring.prepare() == 0 and not (tmp_path / "c").exists()
    assert StorageSCP(StorageConfig(None)).prepare() == 0


def test_root_is_resolved(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    scp = StorageSCP(StorageConfig(str(tmp_path / "link" / ".." / "real")))
    assert scp.root == str((tmp_path / "real").resolve())
    assert StorageSCP(StorageConfig(None)).root is None


def test_close_removes_temporaries_still_tracked_and_waits_for_hooks(tmp_path):
    closed = []

    class Closing(Hooks):
        def close(self, grace: float) -> None:
            closed.append(grace)

    scp = StorageSCP(StorageConfig(str(tmp_path)), hooks=Closing())
    stuck = tmp_path / f"{TEMP_PREFIX}stuck-1.part"
    stuck.write_bytes(b"x")
    scp.track(str(stuck), True)
    scp.track(str(tmp_path / "gone.part"), True)  # already removed: no error
    scp.track(str(tmp_path / "kept"), True)
    scp.track(str(tmp_path / "kept"), False)
    (tmp_path / "kept").write_bytes(b"k")
    scp.close(2.5)
    assert not stuck.exists() and (tmp_path / "kept").exists()
    assert closed == [2.5] and scp._active == set()


def test_os_failure_names_what_failed_in_64_characters():
    from dcmnet_cli.services.scp.storage import os_failure

    failure = os_failure(OSError(errno.ENOSPC, "No space left on device"), "write failed")
    assert (failure.status, failure.comment) == (0xA700, "write failed: No space left on device")
    assert os_failure(OSError("plain"), "x").comment == "x: plain"
    assert len(os_failure(OSError(errno.EIO, "e" * 100), "write failed").comment) == 64


def test_default_hook_runner_reports_to_the_event_log(tmp_path):
    events: list = []
    scp = StorageSCP(StorageConfig(str(tmp_path)), events.append)
    scp.hooks.log("x")
    assert events == ["x"]
    assert StorageSCP(StorageConfig(str(tmp_path))).on_event("anything") is None


def test_template_with_dataset_fields_imports_pydicom_at_start(tmp_path, monkeypatch):
    import importlib

    from dcmnet_cli.part10.filenames import parse_template
    from dcmnet_cli.services.scp import storage

    imported = []
    monkeypatch.setattr(storage, "importlib", type("I", (), {"import_module": staticmethod(imported.append)}))
    StorageSCP(StorageConfig(str(tmp_path), template=parse_template("{PatientID}/{SOPInstanceUID}.dcm",
                                                                     lambda keyword: True)))
    StorageSCP(StorageConfig(str(tmp_path), template=parse_template("{CallingAET}/{SOPInstanceUID}.dcm",
                                                                     lambda keyword: True)))
    StorageSCP(StorageConfig(str(tmp_path)))
    assert imported == ["pydicom"]
    assert importlib


class _Driver:
    peer = "scu:9"


class _Session:
    """Just what StoreHandler.begin reads of a session: the report, the driver's peer, the contexts."""

    def __init__(self) -> None:
        from dcmnet_cli.services.session import AssociationReport

        self.report = AssociationReport("scu:9", "DIRECT", "MEMSCP")
        self.driver = _Driver()
        self.contexts: dict = {}


def _direct_handler(node: Node, name: str):
    from dcmnet_cli.services.scp.store_handler import StoreHandler

    ds = make_dataset(name)
    handler = StoreHandler(node.scp)
    handler.begin(_Session(), 1, c_store_rq(1, CTImageStorage, ds.SOPInstanceUID))
    data = raw(ds, implicit=True)  # no context: implicit VR little endian, the default
    handler.fragment(memoryview(data)[:100], False)
    return handler


def test_a_store_stuck_mid_data_set_is_removed_at_shutdown(tmp_path, temp_mode):
    """``close`` after the server stopped: the temporary of an association still stuck mid-data-set is
    removed (a named one's path is tracked from begin on; an unnamed one is never visible at all)."""
    node = Node(tmp_path / "out")
    handler = _direct_handler(node, "unit-stuck")
    if temp_mode == "named":
        (temporary,) = [n for n in on_disk(node.out)]
        assert temporary.startswith(TEMP_PREFIX) and (node.out / temporary).stat().st_size > 100
    else:
        assert on_disk(node.out) == [] and node.scp._active == set() and os.fstat(handler.fd).st_size > 100
    node.scp.close(0)
    assert on_disk(node.out) == []


def test_an_abandoned_store_removes_its_temporary(tmp_path, temp_mode):
    node = Node(tmp_path / "out")
    before = len(os.listdir("/proc/self/fd"))
    handler = _direct_handler(node, "unit-abandoned")
    assert len(on_disk(node.out)) == (1 if temp_mode == "named" else 0)
    handler.abandon()
    assert on_disk(node.out) == [] and node.temporaries() == []
    assert handler.fd == -1 and len(os.listdir("/proc/self/fd")) == before + 1  # only the kept output folder
    handler.abandon()  # twice: nothing left to do
    assert node.outcomes() == []


def test_ignore_with_an_association_end_hook_gets_no_folder_and_no_files(tmp_path, monkeypatch):
    """``listen --ignore --exec-on-association-end``: the objects were received, not stored: the hook
    runs with an empty folder argument and an empty file list."""
    node = Node(tmp_path / "out", ignore=True, exec_on_association_end=["end"], output=False)
    node.send(monkeypatch, [request("unit-ignore-end")])
    (run,) = node.hooks.runs
    assert run[0] == ["end", ""] and run[1]["DCMNET_DIR"] == "" and run[1]["DCMNET_COUNT"] == 1 and run[2] == []


def test_output_folder_removed_and_made_again_between_associations(tmp_path, monkeypatch):
    """The output folder's descriptor is kept across objects: when the folder is removed and made again,
    the next store opens it again by its path and lands in the new folder; ``close`` closes every
    descriptor it opened (the stale one too)."""
    import shutil

    before = len(os.listdir("/proc/self/fd"))
    node = Node(tmp_path / "out")
    first = request("unit-remade-1")
    assert [a.status for a in node.send(monkeypatch, [first])] == [0]
    shutil.rmtree(node.out)
    node.out.mkdir()
    second = request("unit-remade-2")
    assert [a.status for a in node.send(monkeypatch, [second])] == [0]
    assert on_disk(node.out) == [f"{second[1]}.dcm"] and node.temporaries() == []
    node.scp.close(0)
    assert len(os.listdir("/proc/self/fd")) == before


def test_output_folder_removed_for_good_is_a700(tmp_path, monkeypatch):
    import shutil

    node = Node(tmp_path / "out")
    item = request("unit-gone")
    assert [a.status for a in node.send(monkeypatch, [item])] == [0]
    shutil.rmtree(node.out)
    (answer,) = node.send(monkeypatch, [item])
    assert (answer.status, answer.error_comment) == (0xA700, "cannot create file: No such file or directory")
    assert not node.out.exists()
    node.scp.close(0)


def test_index_values_of_a_big_endian_data_set(tmp_path, monkeypatch):
    from pydicom.uid import ExplicitVRBigEndian

    index = Index()
    node = Node(tmp_path / "out", index=index)
    ds = make_dataset("unit-big-endian", rows=32, columns=48)
    (answer,) = node.send(monkeypatch, [(CTImageStorage, ds.SOPInstanceUID, raw(ds, little=False))],
                          syntax=ExplicitVRBigEndian)
    assert answer.status == 0
    (added,) = index.added
    assert (added[1]["Rows"], added[1]["Columns"], added[2]) == ("32", "48", ExplicitVRBigEndian)


@pytest.mark.parametrize("fsync", [True, False])
def test_a_file_taken_back_is_made_durable_like_one_placed(tmp_path, monkeypatch, fsync):
    """After the shared index failed, the removal is fsynced (the folder) when the listener fsyncs: a
    power cut must not bring the file back under its final name."""
    from helpers.patched import count_fsync

    node = Node(tmp_path / "out", index=Index(fail=OSError("db down"), commit_before_success=True), fsync=fsync)
    calls = count_fsync(monkeypatch)
    (answer,) = node.send(monkeypatch, [request("unit-shared-sync")])
    assert answer.status == 0xA700 and on_disk(node.out) == []
    assert calls == (["file", "dir", "dir"] if fsync else [])  # placed (file, folder), then taken back (folder)


def test_an_empty_sop_instance_uid_in_both_command_and_data_set_is_no_mismatch(tmp_path, monkeypatch):
    from scp_units import CTImageStorage, make_dataset, raw

    ds = make_dataset("unit-empty-uid")
    ds.SOPInstanceUID = ""
    node = Node(tmp_path / "out")
    (answer,) = node.send(monkeypatch, [(CTImageStorage, "", raw(ds))])
    assert answer.status == 0 and on_disk(node.out) == ["UNKNOWN.dcm"]
