"""listen's receive path stores the same objects and answers the same way however the bytes arrive
(issue 13: the per-object shortcuts on this path must not depend on how reads cut the stream):

- several PDUs in one read (once associated: two C-STOREs and the release request in one chunk);
- a PDU split across reads at every byte boundary (two reads, the cut anywhere; and one byte per read);
- a command and its data set in one P-DATA-TF, in one PDU each, or spread over many PDVs and PDUs.

Each run goes through the real acceptor code (negotiation, :class:`Session`, the Storage SCP writing
to a folder) over a scripted in-memory link, and checks what a sender sees (a Success C-STORE-RSP per
object, in order, then the release answer) and the files on disk (File Meta + the data set bytes).
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from helpers.scripted_link import ScriptedLink, store_answers
from storage_helpers import EXPLICIT_LE, SC_IMAGE, payload, raw_dataset

from dcmnet_cli.dimse.commandset import c_store_rq
from dcmnet_cli.dimse.connection import AssociationRequested, DIMSEConnection, Role
from dcmnet_cli.part10.sopclasses import storage_contexts
from dcmnet_cli.services.scp.entity import ALL_UNCOMPRESSED, ApplicationEntity
from dcmnet_cli.services.scp.storage import StorageConfig, StorageSCP
from dcmnet_cli.services.scp.store_handler import storage_handlers
from dcmnet_cli.transport.server import answer_request
from dcmnet_cli.ul.negotiation import AcceptorPolicy, build_contexts, build_request

UIDS = ["1.2.826.0.1.3680043.10.1137.91.1", "1.2.826.0.1.3680043.10.1137.91.22"]
DATASETS = [raw_dataset(SC_IMAGE, uid, payload(i, 40 + i)) for i, uid in enumerate(UIDS)]
RELEASE_RQ = bytes.fromhex("050000000004" + "00000000")


def _pdu(*pdvs: tuple[int, bytes]) -> bytes:
    body = b"".join(struct.pack(">IBB", len(data) + 2, 1, control) + data for control, data in pdvs)
    return struct.pack(">BBI", 0x04, 0, len(body)) + body


def _message(index: int, layout: str) -> bytes:
    command = c_store_rq(index + 1, SC_IMAGE, UIDS[index]).encode()
    data = DATASETS[index]
    if layout == "one PDU":
        return _pdu((0x03, command), (0x02, data))
    if layout == "a PDU each":
        return _pdu((0x03, command)) + _pdu((0x02, data))
    # many: the command in two PDVs of two PDUs, the data set in 2-byte-aligned pieces, several per PDU
    half = len(command) // 2 & ~1  # a non-final fragment has an even length
    out = _pdu((0x01, command[:half])) + _pdu((0x03, command[half:]))
    cuts = list(range(0, len(data), 16)) + [len(data)]
    pieces = [(0x00 if end < len(data) else 0x02, data[start:end]) for start, end in zip(cuts, cuts[1:])]
    for at in range(0, len(pieces), 3):
        out += _pdu(*pieces[at:at + 3])
    return out


REQUEST = build_request("MEMSCP", "SENDER", build_contexts([(SC_IMAGE, [EXPLICIT_LE])])).encode()
"""Read alone: a sender waits for the A-ASSOCIATE-AC before its first P-DATA-TF."""


def _stream(layout: str) -> bytes:
    """Everything the sender writes once associated: two C-STOREs and the release request."""
    return b"".join(_message(i, layout) for i in range(len(UIDS))) + RELEASE_RQ


def _serve(root: Path, chunks: list[bytes]) -> bytes:
    scp = StorageSCP(StorageConfig(str(root), fsync=False))
    scp.prepare()
    policy = AcceptorPolicy(ae_title="MEMSCP", contexts=storage_contexts(ALL_UNCOMPRESSED, False, ALL_UNCOMPRESSED))
    entity = ApplicationEntity(policy, handlers=storage_handlers(scp))
    conn = DIMSEConnection(Role.ACCEPTOR)
    conn.connection_made()
    link = ScriptedLink(conn, [REQUEST, *chunks])
    event = link.next_event(None)
    assert type(event) is AssociationRequested
    assert answer_request(link, entity, event.request)
    entity.serve(link)
    scp.close(1.0)
    return bytes(link.sent)



EXPECTED = [(0x02, None), (0x04, [(1, 0x0000, UIDS[0])]), (0x04, [(2, 0x0000, UIDS[1])]), (0x06, None)]


def _check(root: Path, sent: bytes) -> None:
    assert store_answers(sent) == EXPECTED
    names = sorted(p.name for p in root.iterdir())
    assert names == sorted(f"{uid}.dcm" for uid in UIDS)
    for uid, data in zip(UIDS, DATASETS):
        content = (root / f"{uid}.dcm").read_bytes()
        assert content[128:132] == b"DICM" and content.endswith(data)
        assert uid.encode() in content[:len(content) - len(data)]  # the File Meta names it too


@pytest.mark.parametrize("layout", ["one PDU", "a PDU each", "many"])
def test_every_pdu_of_an_association_in_one_read(tmp_path: Path, layout: str) -> None:
    _check(tmp_path, _serve(tmp_path, [_stream(layout)]))


@pytest.mark.parametrize("layout", ["one PDU", "a PDU each", "many"])
def test_one_byte_per_read(tmp_path: Path, layout: str) -> None:
    stream = _stream(layout)
    _check(tmp_path, _serve(tmp_path, [stream[i:i + 1] for i in range(len(stream))]))


@pytest.mark.parametrize("layout", ["one PDU", "many"])
def test_two_reads_cut_at_every_byte_boundary(tmp_path: Path, layout: str) -> None:
    stream = _stream(layout)
    for cut in range(1, len(_message(0, layout)) + 12):  # every boundary of a whole C-STORE, and past it
        root = tmp_path / str(cut)
        root.mkdir()
        _check(root, _serve(root, [stream[:cut], stream[cut:]]))
