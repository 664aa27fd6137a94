"""Unit tests for services/part10.py: our File Meta encoder parses with pydicom; the data set peek."""

from __future__ import annotations

import io
import zlib

import pydicom
import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence

from dcmnet_cli import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from dcmnet_cli.part10 import filemeta as part10
from dcmnet_cli.part10.syntaxes import encoding_of
from dcmnet_cli.part10.sopclasses import (
    all_transfer_syntaxes,
    narrowed,
    resolve_transfer_syntax,
    storage_sop_classes,
    storage_contexts,
)

SC = "1.2.840.10008.5.1.4.1.1.7"
WANTED = {part10.SOP_CLASS_UID: SC, part10.SOP_INSTANCE_UID: "1.2.3.4.5"}


def _dataset(with_sequence: bool = False) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    if with_sequence:
        item = Dataset()
        item.CodeValue = "en"
        item.CodingSchemeDesignator = "RFC5646"
        ds.LanguageCodeSequence = Sequence([item])
    ds.SOPClassUID = SC
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.PatientID = "P"
    return ds


def _encode(ds: Dataset, implicit: bool, little: bool) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=implicit, little_endian=little)
    return buffer.getvalue()


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50"])
@pytest.mark.parametrize("aet", ["STORESCU", "", None])
def test_file_meta_parses_with_pydicom(syntax, aet):
    header = part10.file_meta(SC, "1.2.3.4.5", syntax, aet)
    ds = _dataset()
    data = _encode(ds, implicit=syntax == "1.2.840.10008.1.2", little=True)
    parsed = pydicom.dcmread(io.BytesIO(header + data))
    meta = parsed.file_meta
    assert header[:132] == bytes(128) + b"DICM"
    assert meta.FileMetaInformationVersion == b"\x00\x01"
    assert meta.MediaStorageSOPClassUID == SC
    assert meta.MediaStorageSOPInstanceUID == "1.2.3.4.5"
    assert meta.TransferSyntaxUID == syntax
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert meta.ImplementationVersionName == IMPLEMENTATION_VERSION_NAME
    assert meta.get("SourceApplicationEntityTitle") == (aet or None)
    # group length covers exactly the elements after it
    assert meta.FileMetaInformationGroupLength == len(header) - 132 - 12
    assert parsed.SOPInstanceUID == "1.2.3.4.5"


def test_file_meta_odd_and_hostile_values_stay_even_and_bounded():
    header = part10.file_meta(SC, "a\0b/é", "1.2.840.10008.1.2.1", "A")
    assert len(header) % 2 == 0
    with pytest.raises(part10.Part10Error):
        part10.file_meta(SC, "1" * 70000, "1.2.840.10008.1.2.1")


@pytest.mark.parametrize("implicit,little", [(True, True), (False, True), (False, False)])
@pytest.mark.parametrize("with_sequence", [False, True])
def test_peek_in_each_encoding(implicit, little, with_sequence):
    data = _encode(_dataset(with_sequence), implicit, little)
    assert part10.peek_elements(data, implicit, little) == WANTED


def test_peek_undefined_length_sequence():
    ds = _dataset(with_sequence=True)
    buffer = io.BytesIO()
    ds["LanguageCodeSequence"].is_undefined_length = True
    ds.LanguageCodeSequence[0].is_undefined_length_sequence_item = True
    ds.save_as(buffer, implicit_vr=False, little_endian=True)
    data = buffer.getvalue()
    assert b"\xfe\xff\xdd\xe0" in data  # the sequence delimiter is really there
    assert part10.peek_elements(data, False, True) == WANTED


def test_peek_truncated_and_malformed():
    data = _encode(_dataset(), False, True)
    cut = data[:30]
    assert part10.peek_elements(cut, False, True, complete=False) is None
    with pytest.raises(part10.Part10Error):
        part10.peek_elements(cut, False, True, complete=True)
    with pytest.raises(part10.Part10Error):
        part10.peek_elements(b"\x08\x00\x16\x00zz\x02\x00ab", False, True)
    assert part10.peek_elements(b"", False, True) == {}


def test_peek_stops_after_sop_instance_uid():
    data = _encode(_dataset(), False, True) + b"\xff" * 10  # garbage after: never read
    assert part10.peek_elements(data, False, True) == WANTED


def test_read_prefix_deflated():
    data = _encode(_dataset(), False, True)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = compressor.compress(data) + compressor.flush()
    blob = b"H" * 10 + deflated
    prefix, whole = part10.read_prefix(lambda n, off: blob[off:off + n], 10, True, 1 << 20)
    assert whole and prefix == data
    prefix, whole = part10.read_prefix(lambda n, off: blob[off:off + n], 10, True, 16)
    assert not whole and prefix == data[:16]
    with pytest.raises(part10.Part10Error):
        part10.read_prefix(lambda n, off: b"\xff" * n if off < 100 else b"", 0, True, 1000)


def test_sop_class_and_syntax_registry_rules():
    storage = storage_sop_classes()
    assert SC in storage and "1.2.840.10008.5.1.4.1.1.2" in storage  # CT
    assert "1.2.840.10008.1.20.1" not in storage  # Storage Commitment is not storage
    assert "1.2.840.10008.5.1.4.1.2.1.1" not in storage  # Q/R FIND
    syntaxes = all_transfer_syntaxes()
    assert syntaxes[:2] == ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
    assert "1.2.840.10008.1.2.5" in syntaxes and "1.2.840.10008.1.2.6.2" not in syntaxes
    assert resolve_transfer_syntax("RLELossless") == "1.2.840.10008.1.2.5"
    assert resolve_transfer_syntax("1.2.3.4") == "1.2.3.4"
    with pytest.raises(ValueError):
        resolve_transfer_syntax("NotASyntax")
    assert narrowed(["1.2.840.10008.1.2.5", "1.2.840.10008.1.2", "1.2.3"]) == (
        "1.2.840.10008.1.2", "1.2.840.10008.1.2.5", "1.2.3")
    assert encoding_of("1.2.840.10008.1.2") == (True, True, False)
    assert encoding_of("1.2.840.10008.1.2.2") == (False, False, False)
    assert encoding_of("1.2.840.10008.1.2.1.99") == (False, True, True)
    contexts = storage_contexts(("1.2.840.10008.1.2",), False, ("1.2.840.10008.1.2",))
    assert contexts(SC) == ("1.2.840.10008.1.2",) and contexts("1.2.3.4.5") is None
    assert storage_contexts(("x",), True, ())("1.2.3.4.5") == ("x",)


def test_static_registry_tables_match_pydicom():
    """sopclasses keeps static copies of pydicom's registry (no pydicom import at start-up): no drift."""
    import re

    from pydicom._uid_dict import UID_dictionary

    from dcmnet_cli.part10 import sopclasses

    word = re.compile(r"\bStorage\b")
    storage = frozenset(uid for uid, (name, kind, *_rest) in UID_dictionary.items()
                        if kind == "SOP Class" and word.search(name) and "Commitment" not in name)
    assert sopclasses.STORAGE_SOP_CLASSES == storage, (
        f"regenerate sopclasses.STORAGE_SOP_CLASSES: missing {sorted(storage - sopclasses.STORAGE_SOP_CLASSES)}, "
        f"extra {sorted(sopclasses.STORAGE_SOP_CLASSES - storage)}")
    syntaxes = tuple((uid, keyword) for uid, (_name, kind, _info, _retired, keyword) in UID_dictionary.items()
                     if kind == "Transfer Syntax")
    assert sopclasses.TRANSFER_SYNTAX_KEYWORDS == syntaxes, "regenerate sopclasses.TRANSFER_SYNTAX_KEYWORDS"


def test_listen_start_up_does_not_import_pydicom():
    import subprocess
    import sys

    code = ("import sys; from dcmnet_cli.part10 import sopclasses; from dcmnet_cli.services.scp import storage; "
            "sopclasses.all_transfer_syntaxes(); sopclasses.storage_sop_classes(); "
            "sopclasses.resolve_transfer_syntax('RLELossless'); print('pydicom' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def _feed_in_pieces(check: part10.HeadCheck, data: bytes, size: int) -> None:
    pieces = [data[i:i + size] for i in range(0, len(data), size)] or [b""]
    for i, piece in enumerate(pieces):
        if check.feed(memoryview(piece), i == len(pieces) - 1):
            return


@pytest.mark.parametrize("size", [1, 7, 64, 1 << 20])
@pytest.mark.parametrize("implicit,little", [(False, True), (True, True), (False, False)])
def test_head_check_in_fragments_matches_read_back(size, implicit, little):
    data = _encode(_dataset(with_sequence=True), implicit, little) + b"\x00" * 5000
    check = part10.HeadCheck(implicit, little, False, 1 << 20)
    _feed_in_pieces(check, data, size)
    assert check.decided and check.found == WANTED
    assert not check.buf  # nothing kept once decided


@pytest.mark.parametrize("size", [1, 13, 4096])
def test_head_check_deflated_in_fragments(size):
    data = _encode(_dataset(), False, True) + b"\x00" * 100_000
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = compressor.compress(data) + compressor.flush()
    check = part10.HeadCheck(False, True, True, 1 << 20)
    _feed_in_pieces(check, deflated, size)
    assert check.decided and check.found == WANTED
    bad = part10.HeadCheck(False, True, True, 1000)
    with pytest.raises(part10.Part10Error):
        bad.feed(b"\xff" * 50, False)


def test_head_check_limit_truncation_and_empty():
    lead = b"\x08\x00\x06\x00UT\x00\x00" + (3000).to_bytes(4, "little") + b"x" * 3000
    data = lead + _encode(_dataset(), False, True)
    for limit, expected in ((1000, None), (1 << 20, WANTED)):  # past the limit: skipped, like read_prefix
        check = part10.HeadCheck(False, True, False, limit)
        _feed_in_pieces(check, data, 700)
        prefix, whole = part10.read_prefix(lambda n, off: data[off:off + n], 0, False, limit)
        assert check.decided and check.found == expected == part10.peek_elements(prefix, False, True, complete=whole)
    check = part10.HeadCheck(False, True, False, 1 << 20)
    with pytest.raises(part10.Part10Error):  # the data set ends inside an element
        _feed_in_pieces(check, data[:3100], 1000)
    check = part10.HeadCheck(False, True, False, 1 << 20)
    assert check.feed(b"", True) and check.found == {}  # empty data set: no UIDs (→ 0xA900)
    check = part10.HeadCheck(False, True, False, 1 << 20)
    assert not check.feed(memoryview(data[:100]), False) and bytes(check.buf) == data[:100]  # copied: views get reused
