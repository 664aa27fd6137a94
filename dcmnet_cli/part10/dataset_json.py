"""One lean :class:`~.dataset_codec.DataSet` as one line of DICOM JSON (PS3.18 F.2): ``find --json``'s line
per match, written as cheaply as Python allows.

The text is exactly ``json.dumps(to_json_dict(ds), ensure_ascii=False, separators=(",", ":"))`` (see
:func:`.dataset_encode.to_json_dict`, pydicom's model; ``tests/test_find_json_lines.py`` holds both to
it), elements in the data set's order (the wire's). What makes it cheap, measured on a 6-element IMAGE
match (27-31 us → 7-9 us on this 2-core machine):

- the text before an element's values (``"0020000D":{"vr":"UI","Value":["``) is built once per tag and
  VR and kept;
- the values of a text element are joined into one string and quoted as one when none of them needs an
  escape: JSON escapes only ``"``, ``\\`` and the control characters below U+0020, and
  ``str.isprintable`` (C speed) is False for every one of those; anything else (and every value that
  is not plain text: numbers other than IS, tags, binary, sequences) takes the general path, which
  quotes each string with json's own C quoting;
- no intermediate dicts or lists of dicts.

Sans-IO; standard library only.
"""

from __future__ import annotations

from .dataset_codec import BYTES_VRS, NUMBER_FORMATS, DataSet, Element

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up)
if TYPE_CHECKING:
    from typing import Any

_TEXT, _PN, _IS, _OTHER = 0, 1, 2, 3
_NOT_TEXT = frozenset(("SQ", "PN", "AT", "IS", "DS", "FL", "FD")) | NUMBER_FORMATS.keys() | BYTES_VRS


class _Head:
    """What is written before an element's values, per (tag, VR): the key, the empty element, the opened
    ``Value`` array (with the first quote or ``{"Alphabetic":"`` of the fast paths)."""

    __slots__ = ("vr", "kind", "key", "empty", "opened")

    def __init__(self, tag: int, vr: str) -> None:
        self.vr = vr
        self.kind = _PN if vr == "PN" else _IS if vr == "IS" else _OTHER if vr in _NOT_TEXT else _TEXT
        self.key = f'"{tag:08X}":'
        self.empty = f'{self.key}{{"vr":"{vr}"}}'
        self.opened = f'{self.key}{{"vr":"{vr}","Value":[' + ('"', '{"Alphabetic":"', "", "")[self.kind]


_HEADS: dict[int, _Head] = {}
_MOST_HEADS = 4096
"""Tags kept at most: a peer that sends ever new (private) tags does not grow memory without end."""


def json_line(ds: DataSet) -> str:
    """``ds`` as one line of DICOM JSON (no newline); see the module docstring."""
    heads = _HEADS
    parts: list[str] = []
    for element in ds.elements.values():
        vr, value = element.VR, element.value
        head = heads.get(element.tag)
        if head is None or head.vr != vr:
            head = _Head(element.tag, vr)
            if len(heads) < _MOST_HEADS:
                heads[element.tag] = head
        kind = head.kind
        if kind != _OTHER and type(value) is list:
            if not value:
                parts.append(head.empty)
                continue
            if kind == _IS:
                try:
                    parts.append(head.opened + ",".join([str(int(v)) for v in value]) + "]}")
                    continue
                except (TypeError, ValueError):
                    pass  # a malformed IS (as pydicom read it) stays text: the general path
            else:
                text = value[0] if len(value) == 1 else "".join(value)  # what the check below reads
                if text.isprintable() and '"' not in text and "\\" not in text:
                    if len(value) > 1:
                        text = '","'.join(value)
                    if kind == _TEXT:
                        parts.append(head.opened + text + '"]}')
                        continue
                    if "=" not in text:  # PN: one component group each, no Ideographic/Phonetic
                        parts.append(head.opened + text.replace('","', '"},{"Alphabetic":"') + '"}]}')
                        continue
        parts.append(head.key + _element(element))
    return "{" + ",".join(parts) + "}"


# ------------------------------------------------------------------------------------ the general path

_QUOTING: list[Any] = []


def _quoted(text: str) -> str:
    """json's C string quoting (what ``json.dumps(..., ensure_ascii=False)`` uses), imported once."""
    if not _QUOTING:
        from json.encoder import encode_basestring

        _QUOTING.append(encode_basestring)
    return str(_QUOTING[0](text))


def _element(element: Element) -> str:
    """Any element's ``{"vr":...}`` the slow, general way (the fast paths of :func:`json_line` aside)."""
    vr, value = element.VR, element.value
    head = '{"vr":"' + vr + '"'
    if vr == "SQ":
        return head + ',"Value":[' + ",".join([json_line(item) for item in element.items]) + "]}"
    if isinstance(value, bytes) or vr in BYTES_VRS:
        if not value:
            return head + "}"
        import base64

        return head + ',"InlineBinary":"' + base64.b64encode(bytes(value)).decode("ascii") + '"}'
    if not value:
        return head + "}"
    if vr == "PN":
        texts = [_person_name(v) for v in value]
    elif vr == "AT":
        texts = [f'"{v:08X}"' for v in value]
    elif vr in ("IS", "DS", "FL", "FD") or vr in NUMBER_FORMATS:
        texts = [_number_text(vr, v) for v in value]
    else:
        texts = [_quoted(v) for v in value]
    return head + ',"Value":[' + ",".join(texts) + "]}"


def _person_name(text: str) -> str:
    """``{"Alphabetic":...,"Ideographic":...,"Phonetic":...}``: as many groups as the value has."""
    groups = text.split("=")
    names = zip(("Alphabetic", "Ideographic", "Phonetic"), groups)
    return "{" + ",".join([f'"{name}":{_quoted(group)}' for name, group in names]) + "}"


def _number_text(vr: str, value: Any) -> str:
    """IS an int, DS/FL/FD a float (NaN and the infinities as json writes them), other numbers as they
    are; a malformed IS/DS a peer sent (that pydicom read) stays text."""
    number = value
    if vr in ("IS", "DS", "FL", "FD"):
        try:
            number = int(value) if vr == "IS" else float(value)
        except (TypeError, ValueError):
            return _quoted(str(value))
    if isinstance(number, float):
        if number != number:
            return "NaN"
        if number in (float("inf"), float("-inf")):
            return "Infinity" if number > 0 else "-Infinity"
        return float.__repr__(number)
    return int.__repr__(number)
