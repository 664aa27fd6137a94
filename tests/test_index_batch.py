"""``listen``'s index writes its rows off the association threads, in batches (services/archive/index.py,
transport/batcher.py), without weakening what it promises:

- a query or retrieve of the same process sees every object whose C-STORE-RSP was sent, at once (it does
  not wait for the batch delay);
- a normal stop commits the queued rows; a crash (kill -9) loses only queued rows, whose files are
  complete on disk, and the next start's reconciliation indexes them;
- one bad row is reported and loses no other;
- the storage path never imports pydicom, and the column text it writes is what the C-FIND SQL
  prefilter compares against (matching.normalise_for_column).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from pydicom import Dataset
from store_helpers import make_file
from wire import memory_peer

from dcmnet_cli.services.archive import index as index_module
from dcmnet_cli.services.archive.columns import MatchOptions, column_text
from dcmnet_cli.services.archive.extraction import read_file_attributes
from dcmnet_cli.services.archive.index import Index, IndexRef
from dcmnet_cli.services.archive.matching import normalise_for_column
from dcmnet_cli.transport.batcher import Batcher

ROOT = Path(__file__).resolve().parents[1]
SLOW = 30.0
"""A batch delay no test waits for: a row is only written when something asks for it (or at close)."""


def attributes(study: int, series: int, instance: int) -> dict[str, str]:
    return {"PatientID": f"P{study}", "PatientName": "DOE^JANE", "StudyInstanceUID": f"1.2.3.{study}",
            "StudyDate": "20240131", "SeriesInstanceUID": f"1.2.3.{study}.{series}", "Modality": "CT",
            "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2", "SOPInstanceUID": f"1.2.3.{study}.{series}.{instance}",
            "InstanceNumber": str(instance)}


@pytest.fixture
def slow_batches(monkeypatch):
    monkeypatch.setattr(index_module, "BATCH_DELAY", SLOW)


def study_query(uid: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    ds.StudyInstanceUID = uid
    ds.SeriesInstanceUID = ""
    ds.SOPInstanceUID = ""
    return ds


def test_queued_rows_are_seen_by_queries_at_once(tmp_path, slow_batches):
    index = Index.open(str(tmp_path / "x.sqlite"), str(tmp_path))
    try:
        started = time.monotonic()
        for n in range(3):
            index.submit(str(tmp_path / f"{n}.dcm"), attributes(1, 0, n), "1.2.840.10008.1.2.1", 100)
        found = list(index.search("study", "IMAGE", study_query("1.2.3.1"), MatchOptions()))
        assert sorted(str(ds.SOPInstanceUID) for ds in found) == ["1.2.3.1.0.0", "1.2.3.1.0.1", "1.2.3.1.0.2"]
        index.submit(str(tmp_path / "3.dcm"), attributes(1, 0, 3), "1.2.840.10008.1.2.1", 100)
        retrieve = Dataset()
        retrieve.QueryRetrieveLevel, retrieve.StudyInstanceUID = "STUDY", "1.2.3.1"
        assert len(index.instances("study", "STUDY", retrieve)) == 4
        index.submit(str(tmp_path / "4.dcm"), attributes(1, 0, 4), "1.2.840.10008.1.2.1", 100)
        assert "4.dcm" in index.files()
        assert time.monotonic() - started < SLOW / 3  # the queries did not wait out the batch delay
    finally:
        index.close()


def test_close_commits_the_queued_rows(tmp_path, slow_batches):
    index = Index.open(str(tmp_path / "x.sqlite"), str(tmp_path))
    for n in range(5):
        index.submit(str(tmp_path / f"{n}.dcm"), attributes(2, n % 2, n), "1.2.840.10008.1.2.1", 100)
    index.close()
    again = Index.open(str(tmp_path / "x.sqlite"), str(tmp_path))
    try:
        assert again.counts() == {"PATIENT": 1, "STUDY": 1, "SERIES": 2, "IMAGE": 5}
    finally:
        again.close()


def test_one_bad_row_is_reported_and_the_others_are_written(tmp_path, slow_batches):
    index = Index.open(str(tmp_path / "x.sqlite"), str(tmp_path))
    failed: list[tuple[str, str]] = []
    try:
        for n in range(3):
            values = attributes(3, 0, n)
            if n == 1:
                values["PatientName"] = "BAD\udc80"  # a lone surrogate: SQLite cannot store it
            index.submit(str(tmp_path / f"{n}.dcm"), values, "", 100,
                         lambda path, error: failed.append((path, type(error).__name__)))
        assert index.sync(10)
        assert [path for path, _kind in failed] == [str(tmp_path / "1.dcm")]
        assert sorted(index.files()) == ["0.dcm", "2.dcm"]
    finally:
        index.close()


CRASH = """
import os, signal, sys
from dcmnet_cli.services.archive import index as index_module
from dcmnet_cli.services.archive.extraction import read_file_attributes
index_module.BATCH_DELAY = 30.0
root, path = sys.argv[1], sys.argv[2]
index = index_module.Index.open(os.path.join(root, ".dcmnet-index.sqlite"), root)
attributes, syntax = read_file_attributes(path)
index.submit(path, attributes, syntax, os.path.getsize(path))
print("queued", index._batcher.pending(), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_kill_9_with_rows_queued_loses_only_rows_that_reconcile_restores(tmp_path):
    root = tmp_path / "store"
    path = make_file(root, "crash-1")
    done = subprocess.run([sys.executable, "-c", CRASH, str(root), str(path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == -9, done.stderr
    assert done.stdout.split() == ["queued", "1"]
    index = Index.open(str(root / ".dcmnet-index.sqlite"), str(root))
    try:
        assert index.files() == {}  # the queued row died with the process; the file is whole on disk
        assert index.reconcile() == (1, 0)
        sop = read_file_attributes(str(path))[0]["SOPInstanceUID"]
        found = index.instances("study", "IMAGE", _image_query(read_file_attributes(str(path))[0]))
        assert [(Path(item.path), item.sop_instance_uid) for item in found] == [(path, sop)]
    finally:
        index.close()


def _image_query(values: dict[str, str]) -> Dataset:
    """An IMAGE-level Study Root identifier with the unique keys of the object ``values`` describes."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    ds.StudyInstanceUID = values["StudyInstanceUID"]
    ds.SeriesInstanceUID = values["SeriesInstanceUID"]
    ds.SOPInstanceUID = values["SOPInstanceUID"]
    return ds


def test_a_query_right_after_the_store_response_sees_the_object(tmp_path, monkeypatch, slow_batches):
    """listen's Storage SCP and C-FIND SCP in one entity over the in-memory wire: each object is found by
    a C-FIND sent right after its C-STORE-RSP, though the index thread would wait 30 s to write it."""
    from dcmnet_cli.part10.sopclasses import storage_contexts
    from dcmnet_cli.services.peer import Peer
    from dcmnet_cli.services.query import MODELS, QuerySpec
    from dcmnet_cli.services.scp.entity import ALL_UNCOMPRESSED, ApplicationEntity
    from dcmnet_cli.services.scp.find_handler import QueryConfig, find_handlers, with_find_contexts
    from dcmnet_cli.services.scp.storage import StorageConfig, StorageSCP
    from dcmnet_cli.services.scp.store_handler import storage_handlers
    from dcmnet_cli.services.scu.find import find
    from dcmnet_cli.services.scu.store import store
    from dcmnet_cli.services.scu.store_inputs import collect
    from dcmnet_cli.transport.client import Timeouts
    from dcmnet_cli.ul.negotiation import AcceptorPolicy

    root = tmp_path / "out"
    events: list = []
    storage = StorageSCP(StorageConfig(str(root), fsync=False), events.append)
    storage.prepare()
    ref = IndexRef(str(root / ".dcmnet-index.sqlite"), str(root))
    storage.config.index = ref
    policy = AcceptorPolicy(ae_title="MEMSCP", contexts=with_find_contexts(
        storage_contexts(ALL_UNCOMPRESSED, False, ALL_UNCOMPRESSED)))
    entity = ApplicationEntity(policy, handlers={**storage_handlers(storage),
                                                 **find_handlers(QueryConfig(ref, MatchOptions(), "MEMSCP"))},
                               on_event=events.append)
    peer, timeouts = Peer("memory", 104, "MEMSCP"), Timeouts(connect=5, acse=5, dimse=5, network=5)
    try:
        with memory_peer(entity, monkeypatch) as failures:
            for n in range(3):
                source = make_file(tmp_path / "in", f"visible-{n}")
                files, problems = collect([str(source)])
                assert not problems
                stored = store(peer, files, "MEMSCU", timeouts)
                assert [o.status for o in stored.files] == [0]
                spec = QuerySpec(MODELS["study"], "IMAGE", _image_query(read_file_attributes(str(source))[0]))
                found = find(peer, spec, "MEMSCU", timeouts)
                assert (found.status, found.matches) == (0x0000, 1), n
        assert not failures
        assert not [e for e in events if getattr(e, "event", "") == "index-error"]
    finally:
        storage.close(1.0)
    again = Index.open(str(root / ".dcmnet-index.sqlite"), str(root))
    try:
        assert again.counts()["IMAGE"] == 3  # written, committed, closed with the Storage SCP
    finally:
        again.close()


VALUES = ["", " ", "ABC", " ABC ", "A\\B", " A \\ B ", "DOE^JANE^^", "DOE^JANE=^^", "X\x00", "ÄÖÜ", "a\\", "\\",
          "20240131", "2024.01.31", " 2024 ", "1015", "10:15:30.5", "101530.123456789", "20240131101530+0100",
          "20240131101530.5-0530", "2024013110+1500", "2024-2025", "1.2.840.10008\\1.2.3"]


@pytest.mark.parametrize("vr", ["PN", "LO", "SH", "CS", "UI", "IS", "DS", "AS", "DA", "TM", "DT", "LT", "ST",
                                "UT", "UR", "UC"])
def test_column_text_is_what_the_sql_prefilter_compares(vr):
    for value in VALUES:
        assert column_text(vr, value) == normalise_for_column(vr, value), (vr, value)


def test_the_storage_path_imports_no_pydicom(tmp_path):
    """Opening the index, adding and queueing rows, and listen's matching options: no pydicom (0.4 s)."""
    script = textwrap.dedent("""
        import sys
        from dcmnet_cli.services.archive.columns import MatchOptions
        from dcmnet_cli.services.archive.index import Index
        from dcmnet_cli.services.archive.extraction import decode_values
        index = Index.open(sys.argv[1] + "/x.sqlite", sys.argv[1])
        values = decode_values({0x00100010: b"DOE^JANE", 0x00080020: b"20240131", 0x00080030: b"1015",
                                0x0020000D: b"1.2.3", 0x0020000E: b"1.2.3.4", 0x00080018: b"1.2.3.4.5"})
        index.add(sys.argv[1] + "/a.dcm", values, "1.2.840.10008.1.2.1", 10)
        index.submit(sys.argv[1] + "/b.dcm", {**values, "SOPInstanceUID": "1.2.3.4.6"}, "", 10)
        index.close()
        MatchOptions(fuzzy_names=True)
        print(sorted(m for m in sys.modules if m.split(".")[0] == "pydicom"))
    """)
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# ---------------------------------------------------------------- the batcher itself


def test_batcher_groups_items_and_flush_does_not_wait_for_the_delay():
    batches: list[list[int]] = []
    batcher: Batcher[int] = Batcher(batches.append, SLOW, 100, "test-batcher")
    started = time.monotonic()
    for n in range(10):
        assert batcher.put(n) is False  # neither 100 items nor 30 s: not due
    assert batcher.pending() == 10 and batches == []
    assert batcher.flush(10)
    assert time.monotonic() - started < SLOW / 3
    assert batches == [list(range(10))]  # one batch, handled by the flush
    assert batcher.pending() == 0
    assert batcher.close(10)
    with pytest.raises(RuntimeError):
        batcher.put(11)


def test_a_due_batch_is_handled_by_the_thread_that_asks():
    """``run_due`` (the Storage SCP calls it after each response) handles a due batch in the calling thread;
    a batch not yet due is left for later."""
    handled: list[tuple[list[int], str]] = []
    batcher: Batcher[int] = Batcher(lambda batch: handled.append((batch, threading.current_thread().name)),
                                    SLOW, 3, "test-batcher")
    try:
        assert [batcher.put(0), batcher.put(1)] == [False, False]
        assert batcher.run_due() is False  # 2 of 3, and the delay is far: not due
        assert handled == [] and batcher.pending() == 2
        assert batcher.put(2) is True  # the limit: due
        assert handled == []  # put itself never handles (below max_queued)
        assert batcher.run_due() is True
        assert handled == [([0, 1, 2], threading.current_thread().name)]
        assert batcher.pending() == 0
    finally:
        batcher.close(10)


def test_a_batch_waiting_out_its_delay_is_due(monkeypatch):
    """Due once its oldest item waited ``delay`` (a clock of the test's own: no real wait)."""
    from dcmnet_cli.transport import batcher as batcher_module

    class Clock:
        now = 1000.0

        @classmethod
        def monotonic(cls) -> float:
            return cls.now

    monkeypatch.setattr(batcher_module, "time", Clock)
    handled: list[list[int]] = []
    batcher: Batcher[int] = Batcher(handled.append, SLOW, 100, "test-batcher")
    try:
        assert batcher.put(0) is False
        Clock.now += SLOW - 1
        assert batcher.put(1) is False
        assert batcher.run_due() is False
        Clock.now += 1
        assert batcher.run_due() is True  # the oldest waited the delay
        assert handled == [[0, 1]]
        assert batcher.put(2) is False  # a new batch starts its own wait
    finally:
        batcher.close(10)


def test_the_tail_of_a_run_is_handled_by_the_background_thread():
    """Items nobody asks for (no run_due, no flush) are handled once the run is over: ``gap`` without a new
    item, by the batcher's own thread."""
    handled: list[tuple[list[int], str]] = []
    batcher: Batcher[int] = Batcher(lambda batch: handled.append((batch, threading.current_thread().name)),
                                    SLOW, 100, "test-tail", gap=0.05)
    try:
        batcher.put(0)
        batcher.put(1)
        deadline = time.monotonic() + 10
        while batcher.pending() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert handled == [([0, 1], "test-tail")]
    finally:
        batcher.close(10)


def test_run_due_does_not_wait_for_a_batch_another_thread_handles_and_order_is_kept():
    started, release = threading.Event(), threading.Event()
    seen: list[int] = []

    def handle(batch: list[int]) -> None:
        if batch[0] == 0:
            started.set()
            release.wait(10)
        seen.extend(batch)

    batcher: Batcher[int] = Batcher(handle, SLOW, 2, "test-batcher")
    batcher.put(0)
    batcher.put(1)
    other = threading.Thread(target=batcher.run_due)
    other.start()
    try:
        assert started.wait(10)
        batcher.put(2)
        assert batcher.put(3) is True
        begun = time.monotonic()
        assert batcher.run_due() is False  # the other thread holds a batch: this one goes on at once
        assert batcher.flush(0.2) is False  # a flush waits for it, up to its timeout
        assert time.monotonic() - begun < SLOW / 3
        assert seen == []
    finally:
        release.set()
        other.join(10)
    assert batcher.flush(10)
    assert seen == [0, 1, 2, 3]
    assert batcher.close(10)


def test_batcher_reports_a_failing_handler_and_never_hangs_a_flush():
    errors: list[BaseException] = []

    def handle(batch: list[int]) -> None:
        raise ValueError("boom")

    batcher: Batcher[int] = Batcher(handle, 0.001, 10, "test-batcher", on_error=errors.append)
    batcher.put(1)
    assert batcher.flush(10)
    assert [str(e) for e in errors] == ["boom"]
    assert batcher.pending() == 0
    assert batcher.close(10)


def test_batcher_bounds_what_waits_in_its_queue():
    """When ``max_queued`` items wait, ``put`` handles them in the caller's thread (after the batch another
    thread holds): the queue never grows past it, nothing is lost, order is kept."""
    started, release = threading.Event(), threading.Event()
    seen: list[int] = []
    most = [0]

    def handle(batch: list[int]) -> None:
        most[0] = max(most[0], batcher.pending())
        if batch[0] == 0:
            started.set()
            release.wait(10)
        seen.extend(batch)

    batcher: Batcher[int] = Batcher(handle, SLOW, 2, "test-batcher", max_queued=4)
    batcher.put(0)
    batcher.put(1)
    holder = threading.Thread(target=batcher.run_due)
    holder.start()
    assert started.wait(10)
    putter = threading.Thread(target=lambda: [batcher.put(n) for n in range(2, 12)])
    putter.start()
    time.sleep(0.3)
    assert batcher.pending() <= 2 + 4  # one batch in hand, max_queued waiting: the putter waits
    assert putter.is_alive()
    release.set()
    holder.join(10)
    putter.join(10)
    assert batcher.close(10)
    assert seen == list(range(12))
    assert most[0] <= 2 + 4


# ---------------------------------------------------------------- the Storage SCP's ends


def _storage_with_index(root: Path):  # type: ignore[no-untyped-def]
    from dcmnet_cli.services.scp.storage import StorageConfig, StorageSCP

    storage = StorageSCP(StorageConfig(str(root), fsync=False))
    storage.prepare()
    storage.config.index = IndexRef(str(root / ".dcmnet-index.sqlite"), str(root))
    return storage


def _rows_seen_by_another_connection(root: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(str(root / ".dcmnet-index.sqlite"))
    try:
        return int(conn.execute("SELECT COUNT(*) FROM instance").fetchone()[0])
    finally:
        conn.close()


def test_an_ended_association_has_its_rows_committed(tmp_path, slow_batches):
    """Another process (a --workers sibling, a tool reading the file) sees an association's rows once it
    ended, though the batch delay has not passed."""
    from dcmnet_cli.services.session import AssociationReport

    root = tmp_path / "out"
    storage = _storage_with_index(root)
    try:
        storage.config.index.get().submit(str(root / "a.dcm"), attributes(4, 0, 1), "", 10)
        assert _rows_seen_by_another_connection(root) == 0  # queued, not written yet
        report = AssociationReport("peer", "SCU", "SCP")
        report.stored = 1
        storage.association_ended(report)
        assert _rows_seen_by_another_connection(root) == 1
    finally:
        storage.close(1.0)


def test_closing_the_storage_scp_commits_the_queue(tmp_path, slow_batches):
    root = tmp_path / "out"
    storage = _storage_with_index(root)
    storage.config.index.get().submit(str(root / "a.dcm"), attributes(5, 0, 1), "", 10)
    storage.close(1.0)
    assert _rows_seen_by_another_connection(root) == 1


def test_rows_are_committed_before_the_release_answer(tmp_path, monkeypatch, slow_batches):
    """A sender that got its A-RELEASE-RP finds its objects from any process (a --workers sibling, a second
    listen on the same index, a tool): the rows are committed before the release is answered, not only
    when the association ends or after the batch delay (30 s here). The entity is wired as listen wires
    it (on_release=StorageSCP.released), without the association-end hook."""
    from dcmnet_cli.part10.sopclasses import storage_contexts
    from dcmnet_cli.services.peer import Peer
    from dcmnet_cli.services.scp.entity import ALL_UNCOMPRESSED, ApplicationEntity
    from dcmnet_cli.services.scp.storage import StorageConfig, StorageSCP
    from dcmnet_cli.services.scp.store_handler import storage_handlers
    from dcmnet_cli.services.scu.store import store
    from dcmnet_cli.services.scu.store_inputs import collect
    from dcmnet_cli.transport.client import Timeouts
    from dcmnet_cli.ul.negotiation import AcceptorPolicy

    root = tmp_path / "out"
    storage = StorageSCP(StorageConfig(str(root), fsync=False))
    storage.prepare()
    storage.config.index = IndexRef(str(root / ".dcmnet-index.sqlite"), str(root))
    policy = AcceptorPolicy(ae_title="MEMSCP", contexts=storage_contexts(ALL_UNCOMPRESSED, False, ALL_UNCOMPRESSED))
    entity = ApplicationEntity(policy, handlers=storage_handlers(storage), on_release=storage.released)
    try:
        with memory_peer(entity, monkeypatch) as failures:
            files, problems = collect([str(make_file(tmp_path / "in", f"released-{n}")) for n in range(2)])
            assert not problems
            stored = store(Peer("memory", 104, "MEMSCP"), files, "MEMSCU", Timeouts(connect=5, acse=5, dimse=5, network=5))
            assert [o.status for o in stored.files] == [0, 0]
            assert _rows_seen_by_another_connection(root) == 2
        assert not failures
    finally:
        storage.close(1.0)


def test_release_without_an_index_commits_nothing_and_does_not_fail(tmp_path):
    """``listen -od DIR --no-index`` (or --ignore): the release hook has nothing to commit."""
    from dcmnet_cli.services.scp.storage import StorageConfig, StorageSCP
    from dcmnet_cli.services.session import AssociationReport

    storage = StorageSCP(StorageConfig(str(tmp_path / "out"), fsync=False))
    storage.prepare()
    report = AssociationReport("peer", "SCU", "SCP")
    report.stored = 3
    try:
        storage.released(report)  # no index: nothing to sync
        assert not (tmp_path / "out" / ".dcmnet-index.sqlite").exists()
    finally:
        storage.close(1.0)
