"""Query/Retrieve information models and identifiers (PS3.4 Annex C, K), shared by find, move and get.

Only the Q/R commands import this module (it imports pydicom); ``dcmnet echo`` never pays for it.

Key syntax (``-k``), as DCMTK's findscu, plus sequence paths:

- ``Keyword=value`` or ``gggg,eeee=value`` (also ``(gggg,eeee)=value``): a matching key;
- ``Keyword`` or ``gggg,eeee`` alone (or with ``=`` and nothing after it): a return key (zero length);
- ``Seq[0].Keyword=value`` / ``Seq.Keyword``: an element inside item 0 (or item *n*) of a sequence,
  creating the sequence and its items as needed; ``Seq`` alone is an empty sequence (return key);
- a value for a multi-valued VR may use ``\\`` to separate values (UID lists, PS3.4 C.2.2.2.2).

Values are checked against their attribute's VR when the identifier is built, before any association:
a value the VR cannot hold (``Rows=70000``: US is 0..65535; ``SeriesNumber=abc``; ``StudyDate=2024-13-01``)
raises :class:`QueryKeyError` naming the key and what is allowed (exit 2), instead of failing later while
the identifier is encoded on an open association. Binary numbers (US SS UL SL UV SV FL FD) and AT must
fit; IS and DS must be integer / decimal strings in range; DA, TM and DT must be a value or a range
(PS3.4 C.2.2.2.5); UI a list of UIDs (C.2.2.2.2). These VRs take no wildcards (C.2.2.2.4); a lone ``*``
is let through for DA/TM/DT/UI because many SCPs read it as universal matching.

Default return keys rule: when ``default_return_keys`` is true, the keys of the level's
``DEFAULT_RETURN_KEYS`` that the identifier does not already contain are added as return keys, **unless**
the user asked for at least one return key (a key without a value) anywhere, in which case the user's
choice of what to see is respected and nothing is added. Matching keys alone never suppress defaults:
``-k PatientID=123`` still shows names, dates and descriptions.
"""

from __future__ import annotations

import re
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Sequence

from ..errors import DIMSEError, InputError, LocalDIMSEError, QueryKeyError, RemoteDIMSEError
from ..part10.syntaxes import IMPLICIT_LE
from ..part10.walker import walk

if TYPE_CHECKING:  # pragma: no cover
    from pydicom import Dataset


class Model(NamedTuple):
    """A Q/R information model: its name and the FIND/MOVE/GET SOP class UIDs ("" if none)."""

    name: str
    find: str
    move: str
    get: str


MODELS: dict[str, Model] = {
    "patient": Model("patient", "1.2.840.10008.5.1.4.1.2.1.1", "1.2.840.10008.5.1.4.1.2.1.2", "1.2.840.10008.5.1.4.1.2.1.3"),
    "study": Model("study", "1.2.840.10008.5.1.4.1.2.2.1", "1.2.840.10008.5.1.4.1.2.2.2", "1.2.840.10008.5.1.4.1.2.2.3"),
    "patient-study": Model("patient-study", "1.2.840.10008.5.1.4.1.2.3.1", "1.2.840.10008.5.1.4.1.2.3.2",
                           "1.2.840.10008.5.1.4.1.2.3.3"),
    "worklist": Model("worklist", "1.2.840.10008.5.1.4.31", "", ""),
}

LEVELS: tuple[str, ...] = ("PATIENT", "STUDY", "SERIES", "IMAGE")

# Levels each model supports (PS3.4 C.6.1, C.6.2, C.6.3); worklist has no levels (PS3.4 K.6).
MODEL_LEVELS: dict[str, tuple[str, ...]] = {
    "patient": LEVELS,
    "study": ("STUDY", "SERIES", "IMAGE"),
    "patient-study": ("PATIENT", "STUDY"),
    "worklist": (),
}

# The unique key of each level (PS3.4 C.2.2.1.1).
UNIQUE_KEYS: dict[str, str] = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}

DEFAULT_RETURN_KEYS: dict[str, tuple[str, ...]] = {
    "PATIENT": ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "NumberOfPatientRelatedStudies"),
    "STUDY": ("PatientName", "PatientID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID", "StudyDescription",
              "ModalitiesInStudy", "NumberOfStudyRelatedInstances", "StudyInstanceUID"),
    "SERIES": ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
               "NumberOfSeriesRelatedInstances"),
    "IMAGE": ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "InstanceNumber"),
    "WORKLIST": ("PatientName", "PatientID", "AccessionNumber", "RequestedProcedureID", "RequestedProcedureDescription",
                 "ScheduledProcedureStepSequence"),
}
WORKLIST_STEP_KEYS: tuple[str, ...] = (
    "Modality", "ScheduledStationAETitle", "ScheduledProcedureStepStartDate", "ScheduledProcedureStepStartTime",
    "ScheduledPerformingPhysicianName", "ScheduledProcedureStepDescription", "ScheduledProcedureStepID",
)

# Keys needed above the query level for the hierarchical models (PS3.4 C.4.1.2.1: the unique keys of the
# higher levels must be present in the identifier of a hierarchical query).
HIGHER_KEYS: dict[str, dict[str, tuple[str, ...]]] = {
    "patient": {"PATIENT": (), "STUDY": ("PatientID",), "SERIES": ("PatientID", "StudyInstanceUID"),
                "IMAGE": ("PatientID", "StudyInstanceUID", "SeriesInstanceUID")},
    "study": {"STUDY": (), "SERIES": ("StudyInstanceUID",), "IMAGE": ("StudyInstanceUID", "SeriesInstanceUID")},
    "patient-study": {"PATIENT": (), "STUDY": ("PatientID",)},
}


class QuerySpec(NamedTuple):
    """What a Q/R command sends: the model, the level (None for worklist) and the identifier."""

    model: Model
    level: str | None
    identifier: "Dataset"


# --------------------------------------------------------------------------------------- key parsing

_TAG = re.compile(r"^\(?([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})\)?$")
_COMPONENT = re.compile(r"^(?P<name>[^\[\]]+?)(?:\[(?P<index>\d+)\])?$")


def _tag_of(name: str) -> int:
    """A keyword or ``gggg,eeee`` as an integer tag; ValueError naming the culprit otherwise."""
    from pydicom.datadict import tag_for_keyword

    match = _TAG.match(name.strip())
    if match:
        return (int(match[1], 16) << 16) | int(match[2], 16)
    tag = tag_for_keyword(name.strip())
    if tag is None:
        raise ValueError(f"unknown attribute {name!r}: use a DICOM keyword (e.g. PatientName) or gggg,eeee")
    return tag


def _vr_of(tag: int) -> str:
    from pydicom.datadict import dictionary_VR

    try:
        vr = dictionary_VR(tag)
    except KeyError:
        if (tag & 0xFFFF) == 0:
            return "UL"  # group length
        if (tag >> 16) & 1:
            return "UN"  # a private element: no dictionary entry; sent as bytes
        raise ValueError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) is not in the DICOM dictionary") from None
    return vr.split(" or ")[0]  # US or SS etc.: the first is as good as any for a query


def _split_path(path: str) -> list[tuple[int, int | None]]:
    """``Seq[0].Sub[1].Key`` → [(tag, 0), (tag, 1), (tag, None)]. An unindexed sequence means item 0."""
    parts: list[tuple[int, int | None]] = []
    components = path.split(".")
    # A keyword never contains a dot; a UID-ish name like "1.2" is not a key at all.
    for position, component in enumerate(components):
        match = _COMPONENT.match(component.strip())
        if not match or not component.strip():
            raise ValueError(f"bad key path {path!r}: empty or malformed component {component!r}")
        tag = _tag_of(match["name"])
        last = position == len(components) - 1
        index = int(match["index"]) if match["index"] is not None else (None if last else 0)
        parts.append((tag, index))
    return parts


def _set_value(ds: "Dataset", tag: int, value: str | None, key: str | None = None) -> None:
    """Set ``tag`` to ``value`` (None / "" = zero-length return key) with its dictionary VR. A value the
    VR cannot hold raises :class:`QueryKeyError` naming ``key`` (the ``-k`` text) and what is allowed."""
    vr = _vr_of(tag)
    if vr == "SQ":
        if value:
            raise ValueError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) is a sequence: give a path into it "
                             f"(e.g. Seq[0].Keyword=value), not a value")
        if tag not in ds:
            ds.add_new(tag, "SQ", [])
        return
    if not value:
        ds.add_new(tag, vr, None)
        return
    _check_value(tag, vr, value, key)
    if vr in ("US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "AT", "OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        ds.add_new(tag, vr, _binary_value(tag, vr, value))
        return
    values = value.split("\\")
    try:
        ds.add_new(tag, vr, values if len(values) > 1 else value)
    except (ValueError, TypeError, OverflowError) as error:
        raise ValueError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) has VR {vr}: {value!r} is not a valid value ({error})") from None


def _int(text: str) -> int:
    """A decimal integer (leading zeros allowed), else Python's 0x / 0o / 0b forms; ValueError otherwise."""
    try:
        return int(text, 10)
    except ValueError:
        return int(text, 0)


def _binary_value(tag: int, vr: str, value: str) -> Any:
    try:
        if vr in ("US", "SS", "UL", "SL", "UV", "SV"):
            numbers = [_int(v) for v in value.split("\\")]
            return numbers if len(numbers) > 1 else numbers[0]
        if vr in ("FL", "FD"):
            floats = [float(v) for v in value.split("\\")]
            return floats if len(floats) > 1 else floats[0]
        if vr == "AT":
            return [_tag_of(v) for v in value.split("\\")]
    except ValueError:
        raise ValueError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) has VR {vr}: {value!r} is not a valid value") from None
    return value.encode("latin-1", "replace")


# ---------------------------------------------------------------------------------- value checks

_INT_RANGES: dict[str, tuple[int, int]] = {
    "US": (0, 0xFFFF), "SS": (-0x8000, 0x7FFF), "UL": (0, 0xFFFFFFFF), "SL": (-0x80000000, 0x7FFFFFFF),
    "UV": (0, 0xFFFFFFFFFFFFFFFF), "SV": (-0x8000000000000000, 0x7FFFFFFFFFFFFFFF),
    "IS": (-0x80000000, 0x7FFFFFFF),  # PS3.5 Table 6.2-1
}
_FLOAT32_MAX = 3.4028234663852886e38
_IS = re.compile(r"^ *[+-]?[0-9]+ *$")
_DS = re.compile(r"^ *[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)? *$")
_TM = re.compile(r"^([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:\.[0-9]{1,6})?)?)?$")
_DT = re.compile(r"^([0-9]{4})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:\.[0-9]{1,6})?)?)?)?)?)?"
                 r"(?:[+-]([0-9]{2})([0-9]{2}))?$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_RANGE_VRS = frozenset(("DA", "TM", "DT"))


def _allowed(vr: str) -> str:
    """What a value of ``vr`` may be, for the error message."""
    if vr in _INT_RANGES:
        low, high = _INT_RANGES[vr]
        return f"an integer {low}..{high}" + (" of at most 12 characters" if vr == "IS" else "")
    return {
        "FL": f"a finite number within +-{_FLOAT32_MAX:.7g}",
        "FD": "a finite number",
        "DS": "a decimal number of at most 16 characters, e.g. 1.5 or -2e3",
        "AT": "a tag gggg,eeee or a keyword",
        "DA": "a date YYYYMMDD or a range YYYYMMDD-YYYYMMDD (either end may be left out)",
        "TM": "a time HH[MM[SS[.FFFFFF]]] or a range of two (either end may be left out)",
        "DT": "a date-time YYYY[MM[DD[HH[MM[SS[.FFFFFF]]]]]][+-ZZZZ] or a range of two",
        "UI": "a UID (digits and dots, at most 64 characters), or a list UID1\\UID2",
    }.get(vr, "")


def _valid_one(vr: str, text: str) -> bool:
    """Is ``text`` one acceptable query value of ``vr`` (ranges included for DA/TM/DT)?"""
    import math

    if vr in _INT_RANGES:
        if vr == "IS" and (not _IS.match(text) or len(text) > 12):
            return False
        try:
            number = int(text, 10) if vr == "IS" else _int(text)
        except ValueError:
            return False
        low, high = _INT_RANGES[vr]
        return low <= number <= high
    if vr in ("FL", "FD", "DS"):
        if vr == "DS" and (not _DS.match(text) or len(text) > 16):
            return False
        try:
            real = float(text)
        except ValueError:
            return False
        return math.isfinite(real) and (vr != "FL" or abs(real) <= _FLOAT32_MAX)
    if vr == "AT":
        try:
            _tag_of(text)
        except ValueError:
            return False
        return True
    if vr == "UI":
        return text == "*" or (len(text) <= 64 and _UID.match(text) is not None)
    if vr in _RANGE_VRS:
        if text == "*":
            return True
        if _valid_point(vr, text):
            return True  # (a DT with a negative offset contains "-" and is still one value)
        for at, char in enumerate(text):
            if char == "-":
                start, end = text[:at], text[at + 1:]
                if (start or end) and all(not part or _valid_point(vr, part) for part in (start, end)):
                    return True
        return False
    return True


def _valid_point(vr: str, text: str) -> bool:
    """One DA, TM or DT value (not a range)."""
    import datetime

    if vr == "DA":
        if len(text) != 8 or not text.isdigit():
            return False
        try:
            datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
        except ValueError:
            return False
        return True
    if vr == "TM":
        match = _TM.match(text)
        return match is not None and _clock_ok(match[1], match[2], match[3])
    match = _DT.match(text)
    if match is None:
        return False
    month, day = match[2], match[3]
    if month is not None and not 1 <= int(month) <= 12:
        return False
    if day is not None and not 1 <= int(day) <= 31:
        return False
    if match[7] is not None and not (int(match[7]) <= 14 and int(match[8]) <= 59):
        return False
    return _clock_ok(match[4], match[5], match[6])


def _clock_ok(hour: str | None, minute: str | None, second: str | None) -> bool:
    return ((hour is None or int(hour) <= 23) and (minute is None or int(minute) <= 59)
            and (second is None or int(second) <= 60))  # 60: a leap second


def value_problem(vr: str, value: str) -> tuple[str, str] | None:
    """``(bad value, what is allowed)`` when ``value`` (one ``-k`` value, ``\\`` separating several)
    cannot be sent as ``vr``; None when it can, or when ``vr`` is not one this module checks."""
    if not _allowed(vr):
        return None
    for text in value.split("\\"):
        if not _valid_one(vr, text):
            return text, _allowed(vr)
    return None


def _check_value(tag: int, vr: str, value: str, key: str | None) -> None:
    """QueryKeyError naming the key, the attribute, its VR and what it allows, for a value it cannot hold."""
    problem = value_problem(vr, value)
    if problem is None:
        return
    from pydicom.datadict import keyword_for_tag

    bad, allowed = problem
    name = f"{keyword_for_tag(tag) or 'attribute'} ({tag >> 16:04X},{tag & 0xFFFF:04X})"
    raise QueryKeyError(f"{key or name}: {bad!r} is not a valid value for {name}, VR {vr}: {allowed}", key=key)


def apply_key(ds: "Dataset", key: str) -> bool:
    """Apply one ``-k`` key to ``ds``; returns True when it is a return key (no value given)."""
    from pydicom import Dataset

    path, eq, value = key.partition("=")
    if not path.strip():
        raise ValueError(f"bad key {key!r}: expected Keyword=value, gggg,eeee=value or Keyword")
    parts = _split_path(path)
    target = ds
    for tag, index in parts[:-1]:
        if _vr_of(tag) != "SQ":
            raise ValueError(f"bad key {key!r}: ({tag >> 16:04X},{tag & 0xFFFF:04X}) is not a sequence")
        if tag not in target or target[tag].VR != "SQ" or target[tag].value is None:
            target.add_new(tag, "SQ", [])
        items = target[tag].value
        while len(items) <= (index or 0):
            items.append(Dataset())
        target = items[index or 0]
    tag, index = parts[-1]
    if index is not None and _vr_of(tag) != "SQ":
        raise ValueError(f"bad key {key!r}: only sequences take an [index]")
    _set_value(target, tag, value if eq else None, key.strip())
    return not value


def build_identifier(keys: Sequence[str], level: str | None, base: "Dataset | None" = None,
                     default_return_keys: bool = True, model: str | None = None) -> "Dataset":
    """The C-FIND/MOVE/GET identifier: ``base`` (from ``-f``), then ``keys`` (``-k``, which override it),
    QueryRetrieveLevel set to ``level`` (when not None), and the level's default return keys when asked
    and the user named no return key (see the module docstring). ``level`` "WORKLIST" or None with
    model "worklist" uses the worklist defaults. Raises ValueError with a one-line reason on a bad key
    (:class:`QueryKeyError`, also a ValueError, for a value its VR cannot hold or an identifier that does
    not encode)."""
    import warnings

    with warnings.catch_warnings():
        # Query values are not stored values: "*" in a UI or "2024-" in a DA are valid keys (PS3.4 C.2.2.2),
        # so pydicom's value validation has nothing useful to say here.
        warnings.simplefilter("ignore")
        ds = _build_identifier(keys, level, base, default_return_keys, model)
    try:  # what the value checks do not cover (e.g. a value from -f) fails here, not on the wire; implicit
        encode_identifier(ds, IMPLICIT_LE)  # VR LE is the most permissive encoding (no 16-bit value lengths)
    except LocalDIMSEError as error:
        raise QueryKeyError(f"{error} (check the -k values and any -f file)") from None
    return ds


def _build_identifier(keys: Sequence[str], level: str | None, base: "Dataset | None",
                      default_return_keys: bool, model: str | None) -> "Dataset":
    from copy import deepcopy

    from pydicom import Dataset

    ds = deepcopy(base) if base is not None else Dataset()
    if hasattr(ds, "file_meta"):
        del ds.file_meta
    any_return_key = False
    for key in keys:
        any_return_key |= apply_key(ds, key)
    if "SpecificCharacterSet" not in ds and _has_non_ascii(ds):
        ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: what a non-ASCII key typed in a shell most likely is
    if level is not None:
        level = level.upper()
        if level not in LEVELS:
            raise ValueError(f"bad level {level!r}: expected one of {', '.join(LEVELS)}")
        ds.QueryRetrieveLevel = level
    if default_return_keys and not any_return_key:
        defaults_key = "WORKLIST" if (model == "worklist" or level is None) else level
        for keyword in DEFAULT_RETURN_KEYS.get(defaults_key or "", ()):
            if keyword not in ds:
                _set_value(ds, _tag_of(keyword), None)
        if defaults_key == "WORKLIST":
            steps = ds.ScheduledProcedureStepSequence
            if len(steps) == 0:
                steps.append(Dataset())
            for keyword in WORKLIST_STEP_KEYS:
                if keyword not in steps[0]:
                    _set_value(steps[0], _tag_of(keyword), None)
    if default_return_keys and not any_return_key and model in HIGHER_KEYS and level in HIGHER_KEYS[model]:
        for keyword in (*HIGHER_KEYS[model][level], UNIQUE_KEYS[level]):
            if keyword not in ds:
                _set_value(ds, _tag_of(keyword), None)
    return ds


def _has_non_ascii(ds: "Dataset") -> bool:
    for element in ds:
        if element.VR == "SQ":
            if any(_has_non_ascii(item) for item in element.value or ()):
                return True
            continue
        values = element.value if element.VM > 1 else [element.value]
        if any(isinstance(v, str) and not v.isascii() for v in values):
            return True
        if element.VR == "PN" and any(v is not None and not str(v).isascii() for v in values):
            return True
    return False


def check_level(model: str, level: str | None) -> None:
    """ValueError when ``level`` is not one the model has (worklist takes no level)."""
    allowed = MODEL_LEVELS[model]
    if model == "worklist":
        if level is not None:
            raise ValueError("the modality worklist model (-W) has no query level: drop -L")
        return
    if level is None or level.upper() not in allowed:
        raise ValueError(f"level {level} is not in the {model} root model: use one of {', '.join(allowed)}")


# ------------------------------------------------------------------------------------- (de)coding

def _encoding(transfer_syntax_uid: str) -> tuple[bool, bool, bool]:
    """(implicit VR, little endian, deflated) of a transfer syntax; uncompressed ones only for identifiers."""
    from ..part10.syntaxes import encoding_of

    return encoding_of(transfer_syntax_uid)


def encode_identifier(ds: "Dataset", transfer_syntax_uid: str) -> bytes:
    """The identifier as bytes in the context's transfer syntax (explicit/implicit, LE/BE, deflate).
    :class:`LocalDIMSEError` when a value cannot be encoded (our input: nothing is sent)."""
    import warnings

    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    implicit, little, deflated = _encoding(transfer_syntax_uid)
    buffer = DicomBytesIO()
    buffer.is_little_endian = little
    buffer.is_implicit_VR = implicit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            write_dataset(buffer, ds)
    except Exception as error:  # pydicom raises many types for unencodable values
        raise LocalDIMSEError(f"cannot encode the identifier: {_one_line(error)}") from error
    data = buffer.getvalue()
    if deflated:
        import zlib

        compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        data = compressor.compress(data) + compressor.flush()
    return data


_PYDICOM_TAG_ERROR = re.compile(r"^With tag \(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\) got exception: (.*)$")


def _one_line(error: Exception) -> str:
    """pydicom's write errors carry whole tracebacks in their text: keep the first line, as "(gggg,eeee)
    Keyword: reason" when it names the element."""
    lines = str(error).strip().splitlines()
    first = lines[0] if lines else type(error).__name__
    match = _PYDICOM_TAG_ERROR.match(first)
    if match is None:
        return first
    from pydicom.datadict import keyword_for_tag

    tag = (int(match[1], 16) << 16) | int(match[2], 16)
    keyword = keyword_for_tag(tag)
    return f"({match[1]},{match[2]}){' ' + keyword if keyword else ''}: {match[3]}"


def decode_identifier(data: bytes, transfer_syntax_uid: str) -> "Dataset":
    """Decode a response identifier fully (every value read and character set applied now, so a
    malformed identifier fails here with RemoteDIMSEError rather than later while printing)."""
    from pydicom.filereader import read_dataset

    implicit, little, deflated = _encoding(transfer_syntax_uid)
    try:
        if deflated:
            import zlib

            data = zlib.decompress(data, -zlib.MAX_WBITS)
        walk(data, not implicit, little)  # structure first: pydicom silently truncates an overlong value
        ds = read_dataset(BytesIO(data), implicit, little)
        if len(data) and len(ds) == 0:
            raise ValueError("no elements could be read")
        _force(ds)
        ds.decode()
    except DIMSEError:
        raise
    except Exception as error:
        raise RemoteDIMSEError(f"the peer sent an undecodable identifier ({len(data)} bytes): {error}") from None
    return ds


def _force(ds: "Dataset") -> None:
    """Read every element (pydicom parses lazily) so truncation and bad lengths surface now."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydicom warns (not raises) on some malformations
        for element in ds:
            if element.VR == "SQ":
                for item in element.value or ():
                    _force(item)


def load_query_file(path: str | Path) -> "Dataset":
    """A query dataset from a DICOM file (Part 10 or raw) or a DICOM JSON file (PS3.18 F)."""
    import json
    import warnings

    from pydicom import Dataset, dcmread

    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise InputError(f"cannot read query file {path}: {error.strerror or error}") from None
    text = raw.lstrip()[:1]
    if text in (b"{", b"["):
        try:
            obj = json.loads(raw.decode("utf-8"))
            if isinstance(obj, list):
                if len(obj) != 1:
                    raise ValueError("a JSON array must hold exactly one dataset")
                obj = obj[0]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pydicom's value warnings: build_identifier checks encoding
                return Dataset.from_json(obj)
        except Exception as error:
            raise InputError(f"{path} is not a DICOM JSON dataset: {error}") from None
    try:
        ds = dcmread(BytesIO(raw), force=True)
        if len(ds) == 0:
            raise ValueError("no data elements")
        _force(ds)
    except Exception as error:
        raise InputError(f"{path} is not a DICOM file: {error}") from None
    if hasattr(ds, "file_meta"):
        del ds.file_meta
    return ds
