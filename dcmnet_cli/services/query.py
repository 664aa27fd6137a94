"""Query/Retrieve information models and identifiers (PS3.4 Annex C, K), shared by find, move and get.

Only the Q/R commands import this module (it imports pydicom); ``dcmnet echo`` never pays for it.

Key syntax (``-k``), as DCMTK's findscu, plus sequence paths:

- ``Keyword=value`` or ``gggg,eeee=value`` (also ``(gggg,eeee)=value``): a matching key;
- ``Keyword`` or ``gggg,eeee`` alone (or with ``=`` and nothing after it): a return key (zero length);
- ``Seq[0].Keyword=value`` / ``Seq.Keyword``: an element inside item 0 (or item *n*) of a sequence,
  creating the sequence and its items as needed; ``Seq`` alone is an empty sequence (return key);
- a value for a multi-valued VR may use ``\\`` to separate values (UID lists, PS3.4 C.2.2.2.2).

Values are checked against their attribute's VR when the identifier is built, before any association
(:mod:`.query_values`): a value the VR cannot hold (``Rows=70000``: US is 0..65535; ``SeriesNumber=abc``;
``StudyDate=20241301``, a reversed range, a word; ``Modality`` over 16 characters; ``PatientAge=12X``)
raises :class:`QueryKeyError` naming the key, the value, the reason and the expected form (exit 2),
instead of matching nothing or failing later on an open association. ISO dates and times
(``2024-01-01``, ``10:15``, also in ranges) are sent in DICOM form. A keyword typed in another case is
accepted with a note; a misspelt one gets a suggestion. Binary numbers, AT, IS, DS, DA, TM, DT and UI take
no wildcards (C.2.2.2.4); a lone ``*`` is let through for DA/TM/DT/UI because many SCPs read it as
universal matching.

Character sets: a non-ASCII key without a Specific Character Set gets ISO_IR 192 (UTF-8); with ISO 2022
code extensions (``-k 'SpecificCharacterSet=\\ISO 2022 IR 87'``) text values are encoded by
:mod:`..part10.iso2022`, as the standard's examples and DCMTK do, so byte-matching SCPs find them.

Default return keys rule: when ``default_return_keys`` is true, the keys of the level's
``DEFAULT_RETURN_KEYS`` that the identifier does not already contain are added as return keys, **unless**
the user asked for at least one return key (a key without a value) anywhere, in which case the user's
choice of what to see is respected and nothing is added. Matching keys alone never suppress defaults:
``-k PatientID=123`` still shows names, dates and descriptions.
"""

from __future__ import annotations

import re
from io import BytesIO
from collections.abc import Sequence

from ..ul.typenames import TYPE_CHECKING, Any, NamedTuple  # typing's names, typing not imported
from ..errors import DIMSEError, InputError, LocalDIMSEError, QueryKeyError, RemoteDIMSEError
from ..part10.syntaxes import IMPLICIT_LE
from .query_values import normalize, tag_of, to_int, value_problem, vr_of

MAX_QUERY_FILE = 64 << 20  # a query identifier is a few KB; this only stops /dev/zero-like inputs

__all__ = ["MODELS", "QuerySpec", "build_identifier", "decode_identifier", "encode_identifier", "load_query_file",
           "value_problem"]

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

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

DEFAULT_RETURN_KEYS: dict[str, tuple[str, ...]] = {  # in the order find shows them (most telling first)
    "PATIENT": ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "NumberOfPatientRelatedStudies"),
    "STUDY": ("PatientName", "PatientID", "StudyDate", "StudyDescription", "ModalitiesInStudy", "AccessionNumber",
              "StudyInstanceUID", "NumberOfStudyRelatedInstances", "StudyTime", "StudyID"),
    "SERIES": ("Modality", "SeriesNumber", "SeriesDescription", "NumberOfSeriesRelatedInstances", "SeriesInstanceUID",
               "StudyInstanceUID"),
    "IMAGE": ("InstanceNumber", "SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"),
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
    """What a Q/R command sends: the model, the level (None for worklist) and the identifier (a pydicom
    Dataset for move/get, a lean DataSet for find: :mod:`.query_build`)."""

    model: Model
    level: str | None
    identifier: "Any"


# --------------------------------------------------------------------------------------- key parsing

_COMPONENT = re.compile(r"^(?P<name>[^\[\]]+?)(?:\[(?P<index>\d+)\])?$")


def _tag_of(name: str, notes: list[str] | None = None) -> int:
    """A keyword or ``gggg,eeee`` as an integer tag; ValueError naming the culprit (and the nearest
    keywords) otherwise; a keyword in the wrong case is accepted with a note (see :mod:`.query_values`)."""
    return tag_of(name, notes)


_vr_of = vr_of


def _split_path(path: str, notes: list[str] | None = None) -> list[tuple[int, int | None]]:
    """``Seq[0].Sub[1].Key`` → [(tag, 0), (tag, 1), (tag, None)]. An unindexed sequence means item 0."""
    parts: list[tuple[int, int | None]] = []
    components = path.split(".")
    # A keyword never contains a dot; a UID-ish name like "1.2" is not a key at all.
    for position, component in enumerate(components):
        match = _COMPONENT.match(component.strip())
        if not match or not component.strip():
            raise ValueError(f"bad key path {path!r}: empty or malformed component {component!r}")
        tag = _tag_of(match["name"], notes)
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
    value = normalize(vr, value.upper() if tag == 0x00080052 else value)  # ISO dates/times; the level is CS
    _check_value(tag, vr, value, key)
    if vr in ("US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "AT", "OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        ds.add_new(tag, vr, _binary_value(tag, vr, value))
        return
    values = value.split("\\")
    try:
        ds.add_new(tag, vr, values if len(values) > 1 else value)
    except (ValueError, TypeError, OverflowError) as error:
        raise ValueError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) has VR {vr}: {value!r} is not a valid value ({error})") from None


def _binary_value(tag: int, vr: str, value: str) -> Any:
    try:
        if vr in ("US", "SS", "UL", "SL", "UV", "SV"):
            numbers = [to_int(v) for v in value.split("\\")]
            return numbers if len(numbers) > 1 else numbers[0]
        if vr in ("FL", "FD"):
            floats = [float(v) for v in value.split("\\")]
            return floats if len(floats) > 1 else floats[0]
        if vr == "AT":
            return [_tag_of(v) for v in value.split("\\")]
    except ValueError:
        raise ValueError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) has VR {vr}: {value!r} is not a valid value") from None
    return value.encode("latin-1", "replace")


def _check_value(tag: int, vr: str, value: str, key: str | None) -> None:
    """QueryKeyError naming the key, the attribute, its VR and what it allows, for a value it cannot hold."""
    problem = value_problem(vr, value)
    if problem is None:
        return
    from ..part10.dataset_codec import keyword_of

    bad, allowed = problem
    name = f"{keyword_of(tag) or 'attribute'} ({tag >> 16:04X},{tag & 0xFFFF:04X})"
    raise QueryKeyError(f"{key or name}: {bad!r} is not a valid value for {name}, VR {vr}: {allowed}", key=key)


def apply_key(ds: "Dataset", key: str, notes: list[str] | None = None) -> bool:
    """Apply one ``-k`` key to ``ds``; returns True when it is a return key (no value given). Notes for
    the user (a keyword read in another case) are appended to ``notes``."""
    from pydicom import Dataset

    path, eq, value = key.partition("=")
    if not path.strip():
        raise ValueError(f"bad key {key!r}: expected Keyword=value, gggg,eeee=value or Keyword")
    parts = _split_path(path, notes)
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
                     default_return_keys: bool = True, model: str | None = None,
                     notes: list[str] | None = None) -> "Dataset":
    """The C-FIND/MOVE/GET identifier: ``base`` (from ``-f``), then ``keys`` (``-k``, which override it),
    QueryRetrieveLevel set to ``level`` (when not None), and the level's default return keys when asked
    and the user named no return key (see the module docstring). ``level`` "WORKLIST" or None with
    model "worklist" uses the worklist defaults. Raises ValueError with a one-line reason on a bad key
    (:class:`QueryKeyError`, also a ValueError, for a value its VR cannot hold or an identifier that does
    not encode). Notes for the user (see :func:`apply_key`) are appended to ``notes``."""
    import warnings

    with warnings.catch_warnings():
        # Query values are not stored values: "*" in a UI or "2024-" in a DA are valid keys (PS3.4 C.2.2.2),
        # so pydicom's value validation has nothing useful to say here.
        warnings.simplefilter("ignore")
        ds = _build_identifier(keys, level, base, default_return_keys, model, notes)
    try:  # what the value checks do not cover (e.g. a value from -f) fails here, not on the wire; implicit
        encode_identifier(ds, IMPLICIT_LE)  # VR LE is the most permissive encoding (no 16-bit value lengths)
    except LocalDIMSEError as error:
        raise QueryKeyError(f"{error} (check the -k values and any -f file)") from None
    return ds


def _build_identifier(keys: Sequence[str], level: str | None, base: "Dataset | None",
                      default_return_keys: bool, model: str | None, notes: list[str] | None) -> "Dataset":
    from copy import deepcopy

    from pydicom import Dataset

    ds = deepcopy(base) if base is not None else Dataset()
    if hasattr(ds, "file_meta"):
        del ds.file_meta
    any_return_key = False
    for key in keys:
        any_return_key |= apply_key(ds, key, notes)
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
    """The identifier as bytes in the context's transfer syntax (explicit/implicit, LE/BE, deflate); find's
    lean data sets are :func:`.query_build.encode_query`'s (which falls back to this one).
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
            write_dataset(buffer, _iso2022_ready(ds, None))
    except Exception as error:  # pydicom raises many types for unencodable values
        raise LocalDIMSEError(f"cannot encode the identifier: {_one_line(error)}") from error
    data = buffer.getvalue()
    if deflated:
        import zlib

        compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        data = compressor.compress(data) + compressor.flush()
    return data


_TEXT_VRS = frozenset(("PN", "LO", "SH", "ST", "LT", "UC", "UT"))


def _iso2022_ready(ds: "Dataset", inherited: list[str] | None) -> "Dataset":
    """``ds``, or a copy whose non-ASCII text values are already bytes when its Specific Character Set
    uses ISO 2022 code extensions: pydicom would put escape sequences where a byte-matching SCP finds
    nothing (see :mod:`..part10.iso2022`). Sequence items inherit the character set (PS3.5 §6.1.2.5.4)."""
    from pydicom import Dataset
    from pydicom.dataelem import DataElement

    from ..part10 import iso2022

    charsets = inherited
    if "SpecificCharacterSet" in ds and ds["SpecificCharacterSet"].value is not None:
        value = ds["SpecificCharacterSet"].value
        charsets = [str(v) for v in value] if ds["SpecificCharacterSet"].VM > 1 else [str(value)]
    if charsets is None or not iso2022.handles(charsets) or not _has_non_ascii(ds):
        return ds
    out = Dataset()
    for element in ds:
        value = element.value
        if element.VR == "SQ" and value:
            out.add(DataElement(element.tag, "SQ", [_iso2022_ready(item, charsets) for item in value]))
            continue
        if element.VR in _TEXT_VRS and value not in (None, ""):
            text = "\\".join(str(v) for v in value) if element.VM > 1 else str(value)
            if not text.isascii():
                out.add(DataElement(element.tag, element.VR, iso2022.encode(text, charsets)))
                continue
        out.add(element)
    return out


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

    from ..part10.walker import walk

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
        _drop_stray_escapes(ds)
    except DIMSEError:
        raise
    except Exception as error:
        raise RemoteDIMSEError(f"the peer sent an undecodable identifier ({len(data)} bytes): {error}") from None
    return ds


_STRAY_ESCAPES = ("\x1b$)A",)
"""Escape sequences pydicom 3.0 leaves in decoded text: ESC $ ) A (ISO 2022 IR 58, GB 2312 in G1), whose
bytes it decodes as GB 2312 without taking the designation out."""


def _drop_stray_escapes(ds: "Dataset") -> None:
    from pydicom.valuerep import PersonName

    for element in ds:
        if element.VR == "SQ":
            for item in element.value or ():
                _drop_stray_escapes(item)
            continue
        if element.VR not in _TEXT_VRS or element.value is None:
            continue
        values = list(element.value) if element.VM > 1 else [element.value]
        texts = [str(v) for v in values]
        if not any(esc in text for text in texts for esc in _STRAY_ESCAPES):
            continue
        for esc in _STRAY_ESCAPES:
            texts = [text.replace(esc, "") for text in texts]
        fixed: list[Any] = [PersonName(t) if element.VR == "PN" else t for t in texts]
        element.value = fixed if element.VM > 1 else fixed[0]


def _force(ds: "Dataset") -> None:
    """Read every element (pydicom parses lazily) so truncation and bad lengths surface now."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydicom warns (not raises) on some malformations
        for element in ds:
            if element.VR == "SQ":
                for item in element.value or ():
                    _force(item)


def load_query_file(path: "str | Path") -> "Dataset":
    """A query dataset from a DICOM file (Part 10 or raw) or a DICOM JSON file (PS3.18 F)."""
    import json
    import warnings
    from pathlib import Path  # here, not at import: ~3 ms of find's start-up

    from pydicom import Dataset, dcmread

    from ..transport.inputfiles import read_limited

    path = Path(path)
    try:
        raw = read_limited(path, MAX_QUERY_FILE)
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
