"""Unit tests for services/part10.py: our File Meta encoder parses with pydicom; the data set peek."""

from __future__ import annotations

import io
import zlib

import pydicom
import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence

from dcmnet_cli import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from dcmnet_cli.services import part10
from dcmnet_cli.services.sopclasses import (
    all_transfer_syntaxes,
    encoding_of,
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
