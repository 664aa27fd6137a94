"""listen's receive path for CT-sized objects (issue 13): a read that ends a few bytes into a PDU has those
bytes carried to the start of the receive buffer and the next read appended (transport/channel.py
``_carry``, ul/framing.py ``carry_max``), so the PDU is handed on whole instead of being assembled.

What a sender sees must not change, however the reads cut the stream: a Success C-STORE-RSP per object,
and files whose data set is byte for byte what was sent, once each. Checked here through the real
acceptor (negotiation, Session, the Storage SCP writing to a folder) over a scripted link that carries as
the socket link does, with storescu's write pattern (the command PDU, a 12-byte P-DATA-TF header, then the
data), cuts around every PDU header and around the carry limit, one byte per read, a read timing out
between a carried tail and the rest; and over a real socket against ``dcmnet listen`` with PDUs of
1 KiB to 1 MiB.
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import pytest
from helpers.procs import LOOPBACK, listen_server
from helpers.scripted_link import ScriptedLink, store_answers
from storage_helpers import EXPLICIT_LE, SC_IMAGE, payload, raw_dataset

from dcmnet_cli.dimse.commandset import C_STORE_RSP, c_store_rq, decode
from dcmnet_cli.dimse.connection import (AssociationRequested, CommandReceived, DatasetFragment, DIMSEConnection,
                                         MessageComplete, Role)
from dcmnet_cli.errors import TimeoutExpired
from dcmnet_cli.part10.sopclasses import storage_contexts
from dcmnet_cli.services.scp.entity import ALL_UNCOMPRESSED, ApplicationEntity
from dcmnet_cli.services.scp.storage import StorageConfig, StorageSCP
from dcmnet_cli.services.scp.store_handler import storage_handlers
from dcmnet_cli.transport import channel
from dcmnet_cli.transport.channel import CARRY_MAX, LinkTimeout
from dcmnet_cli.transport.server import answer_request
from dcmnet_cli.ul import framing
from dcmnet_cli.ul.framing import PDUReader
from dcmnet_cli.ul.negotiation import AcceptorPolicy, build_contexts, build_request, negotiate_acceptor
from dcmnet_cli.ul.pdu import AssociateAC, decode_pdata

UIDS = ["1.2.826.0.1.3680043.10.1137.92.1", "1.2.826.0.1.3680043.10.1137.92.22"]
CT_PDU = 131056  # the P-DATA-TF body listen accepts by default (what storescu -pdu 131072 then sends)
RELEASE_RQ = bytes.fromhex("050000000004" + "00000000")
REQUEST = build_request("MEMSCP", "SENDER", build_contexts([(SC_IMAGE, [EXPLICIT_LE])])).encode()
TIMEOUT = object()
"""In a script of reads: this read times out (LinkTimeout)."""


def _pdu(*pdvs: tuple[int, bytes | memoryview]) -> bytes:
    body = b"".join(struct.pack(">IBB", len(data) + 2, 1, control) + bytes(data) for control, data in pdvs)
    return struct.pack(">BBI", 0x04, 0, len(body)) + body


def _datasets(size: int) -> list[bytes]:
    return [raw_dataset(SC_IMAGE, uid, payload(i, size + 2 * i)) for i, uid in enumerate(UIDS)]


def _object(index: int, data: bytes, max_pdu: int) -> list[bytes]:
    """One C-STORE as storescu sends it: the command PDU, then data PDUs of one PDV each."""
    pdus = [_pdu((0x03, c_store_rq(index + 1, SC_IMAGE, UIDS[index]).encode()))]
    step = max_pdu - 6
    for at in range(0, len(data), step):
        pdus.append(_pdu((0x02 if at + step >= len(data) else 0x00, data[at:at + step])))
    return pdus


def _pdus(datasets: list[bytes], max_pdu: int = CT_PDU) -> list[bytes]:
    return [pdu for index, data in enumerate(datasets) for pdu in _object(index, data, max_pdu)] + [RELEASE_RQ]


def _storescu_reads(pdus: list[bytes]) -> list[bytes]:
    """The reads listen sees on loopback: the command PDU; each data PDU's 12 header bytes, then its data."""
    reads = []
    for pdu in pdus:
        if pdu[0] == 0x04 and pdu[11] & 0x01 == 0:  # a data set PDV
            reads += [pdu[:12], pdu[12:]]
        else:
            reads.append(pdu)
    return reads


class CarryingLink(ScriptedLink):
    """A scripted link that carries, as the socket link does; a ``TIMEOUT`` chunk is a read that times out."""

    carries = True

    def _next_chunk(self) -> bytes:
        chunk = self.chunks.pop(0)
        if chunk is TIMEOUT:
            raise LinkTimeout()
        return bytes(chunk)


def _established(chunks: list) -> CarryingLink:
    conn = DIMSEConnection(Role.ACCEPTOR)
    conn.connection_made()
    link = CarryingLink(conn, [REQUEST, *chunks])
    event = link.next_event(None)
    assert type(event) is AssociationRequested
    return link


def _serve(root: Path, chunks: list) -> bytes:
    scp = StorageSCP(StorageConfig(str(root), fsync=False))
    scp.prepare()
    policy = AcceptorPolicy(ae_title="MEMSCP", contexts=storage_contexts(ALL_UNCOMPRESSED, False, ALL_UNCOMPRESSED))
    entity = ApplicationEntity(policy, handlers=storage_handlers(scp))
    link = _established(chunks)
    assert answer_request(link, entity, link.conn.association.request_pdu)
    entity.serve(link)
    scp.close(1.0)
    return bytes(link.sent)





def _check(root: Path, sent: bytes, datasets: list[bytes]) -> None:
    """Success for each object, the release answered, and each file's data set exactly what was sent."""
    answers = [(kind, None if got is None else [(mid, status) for mid, status, _uid in got])
               for kind, got in store_answers(sent)]
    assert answers == [(0x02, None)] + [(0x04, [(i + 1, 0x0000)]) for i in range(len(datasets))] + [(0x06, None)]
    assert sorted(p.name for p in root.iterdir()) == sorted(f"{uid}.dcm" for uid in UIDS[:len(datasets)])
    for uid, data in zip(UIDS, datasets):
        _check_file(root / f"{uid}.dcm", data)


def _check_file(path: Path, data: bytes) -> None:
    content = path.read_bytes()
    assert content[128:132] == b"DICM"
    meta_end = 144 + struct.unpack_from("<I", content, 140)[0]  # after (0002,0000) File Meta group length
    assert content[meta_end:] == data  # the data set once, whole, nothing before or after it


@pytest.fixture
def assemblies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the P-DATA-TF assembled in a buffer of their own (what carrying avoids)."""
    seen: list[int] = []
    start = PDUReader._start_assembly

    def counted(self: PDUReader, need: int) -> None:
        seen.append(need)
        start(self, need)

    monkeypatch.setattr(PDUReader, "_start_assembly", counted)
    return seen


def test_storescu_pattern_ct_objects_are_never_assembled(tmp_path: Path, assemblies: list[int]) -> None:
    datasets = _datasets(300_000)  # three 128 KiB PDUs each, the last one short
    _check(tmp_path, _serve(tmp_path, _storescu_reads(_pdus(datasets))), datasets)
    assert assemblies == []


def test_without_carrying_the_same_reads_assemble_each_pdu(tmp_path: Path, assemblies: list[int],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference: the same script through a link that does not carry (the in-memory links of the tests)."""
    monkeypatch.setattr(CarryingLink, "carries", False)
    monkeypatch.setattr(CarryingLink, "_read", _read_at_start)
    datasets = _datasets(300_000)
    _check(tmp_path, _serve(tmp_path, _storescu_reads(_pdus(datasets))), datasets)
    assert len(assemblies) == sum(len(_object(i, d, CT_PDU)) - 1 for i, d in enumerate(datasets))


def _read_at_start(self: CarryingLink, wait: float | None) -> int:
    if not self.chunks:
        return 0
    chunk = self.chunks.pop(0)
    self._buf[:len(chunk)] = chunk
    return len(chunk)


def _cuts_around_headers(pdus: list[bytes], spread: int) -> list[int]:
    """Stream offsets within ``spread`` bytes of each PDU's start, and where the tail left by a cut is the
    carry limit, one byte less, one byte more."""
    cuts, at = set(), 0
    for pdu in pdus:
        cuts.update(range(max(1, at - spread), at + spread + 1))
        at += len(pdu)
    first_data = len(pdus[0])  # the first data PDU's start: a cut leaves its first bytes as the tail
    cuts.update(first_data + CARRY_MAX + d for d in (-1, 0, 1))
    return sorted(c for c in cuts if c < at)


def test_two_reads_cut_around_every_pdu_header_and_the_carry_limit(tmp_path: Path) -> None:
    datasets = _datasets(140_000)  # two data PDUs each: a whole 128 KiB one and a short one
    pdus = _pdus(datasets)
    stream = b"".join(pdus)
    for cut in _cuts_around_headers(pdus, 14):
        root = tmp_path / str(cut)
        root.mkdir()
        _check(root, _serve(root, [stream[:cut], stream[cut:]]), datasets)


def test_storescu_pattern_with_every_data_read_cut_again(tmp_path: Path) -> None:
    """Each 128 KiB data read cut in two at several places (the kernel hands over what has arrived)."""
    datasets = _datasets(140_000)
    reads = _storescu_reads(_pdus(datasets))
    for cut in (1, 5, 6, 11, 12, 13, CARRY_MAX - 1, CARRY_MAX, CARRY_MAX + 1, 65536, CT_PDU - 12 - 1):
        chunks = []
        for read in reads:
            chunks += [read[:cut], read[cut:]] if len(read) > cut + 1 else [read]
        root = tmp_path / str(cut)
        root.mkdir()
        _check(root, _serve(root, chunks), datasets)


def test_one_byte_per_read_small_pdus(tmp_path: Path) -> None:
    """Every read a byte: each carried tail is most of what is fed (the overlapping move)."""
    datasets = _datasets(6_000)
    stream = b"".join(_pdus(datasets, max_pdu=1024))
    _check(tmp_path, _serve(tmp_path, [stream[i:i + 1] for i in range(len(stream))]), datasets)


def test_a_read_that_times_out_after_a_carried_tail_loses_nothing() -> None:
    """The carried header bytes stay at the buffer's start while the read times out; the next read still
    follows them."""
    data = _datasets(300_000)[0]
    pdus = _object(0, data, CT_PDU)
    script = [pdus[0], pdus[1][:12], TIMEOUT, pdus[1][12:], *pdus[2:]]
    link = _established(script)
    policy = AcceptorPolicy(ae_title="MEMSCP", contexts=storage_contexts(ALL_UNCOMPRESSED, False, ALL_UNCOMPRESSED))
    answer = negotiate_acceptor(link.conn.association.request_pdu, policy)
    assert isinstance(answer, AssociateAC)
    link.conn.accept(answer)
    link.flush()
    assert type(link.next_event(5.0)) is CommandReceived
    with pytest.raises(TimeoutExpired):
        link.next_event(5.0)
    received = bytearray()
    while True:
        event = link.next_event(5.0)
        if type(event) is DatasetFragment:
            received += event.data
        elif type(event) is MessageComplete:
            break
        else:
            raise AssertionError(f"unexpected {event!r}")
    assert bytes(received) == data


def test_the_socket_channel_carries() -> None:
    assert channel.Channel.carries and not channel.Driver.carries
    assert framing.PDUReader().carry_max == 0  # only a carrying driver asks for it


# --------------------------------------------------------------------------- a real socket, dcmnet listen


def _recv_pdu(sock: socket.socket) -> tuple[int, bytes]:
    head = _recv_exactly(sock, 6)
    kind, _, length = struct.unpack(">BBI", head)
    return kind, _recv_exactly(sock, length)


def _recv_exactly(sock: socket.socket, count: int) -> bytes:
    out = bytearray()
    while len(out) < count:
        chunk = sock.recv(count - len(out))
        assert chunk, "listen closed the connection"
        out += chunk
    return bytes(out)


@pytest.mark.parametrize("max_pdu", [1024, 16384, CT_PDU, 262144, 1 << 20])
def test_listen_stores_ct_objects_byte_identical_for_any_pdu_size(tmp_path: Path, max_pdu: int) -> None:
    """A sender that writes each P-DATA-TF's header apart from its data (pausing after the first few, so
    listen reads the header alone and carries it), PDUs from 1 KiB to 1 MiB (over 256 KiB: streamed)."""
    out = tmp_path / "out"
    datasets = _datasets(600_000)
    with listen_server("-od", str(out), "--no-fsync", "--max-pdu", "0") as server:
        with socket.create_connection((LOOPBACK, server.port), timeout=20) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(build_request("ANY-SCP", "SENDER", build_contexts([(SC_IMAGE, [EXPLICIT_LE])]),
                                       max_pdu=max_pdu).encode())
            assert _recv_pdu(sock)[0] == 0x02
            for index, data in enumerate(datasets):
                for number, pdu in enumerate(_object(index, data, max_pdu)):
                    if number == 0:
                        sock.sendall(pdu)
                        continue
                    sock.sendall(pdu[:12])
                    if number <= 3:
                        time.sleep(0.002)
                    sock.sendall(pdu[12:])
                kind, body = _recv_pdu(sock)
                assert kind == 0x04
                answer = decode(bytes(decode_pdata(memoryview(body)).pdvs[0].data))
                assert (answer.command_field, answer.status) == (C_STORE_RSP, 0x0000)
            sock.sendall(RELEASE_RQ)
            assert _recv_pdu(sock)[0] == 0x06
    for uid, data in zip(UIDS, datasets):
        _check_file(out / f"{uid}.dcm", data)
