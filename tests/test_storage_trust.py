"""``listen`` answers Success only for what it verified: the context fits, the data set is whole, the file
carries one File Meta (ours), the path has no control character and cannot be swapped outside ``-od``,
and another ``listen`` on the same folder leaves in-flight temporaries alone.

Raw sockets (the package's own SCU pieces, tests/storage_helpers.py) against real ``dcmnet listen``
processes on 127.0.0.1, plus unit tests of the sans-IO pieces. Every server is stopped by its fixture.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import threading
import zlib

import pydicom
import pytest
from helpers.procs import listen_server
from storage_helpers import (
    CT_IMAGE,
    DEFLATED,
    EXPLICIT_LE,
    IMPLICIT_LE,
    SC_IMAGE,
    _el,
    associate,
    body,
    close_association,
    context_for,
    files,
    payload,
    raw_dataset,
    require_tool,
    send_partial,
    send_rest,
    store,
    temps,
    wait_response,
    wait_until,
)

from dcmnet_cli.dimse.commandset import VERIFICATION_SOP_CLASS, c_echo_rq, c_store_rq
from dcmnet_cli.part10.filenames import parse_template, safe_component
from dcmnet_cli.part10.received import ReceivedDataset
from dcmnet_cli.part10.walker import Part10Error

MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
UNKNOWN_CLASS = "1.2.826.0.1.3680043.9.7781.55.9"
ROOT = "1.2.826.0.1.3680043.9.7781.88"


def _store_message(channel, dataset: bytes, sop_instance: str, sop_class: str = SC_IMAGE, context_id: int | None = None):
    cid = context_id or context_for(channel, sop_class)
    channel.send_message(cid, c_store_rq(channel.next_message_id(), sop_class, sop_instance), dataset)
    return wait_response(channel)


def _ob_header(group: int, elem: int, length: int) -> bytes:
    return struct.pack("<HH2sHI", group, elem, b"OB", 0, length)


def _sq_open(group: int, elem: int) -> bytes:
    return struct.pack("<HH2sHI", group, elem, b"SQ", 0, 0xFFFFFFFF)


ITEM_OPEN = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
ITEM_CLOSE = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
SEQ_CLOSE = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    out = tmp_path_factory.mktemp("trust") / "out"
    with listen_server("-od", str(out)) as srv:
        yield srv, out


# --------------------------------------------------------------------------- 1. context fit


def test_request_must_fit_its_presentation_context(server):
    srv, out = server
    before = set(files(out))
    channel = associate(srv.port, sop_classes=((VERIFICATION_SOP_CLASS, (EXPLICIT_LE,)), (CT_IMAGE, (EXPLICIT_LE,))))
    try:
        verification, ct = context_for(channel, VERIFICATION_SOP_CLASS), context_for(channel, CT_IMAGE)
        uid = f"{ROOT}.1.1"
        assert store(channel, raw_dataset(CT_IMAGE, uid), uid, CT_IMAGE, verification) == 0x0122
        unknown = f"{ROOT}.1.2"
        assert store(channel, raw_dataset(UNKNOWN_CLASS, unknown), unknown, UNKNOWN_CLASS, verification) == 0x0122
        mr = f"{ROOT}.1.3"
        assert store(channel, raw_dataset(MR_IMAGE, mr), mr, MR_IMAGE, ct) == 0x0122
        channel.send_message(ct, c_echo_rq(channel.next_message_id()))
        assert wait_response(channel).status == 0x0122
        assert set(files(out)) == before and not temps(out)
        good = f"{ROOT}.1.4"
        assert store(channel, raw_dataset(CT_IMAGE, good), good, CT_IMAGE, ct) == 0  # the association goes on
        channel.send_message(verification, c_echo_rq(channel.next_message_id()))
        assert wait_response(channel).status == 0
    finally:
        close_association(channel)
    assert [p.name for p in set(files(out)) - before] == [f"{good}.dcm"]
    assert srv.alive()


# --------------------------------------------------------------------------- 2. whole data sets only


def _nested(depth: int) -> bytes:
    return (_sq_open(0x0040, 0xA730) + ITEM_OPEN) * depth + (ITEM_CLOSE + SEQ_CLOSE) * depth


BROKEN = {
    "pixel data 4000 declared, 3000 present": lambda uid: raw_dataset(SC_IMAGE, uid) + _ob_header(0x7FE0, 0x0010, 4000)
    + payload(1, 3000),
    "0xFFFFFFF0 declared, 4 present": lambda uid: raw_dataset(SC_IMAGE, uid) + _ob_header(0x0009, 0x1010, 0xFFFFFFF0)
    + b"abcd",
    "unclosed sequence": lambda uid: raw_dataset(SC_IMAGE, uid) + _sq_open(0x0040, 0xA730) + ITEM_OPEN
    + _el(0x0008, 0x0100, b"SH", b"CODE"),
    "3000 nested sequences": lambda uid: raw_dataset(SC_IMAGE, uid) + _nested(3000),
    "cut inside a header": lambda uid: raw_dataset(SC_IMAGE, uid) + b"\x10\x00\x20",
    "item length past its sequence": lambda uid: raw_dataset(SC_IMAGE, uid)
    + struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, 8) + struct.pack("<HHI", 0xFFFE, 0xE000, 100) + b"x" * 100,
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_truncated_or_malformed_dataset_is_never_success(server, case):
    srv, out = server
    before = set(files(out))
    uid = f"{ROOT}.2.{list(BROKEN).index(case)}"
    channel = associate(srv.port)
    try:
        answer = _store_message(channel, BROKEN[case](uid), uid)
        assert answer.status & 0xF000 == 0xC000, hex(answer.status)
        comment = answer.error_comment or ""
        assert 0 < len(comment) <= 64 and "\n" not in comment and "internal error" not in comment, comment
        assert set(files(out)) == before and not temps(out)
        assert store(channel, raw_dataset(SC_IMAGE, uid + ".1"), uid + ".1") == 0  # same association
    finally:
        close_association(channel)
    assert srv.alive()


def test_error_comment_names_the_short_element(server):
    srv, _out = server
    uid = f"{ROOT}.2.50"
    channel = associate(srv.port)
    try:
        answer = _store_message(channel, BROKEN["pixel data 4000 declared, 3000 present"](uid), uid)
    finally:
        close_association(channel)
    assert answer.status == 0xC000 and "(7FE0,0010)" in answer.error_comment and "4000" in answer.error_comment


def test_well_formed_nesting_and_encapsulated_pixels_still_stored(server):
    srv, out = server
    uid = f"{ROOT}.2.60"
    fragments = struct.pack("<HHI", 0xFFFE, 0xE000, 0) + struct.pack("<HHI", 0xFFFE, 0xE000, 6) + b"abcdef"
    defined_item = struct.pack("<HHI", 0xFFFE, 0xE000, 12) + _el(0x0008, 0x0100, b"SH", b"CODE")
    data = (raw_dataset(SC_IMAGE, uid) + _nested(40)
            + struct.pack("<HH2sHI", 0x0040, 0xA731, b"SQ", 0, len(defined_item)) + defined_item
            + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF) + fragments + SEQ_CLOSE)
    channel = associate(srv.port)
    try:
        assert store(channel, data, uid) == 0
    finally:
        close_association(channel)
    assert body(out / f"{uid}.dcm") == data


def test_deflated_dataset_is_walked_inflated(server):
    srv, out = server
    channel = associate(srv.port, sop_classes=((SC_IMAGE, (DEFLATED,)),))
    try:
        if not channel.assoc.contexts:
            pytest.skip("deflated not accepted by default")
        good_uid, cut_uid, meta_uid = f"{ROOT}.3.1", f"{ROOT}.3.2", f"{ROOT}.3.3"
        good = _deflate(raw_dataset(SC_IMAGE, good_uid, payload(2, 50_000)))
        assert store(channel, good, good_uid) == 0
        short = _deflate(raw_dataset(SC_IMAGE, cut_uid) + _ob_header(0x7FE0, 0x0010, 4000) + payload(1, 3000))
        assert store(channel, short, cut_uid) == 0xC000  # whole stream, truncated data set inside
        assert store(channel, good[:len(good) // 2], good_uid) == 0xC000  # the compressed stream is cut
        with_meta = _deflate(_el(0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2.2") + raw_dataset(SC_IMAGE, meta_uid))
        assert store(channel, with_meta, meta_uid) == 0xC000
    finally:
        close_association(channel)
    assert body(out / f"{good_uid}.dcm") == good
    assert not (out / f"{cut_uid}.dcm").exists() and not (out / f"{meta_uid}.dcm").exists() and not temps(out)


def _implicit(group: int, elem: int, value: bytes) -> bytes:
    """Implicit VR little endian element (PS3.5 §7.1.3): no VR on the wire."""
    return struct.pack("<HHI", group, elem, len(value)) + value


def _referenced_images(uid: str, explicit: bool, overrun: int) -> bytes:
    """The SC UIDs and (0008,1140) Referenced Image Sequence (SQ) of defined length: an item of undefined
    length, then one of defined length ``overrun`` bytes longer than what it holds (0: well formed)."""
    el = _el if explicit else (lambda group, elem, _vr, value: _implicit(group, elem, value))
    code = el(0x0008, 0x1150, b"UI", SC_IMAGE.encode() + b"\0")
    items = ITEM_OPEN + code + ITEM_CLOSE + struct.pack("<HHI", 0xFFFE, 0xE000, len(code) + overrun) + code
    return (el(0x0008, 0x0016, b"UI", SC_IMAGE.encode() + b"\0") + el(0x0008, 0x0018, b"UI", uid.encode())
            + el(0x0008, 0x1140, b"SQ", items) + el(0x0010, 0x0020, b"LO", b"PID1"))


@pytest.mark.parametrize("syntax", ["implicit", "explicit"])
def test_defined_length_sequence_item_overrun_is_never_stored(server, syntax):
    """An item running past its defined-length sequence: 0xC000, nothing kept, in either VR (in implicit VR
    the listener knows (0008,1140) is a sequence from the data dictionary); the well-formed one is stored."""
    srv, out = server
    explicit = syntax == "explicit"
    before = set(files(out))
    channel = associate(srv.port, sop_classes=((SC_IMAGE, (EXPLICIT_LE if explicit else IMPLICIT_LE,)),))
    bad_uid, good_uid = f"{ROOT}.3.{10 + 2 * explicit}", f"{ROOT}.3.{11 + 2 * explicit}"
    try:
        answer = _store_message(channel, _referenced_images(bad_uid, explicit, 8), bad_uid)
        assert answer.status == 0xC000, hex(answer.status)
        assert "runs past the end of sequence" in (answer.error_comment or "") and "\n" not in answer.error_comment
        assert set(files(out)) == before and not temps(out)
        good = _referenced_images(good_uid, explicit, 0)
        assert store(channel, good, good_uid) == 0  # same association
    finally:
        close_association(channel)
    assert body(out / f"{good_uid}.dcm") == good
    ds = pydicom.dcmread(out / f"{good_uid}.dcm")
    assert len(ds.ReferencedImageSequence) == 2 and ds.PatientID == "PID1"
    assert not (out / f"{bad_uid}.dcm").exists() and srv.alive()


def _deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def test_walker_fed_byte_by_byte_agrees():
    data = BROKEN["pixel data 4000 declared, 3000 present"](f"{ROOT}.4.1")
    check = ReceivedDataset(False, True, False)
    for i in range(len(data)):
        check.feed(data[i:i + 1])
    with pytest.raises(Part10Error, match="declares 4000 bytes, 3000 present"):
        check.finish()
    deep = ReceivedDataset(False, True, False, max_depth=None)  # unbounded: still iterative
    deep.feed(BROKEN["3000 nested sequences"](f"{ROOT}.4.2"))
    deep.finish()
    assert deep.uids == (SC_IMAGE, f"{ROOT}.4.2")


# --------------------------------------------------------------------------- 3. File Meta inside the data set

META_INSIDE = (_el(0x0002, 0x0003, b"UI", b"1.2.3.4.5.6.7") + _el(0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2.2"))


def test_file_meta_elements_in_the_dataset_are_not_stored(server):
    srv, out = server
    uid = f"{ROOT}.5.1"
    dataset = raw_dataset(SC_IMAGE, uid, payload(3, 1000), patient_id="META-IN")
    mark = srv.mark()
    channel = associate(srv.port)
    try:
        assert store(channel, META_INSIDE + dataset, uid) == 0
    finally:
        close_association(channel)
    path = out / f"{uid}.dcm"
    assert body(path) == dataset
    import pydicom

    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == EXPLICIT_LE and ds.file_meta.MediaStorageSOPInstanceUID == uid
    assert ds.PatientID == "META-IN" and not any(e.tag.group == 2 for e in ds)
    assert srv.wait_for_stderr("File Meta elements (group 0002)", since=mark), srv.stderr()
    dump = subprocess.run([require_tool("dcmdump"), str(path)], capture_output=True, text=True, timeout=20)
    assert dump.returncode == 0 and dump.stdout.count("(0002,0010)") == 1 and "1.2.3.4.5.6.7" not in dump.stdout


def test_file_meta_elements_split_across_fragments_unit():
    dataset = raw_dataset(SC_IMAGE, f"{ROOT}.5.2", payload(1, 300))
    data = META_INSIDE + dataset
    for size in (1, 3, 7, 13, len(data)):
        check = ReceivedDataset(False, True, False)
        written = b"".join(bytes(check.feed(data[i:i + size])) for i in range(0, len(data), size))
        check.finish()
        assert written == dataset and check.dropped == len(META_INSIDE), size
    check = ReceivedDataset(False, True, False)
    assert bytes(check.feed(dataset)) == dataset and check.dropped == 0


# --------------------------------------------------------------------------- 4. names


def test_control_characters_never_reach_a_path(tmp_path):
    out = tmp_path / "out"
    uid = f"{ROOT}.6.1\n"
    with listen_server("-od", str(out), "--filepath", "{PatientID}/{SOPInstanceUID}.dcm") as srv:
        channel = associate(srv.port)
        try:
            assert store(channel, raw_dataset(SC_IMAGE, uid, patient_id="abc\n"), uid) == 0
            tab = f"{ROOT}.6.2"
            assert store(channel, raw_dataset(SC_IMAGE, tab, patient_id="a\x7fb\tc"), tab) == 0
        finally:
            close_association(channel)
    stored = files(out)
    assert len(stored) == 2
    for path in stored:
        for part in path.relative_to(out).parts:
            assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in part), repr(part)
    assert all(path.parent.parent == out for path in stored)


def _utf8_dataset(uid: str, patient_id: str) -> bytes:
    return (_el(0x0008, 0x0005, b"CS", b"ISO_IR 192") + _el(0x0008, 0x0016, b"UI", SC_IMAGE.encode())
            + _el(0x0008, 0x0018, b"UI", uid.encode()) + _el(0x0010, 0x0020, b"LO", patient_id.encode("utf-8")))


def test_unicode_letters_kept_in_folder_names(tmp_path):
    out = tmp_path / "out"
    names = ["Dupré^Amélie", "山田^太郎", "Παπαδόπουλος"]
    with listen_server("-od", str(out), "--filepath", "{PatientID}/{SOPInstanceUID}.dcm") as srv:
        channel = associate(srv.port)
        try:
            for i, name in enumerate(names):
                uid = f"{ROOT}.7.{i}"
                assert store(channel, _utf8_dataset(uid, name), uid) == 0
        finally:
            close_association(channel)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".dcmnet-index")) == sorted(names)


@pytest.mark.parametrize("value", ["1.2.3\n", "abc\n", "a\rb", "x\x7f", "\x1b[31m", "ok\x85"])
def test_safe_component_full_match_hashes_control_characters(value):
    name = safe_component(value)
    assert name != value and not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in name)


@pytest.mark.parametrize("value", ["Dupré^Amélie", "山田^太郎", "Παπαδόπουλος", "Müller", "O'Brien"[:1] + "Brien"])
def test_safe_component_keeps_letters_of_any_script(value):
    assert safe_component(value) == value


@pytest.mark.parametrize("value", ["a/b", "a\\b", "a:b", "a|b", "a?b", "a*b", 'a"b', "a<b", ".hidden", "..", "nul",
                                   "é" * 65, "e\u0301", "name."])
def test_safe_component_hashes_what_is_unsafe(value):
    assert safe_component(value) != value


def test_template_renders_no_control_character():
    template = parse_template("{PatientID}/{SOPInstanceUID}.dcm", lambda k: True)
    path = template.render({"PatientID": "abc\n", "SOPInstanceUID": "1.2.3\n"})
    assert "\n" not in path and len(path.split("/")) == 2


# --------------------------------------------------------------------------- 5. path races


def test_folder_swapped_for_symlink_during_stores_never_escapes(tmp_path):
    out, outside = tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    out.mkdir()
    stop = threading.Event()

    def swapper() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            folder = out / "RAWSCU"
            try:
                if folder.is_dir() and not folder.is_symlink():
                    os.rename(folder, out / f"moved-{n}")
                folder.symlink_to(outside, target_is_directory=True)
            except OSError:
                pass
            stop.wait(0.0005)
            try:
                folder.unlink()
            except OSError:
                pass

    statuses: dict[str, int] = {}
    with listen_server("-od", str(out), "--no-fsync", "--filepath", "{CallingAET}/{SOPInstanceUID}.dcm") as srv:
        thread = threading.Thread(target=swapper, daemon=True)
        thread.start()
        channel = associate(srv.port)
        try:
            for i in range(200):
                uid = f"{ROOT}.8.{i}"
                statuses[uid] = store(channel, raw_dataset(SC_IMAGE, uid, payload(i, 200)), uid)
        finally:
            stop.set()
            thread.join(5)
            close_association(channel)
    assert not list(outside.rglob("*")), list(outside.rglob("*"))
    assert set(statuses.values()) <= {0, 0xC000, 0xA700}, set(statuses.values())
    inside = {p.name for p in out.rglob("*.dcm") if not p.is_symlink()}
    assert {f"{uid}.dcm" for uid, status in statuses.items() if status == 0} <= inside
    assert sum(1 for s in statuses.values() if s == 0) > 0
    assert not temps(out)


# --------------------------------------------------------------------------- 6. temporaries of others


def test_second_listen_leaves_in_flight_temporary_alone(tmp_path):
    out = tmp_path / "out"
    uid = f"{ROOT}.9.1"
    data = raw_dataset(SC_IMAGE, uid, payload(9, 600_000))
    with listen_server("-od", str(out)) as first:
        channel = associate(first.port)
        try:
            send_partial(channel, data, uid, pdus=2)
            assert wait_until(lambda: len(temps(out)) == 1)
            orphan = out / ".dcmnet-tmp-deadbeef-0.part"
            orphan.write_bytes(b"left by a crash")
            with listen_server("-od", str(out)) as second:
                assert second.wait_for_stderr("removed 1 leftover"), second.stderr()
                assert len(temps(out)) == 1 and not orphan.exists()
                send_rest(channel, data, uid, pdus=2)
                assert wait_response(channel).status == 0
        finally:
            close_association(channel)
    assert body(out / f"{uid}.dcm") == data and not temps(out)


def test_clean_leftovers_skips_locked_temporaries(tmp_path):
    from dcmnet_cli.services.scp.placement import clean_leftovers, create_temp, open_root

    root_fd = open_root(str(tmp_path))
    try:
        name, fd = create_temp(root_fd)
        (tmp_path / ".dcmnet-tmp-0-0.part").write_bytes(b"x")
        assert clean_leftovers(str(tmp_path)) == 1
        assert (tmp_path / name).exists()
        os.close(fd)  # the writer is gone: its temporary is a leftover now
        assert clean_leftovers(str(tmp_path)) == 1 and not (tmp_path / name).exists()
    finally:
        os.close(root_fd)
    shutil.rmtree(tmp_path, ignore_errors=True)
