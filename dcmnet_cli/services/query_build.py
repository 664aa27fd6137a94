"""``find``'s query identifiers and matches as lean data sets (:mod:`..part10.dataset_codec`), without pydicom.

The same keys, checks and default return keys as :func:`.query.build_identifier` (the module docstring of
:mod:`.query` states the rules; move and get still build pydicom data sets there), but the identifier is
a :class:`~..part10.dataset_codec.DataSet` encoded by our own codec, and each C-FIND response is
decoded by it. pydicom is imported only for what this path hands over:

- ``-f FILE`` (:func:`load_query` reads it with pydicom, then :func:`from_pydicom` converts it);
- ``-od`` (:func:`to_pydicom` makes the data set pydicom writes as a Part-10 file);
- a response our reader leaves to pydicom (:class:`~..part10.dataset_codec.Unsupported`: ISO 2022
  code extensions, an unknown character set, ...): decoded by :func:`.query.decode_identifier`, then
  converted, so the output is the same whoever decoded;
- an identifier our encoder leaves to pydicom (a multi-valued character set without code extensions).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..ul.typenames import TYPE_CHECKING, Any  # typing's names, typing not imported (start-up)
from ..errors import LocalDIMSEError, QueryKeyError, RemoteDIMSEError
from ..part10.dataset_codec import BYTES_VRS, NUMBER_FORMATS, DataSet, DecodeError, Element, Unsupported, decode
from ..part10.dataset_encode import EncodeError, encode
from ..part10.syntaxes import encoding_of
from .query import DEFAULT_RETURN_KEYS, HIGHER_KEYS, LEVELS, UNIQUE_KEYS, WORKLIST_STEP_KEYS, _split_path
from .query_values import normalize, tag_of, to_int, value_problem, vr_of

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

_BINARY = frozenset(NUMBER_FORMATS) | BYTES_VRS | {"AT"}
_SINGLE = frozenset(("ST", "LT", "UT", "UR"))


# ------------------------------------------------------------------------------------- building

def set_value(ds: DataSet, tag: int, value: str | None, key: str | None = None) -> None:
    """Set ``tag`` to ``value`` (None / "" = a zero-length return key) with its dictionary VR; a value
    the VR cannot hold raises :class:`QueryKeyError` naming ``key`` and what is allowed."""
    vr = vr_of(tag)
    if vr == "SQ":
        if value:
            raise ValueError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) is a sequence: give a path into it "
                             f"(e.g. Seq[0].Keyword=value), not a value")
        if tag not in ds:
            ds.add(Element(tag, "SQ", []))
        return
    if not value:
        ds.add(Element(tag, vr, b"" if vr in BYTES_VRS else []))
        return
    value = normalize(vr, value.upper() if tag == 0x00080052 else value)  # ISO dates/times; the level is CS
    problem = value_problem(vr, value)
    if problem is not None:
        from ..part10.dataset_codec import keyword_of

        bad, allowed = problem
        name = f"{keyword_of(tag) or 'attribute'} ({tag >> 16:04X},{tag & 0xFFFF:04X})"
        raise QueryKeyError(f"{key or name}: {bad!r} is not a valid value for {name}, VR {vr}: {allowed}", key=key)
    if vr in _BINARY:
        ds.add(Element(tag, vr, _binary(tag, vr, value)))
        return
    ds.add(Element(tag, vr, [value] if vr in _SINGLE else value.split("\\")))


def _binary(tag: int, vr: str, value: str) -> Any:
    try:
        if vr in ("FL", "FD"):
            return [float(v) for v in value.split("\\")]
        if vr in NUMBER_FORMATS:
            return [to_int(v) for v in value.split("\\")]
        if vr == "AT":
            return [tag_of(v) for v in value.split("\\")]
    except ValueError:
        raise ValueError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) has VR {vr}: {value!r} is not a valid value") from None
    return value.encode("latin-1", "replace")


def apply_key(ds: DataSet, key: str, notes: list[str] | None = None) -> bool:
    """Apply one ``-k`` key to ``ds``; True when it is a return key (no value given)."""
    path, eq, value = key.partition("=")
    if not path.strip():
        raise ValueError(f"bad key {key!r}: expected Keyword=value, gggg,eeee=value or Keyword")
    parts = _split_path(path, notes)
    target = ds
    for tag, index in parts[:-1]:
        if vr_of(tag) != "SQ":
            raise ValueError(f"bad key {key!r}: ({tag >> 16:04X},{tag & 0xFFFF:04X}) is not a sequence")
        if tag not in target or target[tag].VR != "SQ":
            target.add(Element(tag, "SQ", []))
        items = target[tag].value
        assert isinstance(items, list)
        while len(items) <= (index or 0):
            items.append(DataSet())
        target = items[index or 0]
    tag, index = parts[-1]
    if index is not None and vr_of(tag) != "SQ":
        raise ValueError(f"bad key {key!r}: only sequences take an [index]")
    set_value(target, tag, value if eq else None, key.strip())
    return not value


def build_query(keys: Sequence[str], level: str | None, base: DataSet | None = None,
                default_return_keys: bool = True, model: str | None = None,
                notes: list[str] | None = None) -> DataSet:
    """:func:`.query.build_identifier` for ``find``, as a lean data set (``base`` is not changed)."""
    ds = copy(base) if base is not None else DataSet()
    any_return_key = False
    for key in keys:
        any_return_key |= apply_key(ds, key, notes)
    if 0x00080005 not in ds and has_non_ascii(ds):
        ds.add(Element(0x00080005, "CS", ["ISO_IR 192"]))  # UTF-8: what a non-ASCII key typed in a shell most likely is
    if level is not None:
        level = level.upper()
        if level not in LEVELS:
            raise ValueError(f"bad level {level!r}: expected one of {', '.join(LEVELS)}")
        ds.add(Element(0x00080052, "CS", [level]))
    if default_return_keys and not any_return_key:
        _add_defaults(ds, model, level)
    try:  # what the value checks do not cover (e.g. a value from -f) fails here, not on the wire; implicit
        encode(ds, True, True)  # VR LE is the most permissive encoding (no 16-bit value lengths)
    except EncodeError as error:
        raise QueryKeyError(f"cannot encode the identifier: {error} (check the -k values and any -f file)") from None
    except Unsupported:
        pass  # pydicom encodes it when it is sent
    return ds


def _add_defaults(ds: DataSet, model: str | None, level: str | None) -> None:
    defaults_key = "WORKLIST" if (model == "worklist" or level is None) else level
    for keyword in DEFAULT_RETURN_KEYS.get(defaults_key or "", ()):
        if keyword not in ds:
            set_value(ds, tag_of(keyword), None)
    if defaults_key == "WORKLIST":
        steps = ds[0x00400100].value
        assert isinstance(steps, list)
        if not steps:
            steps.append(DataSet())
        for keyword in WORKLIST_STEP_KEYS:
            if keyword not in steps[0]:
                set_value(steps[0], tag_of(keyword), None)
    if model in HIGHER_KEYS and level in HIGHER_KEYS[model]:
        for keyword in (*HIGHER_KEYS[model][level or ""], UNIQUE_KEYS[level or ""]):
            if keyword not in ds:
                set_value(ds, tag_of(keyword), None)


def has_non_ascii(ds: DataSet) -> bool:
    for element in ds:
        value = element.value
        if element.VR == "SQ":
            if any(has_non_ascii(item) for item in element.items):
                return True
        elif not isinstance(value, bytes) and any(isinstance(v, str) and not v.isascii() for v in value):
            return True
    return False


def copy(ds: DataSet) -> DataSet:
    """A deep copy (sequence items and value lists are new objects)."""
    out = DataSet()
    for element in ds:
        value = element.value
        if element.VR == "SQ":
            value = [copy(item) for item in element.items]
        elif isinstance(value, list):
            value = list(value)
        out.add(Element(element.tag, element.VR, value))
    return out


# --------------------------------------------------------------------------------- the wire

def encode_query(ds: DataSet, transfer_syntax_uid: str) -> bytes:
    """The identifier in the context's transfer syntax; LocalDIMSEError when it cannot be encoded."""
    implicit, little, deflated = encoding_of(transfer_syntax_uid)
    try:
        data = encode(ds, implicit, little)
    except EncodeError as error:
        raise LocalDIMSEError(f"cannot encode the identifier: {error}") from None
    except Unsupported:
        from .query import encode_identifier

        return encode_identifier(to_pydicom(ds), transfer_syntax_uid)
    if deflated:
        import zlib

        compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        data = compressor.compress(data) + compressor.flush()
    return data


def decode_match(data: bytes, transfer_syntax_uid: str) -> DataSet:
    """A response identifier decoded by our reader (pydicom's when ours leaves it, see the module
    docstring); RemoteDIMSEError when malformed."""
    implicit, little, deflated = encoding_of(transfer_syntax_uid)
    raw = data
    try:
        if deflated:
            raw = _inflate(data)
        return decode(raw, implicit, little)
    except DecodeError as error:
        raise RemoteDIMSEError(f"the peer sent an undecodable identifier ({len(raw)} bytes): {error}") from None
    except Unsupported:
        from .query import decode_identifier

        return from_pydicom(decode_identifier(data, transfer_syntax_uid))


def _inflate(data: bytes) -> bytes:
    import zlib

    try:
        return zlib.decompress(data, -zlib.MAX_WBITS)
    except zlib.error as error:
        raise DecodeError(f"deflate: {error}") from None


# ------------------------------------------------------------------------------------ pydicom

def load_query(path: "str | Path") -> DataSet:
    """``-f FILE`` (DICOM or DICOM JSON) as a lean data set; read by pydicom (see :func:`.query.load_query_file`)."""
    from ..errors import InputError
    from .query import load_query_file

    ds = load_query_file(path)
    try:
        return from_pydicom(ds)
    except ValueError as error:
        raise InputError(f"{path}: {error}") from None


def from_pydicom(ds: Any) -> DataSet:
    """A pydicom Dataset as a lean data set, values as pydicom shows them."""
    out = DataSet()
    for key in ds.keys():  # pydicom's insertion (wire) order, as its JSON has it
        element = ds[key]
        tag, vr, value = int(element.tag), str(element.VR), element.value
        if vr == "SQ":
            out.add(Element(tag, vr, [from_pydicom(item) for item in value or ()]))
        elif isinstance(value, (bytes, bytearray)):
            out.add(Element(tag, vr, bytes(value)))
        elif value is None or value == "" or element.VM == 0:
            out.add(Element(tag, vr, b"" if vr in BYTES_VRS else []))
        else:
            values = list(value) if element.VM > 1 else [value]
            if vr in NUMBER_FORMATS or vr == "AT":
                out.add(Element(tag, vr, [int(v) if vr != "FL" and vr != "FD" else float(v) for v in values]))
            else:
                out.add(Element(tag, vr, [str(v) for v in values]))
    return out


def to_pydicom(ds: DataSet) -> Any:
    """The lean data set as a pydicom Dataset (for ``-od`` and pydicom's encoder)."""
    import warnings

    from pydicom import Dataset
    from pydicom.sequence import Sequence as PydicomSequence

    out = Dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for element in ds:
            value: Any = element.value
            if element.VR == "SQ":
                value = PydicomSequence([to_pydicom(item) for item in value])
            elif isinstance(value, list):
                value = None if not value else (value[0] if len(value) == 1 else value)
            out.add_new(element.tag, element.VR, value)
    return out
