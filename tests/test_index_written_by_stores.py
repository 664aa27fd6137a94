"""Who writes ``listen``'s index rows (services/archive/index.py, transport/batcher.py): the association
thread that just answered a C-STORE writes a due batch itself, after its response; the index's own thread
only writes what nobody asked for. The values the walk kept are queued undecoded and decoded by the writer."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from store_helpers import make_file
from wire import memory_peer

from dcmnet_cli.services.archive import index as index_module
from dcmnet_cli.services.archive.extraction import RawValues, read_file_attributes
from dcmnet_cli.services.archive.index import Index, IndexRef

SLOW = 30.0


def _rows(root: Path) -> list[str]:
    conn = sqlite3.connect(str(root / ".dcmnet-index.sqlite"))
    try:
        return sorted(row[0] for row in conn.execute("SELECT sop_instance_uid FROM instance"))
    finally:
        conn.close()


def _fresh_index(tmp_path: Path, monkeypatch, gap: float = SLOW, limit: int | None = None) -> tuple[Path, Index]:
    """An index in a new folder, its batches due only by count (``limit``) or never; the tail written
    ``gap`` after the last row."""
    monkeypatch.setattr(index_module, "BATCH_DELAY", SLOW)
    monkeypatch.setattr(index_module, "BATCH_GAP", gap)
    if limit is not None:
        monkeypatch.setattr(index_module, "BATCH_LIMIT", limit)
    root = tmp_path / "x"
    root.mkdir()
    return root, Index.open(str(root / ".dcmnet-index.sqlite"), str(root))


def _store(tmp_path: Path, monkeypatch, count: int, on_release=None) -> tuple[list[tuple[int, str]], list[str]]:
    """``count`` files stored over the in-memory wire into a Storage SCP with an index; returns the batches
    written (size, thread name) and the SOP Instance UIDs sent."""
    from dcmnet_cli.part10.sopclasses import storage_contexts
    from dcmnet_cli.services.peer import Peer
    from dcmnet_cli.services.scp.entity import ALL_UNCOMPRESSED, ApplicationEntity
    from dcmnet_cli.services.scp.storage import StorageConfig, StorageSCP
    from dcmnet_cli.services.scp.store_handler import storage_handlers
    from dcmnet_cli.services.scu.store import store
    from dcmnet_cli.services.scu.store_inputs import collect
    from dcmnet_cli.transport.client import Timeouts
    from dcmnet_cli.ul.negotiation import AcceptorPolicy

    batches: list[tuple[int, str]] = []
    write = Index._write_batch

    def recorded(self, queued):  # type: ignore[no-untyped-def]
        batches.append((len(queued), threading.current_thread().name))
        write(self, queued)

    monkeypatch.setattr(Index, "_write_batch", recorded)
    root = tmp_path / "out"
    storage = StorageSCP(StorageConfig(str(root), fsync=False))
    storage.prepare()
    storage.config.index = IndexRef(str(root / ".dcmnet-index.sqlite"), str(root))
    policy = AcceptorPolicy(ae_title="MEMSCP", contexts=storage_contexts(ALL_UNCOMPRESSED, False, ALL_UNCOMPRESSED))
    entity = ApplicationEntity(policy, handlers=storage_handlers(storage), on_release=on_release)
    sources = [make_file(tmp_path / "in", f"batch-{n}") for n in range(count)]
    try:
        with memory_peer(entity, monkeypatch) as failures:
            files, problems = collect([str(p) for p in sources])
            assert not problems
            stored = store(Peer("memory", 104, "MEMSCP"), files, "MEMSCU", Timeouts(connect=5, acse=5, dimse=5, network=5))
            assert [o.status for o in stored.files] == [0] * count
        assert not failures
    finally:
        storage.close(1.0)
    return batches, sorted(read_file_attributes(str(p))[0]["SOPInstanceUID"] for p in sources)


def test_due_batches_are_written_by_the_association_thread(tmp_path, monkeypatch):
    """Limit 2, no delay to wait out: each second C-STORE's handler writes the batch, in the thread that
    serves the association, not the index thread (no release hook, so nothing else flushes)."""
    monkeypatch.setattr(index_module, "BATCH_DELAY", SLOW)
    monkeypatch.setattr(index_module, "BATCH_GAP", SLOW)
    monkeypatch.setattr(index_module, "BATCH_LIMIT", 2)
    batches, sent = _store(tmp_path, monkeypatch, 4)
    here = threading.current_thread().name  # the SCU's (and the close's) thread; the SCP serves in its own
    assert batches[:2] == [(2, batches[0][1])] * 2
    assert batches[0][1] not in ("dcmnet-index", here)
    assert _rows(tmp_path / "out") == sent


def test_rows_nobody_asks_for_are_written_by_the_index_thread_after_the_gap(tmp_path, monkeypatch):
    """Below the limit and within the delay: the index thread writes the tail of the run once no row came
    for BATCH_GAP, with no query, release or close asking."""
    root, index = _fresh_index(tmp_path, monkeypatch, gap=0.05)
    try:
        names: list[str] = []
        write = index._write_batch
        index._write_batch = lambda queued: (names.append(threading.current_thread().name), write(queued))  # type: ignore[method-assign]
        values = {"SOPInstanceUID": "1.2.3.4", "SeriesInstanceUID": "1.2.3", "StudyInstanceUID": "1.2", "PatientID": "P"}
        index.submit(str(root / "a.dcm"), values, "", 10)
        assert index._batcher is not None
        index._batcher.handle = index._write_batch  # the recording one
        index.write_due()  # not due: nothing written here
        assert names == []
        deadline = time.monotonic() + 10
        while index._batcher.pending() and time.monotonic() < deadline:  # 0 once the write returned
            time.sleep(0.01)
        assert names == ["dcmnet-index"]
        assert _rows(root) == ["1.2.3.4"]
    finally:
        index.close()


def test_queued_values_are_decoded_by_the_writer_and_a_bad_one_is_reported_alone(tmp_path, monkeypatch):
    from dcmnet_cli.services.archive.extraction import INDEXED

    root, index = _fresh_index(tmp_path, monkeypatch)
    failed: list[tuple[str, str]] = []
    try:
        good = RawValues({0x00080018: b"1.2.3.9\x00", 0x0020000E: b"1.2.3 ", 0x0020000D: b"1.2 ",
                          0x00100010: b"DOE^JANE", 0x00100020: b"P1"}, True)
        bad = RawValues({0x00080018: b"1.2.3.8\x00", 0x00100010: None}, True)  # type: ignore[dict-item]
        index.submit(str(root / "bad.dcm"), bad, "", 10, lambda path, error: failed.append((path, type(error).__name__)))
        index.submit(str(root / "good.dcm"), good, "", 10, lambda path, error: failed.append((path, "?")))
        assert index.sync(10)
        assert failed == [(str(root / "bad.dcm"), "AttributeError")]
        assert _rows(root) == ["1.2.3.9"]
        conn = sqlite3.connect(str(root / ".dcmnet-index.sqlite"))
        try:
            assert conn.execute("SELECT patient_name FROM patient").fetchall() == [("DOE^JANE",)]
        finally:
            conn.close()
    finally:
        index.close()
    assert 0x00100010 in INDEXED  # PatientName: a value the walk keeps


def _counting_decoder(monkeypatch) -> list[str]:
    """Record which thread makes each row ready from the walk's values (Index._ready_raw: decodes them)."""
    decoded: list[str] = []
    real = index_module.Index._ready_raw

    def counting(self, *args):  # type: ignore[no-untyped-def]
        decoded.append(threading.current_thread().name)
        return real(self, *args)

    monkeypatch.setattr(index_module.Index, "_ready_raw", counting)
    return decoded


def _raw(n: int) -> RawValues:
    return RawValues({0x00080018: f"1.2.3.{n}\x00".encode(), 0x0020000E: b"1.2.3 ", 0x0020000D: b"1.2 ",
                      0x00100010: b"DOE^JANE", 0x00100020: b"P1"}, True)


def test_a_row_not_due_is_made_ready_after_the_response_and_the_batch_only_writes_it(tmp_path, monkeypatch):
    """write_due(what submit returned), no batch due: the row's values are decoded and its parameters made
    in the calling thread; the batch then writes it without decoding it again, and writes it right."""
    decoded = _counting_decoder(monkeypatch)
    root, index = _fresh_index(tmp_path, monkeypatch)
    try:
        first = index.submit(str(root / "a.dcm"), _raw(1), "1.2.840.10008.1.2.1", 10)
        second = index.submit(str(root / "b.dcm"), _raw(2), "1.2.840.10008.1.2.1", 11)
        index.write_due(first)  # second is not made ready: only what the caller passes
        assert decoded == [threading.current_thread().name]
        assert _rows(root) == []  # nothing written: not due
        assert index.sync(10)
        assert len(decoded) == 2  # the batch decoded second only
        assert _rows(root) == ["1.2.3.1", "1.2.3.2"]
        conn = sqlite3.connect(str(root / ".dcmnet-index.sqlite"))
        try:
            assert conn.execute("SELECT path, size, transfer_syntax FROM instance ORDER BY path").fetchall() == [
                ("a.dcm", 10, "1.2.840.10008.1.2.1"), ("b.dcm", 11, "1.2.840.10008.1.2.1")]
            assert conn.execute("SELECT patient_name FROM patient").fetchall() == [("DOE^JANE",)]
        finally:
            conn.close()
        index.write_due(second)  # already written: not made ready again
        assert len(decoded) == 2
    finally:
        index.close()


def test_a_due_batch_is_written_instead_of_making_the_row_ready(tmp_path, monkeypatch):
    root, index = _fresh_index(tmp_path, monkeypatch, limit=2)
    try:
        index.submit(str(root / "a.dcm"), _raw(1), "", 10)
        queued = index.submit(str(root / "b.dcm"), _raw(2), "", 10)
        index.write_due(queued)
        assert _rows(root) == ["1.2.3.1", "1.2.3.2"]
    finally:
        index.close()


def test_an_undecodable_row_made_ready_is_still_reported_by_the_batch(tmp_path, monkeypatch):
    """Making it ready fails quietly (no report from the association thread); the batch reports it, alone."""
    root, index = _fresh_index(tmp_path, monkeypatch)
    failed: list[tuple[str, str]] = []
    try:
        bad = RawValues({0x00080018: b"1.2.3.8\x00", 0x00100010: None}, True)  # type: ignore[dict-item]
        queued = index.submit(str(root / "bad.dcm"), bad, "", 10,
                              lambda path, error: failed.append((path, threading.current_thread().name)))
        index.write_due(queued)
        assert failed == []
        good = index.submit(str(root / "good.dcm"), _raw(9), "", 10)
        index.write_due(good)
        assert index.sync(10)
        assert failed == [(str(root / "bad.dcm"), threading.current_thread().name)]  # the flushing thread
        assert _rows(root) == ["1.2.3.9"]
    finally:
        index.close()


def test_stores_make_their_rows_ready_in_the_association_thread(tmp_path, monkeypatch):
    """Over the in-memory wire, no batch due during the association: every row's values are decoded by the
    thread that answered its C-STORE, after the response, none by the batch at the release."""
    monkeypatch.setattr(index_module, "BATCH_DELAY", SLOW)
    monkeypatch.setattr(index_module, "BATCH_GAP", SLOW)
    decoded = _counting_decoder(monkeypatch)
    batches, sent = _store(tmp_path, monkeypatch, 3)
    assert len(decoded) == 3
    (serving,) = set(decoded)
    assert serving not in ("dcmnet-index", threading.current_thread().name)  # the SCP's, not the writer's
    assert [size for size, _thread in batches] == [3]
    assert _rows(tmp_path / "out") == sent


def test_rows_of_a_pipelining_peer_are_made_ready_by_their_batch(tmp_path, monkeypatch):
    """When the peer's next request is already received as a response leaves (store --async), the handler
    leaves the row to its batch, which makes rows ready for less (issue 13); none is lost."""
    from dcmnet_cli.dimse.connection import DIMSEConnection

    monkeypatch.setattr(index_module, "BATCH_DELAY", SLOW)
    monkeypatch.setattr(index_module, "BATCH_GAP", SLOW)
    monkeypatch.setattr(DIMSEConnection, "events_waiting", property(lambda self: True))
    decoded = _counting_decoder(monkeypatch)
    batches, sent = _store(tmp_path, monkeypatch, 3)
    assert [size for size, _thread in batches] == [3]
    assert decoded == [batches[0][1]] * 3  # by the thread that wrote the batch, not by the one serving
    assert _rows(tmp_path / "out") == sent
