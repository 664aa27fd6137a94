"""Peer-supplied values turned into safe path components, and output path templates (scenario G.39–40).

Rules for one component (a SOP Instance UID, a Patient ID, an AE title …):

- a valid UID (``[0-9]+(\\.[0-9]+)*``, the whole value, at most 64 characters) is used as it is;
- any other value is used as it is when it is in Unicode NFC form, made only of letters and digits of
  any script (``str.isalnum``) and ``. _ - ^ = + , @ ~``, starts with a letter, a digit or ``_``, does
  not end with ``.``, is at most 64 characters and 128 bytes of UTF-8, is not a Windows device name and
  does not look like one of our hashed names;
- an empty or absent value becomes ``UNKNOWN`` (so the literal value ``UNKNOWN`` is hashed instead);
- everything else (path separators, control characters, spaces, ``.``/``..``, leading dots or dashes,
  Windows-reserved characters, overlong names …) becomes a readable prefix (the value NFC-normalised,
  each run of other characters replaced by ``_``) plus ``_`` plus 12 hex digits of SHA-256 of the raw
  value.

Every check is a full match of the whole value (never ``$``, which also matches before a trailing
newline). Kept names never end in ``_`` + 12 hex digits and hashed names always do, and a kept value is
never changed (not even by normalisation: a value not in NFC form is hashed), so two different raw values
can only share a name through a SHA-256 prefix collision: nothing is silently overwritten (G.40).
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import string
import unicodedata
from dataclasses import dataclass
from typing import Callable

UNKNOWN = "UNKNOWN"
MAX_KEPT = 64
MAX_KEPT_BYTES = 128
_UID = re.compile(r"[0-9]+(\.[0-9]+)*", re.ASCII)
_HASHED_TAIL = re.compile(r"_[0-9a-f]{12}\Z")
_PUNCTUATION = frozenset("._-^=+,@~")
_RESERVED = frozenset({"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10)),
                       UNKNOWN.lower()})


def is_valid_uid(value: str) -> bool:
    return len(value) <= 64 and _UID.fullmatch(value) is not None


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def _keepable(value: str) -> bool:
    """True when ``value`` is safe as a file or folder name as it is (see the module docstring)."""
    if len(value) > MAX_KEPT or not (value[0].isalnum() or value[0] == "_") or value.endswith("."):
        return False
    if not all(c.isalnum() or c in _PUNCTUATION for c in value):
        return False
    if _HASHED_TAIL.search(value) or value.split(".", 1)[0].lower() in _RESERVED:
        return False
    return unicodedata.is_normalized("NFC", value) and len(value.encode("utf-8")) <= MAX_KEPT_BYTES


def safe_component(value: str | None) -> str:
    """One path component derived from a peer value: never empty, never ``.``/``..``, no separator."""
    if value is None or value == "":
        return UNKNOWN
    if is_valid_uid(value) or _keepable(value):
        return value
    readable = "".join(c if c.isalnum() or c in _PUNCTUATION else "_" for c in unicodedata.normalize("NFC", value))
    prefix = re.sub("_{2,}", "_", readable)[:32].strip("._-^=+,@~")
    return f"{prefix or 'x'}_{_digest(value)}"


def escaped(value: str) -> str:
    """A raw peer value as one printable log token."""
    return value.encode("unicode_escape").decode("ascii")


# ------------------------------------------------------------------------------------------ templates

PSEUDO_FIELDS = {"CallingAET", "CalledAET"}
"""Fields that are not data set elements: the association's AE titles."""

FROM_COMMAND = {"SOPInstanceUID", "SOPClassUID"}
"""Taken from the C-STORE command (checked equal to the data set's), so they cost no parsing."""


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class PathTemplate:
    """``--filepath``: literal text with ``{Keyword}`` fields, rendered into a relative path."""

    text: str
    parts: tuple[tuple[str, str | None], ...]  # (literal, field or None)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f for _lit, f in self.parts if f is not None))

    @property
    def dataset_fields(self) -> tuple[str, ...]:
        """Keywords that must be read from the data set."""
        return tuple(f for f in self.fields if f not in PSEUDO_FIELDS and f not in FROM_COMMAND)

    def render(self, values: dict[str, str | None]) -> str:
        """The relative path; each field value made safe by :func:`safe_component`.

        Raises TemplateError when the result is not a clean relative path (an empty, ``.`` or ``..``
        segment), which only literal text can cause.
        """
        out = []
        for literal, field_ in self.parts:
            out.append(literal)
            if field_ is not None:
                out.append(safe_component(values.get(field_)))
        path = "".join(out)
        segments = path.split("/")
        if path.startswith("/") or any(s in ("", ".", "..") for s in segments) or "\0" in path:
            raise TemplateError(f"unsafe path {escaped(path)!r}")
        return path


def parse_template(text: str, is_keyword: Callable[[str], bool] | None = None) -> PathTemplate:
    """Validate ``--filepath``: relative, no ``..``, fields are plain keywords (no format spec).

    ``is_keyword`` checks a DICOM keyword (pydicom's dictionary, passed in so this module stays
    import-light); pseudo fields and SOP UIDs are always allowed.
    """
    if not text or text.startswith("/") or "\\" in text or "\0" in text:
        raise TemplateError("the path template must be a relative path with / separators")
    parts: list[tuple[str, str | None]] = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as error:
        raise TemplateError(f"bad template: {error}") from None
    for literal, field_, spec, conversion in parsed:
        if field_ is not None:
            if spec or conversion or not field_.isidentifier():
                raise TemplateError(f"{{{field_}}}: only plain keywords are allowed, like {{PatientID}}")
            if field_ not in PSEUDO_FIELDS and field_ not in FROM_COMMAND and is_keyword is not None and not is_keyword(field_):
                raise TemplateError(f"{{{field_}}} is not a DICOM keyword (or CallingAET/CalledAET)")
        parts.append((literal, field_))
    template = PathTemplate(text, tuple(parts))
    template.render({})  # literal text alone must already give a clean relative path
    if not template.fields:
        raise TemplateError("the path template names no field: every object would get the same name")
    return template


def inside(root: str, path: str) -> bool:
    """True when ``path`` (already resolved) is ``root`` or below it (both resolved)."""
    try:
        return posixpath.commonpath([root, path]) == root
    except ValueError:
        return False
