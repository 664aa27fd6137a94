"""``store`` reads the next file's data set while the previous request's response is awaited (one request at
a time; services/scu/store.py ``_ReadAhead``): what arrives is still byte for byte what is on disk, whatever
the size (kept from the meta read, read ahead, or streamed as a file region), and a file that cannot be
read ahead is read again at its turn, which reports why it cannot be sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcmnet_cli.services.peer import Peer
from dcmnet_cli.services.scu import store as store_module
from dcmnet_cli.services.scu import store_inputs
from dcmnet_cli.services.scu.store import store
from dcmnet_cli.services.scu.store_inputs import collect
from store_helpers import assert_same, make_file, received

HOST = "127.0.0.1"


def _counted_takes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths sent from the read-ahead buffer."""
    taken: list[str] = []
    take = store_module._ReadAhead.take

    def counted(self, file):  # type: ignore[no-untyped-def]
        data = take(self, file)
        if data is not None:
            taken.append(file.path)
        return data

    monkeypatch.setattr(store_module._ReadAhead, "take", counted)
    return taken


def test_every_size_arrives_byte_identical(tmp_path: Path, storescp, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small (one pread), medium (above the inline size) and large (above READ_AHEAD_MAX: streamed) files,
    interleaved, none kept from the meta read: storescp (bit-preserving) writes exactly the data sets on disk;
    every file but the first and the large ones went from the read-ahead buffer."""
    monkeypatch.setattr(store_inputs, "CONTENT_BUDGET", 0)
    monkeypatch.setattr(store_module, "READ_AHEAD_MAX", 300_000)
    sizes = [(8, 8), (256, 256), (512, 512), (16, 16), (256, 320), (512, 512), (8, 8)]  # 16-bit: 128 KiB, 512 KiB, …
    sources = [make_file(tmp_path / "in", f"ahead-{n}", rows=rows, columns=columns) for n, (rows, columns) in enumerate(sizes)]
    taken = _counted_takes(monkeypatch)
    port, out = storescp()
    found, problems = collect([str(p) for p in sources])
    assert not problems and all(f.content is None for f in found)
    result = store(Peer(HOST, port, "ANY-SCP"), found)
    assert [o.status for o in result.files] == [0] * len(sources)
    copies = received(out)
    for source, file in zip(sources, found):
        assert_same(source, copies[file.sop_instance_uid])
    large = {str(p) for p, (rows, _c) in zip(sources, sizes) if rows == 512}
    assert taken == [str(p) for p in sources[1:] if str(p) not in large]


def test_a_file_that_shrank_is_reported_alone(tmp_path: Path, storescp, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file cut short after its meta was read fails the read ahead quietly; its turn reads it again and
    reports it (exit 3's input error), and the files around it still go."""
    monkeypatch.setattr(store_inputs, "CONTENT_BUDGET", 0)
    sources = [make_file(tmp_path / "in", f"cut-{n}", rows=64, columns=64) for n in range(4)]
    found, problems = collect([str(p) for p in sources])
    assert not problems
    with open(sources[1], "r+b") as f:
        f.truncate(sources[1].stat().st_size - 100)
    taken = _counted_takes(monkeypatch)
    port, out = storescp()
    result = store(Peer(HOST, port, "ANY-SCP"), found)
    by_path = {o.path: o for o in result.files}
    assert by_path[str(sources[1])].error is not None and "shrank" in str(by_path[str(sources[1])].error)
    assert [by_path[str(p)].status for p in (sources[0], sources[2], sources[3])] == [0, 0, 0]
    assert set(received(out)) == {found[n].sop_instance_uid for n in (0, 2, 3)}
    # the cut file failed its read ahead and was read again at its turn; the next one then went at once
    # (nothing to wait for), and the one after it was read ahead while that one's response was awaited
    assert taken == [str(sources[3])]


def test_a_file_cut_while_read_ahead_fails_before_its_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer cuts the file right after the read ahead checked its size: the short read is dropped, the
    file's turn reads it again and fails it with "shrank" before anything of it is sent, so the
    association carries on (one association, where a cut in the middle of a streamed file drops it)."""
    from dcmnet_cli.cli.exitcodes import for_error
    from store_helpers import cut_after_open, scripted_scp

    monkeypatch.setattr(store_inputs, "CONTENT_BUDGET", 0)
    sources = [make_file(tmp_path / "in", f"race-{n}", rows=256, columns=256) for n in range(4)]
    found, problems = collect([str(p) for p in sources])
    assert not problems
    cut_after_open(monkeypatch, sources[1])
    with scripted_scp() as (port, scp):
        result = store(Peer(HOST, port, "ANY-SCP"), found)
        stored = [uid for uid, _, _ in scp.stored]
    assert [o.status for o in result.files] == [0, None, 0, 0]
    assert "shrank" in str(result.files[1].error) and for_error(result.files[1].error) == 3
    assert stored == [found[n].sop_instance_uid for n in (0, 2, 3)]
    assert len(result.associations) == 1
