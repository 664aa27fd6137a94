"""Bounded memory and peer limits in the sans-IO core: streamed P-DATA-TF framing, the minimum maximum
PDU length, the cap on collected data sets (find identifiers)."""

from __future__ import annotations

import random
import struct
import time

import pytest

from dcmnet_cli.errors import AbortReason, PDUDecodeError
from dcmnet_cli.ul.framing import PDATA_START, PDV_PIECE, PDUReader
from dcmnet_cli.ul.pdu import PDV, PDataTF, decode_pdata
from wire import BAD_PDATA_BODIES


def _stream(raw: bytes, chunk: int, stream_above: int | None = 0) -> list:
    """Feed ``raw`` in chunks; return ("pdu", type, bytes) and ("piece", ctx, control, bytes) records."""
    reader = PDUReader(0, stream_above=stream_above)
    out: list = []
    for i in range(0, len(raw), chunk):
        reader.feed(raw[i : i + chunk])
        while (framed := reader.next_pdu()) is not None:
            kind, body = framed
            if kind == PDV_PIECE:
                out.append(("piece", body.context_id, body.control, bytes(body.data)))
            elif kind == PDATA_START:
                out.append(("start", body))
            else:
                if kind == 4:
                    for p in decode_pdata(memoryview(body)).pdvs:  # what the association does with it
                        out.append(("piece", p.context_id, p.control, bytes(p.data)))
                out.append(("pdu", kind, bytes(body)))
    return out


def _pdata(*pdvs: PDV) -> bytes:
    return PDataTF(pdvs).encode()


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1000])
def test_streamed_pdata_carries_the_same_bytes(chunk: int) -> None:
    rng = random.Random(chunk)
    pdvs = [PDV(1, 1, b"c" * 11 + b"\x00"), PDV(1, 3, b"cmd!"), PDV(3, 0, bytes(rng.randrange(256) for _ in range(301))),
            PDV(3, 0, b""), PDV(3, 2, bytes(range(256)) * 3 + b"z"), PDV(1, 1, b"")]
    raw = _pdata(*pdvs[:2]) + _pdata(*pdvs[2:])
    records = _stream(raw, chunk)
    starts = [r for r in records if r[0] == "start"]
    assert starts == ([("start", 28), ("start", 6 + 301 + 6 + 6 + 769 + 6)] if chunk < 34 else [("start", 1094)])
    pieces = [r for r in records if r[0] == "piece"]
    # Every piece that does not end its PDV is even and not marked last; the data join up exactly.
    got: list[tuple[int, int, bytes]] = []
    want = iter(pdvs)
    expected = next(want)
    data = b""
    for _, ctx, control, piece in pieces:
        data += piece
        assert ctx == expected.context_id
        if len(data) < len(expected.data):
            assert len(piece) % 2 == 0 and not control & 2
            continue
        assert control == expected.control
        got.append((ctx, control, data))
        data = b""
        expected = next(want, None)  # type: ignore[arg-type]
    assert got == [(p.context_id, p.control, bytes(p.data)) for p in pdvs]


def test_small_pdata_still_arrives_whole_when_not_streamed() -> None:
    raw = _pdata(PDV(1, 3, b"abcd"))
    whole = [("piece", 1, 3, b"abcd"), ("pdu", 4, raw[6:])]
    assert _stream(raw, 3, stream_above=100) == whole
    assert _stream(raw, 3, stream_above=None) == whole
    # whole inside one chunk: the zero-copy path even when streaming is on
    assert _stream(raw, len(raw), stream_above=0) == whole


BAD_BODIES = BAD_PDATA_BODIES


@pytest.mark.parametrize("body", BAD_BODIES)
@pytest.mark.parametrize("chunk", [1, 4, 9])
def test_streamed_pdata_refuses_what_decode_pdata_refuses(body: bytes, chunk: int) -> None:
    with pytest.raises(PDUDecodeError):
        decode_pdata(memoryview(body))
    raw = struct.pack(">BBI", 4, 0, len(body)) + body
    with pytest.raises(PDUDecodeError) as info:
        _stream(raw, chunk)
    assert info.value.reason == AbortReason.INVALID_PDU_PARAMETER_VALUE


def test_streamed_reader_holds_little_whatever_the_declared_length() -> None:
    reader = PDUReader(0xFFFFFFFF, stream_above=0)
    reader.feed(struct.pack(">BBIIBB", 4, 0, 0xFFFFFFF0, 0xFFFFFFEC, 1, 0))
    assert reader.next_pdu() == (PDATA_START, 0xFFFFFFF0)
    assert reader.next_pdu() is None  # the PDV header is read and checked; no data yet
    chunk = bytes(65537)
    total = 0
    for _ in range(200):
        reader.feed(chunk)
        while (framed := reader.next_pdu()) is not None:
            assert framed[0] == PDV_PIECE
            total += len(framed[1].data)
        assert reader.buffered <= 1 and len(reader._buf) == 0
    assert total == 200 * 65537  # an odd byte is held back between two chunks, never more


# --------------------------------------------------------------------------- peer maximum PDU length 1..7


@pytest.mark.parametrize("max_pdu", [1, 5, 7])
def test_listen_rejects_a_peer_max_pdu_below_8(max_pdu: int) -> None:
    from helpers.procs import listen_server
    from helpers.rawdicom import exchange_rq, make_rq, reject_of

    with listen_server() as server:
        answer = exchange_rq(server.port, make_rq(max_pdu=max_pdu).encode())
        assert reject_of(answer) == (1, 1, 1)  # permanent, service-user, no reason given
        assert server.wait_for_stderr(f"maximum PDU length {max_pdu} is below the minimum 8")
        assert server.alive()
        assert "internal" not in server.stderr().lower()
        # 8 is enough
        answer = exchange_rq(server.port, make_rq(max_pdu=8).encode())
        assert type(answer).__name__ == "AssociateAC"


@pytest.mark.parametrize("command", ["echo", "store"])
def test_scu_aborts_when_the_peer_max_pdu_is_below_8(command: str, tmp_path) -> None:
    from helpers.procs import LOOPBACK, run_dcmnet
    from helpers.rawdicom import ScriptedPeer, read_pdu
    from dcmnet_cli.ul.items import PresentationContextAC, UserInformation
    from dcmnet_cli.ul.pdu import Abort, AssociateAC

    seen: list = []

    def script(conn) -> None:
        rq = read_pdu(conn, 5.0)
        contexts = tuple(PresentationContextAC(c.context_id, 0, c.transfer_syntaxes[0])
                         for c in rq.presentation_contexts)
        conn.sendall(AssociateAC(rq.called_ae, rq.calling_ae, UserInformation.build(max_length=5),
                                 presentation_contexts=contexts).encode())
        seen.append(read_pdu(conn, 5.0))

    args = [command]
    if command == "store":
        import pydicom
        from pydicom.dataset import FileMetaDataset
        from pydicom.uid import ExplicitVRLittleEndian, generate_uid

        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.PatientName = "MIN^PDU"
        path = tmp_path / "x.dcm"
        ds.save_as(path, enforce_file_format=True)
        args.append(str(path))
    with ScriptedPeer(script) as peer:
        code, out, err = run_dcmnet(*args[:1], LOOPBACK, str(peer.port), *args[1:])
    assert code == 6, err
    assert "maximum PDU length 5 is below the minimum 8" in err
    assert "internal" not in err.lower()
    assert seen and isinstance(seen[0], Abort) and seen[0].source == 2


# --------------------------------------------------------------------------- memory bounded whatever the peer declares

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def _vm_hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _dataset_head(instance: str, pixel_bytes: int) -> bytes:
    """An explicit-VR little-endian CT data set whose last element is an OB Pixel Data of ``pixel_bytes``
    (only its header here: the caller sends the value)."""
    import io

    import pydicom
    from pydicom.filewriter import write_dataset

    ds = pydicom.Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = CT, instance
    ds.PatientName, ds.PatientID = "BIG^PDU", "BIG"
    buffer = io.BytesIO()
    write_dataset(_file_like(buffer), ds)
    return buffer.getvalue() + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, pixel_bytes)


def _file_like(buffer):
    from pydicom.filebase import DicomFileLike

    fp = DicomFileLike(buffer)
    fp.is_little_endian, fp.is_implicit_VR = True, False
    return fp


def _send_big_store(port: int, declared: int, sent: int, *, close_early: bool) -> object:
    """Associate, send a C-STORE-RQ command, then one P-DATA-TF declaring ``declared`` body bytes holding one
    PDV (the whole data set), of which ``sent`` body bytes are written. Returns the PDU answered (or None)."""
    from dcmnet_cli.dimse.commandset import c_store_rq, encode
    from dcmnet_cli.ul.items import PresentationContextRQ
    from helpers.rawdicom import associate, make_rq, pack_pdv_pdata, read_pdu

    from pydicom.uid import generate_uid

    instance = generate_uid()
    rq = make_rq(contexts=(PresentationContextRQ(1, CT, (EXPLICIT_LE,)),), max_pdu=16384)
    sock, ac = associate(port, rq, timeout=5.0)
    try:
        command = encode(c_store_rq(1, CT, instance))
        sock.sendall(pack_pdv_pdata(1, 3, command))
        head = _dataset_head(instance, declared - 6 - len(_dataset_head(instance, 0)))
        sock.sendall(struct.pack(">BBIIBB", 4, 0, declared, declared - 4, 1, 2) + head)
        left = sent - 6 - len(head)
        block = bytes(1 << 20)
        while left > 0:
            n = min(left, len(block))
            sock.sendall(memoryview(block)[:n])
            left -= n
        if close_early:
            return None
        return read_pdu(sock, 30.0)
    finally:
        sock.close()


@pytest.mark.parametrize("pdu,declared,sent,complete", [
    ("0", 64 << 20, 60 << 20, False),
    ("4294967295", 200 << 20, 200 << 20, True),
])
def test_listen_memory_bounded_whatever_the_pdu_length(tmp_path, pdu: str, declared: int, sent: int,
                                                       complete: bool) -> None:
    from helpers.procs import listen_server
    from helpers.rawdicom import echo, associate

    out = tmp_path / "out"
    out.mkdir()
    with listen_server("-od", str(out), "-pdu", pdu) as server:
        baseline = _vm_hwm_kib(server.pid)
        answer = _send_big_store(server.port, declared, sent, close_early=not complete)
        if complete:
            assert type(answer).__name__ == "PDataTF"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "association" not in server.stderr().split("BIG")[-1]:
            time.sleep(0.1)
        peak = _vm_hwm_kib(server.pid)
        print(f"listen -pdu {pdu}, {sent >> 20} MiB of a {declared >> 20} MiB P-DATA-TF: "
              f"VmHWM {peak / 1024:.1f} MiB (at start {baseline / 1024:.1f} MiB)")
        assert peak < 100 * 1024, f"server peak RSS {peak} KiB (baseline {baseline} KiB)"
        assert server.alive()
        sock, _ = associate(server.port)
        try:
            echo(sock)
        finally:
            sock.close()
    files = [p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".dcmnet-index")]
    if complete:
        assert len(files) == 1 and files[0].stat().st_size > declared - 1000
    else:
        assert files == []


# --------------------------------------------------------------------------- streamed PDUs through the DIMSE layer


def _dimse_pair(acceptor_max: int):
    from dcmnet_cli.dimse.connection import AssociationRequested, DIMSEConnection, Role
    from dcmnet_cli.ul.negotiation import AcceptorPolicy, build_contexts, build_request, negotiate_acceptor
    from wire import events, pump

    policy = AcceptorPolicy(ae_title="ACC", contexts={CT: [EXPLICIT_LE], "1.2.840.10008.5.1.4.1.2.2.1": [EXPLICIT_LE]},
                            max_pdu=acceptor_max)
    req, acc = DIMSEConnection(Role.REQUESTOR, 0), DIMSEConnection(Role.ACCEPTOR, acceptor_max)
    acc.connection_made()
    req.request(build_request("ACC", "REQ", build_contexts([(CT, (EXPLICIT_LE,)),
                                                              ("1.2.840.10008.5.1.4.1.2.2.1", (EXPLICIT_LE,))]), 0))
    req.connection_made()
    pump(req, acc)
    (requested,) = events(acc)
    assert isinstance(requested, AssociationRequested)
    acc.accept(negotiate_acceptor(requested.request, policy))
    pump(req, acc)
    events(req)
    return req, acc


def _deliver(src, dst, chunk: int) -> list:
    """Move src's bytes to dst in ``chunk``-byte reads, draining dst's events after each (as a driver does)."""
    data = b"".join(bytes(x) for x in _drain(src))
    got = []
    for i in range(0, len(data), chunk):
        dst.receive_data(bytearray(data[i:i + chunk]))  # a fresh buffer each time, like recv_into
        while (event := dst.next_event()) is not None:
            got.append(event)
    return got


def _drain(conn) -> list:
    out = []
    while batch := conn.data_to_send():
        out += batch
    return out


@pytest.mark.parametrize("chunk", [1 << 20, 65537, 4099, 1000])
def test_store_in_one_huge_pdu_streams_whatever_the_chunking(chunk: int) -> None:
    from dcmnet_cli.dimse import commandset as cs
    from dcmnet_cli.dimse.connection import CommandReceived, DatasetFragment, MessageComplete

    req, acc = _dimse_pair(0)  # we advertise 0: the peer may send PDUs up to our 64 MiB cap
    req.association.peer_max_pdu = 3 << 20  # the requestor sends the whole data set in one PDU
    data = bytes(range(256)) * 4096 + b"xy"  # 1 MiB + 2
    req.send_message(1, cs.c_store_rq(1, CT, "1.2.3"), data)
    got = _deliver(req, acc, chunk)
    kinds = [type(e) for e in got]
    assert kinds[0] is CommandReceived and kinds[-1] is MessageComplete
    fragments = [e for e in got if isinstance(e, DatasetFragment)]
    assert b"".join(bytes(f.data) for f in fragments) == data
    assert [f.last for f in fragments].count(True) == 1 and fragments[-1].last
    assert all(len(f.data) % 2 == 0 for f in fragments)
    if chunk < len(data):
        assert len(fragments) > 1  # streamed: handed on as it came, not assembled


def test_collected_data_set_over_the_cap_aborts_with_the_reason() -> None:
    from dcmnet_cli.dimse import commandset as cs
    from dcmnet_cli.dimse.connection import Aborted

    req, acc = _dimse_pair(16384)
    acc.max_collected_bytes = 1000
    find_ctx = 3
    req.send_message(find_ctx, cs.c_find_rq(1, "1.2.840.10008.5.1.4.1.2.2.1"), bytes(1002))
    got = _deliver(req, acc, 1 << 20)
    assert len(got) == 1 and isinstance(got[0], Aborted)
    assert got[0].message == "C-FIND-RQ identifier larger than 1000 bytes"
    assert (got[0].source, got[0].reason) == (2, AbortReason.INVALID_PDU_PARAMETER_VALUE)


# --------------------------------------------------------------------------- streamed P-DATA-TF outside Sta6


def _ul_pair(max_receive: int = 0):
    from dcmnet_cli.ul.association import Association, AssociationRequested
    from dcmnet_cli.ul.negotiation import AcceptorPolicy, build_contexts, build_request, negotiate_acceptor
    from dcmnet_cli.ul.statemachine import Role
    from wire import events, pump

    req, acc = Association(Role.REQUESTOR, 0), Association(Role.ACCEPTOR, max_receive)
    acc.connection_made()
    req.request(build_request("ACC", "REQ", build_contexts([(CT, (EXPLICIT_LE,))]), 0))
    req.connection_made()
    pump(req, acc)
    (requested,) = events(acc)
    assert isinstance(requested, AssociationRequested)
    acc.accept(negotiate_acceptor(requested.request, AcceptorPolicy("ACC", {CT: [EXPLICIT_LE]}, max_pdu=0)))
    pump(req, acc)
    events(req)
    return req, acc


def _big_pdata(size: int) -> bytes:
    return PDataTF((PDV(1, 0, bytes(size)),)).encode()


def test_streamed_pdata_in_sta7_is_still_delivered() -> None:
    """AR-6: after our A-RELEASE-RQ the peer may still send P-DATA; a streamed one arrives in pieces."""
    from dcmnet_cli.ul.association import DataReceived
    from dcmnet_cli.ul.statemachine import State
    from wire import events

    req, acc = _ul_pair()
    req.release()
    assert req.state is State.STA7
    raw = _big_pdata(600_000)
    got = []
    for i in range(0, len(raw), 100_001):
        req.receive_data(raw[i:i + 100_001])
        got += events(req)
    assert all(isinstance(e, DataReceived) for e in got)
    assert sum(len(p.data) for e in got for p in e.pdata.pdvs) == 600_000
    assert req.state is State.STA7


def test_streamed_pdata_in_sta13_is_dropped_not_held() -> None:
    from dcmnet_cli.ul.statemachine import State
    from wire import events

    req, acc = _ul_pair()
    acc.abort()
    assert acc.state is State.STA13
    acc.data_to_send()
    raw = _big_pdata(3 << 20)
    for i in range(0, len(raw), 1 << 20):
        acc.receive_data(raw[i:i + (1 << 20)])
        assert acc._reader.buffered <= 1 << 20 and len(acc._reader._buf) == 0
    assert events(acc) == [] and acc.state is State.STA13
    assert acc.data_to_send() == []  # AA-6: ignored, nothing answered


def test_streamed_pdata_before_the_accept_aborts() -> None:
    """A P-DATA-TF in Sta5 (the requestor awaits the AC) is unexpected: AA-8, once, whatever its size."""
    from dcmnet_cli.errors import AbortReason as Reason
    from dcmnet_cli.ul.association import Aborted, Association
    from dcmnet_cli.ul.negotiation import build_contexts, build_request
    from dcmnet_cli.ul.statemachine import Role, State
    from wire import events

    req = Association(Role.REQUESTOR, 0)
    req.request(build_request("ACC", "REQ", build_contexts([(CT, (EXPLICIT_LE,))]), 0))
    req.connection_made()
    req.data_to_send()
    raw = _big_pdata(1 << 20)
    for i in range(0, len(raw), 300_000):
        req.receive_data(raw[i:i + 300_000])
    got = events(req)
    assert len(got) == 1 and isinstance(got[0], Aborted) and got[0].reason == Reason.UNEXPECTED_PDU
    assert req.state is State.STA13


@pytest.mark.parametrize("chunk", [7, 4096])
def test_captures_stream_to_the_same_pdvs(chunk: int) -> None:
    """Every P-DATA-TF of the recorded captures, streamed (threshold 0) in small reads, yields the PDVs
    decode_pdata finds in it: same context IDs, same control headers, same bytes."""
    from test_ul_pdu import CAPTURE_FILES, _load

    for name in CAPTURE_FILES:
        raws = [raw for _, _, raw in _load(name)]
        want = []
        for raw in raws:
            if raw[0] == 4:
                want += [(p.context_id, p.control, bytes(p.data)) for p in decode_pdata(memoryview(raw[6:])).pdvs]
        got: list[tuple[int, int, bytes]] = []
        data = b""
        for record in _stream(b"".join(raws), chunk):
            if record[0] != "piece":
                continue
            _, ctx, control, piece = record
            data += piece
            if len(got) < len(want) and len(data) == len(want[len(got)][2]):
                got.append((ctx, control, data))
                data = b""
        assert got == want, name
