"""``store``'s file regions read and gathered (issue 13): a batch of PDUs whose data set slices average at
most ``GATHER_REGION_MAX`` bytes goes out as one ``pread`` per run through the file and one ``sendmsg``;
larger slices (a peer taking big PDUs) go by ``sendfile``, or, to a peer on this machine, are copied
through one buffer a piece at a time.

Checked end to end: the data set arrives byte-identical at storescp (+B) and at ``dcmnet listen`` through
either path and in PDUs from tiny to large; the syscalls per batch (one ``pread``, no ``sendfile``) in
small PDUs; runs that break at another file or a jump; partial writes of a gathered batch; a sendfile
on a blocking socket with a kernel send timeout that gives up (never hangs); and a file that shrinks
between its last check and its read fails alone (an input error, exit 3), the others still stored.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import pytest

import dcmnet_cli.services.scu.store as store_module
from dcmnet_cli.cli.exitcodes import for_error
from dcmnet_cli.dimse.fragment import FileRegion, fragment_message
from dcmnet_cli.services.dicomfiles import read_meta
from dcmnet_cli.services.peer import Peer
from dcmnet_cli.services.scu.store import store
from dcmnet_cli.services.scu.store_inputs import collect
from dcmnet_cli.transport import channel as channel_module, writes

from helpers.procs import LOOPBACK, listen_server, run_dcmnet
from store_helpers import assert_same, cut_after_open, make_file, received, scripted_scp


def _ct_files(folder: Path, count: int = 3) -> list[Path]:
    """0.5 MB CT-like objects (the corpus of issue 13's CT row), one implicit VR to mix the contexts."""
    return [make_file(folder, f"ct{n}", "implicit" if n == 1 else "explicit", rows=512, columns=512)
            for n in range(count)]


class _Counts:
    """Counts of the file syscalls the transport makes in this process (os.pread / os.preadv / os.sendfile)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pread = self.preadv = self.sendfile = 0
        real_pread, real_preadv, real_sendfile = os.pread, os.preadv, os.sendfile
        lock = threading.Lock()

        def pread(fd: int, n: int, offset: int) -> bytes:
            with lock:
                self.pread += 1
            return real_pread(fd, n, offset)

        def preadv(fd: int, views: list, offset: int) -> int:
            with lock:
                self.preadv += 1
            return real_preadv(fd, views, offset)

        def sendfile(out: int, fd: int, offset: int, count: int) -> int:
            with lock:
                self.sendfile += 1
            return real_sendfile(out, fd, offset, count)

        monkeypatch.setattr(os, "pread", pread)
        monkeypatch.setattr(os, "preadv", preadv)
        monkeypatch.setattr(os, "sendfile", sendfile)


@pytest.mark.parametrize("pdu", ["8192", "16384", "131072"])
def test_ct_objects_arrive_byte_identical_at_storescp(storescp, tmp_path: Path, pdu: str) -> None:
    files = _ct_files(tmp_path / "src")
    port, out = storescp("-pdu", pdu)
    code, stdout, err = run_dcmnet("store", "--json", LOOPBACK, str(port), *map(str, files), timeout=60)
    assert code == 0, err
    assert json.loads(stdout)["totals"]["bytes"] == sum(read_meta(f).dataset_length for f in files)
    by_uid = received(out)
    for path in files:
        assert_same(path, by_uid[read_meta(path).sop_instance_uid])


@pytest.mark.parametrize("pdu, way", [("1024", "gathered"), ("131072", "gathered"), ("1048576", "copied"),
                                     ("1048576", "sendfile")])
def test_every_path_arrives_byte_identical_at_listen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pdu: str,
                                                     way: str) -> None:
    """A tiny max PDU (1 KiB: ~500 PDUs per object, several batches), the default, and 1 MiB PDUs (slices
    above GATHER_REGION_MAX: copied through one buffer to a peer on this machine, ``sendfile`` to one taken
    for another); the store runs in this process so the syscalls can be counted. No read ahead (which
    would send all but the first from memory): every file goes as a region."""
    monkeypatch.setattr(store_module, "READ_AHEAD_MAX", 0)
    if way == "sendfile":
        monkeypatch.setattr(channel_module, "same_host", lambda sock: False)
    files = _ct_files(tmp_path / "src")
    found, problems = collect([str(f) for f in files])
    assert not problems and all(f.content is None for f in found)
    counts = _Counts(monkeypatch)
    with listen_server("-od", str(tmp_path / "out"), "--no-fsync", "-pdu", pdu) as server:
        result = store(Peer(LOOPBACK, server.port, "ANY-SCP"), found)
    assert [o.status for o in result.files] == [0, 0, 0], [str(o.error) for o in result.files]
    by_uid = received(tmp_path / "out")
    for path in files:
        assert_same(path, by_uid[read_meta(path).sop_instance_uid])
    if way == "gathered":
        assert counts.pread >= len(files) and counts.sendfile == counts.preadv == 0
    elif way == "copied":  # 0.5 MB each: one piece per file
        assert counts.preadv == len(files) and counts.sendfile == counts.pread == 0
    else:
        assert counts.sendfile >= len(files) and counts.pread == counts.preadv == 0


def test_small_pdus_of_one_file_go_in_one_pread_and_one_sendmsg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 0.5 MB data set in 16 KiB PDUs: 32 PDU headers and 32 file slices, one read and one write
    (not 32 sendmsg + 32 sendfile), and the same bytes as the message fragmented from memory."""
    data = bytes((i * 7 + (i >> 9)) & 0xFF for i in range(524_300))
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    command = b"\x01" * 40
    counts = _Counts(monkeypatch)
    sends: list[int] = []
    fd = os.open(path, os.O_RDONLY)
    try:
        buffers = [piece for pdu in fragment_message(1, command, FileRegion(fd, 0, len(data), str(path)), 16384)
                   for piece in pdu]
        assert sum(1 for b in buffers if type(b) is FileRegion) == 33
        expected = b"".join(bytes(b) for pdu in fragment_message(1, command, data, 16384) for b in pdu)
        a, b = socket.socketpair()
        with a, b:
            got = bytearray()
            reader = threading.Thread(target=lambda: _read_all(b, got, len(expected)))
            reader.start()

            class Counting(socket.socket):
                def sendmsg(self, *args, **kwargs):  # type: ignore[no-untyped-def,override]
                    sent = super().sendmsg(*args, **kwargs)
                    sends.append(sent)
                    return sent

            counting = Counting(a.family, a.type, fileno=os.dup(a.fileno()))
            with counting:
                assert writes.send_all(counting, buffers, use_sendfile=True) == len(expected)
            reader.join(10)
    finally:
        os.close(fd)
    assert bytes(got) == expected
    assert counts.pread == 1 and counts.sendfile == 0
    assert len(sends) <= 3, sends  # one, unless the socket buffer took it in parts


def _read_all(sock: socket.socket, into: bytearray, size: int) -> None:
    while len(into) < size:
        chunk = sock.recv(1 << 16)
        if not chunk:
            return
        into.extend(chunk)


def test_file_shrinking_after_its_check_fails_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file is cut right after open_dataset checked its size (a writer racing the store): its read
    comes up short, it fails with "shrank" and no status, never stored; the association carrying its
    command is dropped and the files after it go on a new one. (With the read ahead on, the cut is seen by
    the read ahead and the file fails before its command is sent: tests/test_store_read_ahead.py.)"""
    monkeypatch.setattr(store_module, "READ_AHEAD_MAX", 0)
    files = _ct_files(tmp_path, 4)
    found, problems = collect([str(f) for f in files])
    assert not problems
    cut_after_open(monkeypatch, files[1])
    with scripted_scp() as (port, scp):
        result = store(Peer(LOOPBACK, port, "ANY-SCP"), found)
        stored = [uid for uid, _, _ in scp.stored]
    assert [o.status for o in result.files] == [0, None, 0, 0]
    assert "shrank" in str(result.files[1].error) and for_error(result.files[1].error) == 3
    assert stored == [found[0].sop_instance_uid, found[2].sop_instance_uid, found[3].sop_instance_uid]
    assert len(result.associations) == 2


@pytest.mark.parametrize("way", ["copied", "sendfile"])
def test_file_shrinking_mid_send_to_listen_leaves_nothing_of_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                way: str) -> None:
    """The same race against the real ``listen`` taking 1 MiB PDUs, so the file goes as large regions
    (copied to this machine's peer, or by ``sendfile`` to one taken for remote) and half of it is already
    on the wire when the read comes up short: the link is dropped mid-object. listen keeps nothing of it
    (no file, no temporary one), the others arrive byte-identical, and store says which file and why."""
    monkeypatch.setattr(store_module, "READ_AHEAD_MAX", 0)
    if way == "sendfile":
        monkeypatch.setattr(channel_module, "same_host", lambda sock: False)
    files = _ct_files(tmp_path / "src", 4)
    found, problems = collect([str(f) for f in files])
    assert not problems
    cut_after_open(monkeypatch, files[1])
    out = tmp_path / "out"
    with listen_server("-od", str(out), "--no-fsync", "-pdu", "1048576") as server:
        result = store(Peer(LOOPBACK, server.port, "ANY-SCP"), found)
    assert [o.status for o in result.files] == [0, None, 0, 0]
    assert "shrank" in str(result.files[1].error) and for_error(result.files[1].error) == 3
    by_uid = received(out)
    assert sorted(by_uid) == sorted(f.sop_instance_uid for n, f in enumerate(found) if n != 1)
    for n, path in enumerate(files):
        if n != 1:
            assert_same(path, by_uid[found[n].sop_instance_uid])
    assert sorted(p.name for p in out.rglob("*") if p.is_file() and not p.name.startswith(".dcmnet-index")) == \
        sorted(p.name for p in by_uid.values())



def test_gathered_runs_break_at_another_file_or_a_jump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small regions of two files, one of them skipping ahead: each run through one file is one read,
    and a region that does not continue its run starts a new one (never bytes from the wrong place)."""
    first, second = bytes(range(256)) * 40, bytes(reversed(range(256))) * 40
    (tmp_path / "a").write_bytes(first)
    (tmp_path / "b").write_bytes(second)
    counts = _Counts(monkeypatch)
    fa, fb = os.open(tmp_path / "a", os.O_RDONLY), os.open(tmp_path / "b", os.O_RDONLY)
    try:
        buffers = [b"<", FileRegion(fa, 0, 1000), b"|", FileRegion(fa, 1000, 500), FileRegion(fa, 3000, 700), b"|",
                   FileRegion(fb, 3700, 900), FileRegion(fa, 3700, 10), b">"]
        expected = b"<" + first[:1000] + b"|" + first[1000:1500] + first[3000:3700] + b"|" + second[3700:4600] \
            + first[3700:3710] + b">"
        a, b = socket.socketpair()
        with a, b:
            got = bytearray()
            reader = threading.Thread(target=lambda: _read_all(b, got, len(expected)))
            reader.start()
            assert writes.send_all(a, buffers, use_sendfile=True) == len(expected)
            reader.join(10)
    finally:
        os.close(fa)
        os.close(fb)
    assert bytes(got) == expected
    assert counts.pread == 4 and counts.sendfile == 0


@pytest.mark.parametrize("timeout", [None, 5.0])
def test_gathered_batch_survives_partial_writes(tmp_path: Path, timeout: float | None) -> None:
    """A 4 KiB send buffer and a reader that naps: the one sendmsg of a gathered batch takes a part, the
    rest follows from where it stopped (mid-buffer), byte for byte."""
    data = bytes((i * 13 + (i >> 10)) & 0xFF for i in range(100_001))
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        buffers = [piece for pdu in fragment_message(1, b"\x02" * 40, FileRegion(fd, 0, len(data)), 16384)
                   for piece in pdu]
        expected = b"".join(bytes(b) for pdu in fragment_message(1, b"\x02" * 40, data, 16384) for b in pdu)
        with socket.socket() as listener:
            listener.bind((LOOPBACK, 0))
            listener.listen(1)
            sender = socket.socket()
            sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            sender.connect(listener.getsockname())
            peer, _ = listener.accept()
        got = bytearray()

        def read() -> None:
            with peer:
                peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                while len(got) < len(expected):
                    chunk = peer.recv(8192)
                    if not chunk:
                        return
                    got.extend(chunk)
                    threading.Event().wait(0.0005)

        reader = threading.Thread(target=read)
        reader.start()
        with sender:
            sender.settimeout(timeout)
            assert writes.send_all(sender, buffers) == len(expected)
        reader.join(20)
    finally:
        os.close(fd)
    assert bytes(got) == expected


def test_sendfile_on_a_blocking_socket_with_a_kernel_send_timeout_gives_up(tmp_path: Path) -> None:
    """A blocking socket whose deadline is the kernel's SO_SNDTIMEO (the driver's plain-socket mode) and a
    peer that never reads: large regions go by sendfile, whose waits are bounded by ``write_timeout``
    (TimeoutError, never a hang)."""
    import struct
    import time

    from helpers.socket_checks import reader_that_never_reads

    path = tmp_path / "big.bin"
    path.write_bytes(bytes(8 << 20))
    fd = os.open(path, os.O_RDONLY)
    try:
        with reader_that_never_reads() as sender:
            sender.settimeout(None)
            sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("@ll", 0, 200_000))
            started = time.monotonic()
            with pytest.raises((TimeoutError, BlockingIOError)):
                writes.send_all(sender, [b"hdr", FileRegion(fd, 0, 8 << 20, str(path))], write_timeout=0.2)
            assert time.monotonic() - started < 5
    finally:
        os.close(fd)
