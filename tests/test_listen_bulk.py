"""listen's bulk receive (transport/bulk.py): the Pixel Data of an object sent in large PDUs goes socket →
pipe → file by ``splice``. What a sender and a user see must not change: every object arrives byte for
byte, whatever the PDU sizes, the cut of the reads and the pauses; the object after a big one is read
in step; a write that fails mid-object fails that object only (0xA700), the association goes on; a
sender that vanishes mid-object leaves no file. The in-process node counts the splices, so a test
fails if the bulk path silently stops being taken (it would still store correctly, just slower).
"""

from __future__ import annotations

import os
import resource
import socket
import struct
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from dcmnet_cli.dimse.commandset import c_store_rq
from dcmnet_cli.services.dicomfiles import read_meta
from dcmnet_cli.services.scp.entity import ALL_UNCOMPRESSED, ApplicationEntity
from dcmnet_cli.services.scp.storage import StorageConfig, StorageSCP
from dcmnet_cli.services.scp.store_handler import storage_handlers
from dcmnet_cli.transport import bulk
from dcmnet_cli.ul.items import PresentationContextRQ
from dcmnet_cli.ul.negotiation import AcceptorPolicy
from helpers.bounded import bounded
from helpers.procs import (LOOPBACK, base_env, dcmnet_argv, free_port, listen_server, run_dcmnet, serving, stop_process,
                           wait_port)
from helpers.socket_checks import connected_pair
from helpers.rawdicom import associate, make_rq, read_command, release, send_chunked
from store_helpers import assert_same, make_file, received

BIG_PDU = 4 << 20
CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
SUCCESS, OUT_OF_RESOURCES = 0x0000, 0xA700

pytestmark = pytest.mark.skipif(not bulk.AVAILABLE, reason="os.splice is Linux's")


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bulk-sources")
    return {
        "big": make_file(folder, "bulk-big", rows=512, columns=512, frames=6),       # 3 MiB of pixels
        "odd": make_file(folder, "bulk-odd", rows=511, columns=509, frames=5, bits=8),  # an odd length, padded
        "small": make_file(folder, "bulk-small"),
    }


OUTCOMES: list = []
"""The in-process node's per-object events (what ``listen --json`` prints): their byte counts must hold the
spliced bytes too."""


class Counting(bulk.Splicer):
    moved = 0

    def move(self, source: int, target: int, count: int):  # type: ignore[no-untyped-def]
        result = super().move(source, target, count)
        Counting.moved += result[0]
        return result


@contextmanager
def storage_node(out: Path, monkeypatch, idle: float = 10.0) -> Iterator[int]:  # type: ignore[no-untyped-def]
    """The Storage SCP of ``listen -od OUT`` in this process (4 MiB PDUs, ``idle`` seconds of silence allowed),
    its splices counted."""
    monkeypatch.setattr("dcmnet_cli.transport.channel.Splicer", Counting)
    Counting.moved = 0
    OUTCOMES.clear()
    scp = StorageSCP(StorageConfig(str(out), fsync=False),
                     on_event=lambda event: OUTCOMES.append(event) if type(event).__name__ == "ObjectOutcome" else None)
    scp.prepare()
    policy = AcceptorPolicy(ae_title="BULK", contexts=lambda uid: ALL_UNCOMPRESSED, max_pdu=BIG_PDU)
    entity = ApplicationEntity(policy, handlers=storage_handlers(scp), idle_timeout=idle)
    try:
        with serving(entity, "bulk-node", network_timeout=idle, max_receive=BIG_PDU) as port:
            yield port
    finally:
        scp.close(1.0)


def message(path: Path, message_id: int, sizes: list[int]) -> bytes:
    """A C-STORE-RQ for ``path``: the command in one PDU, the data set in P-DATA-TF of ``sizes`` (cycled)."""
    meta = read_meta(path)
    data = path.read_bytes()[meta.offset:]
    command = c_store_rq(message_id, meta.sop_class_uid, meta.sop_instance_uid).encode()
    out = [pdu(0x03, command)]
    at, turn = 0, 0
    while at < len(data):
        size = min(sizes[turn % len(sizes)], len(data) - at)
        turn += 1
        out.append(pdu(0x02 if at + size == len(data) else 0x00, data[at:at + size]))
        at += size
    return b"".join(out)


def pdu(control: int, data: bytes) -> bytes:
    return struct.pack(">BBIIBB", 0x04, 0, len(data) + 6, len(data) + 2, 1, control) + data


def raw_association(port: int) -> socket.socket:
    sock, _ = associate(port, make_rq(called="BULK", contexts=(PresentationContextRQ(1, CT, (EXPLICIT_LE,)),),
                                      max_pdu=BIG_PDU))
    return sock


def store_raw(sock: socket.socket, path: Path, message_id: int, sizes: list[int], chunk: int | None = None,
              pause: float = 0.0) -> int:
    send_chunked(sock, message(path, message_id, sizes), chunk, pause)
    answer = read_command(sock)
    assert answer.message_id_being_responded_to == message_id
    return answer.status


def files(out: Path) -> dict[str, Path]:
    return received(out) if out.exists() else {}


@pytest.mark.parametrize(("sizes", "chunk", "pause", "spliced"), [
    ([BIG_PDU - 12], None, 0.0, 0.4),               # the largest PDUs the node takes, sent as fast as possible
    ([1 << 20], None, 0.0, 0.4),
    ([300_000, 262_146, 1_000_002], None, 0.0, 0.2),  # around the streaming threshold, uneven: some go by splice
    ([1 << 20], 77_777, 0.001, 0.2),                 # dribbled: splices end early, odd byte counts
])
def test_objects_in_large_pdus_arrive_byte_for_byte(sources, tmp_path: Path, monkeypatch, sizes, chunk, pause,
                                                    spliced) -> None:
    out = tmp_path / "out"
    with storage_node(out, monkeypatch) as port:
        sock = raw_association(port)
        for number, name in enumerate(("big", "small", "odd", "big"), 1):
            assert store_raw(sock, sources[name], number, sizes, chunk, pause) == SUCCESS
        release(sock)
    got = files(out)
    for name in ("big", "small", "odd"):
        assert_same(sources[name], got[read_meta(sources[name]).sop_instance_uid])
    assert [(o.event, o.bytes) for o in OUTCOMES] == [("stored", Path(o.path).stat().st_size) for o in OUTCOMES]
    assert Counting.moved > 2 * (3 << 20) * spliced  # a share of both big objects' pixels went by splice (how much depends on how the reads fell)


@pytest.mark.parametrize("size", [1 << 20, BIG_PDU - 12])  # the padding in a small last PDU, or in the spliced one
def test_elements_after_the_pixel_data_are_walked_and_kept(sources, tmp_path: Path, monkeypatch, size) -> None:
    """The splice stops where the walk's skippable run ends (the end of Pixel Data's value): what follows (here
    Data Set Trailing Padding) is read and checked the usual way, and the file is whole."""
    import pydicom

    ds = pydicom.dcmread(sources["big"])
    ds.add_new(0xFFFCFFFC, "OB", b"\0" * 3000)
    padded = tmp_path / "padded.dcm"
    ds.save_as(padded, enforce_file_format=True)
    out = tmp_path / "out"
    with storage_node(out, monkeypatch) as port:
        sock = raw_association(port)
        assert store_raw(sock, padded, 1, [size]) == SUCCESS
        release(sock)
    assert Counting.moved > 0
    stored = files(out)[read_meta(padded).sop_instance_uid]
    assert stored.read_bytes()[-3000:] == b"\0" * 3000 and pydicom.dcmread(stored)[0xFFFCFFFC].value == b"\0" * 3000
    assert_same(padded, stored)


def test_a_pixel_data_shorter_than_it_claims_is_c000_and_nothing_is_kept(sources, tmp_path: Path, monkeypatch) -> None:
    """A sender that ends the data set (the PDV's "last" bit) 64 KB into a Pixel Data that claims 3 MiB: the
    bytes spliced so far do not make it whole; 0xC000 with the walk's reason, no file, the association goes on."""
    meta = read_meta(sources["big"])
    data = sources["big"].read_bytes()[meta.offset:-65_536]
    command = c_store_rq(1, meta.sop_class_uid, meta.sop_instance_uid).encode()
    pdus = [pdu(0x03, command)] + [pdu(0x00, data[at:at + (1 << 20)]) for at in range(0, len(data) - (1 << 20), 1 << 20)]
    last_at = (len(pdus) - 1) * (1 << 20)
    pdus.append(pdu(0x02, data[last_at:]))
    out = tmp_path / "out"
    with storage_node(out, monkeypatch) as port:
        sock = raw_association(port)
        send_chunked(sock, b"".join(pdus))
        answer = read_command(sock)
        assert answer.status == 0xC000 and answer.error_comment, answer
        assert store_raw(sock, sources["small"], 2, [1 << 20]) == SUCCESS
        release(sock)
    assert Counting.moved > 0
    assert list(files(out)) == [read_meta(sources["small"]).sop_instance_uid]


def test_small_pdus_never_take_the_bulk_path(sources, tmp_path: Path, monkeypatch) -> None:
    """PDUs up to 256 KiB are read as before (a header every 128 KiB makes splice slower than a copy)."""
    out = tmp_path / "out"
    with storage_node(out, monkeypatch) as port:
        sock = raw_association(port)
        assert store_raw(sock, sources["big"], 1, [128 << 10]) == SUCCESS
        assert store_raw(sock, sources["big"], 2, [256 << 10]) == SUCCESS
        release(sock)
    assert_same(sources["big"], files(out)[read_meta(sources["big"]).sop_instance_uid])
    assert Counting.moved == 0


def test_a_sender_gone_mid_object_leaves_no_file_and_the_node_serves_on(sources, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "out"
    with storage_node(out, monkeypatch) as port:
        sock = raw_association(port)
        data = message(sources["big"], 1, [1 << 20])
        sock.sendall(data[: len(data) * 2 // 3])
        deadline = time.monotonic() + 10
        while Counting.moved == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert Counting.moved > 0, "the bulk path was not taken"
        sock.close()
        sock = raw_association(port)  # the node is still there, and stores the next object whole
        assert store_raw(sock, sources["small"], 1, [1 << 20]) == SUCCESS
        release(sock)
    assert list(files(out)) == [read_meta(sources["small"]).sop_instance_uid]
    assert [p for p in out.iterdir() if not p.name.startswith(".dcmnet-index")] == [
        files(out)[read_meta(sources["small"]).sop_instance_uid]]  # no temporary left either


def test_a_sender_that_stalls_mid_splice_is_aborted_after_the_idle_timeout(sources, tmp_path: Path, monkeypatch) -> None:
    """The splice waits on the same deadline as a read: a peer that stops inside the Pixel Data is aborted
    once the idle timeout passes (not held for ever), and nothing is kept."""
    out = tmp_path / "out"
    with storage_node(out, monkeypatch, idle=1.0) as port:
        sock = raw_association(port)
        data = message(sources["big"], 1, [BIG_PDU - 12])
        sock.sendall(data[: len(data) // 2])
        deadline = time.monotonic() + 10
        while Counting.moved == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert Counting.moved > 0, "the bulk path was not taken"
        started = time.monotonic()
        sock.settimeout(10)
        try:
            while sock.recv(65536):  # an A-ABORT, then the close
                pass
        except ConnectionResetError:
            pass
        waited = time.monotonic() - started
        sock.close()
        assert waited < 8, waited  # the 1 s idle timeout, with room for a loaded machine; never the 10 s read
    assert files(out) == {} and [p for p in out.iterdir() if not p.name.startswith(".dcmnet-index")] == []


def test_a_spliced_write_that_fails_once_fails_that_object_only(sources, tmp_path: Path, monkeypatch) -> None:
    """The disk refuses one spliced run (ENOSPC) and then recovers: that object is 0xA700 with the cause
    and not kept (never a file with a hole answered Success); the objects after it are stored whole."""
    real, failures = bulk._to_file, []

    def once(read_end: int, target: int, count: int):  # type: ignore[no-untyped-def]
        if failures:
            return real(read_end, target, count)
        failures.append(count)
        os.read(read_end, count)  # what the real one does with bytes it could not write
        return OSError(28, "No space left on device")

    monkeypatch.setattr(bulk, "_to_file", once)
    out = tmp_path / "out"
    with storage_node(out, monkeypatch) as port:
        sock = raw_association(port)
        send_chunked(sock, message(sources["big"], 1, [1 << 20]))
        answer = read_command(sock)
        assert (answer.status, answer.error_comment) == (OUT_OF_RESOURCES, "write failed: No space left on device")
        assert store_raw(sock, sources["small"], 2, [1 << 20]) == SUCCESS
        assert store_raw(sock, sources["big"], 3, [1 << 20]) == SUCCESS
        release(sock)
    assert failures
    meta = read_meta(sources["big"])  # events come after each answer: read once the node has stopped
    assert (OUTCOMES[0].event, OUTCOMES[0].bytes) == ("store-failed", meta.size - meta.offset)  # all it received
    got = files(out)
    assert sorted(got) == sorted(read_meta(sources[name]).sop_instance_uid for name in ("small", "big"))
    assert_same(sources["big"], got[read_meta(sources["big"]).sop_instance_uid])


def test_a_write_failing_mid_splice_fails_that_object_only(sources, tmp_path: Path) -> None:
    """A file-size limit (as a full disk would) hits inside the spliced Pixel Data: 0xA700 with the cause,
    nothing kept; the next object in the same association is stored. ``listen`` as a user runs it."""
    out = tmp_path / "out"
    limit = 2 << 20
    argv = dcmnet_argv("-v", "listen", "--bind", LOOPBACK, "-od", str(out), "--no-fsync", "--max-pdu", str(BIG_PDU))

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    port = free_port()
    server = subprocess.Popen([*argv, str(port)], env=base_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, preexec_fn=limited)
    try:
        wait_port(port, server)
        sock, _ = associate(port, make_rq(contexts=(PresentationContextRQ(1, CT, (EXPLICIT_LE,)),), max_pdu=BIG_PDU))
        send_chunked(sock, message(sources["big"], 1, [1 << 20]))
        answer = read_command(sock)
        assert answer.status == OUT_OF_RESOURCES and "write failed" in (answer.error_comment or ""), answer
        assert store_raw(sock, sources["small"], 2, [1 << 20]) == SUCCESS
        release(sock)
    finally:
        stop_process(server)
    err = server.stderr.read().decode() if server.stderr else ""
    assert "Traceback" not in err, err
    assert list(received(out)) == [read_meta(sources["small"]).sop_instance_uid]


def test_dcmnet_store_into_listen_with_large_pdus(sources, tmp_path: Path) -> None:
    """The whole programs: ``dcmnet store`` sends PDUs up to listen's maximum; every file arrives whole."""
    out = tmp_path / "out"
    with listen_server("-od", str(out), "--max-pdu", str(BIG_PDU)) as server:
        code, _, err = run_dcmnet("store", LOOPBACK, str(server.port), *(str(p) for p in sources.values()))
        assert code == 0, err
    got = received(out)
    for path in sources.values():
        assert_same(path, got[read_meta(path).sop_instance_uid])


# --------------------------------------------------------------------------- the splicer alone


def test_splicer_moves_what_arrives_and_reports_a_failed_write_without_losing_step(tmp_path: Path) -> None:
    splicer = bulk.Splicer()
    with connected_pair() as (left, right):
        target = tmp_path / "file"
        fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o600)
        sender = threading.Thread(target=left.sendall, args=(b"a" * 3_000_000,))
        sender.start()
        assert splicer.move(right.fileno(), fd, 3_000_000) == (3_000_000, None, bulk.MOVED)
        sender.join()
        os.close(fd)
        assert target.read_bytes() == b"a" * 3_000_000

        readonly = os.open(target, os.O_RDONLY)
        left.sendall(b"b" * 1000 + b"c" * 10)
        moved, error, end = splicer.move(right.fileno(), readonly, 1000)
        os.close(readonly)
        assert (moved, end) == (1000, bulk.MOVED) and isinstance(error, OSError)
        assert right.recv(10) == b"c" * 10  # the failed bytes were taken off the link
        again = tmp_path / "again"
        fd = os.open(again, os.O_WRONLY | os.O_CREAT, 0o600)
        left.sendall(b"d" * 100)
        assert splicer.move(right.fileno(), fd, 100) == (100, None, bulk.MOVED)
        os.close(fd)
        assert again.read_bytes() == b"d" * 100  # and none of them is left in the pipe to land in the next file

        # the channel's way: a blocking socket with SO_RCVTIMEO; a silent peer is a timeout, not a hang
        right.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("@ll", 0, 200_000))
        fd = os.open(target, os.O_WRONLY)
        assert splicer.move(right.fileno(), fd, 10) == (0, None, bulk.TIMED_OUT)
        left.close()
        assert splicer.move(right.fileno(), fd, 10) == (0, None, bulk.LOST)
        os.close(fd)
    splicer.close()


def test_a_file_that_takes_no_bytes_is_a_write_error_not_a_busy_loop(tmp_path: Path, monkeypatch) -> None:
    """splice into the file returning 0 (it never should) ends the move with EIO instead of spinning."""
    splicer = bulk.Splicer()
    real = os.splice
    monkeypatch.setattr(bulk.os, "splice", lambda src, dst, count, *a: 0 if src == splicer_read_end() else
                        real(src, dst, count, *a))

    def splicer_read_end() -> int:
        return splicer._pipe[0] if splicer._pipe else -1

    with connected_pair() as (left, right):
        fd = os.open(tmp_path / "file", os.O_WRONLY | os.O_CREAT, 0o600)
        left.sendall(b"x" * 1000)
        moved, error, end = bounded(splicer.move, right.fileno(), fd, 1000)
        os.close(fd)
        assert (moved, end) == (1000, bulk.MOVED)
        assert isinstance(error, OSError) and (error.errno, error.strerror) == (5, "the file took no bytes")
    splicer.close()
