"""The per-object shortcuts of the Storage SCP (issue 13) keep every guarantee they shortcut.

- The C-STORE-RSP packed from a template (services/scp/store_handler.py ``store_rsp``) is byte for byte the
  command set the general encoder makes.
- Responses to pipelined requests all come back in request order, each for its own object, before the
  release is confirmed, and a lone request is answered without anything more being sent.
- The output folder's descriptor, now opened once per listener, does not leak: a folder removed and made
  again is used again, and ``close`` releases every descriptor.
- A received data set that starts with File Meta elements (group 0002) still has them left out when the
  check of its first tag takes the short way (little and big endian, a first fragment of one byte).
- A C-STORE-RQ read by index (``commandset._store_rq``) is read exactly as the element loop reads it;
  anything laid out otherwise, or damaged anywhere, is left to the loop, never misread.
"""

from __future__ import annotations

import os
import shutil
import struct

import pytest
from helpers.procs import listen_server
from storage_helpers import SC_IMAGE, associate, close_association, context_for, files, raw_dataset, wait_response

from dcmnet_cli.dimse.commandset import c_store_rq, c_store_rsp, decode
from dcmnet_cli.part10.received import ReceivedDataset

# --------------------------------------------------------------------------- the response template

UIDS = [
    ("1.2.840.10008.5.1.4.1.1.4", "1.2.3"),  # odd class, odd instance
    ("1.2", "1.23"),  # even, even
    ("1.2.840.10008.5.1.4.1.1.2", "1.2.826.0.1.3680043.10.1137.1.64.1.1.1234"),
    ("1.2.840.10008.5.1.4.1.1.7", "9" * 64),
]


@pytest.mark.parametrize("sop_class,sop_instance", UIDS)
@pytest.mark.parametrize("status", [0x0000, 0x0107, 0xA700, 0xA900, 0xC000, 0xFFFF])
@pytest.mark.parametrize("message_id", [0, 1, 257, 0xFFFF])
def test_store_response_template_matches_the_encoder(sop_class, sop_instance, status, message_id):
    from dcmnet_cli.services.store_commands import store_rsp

    expected = c_store_rsp(message_id, status, sop_class, sop_instance).encode()
    packed = store_rsp(message_id, status, sop_class, sop_instance, None).encode()
    assert packed == expected
    message = decode(packed)
    assert (message.message_id_being_responded_to, message.status, message.affected_sop_instance_uid) == \
        (message_id, status, sop_instance)


@pytest.mark.parametrize("sop_class,sop_instance", UIDS)
@pytest.mark.parametrize("message_id", [0, 1, 257, 0xFFFF])
@pytest.mark.parametrize("priority", [0, 1, 2])
def test_store_request_template_matches_the_encoder(sop_class, sop_instance, message_id, priority):
    from dcmnet_cli.services.store_commands import store_rq

    packed = store_rq(message_id, sop_class, sop_instance, priority).encode()
    assert packed == c_store_rq(message_id, sop_class, sop_instance, priority).encode()
    message = decode(packed)
    assert (message.message_id, message.affected_sop_class_uid, message.has_dataset) == (message_id, sop_class, True)


def test_store_response_with_a_comment_is_the_general_message():
    from dcmnet_cli.services.store_commands import store_rsp

    packed = store_rsp(7, 0xC000, "1.2.3", "1.2.3.4", "cannot understand").encode()
    assert packed == c_store_rsp(7, 0xC000, "1.2.3", "1.2.3.4", "cannot understand").encode()
    assert decode(packed).error_comment == "cannot understand"


# --------------------------------------------------------------------------- pipelined requests, real listener

def test_pipelined_stores_are_answered_in_order_each_for_its_object(tmp_path):
    """Eight C-STORE-RQs written in one go (store --async's pattern): eight Success responses in request
    order, each naming its own instance, and the eight files on disk."""
    out = tmp_path / "out"
    uids = [f"1.2.826.0.1.3680043.10.1137.77.{i}" for i in range(8)]
    with listen_server("-od", str(out), "--no-fsync") as server:
        channel = associate(server.port)
        try:
            cid = context_for(channel)
            ids = []
            for uid in uids:
                message_id = channel.next_message_id()
                ids.append(message_id)
                channel.send_message(cid, c_store_rq(message_id, SC_IMAGE, uid), raw_dataset(SC_IMAGE, uid), flush=False)
            channel.flush()
            answers = [wait_response(channel) for _ in uids]
            assert [a.message_id_being_responded_to for a in answers] == ids
            assert [a.affected_sop_instance_uid for a in answers] == uids
            assert [a.status for a in answers] == [0] * 8
            # Nothing pending any more: a lone request is answered without anything else being sent.
            lone = "1.2.826.0.1.3680043.10.1137.77.99"
            channel.send_message(cid, c_store_rq(channel.next_message_id(), SC_IMAGE, lone), raw_dataset(SC_IMAGE, lone))
            assert wait_response(channel, timeout=5.0).status == 0
        finally:
            close_association(channel)
    assert sorted(p.name for p in files(out)) == sorted(f"{u}.dcm" for u in [*uids, lone])


def test_pipelined_stores_then_release_get_every_response_before_the_release_answer(tmp_path):
    """Requests and the A-RELEASE-RQ written together: every response still comes before the release
    is confirmed."""
    from dcmnet_cli.dimse.assembler import CommandReceived
    from dcmnet_cli.ul.association import ReleaseConfirmed

    out = tmp_path / "out"
    uids = [f"1.2.826.0.1.3680043.10.1137.78.{i}" for i in range(4)]
    with listen_server("-od", str(out), "--no-fsync") as server:
        channel = associate(server.port)
        cid = context_for(channel)
        for uid in uids:
            channel.send_message(cid, c_store_rq(channel.next_message_id(), SC_IMAGE, uid), raw_dataset(SC_IMAGE, uid),
                                 flush=False)
        channel.conn.release()
        channel.flush()
        seen = []
        while (event := channel.next_event(10.0)) is not None:
            if isinstance(event, CommandReceived):
                seen.append(event.message.status)
            elif isinstance(event, ReleaseConfirmed):
                seen.append("released")
                break
        channel.close()
    assert seen == [0, 0, 0, 0, "released"]
    assert len(files(out)) == 4


# --------------------------------------------------------------------------- the output folder's descriptor

def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _store_in_process(scp, uid: str) -> int:
    """One C-STORE through a StoreHandler with a stand-in session; returns the response status."""
    from dcmnet_cli.dimse.commandset import Message
    from dcmnet_cli.services.scp.store_handler import StoreHandler
    from dcmnet_cli.services.session import AssociationReport
    from dcmnet_cli.ul.negotiation import AcceptedContext

    sent = []

    class Driver:
        peer = "test:1"

    class Session:
        driver, report = Driver(), AssociationReport("test:1", "SCU", "SCP")
        contexts = {1: AcceptedContext(1, SC_IMAGE, "1.2.840.10008.1.2.1")}

        def send(self, context_id, message, dataset=None):
            sent.append(decode(message.encode()))

    handler = StoreHandler(scp)
    handler.begin(Session(), 1, Message(0x0001, message_id=1, affected_sop_class_uid=SC_IMAGE,
                                        affected_sop_instance_uid=uid, priority=0, command_data_set_type=0))
    handler.fragment(memoryview(raw_dataset(SC_IMAGE, uid)), True)
    handler.complete(None)
    return sent[-1].status


def test_output_folder_descriptor_is_kept_reopened_when_remade_and_closed(tmp_path):
    from dcmnet_cli.services.scp.storage import StorageConfig, StorageSCP

    out = tmp_path / "out"
    before = _open_fds()
    scp = StorageSCP(StorageConfig(str(out), fsync=False))
    scp.prepare()
    for i in range(20):
        assert _store_in_process(scp, f"1.2.3.{i}") == 0
    # one descriptor for the folder and the next object's temporary made ahead (StorageSCP.make_spare),
    # none per object
    assert _open_fds() <= before + 1 + len(scp._spares) and len(scp._spares) <= 1
    shutil.rmtree(out)
    assert _store_in_process(scp, "1.2.3.100") == 0xA700  # gone: a failure, nothing stored
    out.mkdir()
    assert _store_in_process(scp, "1.2.3.101") == 0  # made again at the same path: used again
    assert sorted(p.name for p in out.iterdir()) == ["1.2.3.101.dcm"]
    scp.close(1.0)
    assert _open_fds() == before


# --------------------------------------------------------------------------- File Meta at the start of a data set

def _element(tag: int, vr: bytes, value: bytes, little: bool) -> bytes:
    order = "<" if little else ">"
    return struct.pack(f"{order}HH", tag >> 16, tag & 0xFFFF) + vr + struct.pack(f"{order}H", len(value)) + value


@pytest.mark.parametrize("little", [True, False])
@pytest.mark.parametrize("first", [None, 1, 3])
def test_file_meta_elements_at_the_start_are_left_out(little, first):
    meta = _element(0x00020010, b"UI", b"1.2.840.10008.1.2.1\0", little)
    rest = _element(0x00080016, b"UI", b"1.2.3\0", little) + _element(0x00080018, b"UI", b"1.2.3.4\0", little)
    data = meta + rest
    check = ReceivedDataset(False, little, False)
    pieces = [data] if first is None else [data[:first], data[first:]]
    written = b"".join(bytes(check.feed(memoryview(p))) for p in pieces)
    check.finish()
    assert written == rest
    assert check.dropped == len(meta)
    assert check.uids == ("1.2.3", "1.2.3.4")


@pytest.mark.parametrize("little", [True, False])
def test_a_data_set_without_file_meta_is_written_whole(little):
    rest = _element(0x00080016, b"UI", b"1.2.3\0", little) + _element(0x00080018, b"UI", b"1.2.3.4\0", little)
    for data in (rest, _element(0x02000010, b"LO", b"ab", little)):  # group 0200: its bytes read 0002 the other way
        check = ReceivedDataset(False, little, False)
        written = bytes(check.feed(memoryview(data)))
        check.finish()
        assert written == data
        assert check.dropped == 0


# --------------------------------------------------------------------------- a C-STORE-RQ decoded by index

def _store_rqs():
    from dcmnet_cli.dimse.commandset import c_store_rq

    for sop_class, sop_instance in UIDS:
        for message_id in (0, 1, 257, 0xFFFF):
            for priority in (0, 1, 2):
                yield c_store_rq(message_id, sop_class, sop_instance, priority).encode()


def test_a_store_request_read_by_index_is_the_general_reading():
    """Every usual C-STORE-RQ takes the shortcut, and it reads exactly what the element loop reads."""
    from dcmnet_cli.dimse import commandset

    for raw in _store_rqs():
        fast = commandset._store_rq(raw)
        assert fast is not None and fast == commandset._plain(raw) == commandset._general(raw)
        message = decode(raw)
        assert message.has_dataset and message.affected_sop_instance_uid in {i for _c, i in UIDS}


@pytest.mark.parametrize("extra", ["originator", "comment", "trailing group"])
def test_a_store_request_laid_out_otherwise_is_read_the_general_way(extra):
    """Elements the shortcut does not expect (a C-MOVE originator, an unknown element, another group after
    group 0000) leave it to the element loop, which keeps them."""
    from dcmnet_cli.dimse import commandset

    if extra == "originator":
        raw = c_store_rq(5, "1.2.3", "1.2.3.4", move_originator_aet="MOVER", move_originator_id=9).encode()
    else:
        base = c_store_rq(5, "1.2.3", "1.2.3.4").encode()
        tag = struct.pack("<HH", 0, 0x1031) if extra == "comment" else struct.pack("<HH", 0x0008, 0x0001)
        body = base[12:] + tag + struct.pack("<I", 2) + b"\x07\x00"
        raw = struct.pack("<HHII", 0, 0, 4, len(body)) + body
    assert commandset._store_rq(raw) is None
    message = decode(raw)
    assert (message.message_id, message.affected_sop_instance_uid) == (5, "1.2.3.4")
    if extra == "originator":
        assert (message.move_originator_aet, message.move_originator_message_id) == ("MOVER", 9)


def test_a_store_request_damaged_anywhere_is_never_misread(monkeypatch):
    """Any byte changed, or the bytes cut short: the shortcut reads what the element loop reads, or
    leaves it (and never reads what the element loop refuses); decode gives what it gives without the
    shortcuts."""
    from dcmnet_cli.dimse import commandset

    raw = c_store_rq(0x1234, UIDS[0][0], UIDS[0][1], 1).encode()
    cases = []
    for at in range(len(raw)):
        for value in (0x00, 0x01, 0x02, 0x30, 0x80, 0xFF, raw[at] ^ 0x10):
            damaged = raw[:at] + bytes([value]) + raw[at + 1:]
            fast = commandset._store_rq(damaged)
            assert fast is None or fast == commandset._plain(damaged), (at, value)
            cases.append(damaged)
    for end in range(len(raw)):
        assert commandset._store_rq(raw[:end]) is None
    with_shortcuts = [_decoded(case) for case in cases]
    monkeypatch.setattr(commandset, "_store_rsp_values", lambda buf: None)
    monkeypatch.setattr(commandset, "_store_rq_values", lambda buf: None)
    assert with_shortcuts == [_decoded(case) for case in cases]


# --------------------------------------------------------------------------- a C-STORE-RSP decoded by index

def _store_rsps():
    from dcmnet_cli.services.store_commands import store_rsp

    for sop_class, sop_instance in UIDS:
        for message_id in (0, 1, 257, 0xFFFF):
            for status in (0x0000, 0x0001, 0xA700, 0xB000, 0xC123, 0xFFFF):
                yield store_rsp(message_id, status, sop_class, sop_instance).encode()
                yield c_store_rsp(message_id, status, sop_class, sop_instance).encode()


def test_a_store_response_read_by_index_is_the_general_reading():
    """Every usual C-STORE-RSP (ours packed or general, storescp's) takes the shortcut, and it reads exactly
    what the element loop reads."""
    from test_dimse_commandset import capture_messages

    from dcmnet_cli.dimse import commandset

    dcmtk = [raw for _d, message, raw, _n in capture_messages("store.txt") if message.command_field == 0x8001]
    assert len(dcmtk) == 3
    for raw in [*_store_rsps(), *dcmtk]:
        fast = commandset._store_rsp(raw)
        assert fast is not None and fast == commandset._plain(raw) == commandset._general(raw)
        assert decode(raw).message_id_being_responded_to is not None


@pytest.mark.parametrize("extra", ["comment", "offending", "no instance", "trailing group", "a request"])
def test_a_store_response_laid_out_otherwise_is_read_the_general_way(extra):
    """An Error Comment, an Offending Element, a missing UID, another group after group 0000, or not a
    response at all: the element loop reads it, and keeps what the shortcut would not."""
    from dcmnet_cli.dimse import commandset

    if extra == "comment":
        raw = c_store_rsp(5, 0xC000, "1.2.3", "1.2.3.4", error_comment="disk full").encode()
    elif extra == "offending":
        raw = c_store_rsp(5, 0xA900, "1.2.3", "1.2.3.4", offending_element=(0x00080018,)).encode()
    elif extra == "no instance":
        raw = c_store_rsp(5, 0, "1.2.3", None).encode()
    elif extra == "a request":
        raw = c_store_rq(5, "1.2.3", "1.2.3.4").encode()
    else:
        base = c_store_rsp(5, 0, "1.2.3", "1.2.3.4").encode()
        body = base[12:] + struct.pack("<HH", 0x0008, 0x0001) + struct.pack("<I", 2) + b"\x07\x00"
        raw = struct.pack("<HHII", 0, 0, 4, len(body)) + body
    assert commandset._store_rsp(raw) is None
    message = decode(raw)
    if extra == "comment":
        assert (message.status, message.error_comment) == (0xC000, "disk full")
    elif extra == "offending":
        assert message.offending_element == (0x00080018,)


def _decoded(raw: bytes) -> object:
    """What decode gives: the Message, or the error's type and text."""
    try:
        return decode(raw)
    except Exception as error:  # noqa: BLE001 - compared, not handled
        return (type(error).__name__, str(error))


def test_a_store_response_damaged_anywhere_is_never_misread(monkeypatch):
    """Any byte changed, or the bytes cut short: decode gives what it gives without the shortcuts (the
    same Message, or the same error), e.g. a command field turned into a request's is refused for the
    request's missing elements, not taken as a request."""
    from dcmnet_cli.dimse import commandset

    raw = c_store_rsp(0x1234, 0xB000, UIDS[0][0], UIDS[0][1]).encode()
    cases = [raw[:at] + bytes([value]) + raw[at + 1:] for at in range(len(raw))
             for value in (0x00, 0x01, 0x02, 0x30, 0x80, 0xFF, raw[at] ^ 0x10)]
    cases += [raw[:end] for end in range(len(raw))]
    with_shortcuts = [_decoded(case) for case in cases]
    monkeypatch.setattr(commandset, "_store_rsp_values", lambda buf: None)
    monkeypatch.setattr(commandset, "_store_rq_values", lambda buf: None)
    assert with_shortcuts == [_decoded(case) for case in cases]
