"""DIMSE status codes as data (PS3.7 Annex C; PS3.4 B.2.3, C.4.1.1.4, C.4.2.1.5, C.4.3.1.4).

The CLI's exit code and every log line derive from the category, so unknown codes must still land in a
category: PS3.7 C.1 reserves ranges (Axxx/Cxxx failure, Bxxx warning, FF0x pending), which we apply.
"""

from __future__ import annotations

from enum import Enum
from ..ul.records import NamedTuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up)
if TYPE_CHECKING:
    from typing import Final


class Category(Enum):
    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"
    CANCEL = "cancel"
    PENDING = "pending"


class StatusInfo(NamedTuple):
    code: int
    category: Category
    meaning: str


S, W, F, C, P = Category.SUCCESS, Category.WARNING, Category.FAILURE, Category.CANCEL, Category.PENDING

# General statuses, PS3.7 Annex C (C.1–C.5) and the DIMSE-N codes of §10.1.1.1.8 that C-services reuse.
GENERAL: Final[dict[int, tuple[Category, str]]] = {
    0x0000: (S, "success"),
    0x0001: (W, "warning"),  # not in Annex C; several SCPs send it, the exit-code contract says warning
    0x0105: (F, "no such attribute"),
    0x0106: (F, "invalid attribute value"),
    0x0107: (W, "attribute list error"),
    0x0110: (F, "processing failure"),
    0x0111: (F, "duplicate SOP instance"),
    0x0112: (F, "no such SOP instance"),
    0x0113: (F, "no such event type"),
    0x0114: (F, "no such argument"),
    0x0115: (F, "invalid argument value"),
    0x0116: (W, "attribute value out of range"),
    0x0117: (F, "invalid object instance"),
    0x0118: (F, "no such SOP class"),
    0x0119: (F, "class-instance conflict"),
    0x0120: (F, "missing attribute"),
    0x0121: (F, "missing attribute value"),
    0x0122: (F, "refused: SOP class not supported"),
    0x0123: (F, "no such action"),
    0x0124: (F, "refused: not authorized"),
    0x0210: (F, "duplicate invocation"),
    0x0211: (F, "unrecognized operation"),
    0x0212: (F, "mistyped argument"),
    0x0213: (F, "resource limitation"),
    0xFE00: (C, "cancelled"),
    0xFF00: (P, "pending"),
    0xFF01: (P, "pending (optional keys not supported)"),
}

# Service-specific ranges, inclusive: (low, high, category, meaning).
_Range = tuple[int, int, Category, str]
_STORAGE: tuple[_Range, ...] = (  # PS3.4 Table B.2-1
    (0xA700, 0xA7FF, F, "refused: out of resources"),
    (0xA900, 0xA9FF, F, "error: data set does not match SOP class"),
    (0xC000, 0xCFFF, F, "error: cannot understand"),
    (0xB000, 0xB000, W, "coercion of data elements"),
    (0xB006, 0xB006, W, "elements discarded"),
    (0xB007, 0xB007, W, "data set does not match SOP class"),
)
_FIND: tuple[_Range, ...] = (  # PS3.4 Table C.4-1
    (0xA700, 0xA700, F, "refused: out of resources"),
    (0xA900, 0xA900, F, "identifier does not match SOP class"),
    (0xC000, 0xCFFF, F, "unable to process"),
    (0xFE00, 0xFE00, C, "matching terminated due to cancel"),
    (0xFF00, 0xFF00, P, "matches are continuing"),
    (0xFF01, 0xFF01, P, "matches are continuing, optional keys not supported"),
)
_RETRIEVE: tuple[_Range, ...] = (  # PS3.4 Tables C.4-2 (MOVE) and C.4-3 (GET)
    (0xA701, 0xA701, F, "refused: out of resources, unable to calculate number of matches"),
    (0xA702, 0xA702, F, "refused: out of resources, unable to perform sub-operations"),
    (0xA900, 0xA900, F, "identifier does not match SOP class"),
    (0xC000, 0xCFFF, F, "unable to process"),
    (0xFE00, 0xFE00, C, "sub-operations terminated due to cancel"),
    (0xB000, 0xB000, W, "sub-operations complete, one or more failures or warnings"),
    (0xFF00, 0xFF00, P, "sub-operations are continuing"),
)
_MOVE: tuple[_Range, ...] = ((0xA801, 0xA801, F, "refused: move destination unknown"), *_RETRIEVE)

SERVICES: Final[dict[str, tuple[_Range, ...]]] = {
    "echo": (), "storage": _STORAGE, "find": _FIND, "move": _MOVE, "get": _RETRIEVE,
}
_ALIASES: Final[dict[str, str]] = {
    "verification": "echo", "c-echo": "echo", "store": "storage", "c-store": "storage",
    "c-find": "find", "c-move": "move", "c-get": "get",
}


def category_of(status: int) -> Category:
    """Category by PS3.7 Annex C range alone (used for codes no table names)."""
    if status == 0x0000:
        return S
    if status in (0x0001, 0x0107, 0x0116) or 0xB000 <= status <= 0xBFFF:
        return W
    if status == 0xFE00:
        return C
    if status in (0xFF00, 0xFF01):
        return P
    return F


def describe(status: int, service: str | None = None) -> StatusInfo:
    """Describe ``status``; ``service`` ("storage", "find", "move", "get", "echo" or a C-xxx name)
    selects the PS3.4 service-specific meanings. Never raises for a 16-bit value."""
    if not 0 <= status <= 0xFFFF:
        raise ValueError(f"status {status!r} is not a 16-bit value")
    if service is not None:
        key = service.lower()
        key = _ALIASES.get(key, key)
        if key not in SERVICES:
            raise ValueError(f"unknown service {service!r}")
        for low, high, category, meaning in SERVICES[key]:
            if low <= status <= high:
                return StatusInfo(status, category, meaning)
    known = GENERAL.get(status)
    if known is not None:
        return StatusInfo(status, *known)
    return StatusInfo(status, category_of(status), f"unknown status 0x{status:04X}")


# Status values the services answer with, named once (PS3.7 Annex C, PS3.4 B.2.3).
SUCCESS: Final = 0x0000
SOP_CLASS_NOT_SUPPORTED: Final = 0x0122
UNRECOGNIZED_OPERATION: Final = 0x0211
OUT_OF_RESOURCES: Final = 0xA700
DATASET_MISMATCH: Final = 0xA900
CANNOT_UNDERSTAND: Final = 0xC000
CANCEL: Final = 0xFE00
