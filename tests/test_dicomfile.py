"""File Meta parsing without decoding (``services.dicomfiles`` over ``part10.filehead``): offsets, bare data sets, bad input."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.uid import CTImageStorage, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, MRImageStorage

from dcmnet_cli.errors import InputError
from dcmnet_cli.services.dicomfiles import iter_chunks, read_meta

from store_helpers import make_dataset, uid, write


def _meta_element(group_elem: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"OB", b"UN"):
        return struct.pack("<HH", group_elem >> 16, group_elem & 0xFFFF) + vr + b"\0\0" + struct.pack("<I", len(value)) + value
    return struct.pack("<HH", group_elem >> 16, group_elem & 0xFFFF) + vr + struct.pack("<H", len(value)) + value


def _uid_value(text: str) -> bytes:
    raw = text.encode()
    return raw + b"\0" if len(raw) % 2 else raw


def handmade(path: Path, body: bytes = b"\x08\x00\x60\x00CS\x02\x00CT", group_length: bool = True,
             syntax: str = ExplicitVRLittleEndian) -> bytes:
    elements = (_meta_element(0x00020001, b"OB", b"\0\1")
                + _meta_element(0x00020002, b"UI", _uid_value(CTImageStorage))
                + _meta_element(0x00020003, b"UI", _uid_value("1.2.3.4"))
                + _meta_element(0x00020010, b"UI", _uid_value(syntax)))
    meta = (_meta_element(0x00020000, b"UL", struct.pack("<I", len(elements))) if group_length else b"") + elements
    data = b"\0" * 128 + b"DICM" + meta + body
    path.write_bytes(data)
    return data


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian])
def test_pydicom_files_meta_and_offset(tmp_path: Path, syntax: str) -> None:
    ds = make_dataset("meta-" + syntax, MRImageStorage)
    path = write(tmp_path / "a.dcm", ds, syntax)
    meta = read_meta(path)
    assert (meta.sop_class_uid, meta.sop_instance_uid, meta.transfer_syntax) == (MRImageStorage, uid("meta-" + syntax), syntax)
    assert meta.has_meta and meta.size == path.stat().st_size
    raw = path.read_bytes()
    # The data set starts right after group 0002: its first element is group 0008.
    first_group = struct.unpack(">H" if syntax == ExplicitVRBigEndian else "<H", raw[meta.offset:meta.offset + 2])[0]
    assert first_group == 0x0008
    assert raw[meta.offset - 200:meta.offset].find(syntax.encode()) != -1
    assert b"".join(iter_chunks(str(path), meta.offset, meta.dataset_length, chunk_size=1000)) == raw[meta.offset:]


@pytest.mark.parametrize("group_length", [True, False])
def test_handmade_meta_offsets(tmp_path: Path, group_length: bool) -> None:
    body = b"\x08\x00\x60\x00CS\x02\x00CT"
    data = handmade(tmp_path / "h.dcm", body, group_length)
    meta = read_meta(tmp_path / "h.dcm")
    assert meta.offset == len(data) - len(body)
    assert meta.sop_instance_uid == "1.2.3.4" and meta.sop_class_uid == CTImageStorage
    assert meta.transfer_syntax == ExplicitVRLittleEndian


def test_meta_only_file_has_empty_dataset(tmp_path: Path) -> None:
    data = handmade(tmp_path / "h.dcm", b"")
    meta = read_meta(tmp_path / "h.dcm")
    assert meta.offset == len(data) and meta.dataset_length == 0
    assert list(iter_chunks(str(tmp_path / "h.dcm"), meta.offset, 0)) == []


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
def test_files_without_meta(tmp_path: Path, syntax: str) -> None:
    ds = make_dataset("bare-" + syntax)
    ds.ReferencedImageSequence = [make_dataset("ref")[:0x00080019]]  # sorts after (0008,0018): never walked
    path = write(tmp_path / "bare.dcm", ds, syntax, meta=False)
    meta = read_meta(path)
    assert not meta.has_meta and meta.offset == 0
    assert meta.sop_instance_uid == uid("bare-" + syntax) and meta.sop_class_uid == CTImageStorage
    assert meta.transfer_syntax == syntax


def test_bare_dataset_with_undefined_length_sequence_before_sop_uids(tmp_path: Path) -> None:
    def implicit(tag: int, value: bytes) -> bytes:
        return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value

    item = implicit(0x00080100, b"121\0") + implicit(0x00080102, b"DCM\0")
    sequence = (struct.pack("<HHI", 0x0008, 0x0006, 0xFFFFFFFF)
                + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + item + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
                + struct.pack("<HHI", 0xFFFE, 0xE000, len(item)) + item
                + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    data = (implicit(0x00080005, b"ISO_IR 100") + sequence + implicit(0x00080016, _uid_value(CTImageStorage))
            + implicit(0x00080018, _uid_value("1.2.3.99")) + implicit(0x00100010, b"A^B\0"))
    (tmp_path / "seq").write_bytes(data)
    meta = read_meta(tmp_path / "seq")
    assert (meta.sop_class_uid, meta.sop_instance_uid, meta.offset) == (CTImageStorage, "1.2.3.99", 0)


@pytest.mark.parametrize("content, reason", [
    (b"", "too short"),
    (b"hello world, this is not DICOM at all\n" * 3, "not a DICOM file"),
    (b"\0" * 128 + b"DICM", "no Transfer Syntax"),
    (b"\0" * 128 + b"DICM\x02\x00\x00\x00UL\x04\x00\xff\x00\x00\x00", "truncated"),
    (b"\0" * 128 + b"DICM\x02\x00\x10\x00UI\x40\x00" + b"1.2", "truncated"),
    (b"\0" * 128 + b"DICM\x02\x00\x10\x00ZZ\x02\x00ab", "invalid VR"),
    (b"\0" * 128 + b"DICM\x02\x00\x01\x00OB\0\0\xff\xff\xff\xff", "undefined length"),
])
def test_bad_files_raise_input_error(tmp_path: Path, content: bytes, reason: str) -> None:
    (tmp_path / "bad").write_bytes(content)
    with pytest.raises(InputError, match=reason):
        read_meta(tmp_path / "bad")


@pytest.mark.parametrize("skew", [-2, 2])
def test_meta_group_length_must_match_its_elements(tmp_path: Path, skew: int) -> None:
    """PS3.10 §7.1: (0002,0000) counts the bytes of the group after it; a wrong count means a wrong offset."""
    elements = (_meta_element(0x00020002, b"UI", _uid_value(CTImageStorage))
                + _meta_element(0x00020003, b"UI", _uid_value("1.2.3.4"))
                + _meta_element(0x00020010, b"UI", _uid_value(ExplicitVRLittleEndian)))
    length = _meta_element(0x00020000, b"UL", struct.pack("<I", len(elements) + skew))
    (tmp_path / "m").write_bytes(b"\0" * 128 + b"DICM" + length + elements + b"\x08\x00\x60\x00CS\x02\x00CT")
    with pytest.raises(InputError, match=rf"group length \({len(elements) + skew} bytes\) does not match its elements"):
        read_meta(tmp_path / "m")


def test_missing_sop_instance_in_meta(tmp_path: Path) -> None:
    elements = _meta_element(0x00020002, b"UI", _uid_value(CTImageStorage)) + _meta_element(0x00020010, b"UI", _uid_value(ExplicitVRLittleEndian))
    (tmp_path / "m").write_bytes(b"\0" * 128 + b"DICM" + elements)
    with pytest.raises(InputError, match="Media Storage SOP Instance UID"):
        read_meta(tmp_path / "m")


def test_truncated_real_file_meta(tmp_path: Path) -> None:
    path = write(tmp_path / "a.dcm", make_dataset("trunc"))
    full = path.read_bytes()
    meta = read_meta(path)
    for cut in (10, 131, 140, meta.offset - 5):
        path.write_bytes(full[:cut])
        with pytest.raises(InputError):
            read_meta(path)


def test_unreadable_and_missing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_meta(tmp_path / "nope")
    with pytest.raises(InputError, match="folder"):
        read_meta(tmp_path)


def test_file_shrinking_while_streamed_is_an_input_error(tmp_path: Path) -> None:
    path = write(tmp_path / "a.dcm", make_dataset("shrink"))
    meta = read_meta(path)
    path.write_bytes(path.read_bytes()[: meta.offset + 10])
    with pytest.raises(InputError, match="shrank"):
        list(iter_chunks(str(path), meta.offset, meta.dataset_length))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=600), st.booleans())
def test_garbage_never_raises_anything_but_input_error(tmp_path: Path, junk: bytes, with_magic: bool) -> None:
    path = tmp_path / "junk"
    path.write_bytes((b"\0" * 128 + b"DICM" if with_magic else b"") + junk)
    try:
        meta = read_meta(path)
    except InputError:
        return
    assert 0 <= meta.offset <= meta.size  # parsed by chance: still a sane result


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(min_value=0, max_value=2000))
def test_any_truncation_of_a_real_file_is_input_error_or_consistent(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "t.dcm"
    if not (tmp_path / "full.dcm").exists():
        write(tmp_path / "full.dcm", make_dataset("cut"), ImplicitVRLittleEndian)
    path.write_bytes((tmp_path / "full.dcm").read_bytes()[:cut])
    try:
        meta = read_meta(path)
    except InputError:
        return
    assert meta.sop_instance_uid == uid("cut") and meta.offset <= cut


def test_meta_group_longer_than_the_first_read(tmp_path: Path) -> None:
    """A File Meta group past HEAD_SIZE (a big Private Information element) is read on demand."""
    from dcmnet_cli.services.dicomfiles import HEAD_SIZE

    body = b"\x08\x00\x60\x00CS\x02\x00CT"
    elements = (_meta_element(0x00020001, b"OB", b"\0\1")
                + _meta_element(0x00020002, b"UI", _uid_value(CTImageStorage))
                + _meta_element(0x00020003, b"UI", _uid_value("1.2.3.4"))
                + _meta_element(0x00020010, b"UI", _uid_value(ExplicitVRLittleEndian))
                + _meta_element(0x00020102, b"OB", b"p" * (3 * HEAD_SIZE)))
    meta_bytes = _meta_element(0x00020000, b"UL", struct.pack("<I", len(elements))) + elements
    data = b"\0" * 128 + b"DICM" + meta_bytes + body + b"\0" * 100_000  # larger than INLINE_MAX: head read only
    (tmp_path / "long").write_bytes(data)
    meta = read_meta(tmp_path / "long", keep_content=True)
    assert meta.offset == 132 + len(meta_bytes) and meta.sop_instance_uid == "1.2.3.4"
    assert meta.content is None  # too big to keep


def test_bare_dataset_with_uids_past_the_first_read(tmp_path: Path) -> None:
    def implicit(tag: int, value: bytes) -> bytes:
        return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value

    data = (implicit(0x00080005, b"ISO_IR 100") + implicit(0x00080008, b"ORIGINAL" * 5000)
            + implicit(0x00080016, _uid_value(CTImageStorage)) + implicit(0x00080018, _uid_value("1.2.3.77"))
            + implicit(0x7FE00010, b"\0" * 200_000))
    (tmp_path / "bare").write_bytes(data)
    meta = read_meta(tmp_path / "bare")
    assert (meta.sop_instance_uid, meta.transfer_syntax, meta.offset, meta.has_meta) == ("1.2.3.77", ImplicitVRLittleEndian, 0, False)


def test_small_file_content_identity_and_dataset_bytes(tmp_path: Path) -> None:
    from dcmnet_cli.services.dicomfiles import dataset_bytes

    path = write(tmp_path / "small.dcm", make_dataset("small", rows=8, columns=8))
    raw = path.read_bytes()
    kept, plain = read_meta(path, keep_content=True), read_meta(path)
    assert kept.content == raw and plain.content is None and kept == plain
    st = path.stat()
    assert kept.identity == (st.st_dev, st.st_ino)
    assert bytes(dataset_bytes(kept)) == bytes(dataset_bytes(plain)) == raw[kept.offset:]
    path.write_bytes(raw[:-10])
    assert bytes(dataset_bytes(kept)) == raw[kept.offset:]  # the bytes read with the meta
    with pytest.raises(InputError, match="shrank"):
        dataset_bytes(plain)


def test_open_dataset_checks_the_size(tmp_path: Path) -> None:
    import os

    from dcmnet_cli.services.dicomfiles import open_dataset

    path = write(tmp_path / "big.dcm", make_dataset("big", rows=256, columns=256))
    meta = read_meta(path)
    fd = open_dataset(meta)
    try:
        assert os.pread(fd, 4, meta.offset) == path.read_bytes()[meta.offset:meta.offset + 4]
    finally:
        os.close(fd)
    os.truncate(path, meta.size - 1)
    with pytest.raises(InputError, match="shrank"):
        open_dataset(meta)
    path.unlink()
    with pytest.raises(InputError, match="cannot read"):
        open_dataset(meta)
