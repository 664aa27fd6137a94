"""The File Meta group read by index (``part10.filehead.meta_by_index``) against the element walker.

``read_meta`` parses a plain File Meta group in place and hands anything unusual (a group running past
the first read, an undefined length, an invalid VR, an oversized UID value) to the walker. Whatever the
bytes, a user must see the same thing either way: the same UIDs, syntax and offset, or the same error
line. Every case here runs ``read_meta`` twice, once as shipped and once with the by-index path turned
off, and compares what comes out.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from dcmnet_cli.errors import InputError
from dcmnet_cli.part10 import filehead
from dcmnet_cli.services import dicomfiles
from dcmnet_cli.services.dicomfiles import DicomFile, read_meta

BODY = b"\x08\x00\x60\x00CS\x02\x00CT"


def _el(tag: int, vr: bytes, value: bytes, length: int | None = None) -> bytes:
    size = len(value) if length is None else length
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr
    if vr in (b"OB", b"UN", b"SQ", b"UT"):
        return head + b"\0\0" + struct.pack("<I", size) + value
    return head + struct.pack("<H", size & 0xFFFF) + value


def _ui(text: str) -> bytes:
    raw = text.encode()
    return raw + b"\0" if len(raw) % 2 else raw


def _meta(*extra: bytes, group_length: int | None = 0, sop_instance: bytes = _ui("1.2.3.4")) -> bytes:
    elements = (_el(0x00020001, b"OB", b"\0\1") + _el(0x00020002, b"UI", _ui(CTImageStorage))
                + _el(0x00020003, b"UI", sop_instance) + _el(0x00020010, b"UI", _ui(ExplicitVRLittleEndian))
                + b"".join(extra))
    if group_length is None:
        return elements
    return _el(0x00020000, b"UL", struct.pack("<I", len(elements) + group_length)) + elements


def _outcome(path: Path) -> tuple[str, object]:
    try:
        meta = read_meta(path)
    except InputError as error:
        return "error", str(error)
    return "ok", (meta.sop_class_uid, meta.sop_instance_uid, meta.transfer_syntax, meta.offset, meta.has_meta)


def _both(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[tuple[str, object], tuple[str, object]]:
    fast = _outcome(path)
    with monkeypatch.context() as patched:
        patched.setattr(filehead, "meta_by_index", lambda head, start, size: None)
        walked = _outcome(path)
    return fast, walked


CASES = {
    "plain": b"\0" * 128 + b"DICM" + _meta() + BODY,
    "no group length": b"\0" * 128 + b"DICM" + _meta(group_length=None) + BODY,
    "group length too long": b"\0" * 128 + b"DICM" + _meta(group_length=2) + BODY,
    "group length too short": b"\0" * 128 + b"DICM" + _meta(group_length=-2) + BODY,
    "group length past the end": b"\0" * 128 + b"DICM" + _meta(group_length=4000) + BODY,
    "meta only": b"\0" * 128 + b"DICM" + _meta(),
    "magic without preamble": b"DICM" + _meta() + BODY,
    "neither preamble nor magic": _meta() + BODY,
    "invalid VR": b"\0" * 128 + b"DICM" + _meta(_el(0x00020016, b"ZZ", b"AE")) + BODY,
    "undefined length": b"\0" * 128 + b"DICM" + _meta(_el(0x00020100, b"SQ", b"", 0xFFFFFFFF)) + BODY,
    "SQ of defined length": b"\0" * 128 + b"DICM" + _meta(_el(0x00020100, b"SQ", b"\xfe\xff\x00\xe0\0\0\0\0")) + BODY,
    "long private value": b"\0" * 128 + b"DICM" + _meta(_el(0x00020102, b"OB", b"x" * 20000)) + BODY,
    "long private value, large file": (b"\0" * 128 + b"DICM" + _meta(_el(0x00020102, b"OB", b"x" * 20000)) + BODY
                                       + _el(0x7FE00010, b"OB", b"\0" * 70000)),
    "oversized UID": b"\0" * 128 + b"DICM" + _meta(sop_instance=b"1" * 1026) + BODY,
    "element past the end": b"\0" * 128 + b"DICM" + _meta(_el(0x00020016, b"AE", b"", 40)),
    "cut inside a header": (b"\0" * 128 + b"DICM" + _meta())[:-3],
    "no SOP instance": b"\0" * 128 + b"DICM" + _meta(sop_instance=b""),
    "item tag after the group": b"\0" * 128 + b"DICM" + _meta() + b"\xfe\xff\x00\xe0\0\0\0\0",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_by_index_and_walker_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    path = tmp_path / "f.dcm"
    path.write_bytes(CASES[name])
    fast, walked = _both(path, monkeypatch)
    assert fast == walked


def test_a_plain_group_is_read_by_index_with_the_walkers_result() -> None:
    data = CASES["plain"]
    found = filehead.meta_by_index(data, 132, len(data))
    assert found is not None
    assert (found.sop_class_uid, found.sop_instance_uid, found.offset) == (CTImageStorage, "1.2.3.4", len(data) - len(BODY))


@pytest.mark.parametrize("name", ["group length too long", "group length too short"])
def test_a_bad_group_length_is_still_refused_on_the_fast_path(tmp_path: Path, name: str) -> None:
    path = tmp_path / "f.dcm"
    path.write_bytes(CASES[name])
    with pytest.raises(InputError, match="group length .* does not match its elements"):
        read_meta(path)


@pytest.mark.parametrize("name", ["invalid VR", "undefined length", "long private value, large file", "oversized UID",
                                  "element past the end", "cut inside a header"])
def test_unusual_groups_go_to_the_walker(name: str) -> None:
    data = CASES[name]
    assert filehead.meta_by_index(data[:dicomfiles.HEAD_SIZE], 132, len(data)) is None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=len(CASES["plain"])), flip=st.integers(min_value=128, max_value=250),
       byte=st.integers(min_value=0, max_value=255))
def test_damaged_files_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut: int, flip: int, byte: int) -> None:
    data = bytearray(CASES["plain"][:cut] if cut >= 140 else CASES["plain"])
    if flip < len(data):
        data[flip] = byte
    path = tmp_path / "d.dcm"
    path.write_bytes(bytes(data))
    fast, walked = _both(path, monkeypatch)
    assert fast == walked


def test_dicomfile_is_immutable_and_compared_by_what_it_is(tmp_path: Path) -> None:
    path = tmp_path / "f.dcm"
    path.write_bytes(CASES["plain"])
    one, two = read_meta(path), read_meta(path, keep_content=True)
    assert one == two and hash(one) == hash(two) and len({one, two}) == 1
    assert two.content is not None and one.content is None
    assert one != DicomFile(str(path), one.sop_class_uid, "1.2.3.5", one.transfer_syntax, one.offset, one.size)
    with pytest.raises(AttributeError):
        one.offset = 0  # type: ignore[misc]
    assert not hasattr(one, "__dict__")
    assert "1.2.3.4" in repr(one) and "content" not in repr(one)
    assert dicomfiles.dataset_bytes(two) == BODY
