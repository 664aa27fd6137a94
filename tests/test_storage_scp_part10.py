"""Unit tests for part10: our File Meta encoder parses with pydicom; the received data set check; static tables."""

from __future__ import annotations

import io
import zlib

import pydicom
import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence

from dcmnet_cli import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from dcmnet_cli.part10 import filemeta as part10
from dcmnet_cli.part10.received import ReceivedDataset
from dcmnet_cli.part10.syntaxes import encoding_of
from dcmnet_cli.part10.walker import Part10Error, Truncated
from dcmnet_cli.part10.sopclasses import (
    all_transfer_syntaxes,
    narrowed,
    resolve_transfer_syntax,
    storage_sop_classes,
    storage_contexts,
)

SC = "1.2.840.10008.5.1.4.1.1.7"


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


def _received(data: bytes, implicit: bool, little: bool, size: int | None = None, deflated: bool = False) -> ReceivedDataset:
    """``data`` fed to a ReceivedDataset in pieces of ``size`` bytes (all at once by default), then finished."""
    check = ReceivedDataset(implicit, little, deflated)
    size = size or len(data) or 1
    for i in range(0, len(data), size):
        check.feed(memoryview(data[i:i + size]))
    check.finish()
    return check


@pytest.mark.parametrize("implicit,little", [(True, True), (False, True), (False, False)])
@pytest.mark.parametrize("with_sequence", [False, True])
def test_received_uids_in_each_encoding(implicit, little, with_sequence):
    data = _encode(_dataset(with_sequence), implicit, little)
    assert _received(data, implicit, little).uids == (SC, "1.2.3.4.5")


@pytest.mark.parametrize("implicit", [False, True])
def test_received_undefined_length_sequence(implicit):
    ds = _dataset(with_sequence=True)
    buffer = io.BytesIO()
    ds["LanguageCodeSequence"].is_undefined_length = True
    ds.LanguageCodeSequence[0].is_undefined_length_sequence_item = True
    ds.save_as(buffer, implicit_vr=implicit, little_endian=True)
    data = buffer.getvalue()
    assert b"\xfe\xff\xdd\xe0" in data  # the sequence delimiter is really there
    assert _received(data, implicit, True).uids == (SC, "1.2.3.4.5")


def test_received_truncated_malformed_and_empty():
    data = _encode(_dataset(), False, True)
    with pytest.raises(Truncated):
        _received(data[:30], False, True)
    with pytest.raises(Part10Error):
        _received(b"\x08\x00\x16\x00zz\x02\x00ab", False, True)
    assert _received(b"", False, True).uids is None  # empty data set: no UIDs (→ 0xA900)


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


def test_static_sequence_tags_match_pydicom():
    """part10.sequence_tags keeps a static copy of the dictionary's SQ tags (how the walker tells a sequence
    in implicit VR, without importing pydicom): no drift, repeating groups expanded to their even groups."""
    from pydicom._dicom_dict import DicomDictionary, RepeatersDictionary

    from dcmnet_cli.part10 import sequence_tags

    public = frozenset(tag for tag, entry in DicomDictionary.items() if entry[0] == "SQ")
    repeaters = sorted(int(mask.replace("x", "0"), 16) for mask, entry in RepeatersDictionary.items() if entry[0] == "SQ")
    assert all(mask.startswith("50xx") for mask, entry in RepeatersDictionary.items() if entry[0] == "SQ"), \
        "a repeating SQ outside group 50xx: extend sequence_tags.REPEATER_SEQUENCES' expansion"
    assert tuple(repeaters) == sequence_tags.REPEATER_SEQUENCES, "regenerate sequence_tags.REPEATER_SEQUENCES"
    expanded = frozenset(tag + (repeat << 16) for tag in repeaters for repeat in range(0, 0x100, 2))
    assert sequence_tags.SEQUENCE_TAGS == public | expanded, (
        f"regenerate sequence_tags._PUBLIC: missing {sorted(hex(t) for t in public - sequence_tags.SEQUENCE_TAGS)}, "
        f"extra {sorted(hex(t) for t in sequence_tags.SEQUENCE_TAGS - public - expanded)}")


def test_listen_start_up_does_not_import_pydicom():
    import subprocess
    import sys

    code = ("import sys; from dcmnet_cli.part10 import sopclasses; from dcmnet_cli.services.scp import storage; "
            "sopclasses.all_transfer_syntaxes(); sopclasses.storage_sop_classes(); "
            "sopclasses.resolve_transfer_syntax('RLELossless'); print('pydicom' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("size", [1, 7, 64, 1 << 20])
@pytest.mark.parametrize("implicit,little", [(False, True), (True, True), (False, False)])
def test_received_in_fragments_finds_the_uids(size, implicit, little):
    data = _encode(_dataset(with_sequence=True), implicit, little)
    data += b"\x09\x00\x10\x00" + (b"" if implicit else b"OB\x00\x00") + (5000).to_bytes(4, "little" if little else "big")
    data += b"\x00" * 5000  # a private element after them
    assert _received(data, implicit, little, size).uids == (SC, "1.2.3.4.5")


@pytest.mark.parametrize("size", [1, 13, 4096])
def test_received_deflated_in_fragments(size):
    data = _encode(_dataset(), False, True)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = compressor.compress(data) + compressor.flush()
    assert _received(deflated, False, True, size, deflated=True).uids == (SC, "1.2.3.4.5")
    with pytest.raises(Part10Error):
        _received(b"\xff" * 50, False, True, deflated=True)


def test_received_data_set_ending_inside_an_element():
    lead = b"\x08\x00\x06\x00UT\x00\x00" + (3000).to_bytes(4, "little") + b"x" * 3000
    data = lead + _encode(_dataset(), False, True)
    assert _received(data, False, True, 700).uids == (SC, "1.2.3.4.5")  # a long element first: no limit
    with pytest.raises(Truncated, match="3000 bytes"):
        _received(data[:3000], False, True, 1000)


def test_file_meta_group_length_follows_each_instance_uid():
    """The elements around (0002,0003) are built once per SOP class and association: the group length
    must still be each header's own."""
    for instance in ("1.2.3.4.5.6.7.8.9.10.11", "1.2", "1.2.3"):
        header = part10.file_meta(SC, instance, "1.2.840.10008.1.2.1", "STORESCU")
        length = int.from_bytes(header[140:144], "little")
        assert len(header) == 144 + length
        meta = pydicom.dcmread(io.BytesIO(header + _encode(_dataset(), implicit=False, little=True))).file_meta
        assert meta.MediaStorageSOPInstanceUID == instance
        assert meta.SourceApplicationEntityTitle == "STORESCU"
