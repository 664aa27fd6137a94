"""The lean data-set codec ``find`` uses instead of pydicom (part10/dataset_codec.py, dataset_encode.py,
services/query_build.py): decoded values, text and DICOM JSON equal pydicom's for many VRs, character sets
and sequences in every uncompressed syntax; what it leaves to pydicom comes out the same; malformed bytes
are one clean error (never a traceback); the generated dictionary matches the installed pydicom."""

from __future__ import annotations

import json
import os
import random
import warnings
from io import BytesIO

import pytest
from pydicom import Dataset
from pydicom._dicom_dict import DicomDictionary, RepeatersDictionary
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence

from dcmnet_cli.errors import LocalDIMSEError, QueryKeyError, RemoteDIMSEError
from dcmnet_cli.part10 import dictionary
from dcmnet_cli.part10.dataset_codec import DataSet, DecodeError, Element, Unsupported, decode, entry, tag_for_keyword
from dcmnet_cli.part10.dataset_encode import EncodeError, encode, to_json_dict
from dcmnet_cli.part10.dataset_json import json_line
from dcmnet_cli.services.query import build_identifier, encode_identifier
from dcmnet_cli.services.query_build import build_query, decode_match, encode_query, from_pydicom, to_pydicom

SYNTAXES = {"1.2.840.10008.1.2.1": (False, True), "1.2.840.10008.1.2": (True, True),
            "1.2.840.10008.1.2.2": (False, False)}
DEFLATED = "1.2.840.10008.1.2.1.99"


def pydicom_bytes(ds: Dataset, implicit: bool, little: bool) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = little, implicit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_dataset(buffer, ds)
    return buffer.getvalue()


def pydicom_read(data: bytes, implicit: bool, little: bool) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = read_dataset(BytesIO(data), implicit, little)
        ds.decode()
    return ds


def shown(element) -> str:  # type: ignore[no-untyped-def]
    """What find showed for a pydicom element before the lean codec (cli/commands/find.py's _text)."""
    value = element.value
    if value is None or value == "":
        return ""
    if element.VR == "SQ":
        return f"{len(value)} item" + ("" if len(value) == 1 else "s")
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return "\\".join(str(v) for v in value) if element.VM > 1 else str(value)


def assert_same(mine: DataSet, theirs: Dataset) -> None:
    assert to_json_dict(mine) == theirs.to_json_dict()
    assert json_line(mine) == json.dumps(theirs.to_json_dict(), ensure_ascii=False, separators=(",", ":"))
    assert [element.tag for element in mine.in_order()] == [int(element.tag) for element in theirs]
    for element in theirs:
        assert mine[int(element.tag)].text() == shown(element), element
        if element.VR == "SQ":
            for ours, item in zip(mine[int(element.tag)].value, element.value):
                assert_same(ours, item)


def many_vrs() -> Dataset:
    ds = Dataset()
    ds.PatientName = "Doe^John^^Dr=ド^ジョン"[:8]  # ASCII part only here; charsets below
    ds.PatientID = " ID 7 "
    ds.add_new(0x00080054, "AE", [" AE1 ", "AE2"])  # RetrieveAETitle
    ds.add_new(0x00101010, "AS", "045Y")
    ds.add_new(0x00209165, "AT", [0x00100010, 0x7FE00010])  # DimensionIndexPointer
    ds.add_new(0x00080060, "CS", "CT")
    ds.add_new(0x00080061, "CS", ["CT", "MR "])
    ds.add_new(0x00080020, "DA", "20240101-20241231")
    ds.add_new(0x00280030, "DS", ["0.5", "1.25", "-2e3"])
    ds.add_new(0x00181060, "DS", "")
    ds.add_new(0x0008002A, "DT", "20240101120000.5-0500")
    ds.add_new(0x00189218, "FD", [1.5, -2.25e10])
    ds.add_new(0x0010902A, "FL", 1.100000023841858) if 0x0010902A in DicomDictionary else None
    ds.add_new(0x00200013, "IS", "12")
    ds.add_new(0x00201208, "IS", ["1", "-7"])
    ds.add_new(0x00080070, "LO", ["Ab ", "C"])
    ds.add_new(0x00081090, "LO", "")
    ds.add_new(0x00102000, "LT", "line 1\r\nline\\2  ")
    ds.add_new(0x00420011, "OB", b"\x01\x02\x03")
    ds.add_new(0x00660023, "OF", b"\x00\x00\x80\x3f") if 0x00660023 in DicomDictionary else None
    ds.add_new(0x00081050, "PN", ["A^B", "C^D=E^F"])
    ds.add_new(0x00081030, "LO", "Study 1")
    ds.add_new(0x00200011, "IS", None)
    ds.add_new(0x00080050, "SH", "ACC 1")
    ds.add_new(0x00189219, "SS", [-3, 4])
    ds.add_new(0x00081195, "UI", "1.2.3")
    ds.add_new(0x00081150, "UI", ["1.2.840.10008.5.1.4.1.1.2", "1.2"])
    ds.add_new(0x00080080, "LO", "Hospital")
    ds.add_new(0x00080030, "TM", "101500.123")
    ds.add_new(0x00280010, "US", 512)
    ds.add_new(0x00282000, "OB", b"")
    ds.add_new(0x00081160, "IS", ["1", "2"])
    ds.add_new(0x00280106, "US", 0)
    ds.add_new(0x00189305, "FD", None)
    ds.add_new(0x00290010, "LO", "PRIVATE CREATOR")
    ds.add_new(0x00291010, "UN", b"\x00\x01\x02\x03")
    ds.add_new(0x0040A30A, "DS", "  3.5 ")
    ds.add_new(0x00080120, "UR", "http://example.com/a b ")
    ds.add_new(0x0040A160, "UT", "text\\with backslash ")
    ds.add_new(0x00080081, "ST", "Street 1 ")
    ds.add_new(0x00741000, "CS", "")
    ds.add_new(0x00186020, "SL", [-70000, 5])
    ds.add_new(0x00189306, "FD", 2.0)
    ds.add_new(0x00120062, "CS", None)
    ds.add_new(0x00280008, "IS", "1")
    ds.add_new(0x00081161, "UL", [1, 4294967295])  # SimpleFrameList
    ds.add_new(0x00189804, "DT", "")
    ds.add_new(0x0020000D, "UI", "1.2.826.0.1.3680043.8.498.1")
    return ds


def with_sequences(undefined: bool) -> Dataset:
    ds = Dataset()
    ds.PatientID = "SQ1"
    inner = Dataset()
    inner.CodeValue, inner.CodeMeaning = "X1", "Meaning"
    deeper = Dataset()
    deeper.CodeValue = "Y"
    inner.add_new(0x00400260, "SQ", Sequence([deeper]))  # PerformedProtocolCodeSequence
    ds.add_new(0x00081032, "SQ", Sequence([inner, Dataset()]))  # ProcedureCodeSequence
    ds.add_new(0x00081115, "SQ", Sequence([]))  # ReferencedSeriesSequence, empty
    if undefined:
        for element in (ds[0x00081032], inner[0x00400260], ds[0x00081115]):
            element.is_undefined_length = True
        for item in (inner, deeper):
            item.is_undefined_length_sequence_item = True
    return ds


@pytest.mark.parametrize("syntax", list(SYNTAXES))
@pytest.mark.parametrize("make", [many_vrs, lambda: with_sequences(False), lambda: with_sequences(True)],
                         ids=["vrs", "sequences", "undefined-lengths"])
def test_decoded_like_pydicom(syntax, make) -> None:
    implicit, little = SYNTAXES[syntax]
    data = pydicom_bytes(make(), implicit, little)
    try:
        mine = decode(data, implicit, little)
    except Unsupported as why:  # (0028,0106) "US or SS" in implicit VR: pydicom's to resolve
        assert implicit and "US or SS" in str(why)
        mine = decode_match(data, syntax)
    assert_same(mine, pydicom_read(data, implicit, little))
    again = encode(mine, implicit, little)  # and what we write, pydicom reads back the same
    assert_same(decode_match(again, syntax), pydicom_read(again, implicit, little))


@pytest.mark.parametrize("charset, name", [
    ("ISO_IR 100", "Müller^Zoë"), ("ISO_IR 192", "Müller^Zoë=ミュラー"), ("ISO_IR 126", "Διονυσιος"),
    ("ISO_IR 144", "Люкceмбypг"), ("ISO_IR 101", "Dvořák"), ("ISO_IR 148", "Çağlar"), ("GB18030", "Wang^XiaoDong=王^小东"),
    ("GBK", "王^小东"), ("ISO_IR 13", "ﾔﾏﾀﾞ^ﾀﾛｳ"), ("ISO_IR 166", "สวัสดี"),
])
@pytest.mark.parametrize("syntax", list(SYNTAXES))
def test_character_sets_decoded_like_pydicom(charset: str, name: str, syntax: str) -> None:
    implicit, little = SYNTAXES[syntax]
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    ds.PatientName = name
    ds.StudyDescription = name.replace("^", " ")
    item = Dataset()
    item.CodeMeaning = name[:5]
    ds.ProcedureCodeSequence = [item]
    data = pydicom_bytes(ds, implicit, little)
    assert_same(decode(data, implicit, little), pydicom_read(data, implicit, little))
    lean = build_query([f"PatientName={name}", "StudyDescription", f"SpecificCharacterSet={charset}"], "STUDY", None, False)
    back = pydicom_read(encode_query(lean, syntax), implicit, little)  # our encoder, pydicom's reader
    assert str(back.PatientName) == name and back.SpecificCharacterSet == charset


@pytest.mark.parametrize("charset", [["", "ISO 2022 IR 87"], "ISO 2022 IR 100", ["ISO_IR 100", "ISO_IR 192"], "ISO-IR 999",
                                     "ISO_IR 203"])  # pydicom 3.0 does not know ISO_IR 203: it decides
def test_what_the_reader_leaves_to_pydicom_comes_out_the_same(charset) -> None:
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    ds.PatientName = "Yamada^Tarou=山田^太郎" if "87" in str(charset) else "Müller"
    data = pydicom_bytes(ds, False, True)
    with pytest.raises(Unsupported):
        decode(data, False, True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mine = decode_match(data, "1.2.840.10008.1.2.1")
    assert to_json_dict(mine) == json.loads(json.dumps(pydicom_read(data, False, True).to_json_dict()))


def test_deflated_and_odd_lengths() -> None:
    ds = many_vrs()
    import zlib

    raw = pydicom_bytes(ds, False, True)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    assert_same(decode_match(compressor.compress(raw) + compressor.flush(), DEFLATED), pydicom_read(raw, False, True))
    odd = b"\x10\x00\x10\x00PN\x05\x00Doe^J" + b"\x10\x00\x20\x00LO\x03\x00ABC"  # odd lengths, as some SCPs send
    assert_same(decode(odd, False, True), pydicom_read(odd, False, True))
    assert decode(odd, False, True)[0x00100010].text() == "Doe^J"
    swapped = odd[13:] + odd[:13]  # out of order: pydicom's to read (its JSON keeps the wire order)
    with pytest.raises(Unsupported):
        decode(swapped, False, True)
    assert json_line(decode_match(swapped, "1.2.840.10008.1.2.1")) == json.dumps(
        pydicom_read(swapped, False, True).to_json_dict(), ensure_ascii=False, separators=(",", ":"))


# ------------------------------------------------------------------------------------ malformed

MALFORMED = [
    (b"\x10\x00\x10\x00PN\x20\x00Doe", "runs past the end"),
    (b"\x10\x00\x10\x00P", "runs past the end"),
    (b"\x10\x00\x10\x00ZZ\x02\x00AB", "invalid VR"),
    (b"\xfe\xff\x00\xe0\x00\x00\x00\x00", "outside a sequence"),
    (b"\x08\x00\x32\x10SQ\x00\x00\xff\xff\xff\xff\xfe\xff\x00\xe0\x00\x00\x00\x00", "without its delimiter"),
    (b"\x08\x00\x32\x10SQ\x00\x00\x0e\x00\x00\x00\x10\x00\x10\x00PN\x02\x00AB\x00\x00\x00\x00", "expected an item"),
    (b"\x08\x00\x32\x10SQ\x00\x00\x08\x00\x00\x00\xfe\xff\x00\xe0\x10\x00\x00\x00", "past the end"),
    (b"\x08\x00\x32\x10SQ\x00\x00\xff\xff\xff\xff\xfe\xff\x00\xe0\xff\xff\xff\xff\x10\x00\x10\x00PN\x00\x00", "Delimitation"),
]


@pytest.mark.parametrize("data, reason", MALFORMED)
def test_malformed_bytes_are_one_clean_error(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode(data, False, True)
    with pytest.raises(RemoteDIMSEError) as info:
        decode_match(data, "1.2.840.10008.1.2.1")
    assert "undecodable identifier" in str(info.value) and "\n" not in str(info.value)


def test_fuzzed_identifiers_never_raise_anything_else() -> None:
    """Seeded mutations of valid identifiers: a DataSet or RemoteDIMSEError, nothing else, no warning text."""
    rng = random.Random(int(os.environ.get("DCMNET_FUZZ_SEED", "20261202")))
    seeds = {syntax: [pydicom_bytes(make(), *SYNTAXES[syntax]) for make in (many_vrs, lambda: with_sequences(True))]
             for syntax in SYNTAXES}
    for case in range(1500):
        syntax = rng.choice(list(SYNTAXES))
        data = bytearray(rng.choice(seeds[syntax]))
        for _ in range(rng.randint(1, 4)):
            if not data:
                break
            at = rng.randrange(len(data))
            kind = rng.random()
            if kind < 0.4:
                data[at] ^= 1 << rng.randrange(8)
            elif kind < 0.6:
                del data[at:]
            elif kind < 0.8:
                data[at:at + 4] = rng.choice((b"\xff\xff\xff\xff", b"\xfe\xff\x00\xe0", b"\x00\x00\x00\x00", b"SQ\0\0"))
            else:
                del data[at:at + rng.randint(1, 8)]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = decode_match(bytes(data), syntax)
        except RemoteDIMSEError as error:
            assert "\n" not in str(error), (case, bytes(data))
            continue
        except Exception as error:  # pragma: no cover - the failure message is the point
            raise AssertionError(f"case {case} ({syntax}): {type(error).__name__}: {error}; data={bytes(data)!r}")
        assert isinstance(result, DataSet)
        assert json.loads(json_line(result)) == json.loads(json.dumps(to_json_dict(result)))
        for element in result:
            element.text()


# ------------------------------------------------------------------------------------ encoding

def test_encode_errors_name_the_element() -> None:
    ds = DataSet()
    ds.add(Element(0x00280010, "US", [70000]))
    with pytest.raises(EncodeError, match=r"\(0028,0010\) Rows: 70000 does not fit VR US \(0\.\.65535\)"):
        encode(ds, False, True)
    with pytest.raises(LocalDIMSEError, match="cannot encode the identifier"):
        encode_query(ds, "1.2.840.10008.1.2.1")
    long = DataSet()
    long.add(Element(0x00100010, "PN", ["x" * 70000]))
    with pytest.raises(EncodeError, match="too long for VR PN"):
        encode(long, False, True)
    assert len(encode(long, True, True)) == 8 + 70000  # implicit VR has 32-bit lengths
    latin = DataSet()
    latin.add(Element(0x00080005, "CS", ["ISO_IR 100"]))
    latin.add(Element(0x00100010, "PN", ["山田"]))
    with pytest.raises(EncodeError, match="not in the character set ISO_IR 100"):
        encode(latin, False, True)


@pytest.mark.parametrize("keys, level, defaults, model", [
    (["PatientName=Doe*", "0010,0020=ID1", "(0008,0020)=20240101-20241231", "StudyTime", "ModalitiesInStudy=CT\\MR",
      "ProcedureCodeSequence[0].CodeValue=X", "ProcedureCodeSequence[1].CodeMeaning"], "STUDY", True, "study"),
    (["PatientID=1"], "STUDY", True, "study"),
    (["PatientID=1", "Rows=512", "0028,0030=0.5\\0.5", "DimensionIndexPointer=PatientName"], "IMAGE", True, "patient"),
    (["PatientName=Müller*"], "PATIENT", True, "patient"),
    (["SpecificCharacterSet=\\ISO 2022 IR 87", "PatientName=*山田*"], "PATIENT", False, "patient"),
    (["ScheduledProcedureStepSequence[0].Modality=CT"], None, True, "worklist"),
    (["StudyDate=2024-01-01-2024-01-31", "StudyTime=10:15-", "QueryRetrieveLevel=SERIES"], "SERIES", True, "study"),
])
@pytest.mark.parametrize("syntax", [*SYNTAXES, DEFLATED])
def test_lean_identifier_equals_the_pydicom_one(keys, level, defaults, model, syntax) -> None:
    """The identifier find sends is, once decoded by pydicom, the one move/get (pydicom) builds."""
    lean = build_query(keys, level, None, defaults, model=model)
    classic = build_identifier(keys, level, None, defaults, model=model)
    mine = decode_match(encode_query(lean, syntax), syntax)
    theirs = decode_match(encode_identifier(classic, syntax), syntax)
    assert to_json_dict(mine) == to_json_dict(theirs)
    assert to_json_dict(from_pydicom(to_pydicom(lean))) == to_json_dict(lean)


def test_bad_keys_fail_the_same_way() -> None:
    for key in ("Rows=70000", "NoSuchThing=1", "PatientName[0].PatientID=1", "ProcedureCodeSequence=1", "=1",
                "SeriesNumber=abc", "StudyDate=20241301"):
        with pytest.raises(ValueError) as classic:
            build_identifier([key], "STUDY", None, True)
        with pytest.raises(ValueError) as lean:
            build_query([key], "STUDY", None, True)
        assert str(lean.value) == str(classic.value)
        assert type(lean.value) is type(classic.value)
    with pytest.raises(QueryKeyError, match="cannot encode the identifier"):
        base = DataSet()
        base.add(Element(0x00280010, "US", [70000]))
        build_query([], "STUDY", base, False)


# ------------------------------------------------------------------------------------ dictionary

def test_generated_dictionary_matches_the_installed_pydicom() -> None:
    """Rerun scripts/gen_dictionary.py when this fails after a pydicom upgrade."""
    lines = [line for line in dictionary.ENTRIES.split("\n") if line]
    assert len(lines) == len(DicomDictionary)
    for line in lines:
        tag, vr, keyword = line.split("\t")
        assert DicomDictionary[int(tag, 16)][0] == vr and DicomDictionary[int(tag, 16)][4] == keyword
    assert len(dictionary.REPEATERS) == len(RepeatersDictionary)
    assert entry(0x60003000) == ("OB or OW", "OverlayData") and entry(0x60023000) == ("OB or OW", "OverlayData")
    assert entry(0x00100010) == ("PN", "PatientName") and entry(0x00111010) is None
    assert tag_for_keyword("PatientName") == 0x00100010 and tag_for_keyword("patientname") is None


def test_generated_uid_registry_matches_the_installed_pydicom() -> None:
    from pydicom._uid_dict import UID_dictionary

    from dcmnet_cli.cli.find_output import registry_name
    from dcmnet_cli.part10.uid_registry import NAMES

    lines = [line.split("\t") for line in NAMES.split("\n") if line]
    assert {uid: name for uid, name in lines} == {uid: entry[0] for uid, entry in UID_dictionary.items()}
    assert registry_name("1.2.840.10008.5.1.4.1.1.1.1") == UID_dictionary["1.2.840.10008.5.1.4.1.1.1.1"][0]
    assert registry_name("1.2.3.4") is None and registry_name("") is None
