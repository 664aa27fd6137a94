"""``dcmnet store`` streaming paths: data sets sent from the file with ``sendfile``, small files from their
one read, and files that change under it.

storescp runs with ``+B`` (bit-preserving) so the received data set bytes are compared with the source
byte for byte; the in-process scripted SCP records which instances arrived whole.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

from dcmnet_cli.services.dicomfiles import INLINE_MAX, read_meta
from dcmnet_cli.services.peer import Peer
from dcmnet_cli.services.scu.store import store
from dcmnet_cli.services.scu.store_inputs import collect

from helpers.procs import dcmnet_argv, base_env, run_dcmnet, wait_until
from store_helpers import assert_same, make_file, received, scripted_scp

HOST = "127.0.0.1"




@pytest.mark.parametrize("jobs", ["1", "2"])
def test_multi_megabyte_files_streamed_byte_identical_in_small_pdus(storescp, tmp_path: Path, jobs: str) -> None:
    """8 MiB and 2 MiB objects in 16 KiB PDUs (hundreds of header + sendfile pairs), plus a small one."""
    src = tmp_path / "src"
    files = [make_file(src, "big-8m", rows=512, columns=512, frames=16),
             make_file(src, "big-2m", "implicit", rows=512, columns=512, frames=4),
             make_file(src, "small", rows=16, columns=16)]
    assert read_meta(files[0]).dataset_length > 8_000_000 and read_meta(files[2]).size <= INLINE_MAX
    port, out = storescp("-pdu", "16384")
    code, stdout, err = run_dcmnet("store", "-j", jobs, HOST, str(port), *map(str, files), "--json", timeout=60)
    assert code == 0, err
    assert json.loads(stdout)["totals"]["bytes"] == sum(read_meta(f).dataset_length for f in files)
    by_uid = received(out)
    for path in files:
        assert_same(path, by_uid[read_meta(path).sop_instance_uid])


def test_file_shrinking_mid_send_exits_3_and_the_rest_is_sent(tmp_path: Path) -> None:
    """The big file is cut while it streams (rate-capped): it is reported (exit 3), never stored; the
    connection carrying the cut PDU is dropped and the next file goes on a new association."""
    first = make_file(tmp_path, "before", rows=16, columns=16)
    big = make_file(tmp_path, "shrinks", rows=512, columns=512, frames=32)  # 16 MiB
    last = make_file(tmp_path, "after", rows=16, columns=16)
    uids = {name: read_meta(path).sop_instance_uid for name, path in (("first", first), ("big", big), ("last", last))}
    size = big.stat().st_size
    with scripted_scp() as (port, scp):
        proc = subprocess.Popen(dcmnet_argv("store", HOST, str(port), str(first), str(big), str(last), "--json",
                                            "--max-rate", "16"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=base_env())
        try:
            # cut it once the big file is streaming (~1 MB of its 16 MiB out, ~1 s left at 16 MB/s): waited
            # for, not slept for, so a slow start on a loaded machine cannot cut it before it starts
            assert wait_until(lambda: scp.stored and scp.bytes_received > scp.stored[0][1] + (1 << 20), 20), \
                "the big file never started"
            assert len(scp.stored) == 1
            os.truncate(big, size // 2)
            stdout, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        stored = [uid for uid, _, _ in scp.stored]
    assert proc.returncode == 3, err
    summary = json.loads(stdout)
    assert [e["exit_code"] for e in summary["files"]] == [0, 3, 0]
    assert "shrank" in summary["files"][1]["error"] and "Traceback" not in err
    assert stored == [uids["first"], uids["last"]]
    assert summary["associations"] == 2


def test_file_shrunk_before_its_turn_is_reported_without_dropping_the_association(tmp_path: Path) -> None:
    files = [make_file(tmp_path, f"f{n}", rows=256, columns=256) for n in range(3)]  # 128 KiB: not kept in memory
    found, problems = collect([str(f) for f in files])
    assert not problems and all(f.content is None for f in found)
    os.truncate(files[1], 1000)
    with scripted_scp() as (port, scp):
        result = store(Peer(HOST, port, "ANY-SCP"), found)
        stored = [uid for uid, _, _ in scp.stored]
    assert [o.status for o in result.files] == [0, None, 0]
    assert "shrank" in str(result.files[1].error)
    assert len(result.associations) == 1
    assert stored == [found[0].sop_instance_uid, found[2].sop_instance_uid]


def test_same_file_by_two_paths_is_sent_once(tmp_path: Path) -> None:
    path = make_file(tmp_path / "a", "once", rows=16, columns=16)
    link = tmp_path / "link.dcm"
    link.symlink_to(path)
    hard = tmp_path / "hard.dcm"
    os.link(path, hard)
    found, problems = collect([str(path), str(link), str(hard), str(tmp_path)])
    assert not problems and [f.path for f in found] == [str(path)]
    assert found[0].content == path.read_bytes()


def test_kept_content_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dcmnet_cli.services.scu.store_inputs as store_module

    files = [make_file(tmp_path, f"k{n}", rows=16, columns=16) for n in range(5)]
    monkeypatch.setattr(store_module, "CONTENT_BUDGET", 2 * files[0].stat().st_size)
    found, _ = collect([str(tmp_path)])
    assert [f.content is not None for f in found] == [True, True, False, False, False]
    with scripted_scp() as (port, scp):
        result = store(Peer(HOST, port, "ANY-SCP"), found)
    assert [o.status for o in result.files] == [0] * 5 and len(scp.stored) == 5
    assert sorted(size for _, size, _ in scp.stored) == sorted(f.dataset_length for f in found)


def test_progress_counts_every_byte_once(tmp_path: Path) -> None:
    from dcmnet_cli.services.scu.store_results import Callbacks

    files = [make_file(tmp_path, "p-big", rows=512, columns=512, frames=6), make_file(tmp_path, "p-small", rows=8, columns=8)]
    found, _ = collect([str(f) for f in files])
    counted: list[int] = []
    lock = threading.Lock()

    def on_bytes(n: int) -> None:
        with lock:
            counted.append(n)

    with scripted_scp() as (port, _):
        result = store(Peer(HOST, port, "ANY-SCP"), found, callbacks=Callbacks(on_bytes=on_bytes))
    assert sum(counted) == result.bytes_sent == sum(f.dataset_length for f in found)
