"""Which attributes the index keeps, and how they are read from a data set's raw top-level values.

The Storage SCP already walks every received data set once (``part10/received.py``); asking that walk for
the tags of :data:`INDEXED` costs one set lookup per top-level element, so indexing needs no second parse
of the file. Files found in the folder at start (reconciliation) are walked the same way, up to Pixel Data
(:func:`read_file_attributes`). Values are decoded here to text with the data set's Specific Character
Set (stored as UTF-8 in the index); binary US values with the data set's byte order.

Only short-text VRs are indexed (PS3.5 caps them at 64 characters; LT/ST/UT are left out), so the
walker's 64 KiB bound on a wanted value never refuses a conformant object.
"""

from __future__ import annotations

import os
import struct
from operator import itemgetter
from typing import Any, Callable, Iterable, NamedTuple

PATIENT, STUDY, SERIES, IMAGE = "PATIENT", "STUDY", "SERIES", "IMAGE"
LEVELS = (PATIENT, STUDY, SERIES, IMAGE)


class Attribute(NamedTuple):
    tag: int
    keyword: str
    vr: str
    level: str


_TABLE = """
00100010 PatientName PN PATIENT
00100020 PatientID LO PATIENT
00100021 IssuerOfPatientID LO PATIENT
00100030 PatientBirthDate DA PATIENT
00100032 PatientBirthTime TM PATIENT
00100040 PatientSex CS PATIENT
00101000 OtherPatientIDs LO PATIENT
00102160 EthnicGroup SH PATIENT
00080020 StudyDate DA STUDY
00080030 StudyTime TM STUDY
00080050 AccessionNumber SH STUDY
00080090 ReferringPhysicianName PN STUDY
00081030 StudyDescription LO STUDY
00081060 NameOfPhysiciansReadingStudy PN STUDY
0020000D StudyInstanceUID UI STUDY
00200010 StudyID SH STUDY
00101010 PatientAge AS STUDY
00101020 PatientSize DS STUDY
00101030 PatientWeight DS STUDY
00102180 Occupation SH STUDY
00080060 Modality CS SERIES
0008103E SeriesDescription LO SERIES
00080021 SeriesDate DA SERIES
00080031 SeriesTime TM SERIES
00080070 Manufacturer LO SERIES
00080080 InstitutionName LO SERIES
00081010 StationName SH SERIES
00181030 ProtocolName LO SERIES
00180015 BodyPartExamined CS SERIES
0020000E SeriesInstanceUID UI SERIES
00200011 SeriesNumber IS SERIES
00200060 Laterality CS SERIES
00400244 PerformedProcedureStepStartDate DA SERIES
00400245 PerformedProcedureStepStartTime TM SERIES
00080005 SpecificCharacterSet CS IMAGE
00080008 ImageType CS IMAGE
00080012 InstanceCreationDate DA IMAGE
00080013 InstanceCreationTime TM IMAGE
00080016 SOPClassUID UI IMAGE
00080018 SOPInstanceUID UI IMAGE
00080022 AcquisitionDate DA IMAGE
00080023 ContentDate DA IMAGE
00080032 AcquisitionTime TM IMAGE
00080033 ContentTime TM IMAGE
00200012 AcquisitionNumber IS IMAGE
00200013 InstanceNumber IS IMAGE
00280008 NumberOfFrames IS IMAGE
00280010 Rows US IMAGE
00280011 Columns US IMAGE
"""

ATTRIBUTES: tuple[Attribute, ...] = tuple(
    Attribute(int(tag, 16), keyword, vr, level)
    for tag, keyword, vr, level in (line.split() for line in _TABLE.strip().splitlines()))
BY_TAG = {a.tag: a for a in ATTRIBUTES}
BY_KEYWORD = {a.keyword: a for a in ATTRIBUTES}
INDEXED: frozenset[int] = frozenset(BY_TAG)
"""The top-level tags whose values the index keeps."""

TEXT_VRS = frozenset({"PN", "LO", "SH", "LT", "ST", "UT", "UC"})
"""VRs whose bytes follow the Specific Character Set; the others are ASCII (PS3.5 §6.1.2.3)."""
_SIMPLE_CODECS = {"": "latin_1", "ISO_IR 6": "latin_1", "ISO_IR 100": "latin_1", "ISO_IR 192": "utf-8",
                  "ISO 2022 IR 6": "latin_1", "ISO 2022 IR 100": "latin_1"}
PIXEL_DATA = 0x7FE00010
CHARSET = 0x00080005


_ASCII, _TEXT, _US = 0, 1, 2
_KINDS = {a.tag: (a.keyword, _US if a.vr == "US" else _TEXT if a.vr in TEXT_VRS else _ASCII) for a in ATTRIBUTES}
"""Per indexed tag: its keyword and how its bytes become text (built once, not per value)."""


def decode_values(values: dict[int, bytes], little: bool = True) -> dict[str, str]:
    """Raw top-level values (``{tag: bytes}``) → ``{keyword: text}`` for the tags of :data:`INDEXED`.

    Multiple values stay joined by backslashes (the DICOM string form); padding is removed; an empty
    value is kept as ''. Text VRs are decoded with the data set's Specific Character Set."""
    return decode_items(values.items(), values, little)


def decode_items(items: Iterable[tuple[int, bytes]], values: dict[int, bytes], little: bool) -> dict[str, str]:
    """:func:`decode_values` of some of ``values``' items (``values`` gives the Specific Character Set)."""
    charsets: list[str] | None = None
    result: dict[str, str] = {}
    for tag, raw in items:
        kind = _KINDS.get(tag)
        if kind is None:
            continue
        keyword, how = kind
        if how == _ASCII:
            result[keyword] = raw.decode("latin_1").rstrip(" \0").strip()
        elif how == _TEXT and raw.isascii() and b"\x1b" not in raw:
            result[keyword] = raw.decode("ascii").rstrip(" \0")
        elif how == _TEXT:
            if charsets is None:
                charsets = [c.strip() for c in values.get(CHARSET, b"").decode("latin_1").rstrip("\0 ").split("\\")]
            result[keyword] = decode_text(raw, charsets).rstrip(" \0")
        elif len(raw) == 2:  # US, one value (Rows, Columns)
            result[keyword] = str(int.from_bytes(raw, "little" if little else "big"))
        else:  # US
            count = len(raw) // 2
            numbers = struct.unpack(f"{'<' if little else '>'}{count}H", raw[:count * 2])
            result[keyword] = "\\".join(str(n) for n in numbers)
    return result


def ascii_text(raw: bytes) -> str:
    """An ASCII VR's value (UI, CS, DA, ...) as :func:`decode_values` gives it (its ASCII branch, written
    out there for the loop's sake)."""
    return raw.decode("latin_1").rstrip(" \0").strip()


class RowPlan(NamedTuple):
    """Where a data set's values of each level are, for one layout of its kept values (their tags in
    order, which the instances of a series share): the index reads a row's values by position instead of
    by keyword, and compares the values above the instance level as the bytes received."""

    above: Callable[[tuple[bytes, ...]], tuple[bytes, ...]]
    """The values above the instance level, and the Specific Character Set that decodes them."""
    own_tags: tuple[int, ...]
    own: Callable[[tuple[bytes, ...]], tuple[bytes, ...]]
    """The instance level's values (:data:`own_tags`)."""
    series_at: int
    """Where the Series Instance UID is; -1: absent."""


_OWN_TAGS = frozenset(a.tag for a in ATTRIBUTES if a.level == IMAGE)
_PLANS: dict[tuple[int, ...], RowPlan] = {}
MAX_PLANS = 64
"""Layouts remembered by :func:`row_plan` (all forgotten when full: bounded memory)."""
SERIES_UID = BY_KEYWORD["SeriesInstanceUID"].tag


def _getter(positions: tuple[int, ...]) -> Callable[[tuple[bytes, ...]], tuple[bytes, ...]]:
    if len(positions) == 1:
        at = positions[0]
        return lambda values: (values[at],)
    return itemgetter(*positions) if positions else lambda values: ()


def row_plan(tags: tuple[int, ...]) -> RowPlan:
    """The :class:`RowPlan` of the kept values whose tags are ``tags``, in this order."""
    plan = _PLANS.get(tags)
    if plan is None:
        above = tuple(at for at, tag in enumerate(tags) if tag not in _OWN_TAGS or tag == CHARSET)
        own = tuple(at for at, tag in enumerate(tags) if tag in _OWN_TAGS)
        plan = RowPlan(_getter(above), tuple(tags[at] for at in own), _getter(own),
                       tags.index(SERIES_UID) if SERIES_UID in tags else -1)
        if len(_PLANS) >= MAX_PLANS:
            _PLANS.clear()
        _PLANS[tags] = plan
    return plan


class RawValues(NamedTuple):
    """The values a Storage SCP's walk kept (``{tag: bytes}``), queued as they are and decoded by whoever
    writes the index row (:func:`attributes_of`): after the C-STORE-RSP was sent, not before it."""

    values: dict[int, bytes]
    little: bool


def attributes_of(attributes: "dict[str, str] | RawValues") -> dict[str, str]:
    """``{keyword: text}`` of a row's attributes, decoding :class:`RawValues`."""
    if isinstance(attributes, RawValues):
        return decode_values(attributes.values, attributes.little)
    return attributes


def decode_text(raw: bytes, charsets: list[str]) -> str:
    """Bytes of a PN/LO/SH value in ``charsets`` (Specific Character Set values) → str."""
    if raw.isascii() and b"\x1b" not in raw:
        return raw.decode("ascii")
    codec = _SIMPLE_CODECS.get(charsets[0] if len(charsets) == 1 else "\x00")
    if codec is not None:
        return raw.decode(codec, "replace")
    import warnings

    from pydicom.charset import convert_encodings, decode_bytes  # ISO 2022 and the rarer sets

    try:
        delimiters: Any = {ord("^"), ord("="), ord("\\")}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return str(decode_bytes(raw, convert_encodings(charsets or ["ISO_IR 6"]), delimiters))
    except Exception:  # an unknown character set name: keep what is readable
        return raw.decode("latin_1")


def read_file_attributes(path: str) -> tuple[dict[str, str], str]:
    """The indexed attributes of a DICOM file and its transfer syntax, walking the file up to Pixel Data
    without decoding what is skipped; raises ValueError (or OSError) for a file that is not DICOM."""
    from ...part10.syntaxes import encoding_of
    from ...part10.walker import Part10Error, Walker
    from ..dicomfiles import read_meta

    try:
        meta = read_meta(path)
    except Exception as error:  # InputError: not DICOM, unreadable
        raise ValueError(str(error)) from None
    implicit, little, deflated = encoding_of(meta.transfer_syntax)
    if deflated:
        return _pydicom_attributes(path), meta.transfer_syntax
    walker = Walker(not implicit, little, INDEXED | {0x00080016, 0x00080018}, span=(0, PIXEL_DATA - 1),
                    descend=False)
    try:
        with open(path, "rb") as handle:
            handle.seek(meta.offset)
            while not walker.stopped:
                if walker.skippable:
                    step = walker.skippable
                    handle.seek(step, os.SEEK_CUR)
                    walker.skip(step)
                chunk = handle.read(1 << 16)
                if not chunk:
                    break
                walker.feed(chunk)
    except Part10Error as error:
        raise ValueError(str(error)) from None
    attributes = decode_values(walker.values, little)
    attributes.setdefault("SOPClassUID", meta.sop_class_uid)
    attributes.setdefault("SOPInstanceUID", meta.sop_instance_uid)
    return attributes, meta.transfer_syntax


def _pydicom_attributes(path: str) -> dict[str, str]:
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(INDEXED))
    return dataset_attributes(ds)


def dataset_attributes(ds: object) -> dict[str, str]:
    """The indexed attributes of a pydicom Dataset, in the same text form as :func:`decode_values`."""
    result: dict[str, str] = {}
    for attribute in ATTRIBUTES:
        element = ds.get(attribute.tag)  # type: ignore[attr-defined]
        if element is None or element.VR == "SQ":
            continue
        value = element.value
        if value is None:
            result[attribute.keyword] = ""
        elif isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            result[attribute.keyword] = "\\".join(str(v) for v in value)
        else:
            result[attribute.keyword] = str(value)
    return result
