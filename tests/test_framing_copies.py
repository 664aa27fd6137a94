"""Issue 13, bytes copied per PDU on receive and Python per PDU on send (ul/framing.py, dimse/fragment.py).

Receive: a P-DATA-TF that straddles reads is copied once, into a buffer of its own, and handed on as a
view of it; the view's bytes stay what was received even after the driver's receive buffer is reused.
Send: a data set that is one buffer or one file region is cut into PDUs by arithmetic; the PDUs are
byte for byte those of the general fragmenter, for any size and any Maximum Length (odd ones and the
minimum included), and the send batches stay bounded.
"""

from __future__ import annotations

import os
import random
import struct

import pytest
from wire import pump

from dcmnet_cli.dimse import commandset as cs
from dcmnet_cli.dimse.connection import BATCH_BYTES, DatasetFragment, DIMSEConnection, Role
from dcmnet_cli.dimse.fragment import FileRegion, fragment_message, pdu_bytes
from dcmnet_cli.errors import PDUDecodeError
from dcmnet_cli.ul.framing import STREAM_ABOVE, PDUReader
from dcmnet_cli.ul.negotiation import AcceptorPolicy, build_contexts, build_request, negotiate_acceptor
from dcmnet_cli.ul.pdu import decode_pdata

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


def _pdata(*pdvs: tuple[int, int, bytes]) -> bytes:
    body = b"".join(struct.pack(">IBB", len(data) + 2, ctx, ctl) + data for ctx, ctl, data in pdvs)
    return struct.pack(">BBI", 4, 0, len(body)) + body


def _stream() -> tuple[bytes, list[bytes]]:
    """Three P-DATA-TF PDUs (an odd length, two PDVs in one, a 16 KiB one) and their bodies."""
    rnd = random.Random(13)
    data = [bytes(rnd.randrange(256) for _ in range(n)) for n in (37, 300, 16384)]
    pdus = [_pdata((1, 3, data[0])), _pdata((1, 0, data[1][:100]), (1, 2, data[1][100:])), _pdata((3, 2, data[2]))]
    return b"".join(pdus), [p[6:] for p in pdus]


def _feed_like_the_channel(stream: bytes, cuts: list[int]) -> tuple[list[memoryview], list[bytes]]:
    """Feed ``stream`` cut at ``cuts`` through one reused receive buffer (as transport/channel.py does);
    returns the bodies handed out and, for each, its bytes at the moment it was handed out."""
    reader = PDUReader(1 << 20, stream_above=STREAM_ABOVE)
    recv = bytearray(len(stream))
    view = memoryview(recv)
    bodies: list[memoryview] = []
    seen: list[bytes] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)]):
        recv[: end - start] = stream[start:end]
        reader.feed(view[: end - start])
        while (framed := reader.next_pdu()) is not None:
            kind, body = framed
            assert kind == 4
            bodies.append(body)  # type: ignore[arg-type]
            seen.append(bytes(body))  # type: ignore[arg-type]
        recv[:] = b"\xee" * len(recv)  # the driver reuses its buffer for the next read
    assert reader.buffered == 0
    return bodies, seen


def test_a_pdu_split_across_two_reads_at_every_byte_boundary() -> None:
    stream, expected = _stream()
    starts = [0, 6 + len(expected[0]), 12 + len(expected[0]) + len(expected[1])]
    for cut in range(1, len(stream)):
        bodies, seen = _feed_like_the_channel(stream, [cut])
        assert seen == expected, f"cut at {cut}"
        for body, want, start in zip(bodies, expected, starts):
            if start < cut < start + 6 + len(want):  # assembled (the others are views of the reused buffer)
                assert bytes(body) == want, f"cut at {cut}: a handed-out PDU changed after the next read"


def test_a_straddling_pdu_is_a_view_of_its_own_buffer_never_written_again() -> None:
    """Copied once (into a buffer of the PDU's size, not a bytes copy of an assembly buffer) and intact
    after later reads have reused the receive buffer and assembled further PDUs."""
    stream, expected = _stream()
    cuts = [5, 40, 60, 400, 480, 9000, len(stream) - 3]
    bodies, seen = _feed_like_the_channel(stream, cuts)
    assert seen == expected
    buffers = set()
    for body, want in zip(bodies, expected):
        assert type(body) is memoryview and type(body.obj) is bytearray and len(body.obj) == len(want) + 6
        buffers.add(id(body.obj))
        assert bytes(body) == want, "a handed-out PDU changed after later reads"
    assert len(buffers) == 3


def test_straddling_pdus_one_byte_per_read_stay_intact() -> None:
    stream, expected = _stream()
    two = len(expected[0]) + len(expected[1]) + 12
    bodies, seen = _feed_like_the_channel(stream[:two], list(range(1, two)))
    assert seen == expected[:2] and [bytes(b) for b in bodies] == expected[:2]


def test_straddling_pdu_checks_still_apply() -> None:
    """Over the maximum: refused from the header alone, nothing assembled. PDV lengths that do not add up
    in an assembled PDU: refused when it is decoded."""
    reader = PDUReader(16384, stream_above=STREAM_ABOVE)
    reader.feed(b"\x04\x00\x00")
    assert reader.next_pdu() is None
    reader.feed(b"\x00\x40\x01" + bytes(100))
    with pytest.raises(PDUDecodeError, match="exceeds our maximum of 16384"):
        reader.next_pdu()
    bad = bytearray(_pdata((1, 2, bytes(20))))
    bad[6:10] = struct.pack(">I", 30)  # the PDV claims more than the PDU holds
    reader = PDUReader(16384, stream_above=STREAM_ABOVE)
    reader.feed(bytes(bad[:9]))
    assert reader.next_pdu() is None
    reader.feed(bytes(bad[9:]))
    kind, body = reader.next_pdu()  # type: ignore[misc]
    with pytest.raises(PDUDecodeError, match="PDV length 30 is invalid"):
        decode_pdata(memoryview(body))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- send: the one-buffer fast path

MAX_PDUS = [8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 31, 64, 101, 255, 1000, 16383, 16384, 16385, 131072, 0]
SIZES = [1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 33, 100, 1001, 16377, 16378, 16379, 16384, 40000, 262147]


def _general(context_id: int, command: bytes, dataset, max_pdu: int) -> list:
    return list(fragment_message(context_id, command, iter([dataset]), max_pdu))  # chunked: the general path


@pytest.mark.parametrize("max_pdu", MAX_PDUS)
def test_one_buffer_fast_path_matches_the_general_fragmenter(max_pdu: int) -> None:
    rnd = random.Random(max_pdu)
    data = rnd.randbytes(max(SIZES))
    commands = [b"\x01", rnd.randbytes(2), rnd.randbytes(70), rnd.randbytes(71), rnd.randbytes(200)]
    fd = os.open(os.devnull, os.O_RDONLY)
    try:
        for command in commands:
            if len(command) > ((max_pdu or 1 << 20) - 6) & ~1:
                continue
            for size in SIZES + [max_pdu - 1, max_pdu, max_pdu + 1, 2 * max_pdu + 3]:
                if size <= 0 or (max_pdu and size > 200 * max_pdu):
                    continue
                for dataset in (data[:size], memoryview(data)[:size], bytearray(data[:size])):
                    fast = [pdu_bytes(p) for p in fragment_message(5, command, dataset, max_pdu)]
                    assert fast == [pdu_bytes(p) for p in _general(5, command, dataset, max_pdu)], (len(command), size)
                region = FileRegion(fd, 7, size, "x.dcm")
                assert list(fragment_message(7, command, region, max_pdu)) == _general(7, command, region, max_pdu), \
                    (len(command), size)
    finally:
        os.close(fd)


def _established(max_pdu: int) -> tuple[DIMSEConnection, DIMSEConnection]:
    req, acc = DIMSEConnection(Role.REQUESTOR, max_pdu), DIMSEConnection(Role.ACCEPTOR, max_pdu)
    acc.connection_made()
    req.request(build_request("ACC", "REQ", build_contexts([(CT, (EXPLICIT,))]), max_pdu))
    req.connection_made()
    pump(req, acc)
    requested = acc.next_event()
    acc.accept(negotiate_acceptor(requested.request, AcceptorPolicy(ae_title="ACC", contexts={CT: [EXPLICIT]},  # type: ignore[union-attr]
                                                                    max_pdu=max_pdu)))
    pump(req, acc)
    assert req.next_event() is not None and req.is_established
    return req, acc


@pytest.mark.parametrize("max_pdu", [16384, 131072, 16385])
def test_one_buffer_data_set_arrives_whole_in_bounded_batches(max_pdu: int) -> None:
    req, acc = _established(max_pdu)
    dataset = random.Random(1).randbytes(3 * BATCH_BYTES + 12345)
    req.send_message(1, cs.c_store_rq(1, CT, "1.2.3"), dataset)
    received = bytearray()
    batches = 0
    while batch := req.data_to_send():
        batches += 1
        wire = b"".join(bytes(b) for b in batch)
        assert len(wire) <= BATCH_BYTES + max_pdu + 6, "a batch grew past its bound"
        acc.receive_data(wire)
        while (event := acc.next_event()) is not None:
            if type(event) is DatasetFragment:
                received += event.data
    assert batches >= 3 and bytes(received) == dataset
