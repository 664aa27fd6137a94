"""How ``find`` shows matches and identifiers: a table fitted to the terminal, element dumps for -v, and
UIDs by name. No rich, no pydicom (UIDs are named from our copy of the registry).

The terminal table: columns in the order of the ``-k`` keys, headers split into words at their
CamelCase boundaries (wrapped between words, never inside one), columns that are empty in every row
dropped, widths shrunk (widest first) until every row fits the terminal on one line: long UIDs lose
their middle (``1.2.826.0.1…54321``), other text its end (``CT HEA…``). When even the narrowest
columns do not fit, the last columns are left out and named on stderr. TSV, CSV and JSON always carry
the full values.
"""

from __future__ import annotations

import os
import re
import unicodedata
from typing import IO, Any, Sequence

from .. import counted
from ..part10.uidnames import described, uid_name
from .text import one_line

ELLIPSIS = "…"
_UID_TEXT = re.compile(r"^[0-9]+(\.[0-9]+)+$")
_UID_IN_TEXT = re.compile(r"(?<![\w.])([0-9]+(?:\.[0-9]+){3,})(?![\w.])")
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+|[^A-Za-z0-9]+")
_CELL_MIN = 8


# ------------------------------------------------------------------------------------- UIDs

def registry_name(uid: str) -> str | None:
    """A UID's name from the static tables, else the UID registry (our copy of pydicom's,
    :mod:`..part10.uid_registry`: no pydicom import, even for the table's SOP Class UID column)."""
    return uid_name(uid, _registry) if uid else None


def _registry(uid: str) -> str | None:
    from ..part10.uid_registry import NAMES

    at = NAMES.find(f"\n{uid}\t")
    if at < 0:
        return None
    start = at + len(uid) + 2
    return NAMES[start:NAMES.index("\n", start)]


def name_uids(text: str) -> str:
    """``text`` with every UID the registries know followed by its name: "Name (uid)"."""
    return _UID_IN_TEXT.sub(lambda m: described(m[1], registry_name), text)


# ------------------------------------------------------------------------------------- -v dumps

def dump(ds: Any, indent: str = "") -> list[str]:
    """One line per element of a lean data set (:mod:`..part10.dataset_codec`), as findscu -v prints
    them: ``(0010,0010) PN [Doe^John]``; sequences with their items indented; UIDs followed by their names."""
    lines: list[str] = []
    for element in ds.in_order():
        tag = f"({element.tag >> 16:04X},{element.tag & 0xFFFF:04X})"
        if element.VR == "SQ":
            items = element.value or []
            lines.append(f"{indent}{tag} SQ ({counted(len(items), 'item')}){_keyword(element)}")
            for number, item in enumerate(items, start=1):
                lines.append(f"{indent}  item {number}:")
                lines.extend(dump(item, indent + "    "))
            continue
        lines.append(f"{indent}{tag} {element.VR} {_dump_value(element)}{_keyword(element)}")
    return lines


def _keyword(element: Any) -> str:
    return f"  # {element.keyword}" if element.keyword else ""


def _dump_value(element: Any) -> str:
    value = element.value
    if not value:
        return "(no value)"
    if isinstance(value, (bytes, bytearray)):
        return f"({len(value)} bytes)"
    text = element.text()
    shown = f"[{one_line(text)}]"
    if element.VR == "UI" and element.VM == 1:
        name = registry_name(text)
        if name:
            shown += f" = {name}"
    return shown


# ---------------------------------------------------------------------------------------- cells

def width_of(text: str) -> int:
    """Terminal cells ``text`` takes: East Asian wide/full-width characters 2, combining marks 0."""
    if text.isascii() or text.replace(ELLIPSIS, "").isascii():  # the common cases (a shortened cell has
        return len(text)  # our one-cell ellipsis), 2 000 rows of them: no per-character look-ups
    total = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        total += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return total


def _take(text: str, width: int, from_end: bool = False) -> str:
    """The longest prefix (or suffix) of ``text`` that fits in ``width`` cells."""
    chars = reversed(text) if from_end else iter(text)
    kept: list[str] = []
    used = 0
    for char in chars:
        cells = width_of(char)
        if used + cells > width:
            break
        kept.append(char)
        used += cells
    return "".join(reversed(kept)) if from_end else "".join(kept)


def shorten(text: str, width: int) -> str:
    """``text`` in at most ``width`` cells: a UID loses its middle, other text its end (with "…")."""
    if width_of(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    if text.isascii():  # one cell per character: slices, not a walk over the characters
        if _UID_TEXT.match(text):
            tail = (width - 1) // 2
            return text[:width - 1 - tail] + ELLIPSIS + (text[len(text) - tail:] if tail else "")
        return text[:width - 1] + ELLIPSIS
    if _UID_TEXT.match(text):
        tail = (width - 1) // 2
        return _take(text, width - 1 - tail) + ELLIPSIS + _take(text, tail, from_end=True)
    return _take(text, width - 1) + ELLIPSIS


def header_words(label: str) -> list[str]:
    """``PatientName`` → ["Patient", "Name"]; ``Seq[0].CodeValue`` → ["Code", "Value"] (its last key)."""
    last = label.rsplit(".", 1)[-1]
    words = [w for w in _WORD.findall(last) if w.strip()]
    return words or [label]


def wrap_words(words: Sequence[str], width: int) -> list[str]:
    """Words in lines of at most ``width`` cells, broken only between words (a longer word is cut)."""
    lines: list[str] = []
    for word in words:
        if lines and width_of(lines[-1]) + 1 + width_of(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(shorten(word, width))
    return lines or [""]


# ---------------------------------------------------------------------------------------- table

def terminal_width(out: IO[str]) -> int:
    """COLUMNS when set, else the terminal's width, else 80."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isascii() and columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        width = os.get_terminal_size(out.fileno()).columns
    except (OSError, ValueError, AttributeError):
        width = 0
    return width if width > 0 else 80


def fit_widths(natural: Sequence[int], minimum: Sequence[int], available: int) -> list[int]:
    """Column widths summing to at most ``available``: the widest column shrinks first, none below its
    minimum (the caller drops columns until the minimums fit)."""
    widths = list(natural)
    excess = sum(widths) - available
    while excess > 0:
        candidates = [i for i, w in enumerate(widths) if w > minimum[i]]
        if not candidates:
            break
        widest = max(candidates, key=lambda i: widths[i])
        target = max([minimum[widest], *(widths[i] for i in candidates if i != widest)])
        step = max(1, min(excess, widths[widest] - target))  # equal widths: shrink them by turns
        widths[widest] -= step
        excess -= step
    return widths


def table_lines(labels: Sequence[str], rows: Sequence[Sequence[str]], total_width: int,
                bold: bool = False) -> tuple[list[str], list[str]]:
    """The table drawn in at most ``total_width`` cells per line, and the labels of columns left out
    because they did not fit. Columns empty in every row are left out silently."""
    keep = [i for i in range(len(labels)) if any(row[i] for row in rows)] or list(range(len(labels)))
    words = {i: header_words(labels[i]) for i in keep}
    cells = [[one_line(row[i]) for i in keep] for row in rows]
    natural = [max([width_of(" ".join(words[i])), *(width_of(r[n]) for r in cells)]) for n, i in enumerate(keep)]
    minimum = [max([max(width_of(w) for w in words[i]), min(natural[n], _CELL_MIN)]) for n, i in enumerate(keep)]
    dropped: list[str] = []
    while len(keep) > 1 and sum(minimum) + 3 * len(keep) + 1 > total_width:
        dropped.insert(0, labels[keep.pop()])
        natural.pop()
        minimum.pop()
        for row in cells:
            row.pop()
    available = total_width - 3 * len(keep) - 1
    data = [max([minimum[n], *(width_of(r[n]) for r in cells)]) for n in range(len(keep))]
    widths = fit_widths(natural, data, available)  # wrap headers first, then shorten values
    widths = fit_widths(widths, minimum, available)
    return _draw([words[i] for i in keep], cells, widths, bold), dropped


def _draw(headers: Sequence[Sequence[str]], cells: Sequence[Sequence[str]], widths: Sequence[int],
          bold: bool) -> list[str]:
    def line(left: str, fill: str, middle: str, right: str) -> str:
        return left + middle.join(fill * (w + 2) for w in widths) + right

    def row(texts: Sequence[str], edge: str, on: str = "", off: str = "") -> str:
        padded = [f" {on}{t}{off}{' ' * (w - width_of(t))} " for t, w in zip(texts, widths)]
        return edge + edge.join(padded) + edge

    wrapped = [wrap_words(words, width) for words, width in zip(headers, widths)]
    height = max(len(lines) for lines in wrapped)
    on, off = ("\x1b[1m", "\x1b[0m") if bold else ("", "")
    out = [line("┏", "━", "┳", "┓")]
    for number in range(height):
        out.append(row([lines[number] if number < len(lines) else "" for lines in wrapped], "┃", on, off))
    out.append(line("┡", "━", "╇", "┩"))
    for texts in cells:
        out.append(row([shorten(t, w) for t, w in zip(texts, widths)], "│"))
    out.append(line("└", "─", "┴", "┘"))
    return out
