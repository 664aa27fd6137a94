"""The index in PostgreSQL (``listen --index postgresql://…``, issue 14): the backend's rows, duplicates
decided by the database, concurrent writers, the reconciler; two nodes behind HAProxy sharing one
folder and one PostgreSQL, queried through either node.

A throwaway cluster (tests/helpers/postgres.py) on a free 127.0.0.1 port, stopped even on failure;
missing PostgreSQL, psycopg or HAProxy: skipped, failed when CI=true.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from helpers.postgres import new_database, postgres_cluster
from helpers.procs import LOOPBACK, run_dcmnet
from store_helpers import make_dataset, make_file, uid
from test_cluster import AET, Cluster, _finish, _senders, _stored, require_haproxy


@pytest.fixture(scope="module")
def postgres():
    with postgres_cluster() as url:
        yield url


@pytest.fixture
def database(postgres, request):
    return new_database(postgres, "t_" + request.node.name.lower()[:40])


def _index(url: str, root: Path, node: str):
    from dcmnet_cli.services.archive import postgres as backend

    backend.set_node(node)
    return backend.PostgresIndex.open(url, str(root))


def test_rows_duplicates_concurrent_writers_and_queries(database, tmp_path):
    import psycopg
    from pydicom import Dataset

    from dcmnet_cli.services.archive.extraction import dataset_attributes

    root = tmp_path / "shared"
    files = [make_file(root, f"i{n}") for n in range(40)]
    nodes = [_index(database, root, "node-a"), _index(database, root, "node-b")]
    errors: list[BaseException] = []

    def store(index, part):  # two nodes indexing objects of one study at the same time
        try:
            for path in part:
                ds = make_dataset(path.stem)
                index.add(str(path), dataset_attributes(ds), "1.2.840.10008.1.2.1")
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=store, args=(nodes[n], files[n::2])) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    nodes[1].add(str(files[0]), dataset_attributes(make_dataset("i0")), "1.2.840.10008.1.2.1")  # again: one row
    assert nodes[0].counts() == {"PATIENT": 1, "STUDY": 1, "SERIES": 1, "IMAGE": 40}
    with psycopg.connect(database) as conn:
        rows = conn.execute("SELECT path, node_id, size, checksum FROM instance ORDER BY path").fetchall()
    assert [r[0] for r in rows] == sorted(p.name for p in files)  # relative to the shared root
    assert {r[1] for r in rows} == {"node-a", "node-b"}
    assert all(r[2] == (root / r[0]).stat().st_size and len(r[3]) == 64 for r in rows)
    found = nodes[1].instances("study", "STUDY", {"StudyInstanceUID": uid("study")})
    assert len(found) == 40 and all(Path(f.path).is_file() for f in found)
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID = uid("study")
    query.SeriesInstanceUID = ""
    query.SOPInstanceUID = ""
    query.PatientName = "Test*"
    assert len(list(nodes[0].search("study", "IMAGE", query))) == 40
    for index in nodes:
        index.close()


def test_reconcile_indexes_files_without_rows_and_keeps_rows_of_files_present(database, tmp_path):
    root = tmp_path / "shared"
    first = make_file(root, "first")
    index = _index(database, root, "node-a")
    assert index.reconcile() == (1, 0)
    extra = make_file(root, "later")  # e.g. a node killed between its rename and its commit
    assert index.reconcile() == (1, 0)
    index.remove_relative([first.name])  # its file is there: another node's row, never removed
    assert index.counts()["IMAGE"] == 2
    os.unlink(extra)
    assert index.reconcile() == (0, 1) and index.counts()["IMAGE"] == 1
    index.close()


def test_bad_url_is_a_clear_error(tmp_path):
    code, out, err = run_dcmnet("listen", "--bind", LOOPBACK, "-od", str(tmp_path),
                                "--index", "postgresql://nobody:secret@127.0.0.1:1/none", "0")
    assert code == 3 and "cannot use index" in err and "Traceback" not in err and "secret" not in err


def test_two_nodes_one_postgresql_queryable_from_both(database, tmp_path):
    haproxy = require_haproxy()
    with ExitStack() as stack:
        cluster = Cluster(stack, tmp_path, haproxy, node_args=("--index", database))
        cluster.start_nodes("a", "b")
        cluster.start_haproxy()
        folders = _senders(tmp_path, 4, 10)
        _finish([cluster.send(folder) for folder in folders])
        assert len(_stored(cluster.shared)) == 40
        for node in ("a", "b"):
            code, out, err = run_dcmnet("find", "-aec", AET, LOOPBACK, str(cluster.direct[node]), "-S", "-L", "IMAGE",
                                        "--relational",  # no SeriesInstanceUID: hierarchical would be 0xC000
                                        "-k", f"StudyInstanceUID={uid('study')}", "-k", "SOPInstanceUID",
                                        "--format", "tsv")
            assert code == 0, err
            assert len(out.splitlines()) - 1 == 40, out  # header + every instance, whichever node stored it
        stored_by = {e["node"] for n in ("a", "b") for e in cluster.events(n) if e["event"] == "stored"}
        assert stored_by == {"node-a", "node-b"}


def test_kill9_with_postgresql_index_and_folder_agree(database, tmp_path):
    """A node killed mid-run and restarted: senders finish, every stored file has exactly one row (the
    reconciler indexes a file renamed but not yet committed), no row without its file."""
    import psycopg

    haproxy = require_haproxy()
    with ExitStack() as stack:
        cluster = Cluster(stack, tmp_path, haproxy, node_args=("--index", database))
        cluster.start_nodes("a", "b")
        cluster.start_haproxy()
        folders = _senders(tmp_path, 4, 30, side=64)
        procs = [cluster.send(folder, "--max-rate", "0.1") for folder in folders]
        node_a = cluster.nodes["a"]
        deadline = time.monotonic() + 10
        while '"stored"' not in node_a.stdout() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(node_a.pid, signal.SIGKILL)
        node_a.proc.wait(5)
        cluster.start_node("a")
        assert "retrying" in _finish(procs, 45.0)
        on_disk = {p.name for p in _stored(cluster.shared)}
        with psycopg.connect(database) as conn:
            rows = [r[0] for r in conn.execute("SELECT path FROM instance")]
        assert len(on_disk) == 120 and sorted(rows) == sorted(on_disk)


def test_row_committed_before_success_and_no_success_without_it(database, tmp_path):
    import psycopg

    from helpers.procs import listen_server

    source = tmp_path / "in"
    first, second = make_file(source, "first"), make_file(source, "second")
    with listen_server("-aet", AET, "-od", str(tmp_path / "shared"), "--index", database, "--node-id", "solo") as node:
        code, out, err = run_dcmnet("store", "-aec", AET, LOOPBACK, str(node.port), str(first))
        assert code == 0, err
        with psycopg.connect(database, autocommit=True) as conn:  # Success came after the commit
            assert conn.execute("SELECT node_id FROM instance").fetchall() == [("solo",)]
            conn.execute("ALTER TABLE instance RENAME TO instance_away")
            try:
                code, out, err = run_dcmnet("store", "-aec", AET, LOOPBACK, str(node.port), str(second))
            finally:
                conn.execute("ALTER TABLE instance_away RENAME TO instance")
        assert code != 0 and "0xA700" in out + err, (code, out, err)
