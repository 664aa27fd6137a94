"""Transfer syntaxes (PS3.5 §10, Annex A): their UIDs, how each encodes a data set, and their names.

The one place these UIDs are spelled out: the SCUs propose them, the Storage SCP accepts them, ``store``
compares a file's syntax with the accepted one, the element walker is told the encoding they imply.
Kept to a few constants because every command imports it (``echo`` included: start-up is performance);
the full registry of transfer syntax keywords is :mod:`.syntax_keywords`' generated table, read only when a
rarer syntax must be named, and never through pydicom.
"""

from __future__ import annotations

IMPLICIT_LE = "1.2.840.10008.1.2"
"""Implicit VR Little Endian: the default every DICOM implementation supports (PS3.5 §10.1)."""
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
UNCOMPRESSED = (EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE)
"""The native (not encapsulated, not deflated) syntaxes, best first."""

NOT_NETWORK_SYNTAXES = frozenset({"1.2.840.10008.1.2.6.1", "1.2.840.10008.1.2.6.2"})
"""RFC 2557 MIME and XML encoding (both retired): not binary DICOM encodings, never sent over DIMSE."""

_IMPLICIT = frozenset({IMPLICIT_LE, "1.2.840.10008.1.20"})  # the latter: Papyrus 3 implicit VR LE
_BIG_ENDIAN = frozenset({EXPLICIT_BE})
_DEFLATED = frozenset({DEFLATED_LE, "1.2.840.10008.1.2.4.95", "1.2.840.10008.1.2.4.205"})
_NAMES = {IMPLICIT_LE: "implicit VR little endian", EXPLICIT_LE: "explicit VR little endian",
          EXPLICIT_BE: "explicit VR big endian", DEFLATED_LE: "deflated explicit VR little endian"}


def encoding_of(transfer_syntax: str) -> tuple[bool, bool, bool]:
    """``(implicit_vr, little_endian, deflated)`` of a data set in ``transfer_syntax`` (PS3.5 §10, A).

    Unknown (private) syntaxes are taken as explicit VR little endian, which every encapsulated syntax is.
    """
    return (transfer_syntax in _IMPLICIT, transfer_syntax not in _BIG_ENDIAN, transfer_syntax in _DEFLATED)


def syntax_name(uid: str) -> str:
    """A transfer syntax for people: words for the native ones, the registry keyword for the rest
    (``JPEGBaseline8Bit``), the UID itself for a private syntax."""
    if uid in _NAMES:
        return _NAMES[uid]
    from .syntax_keywords import TRANSFER_SYNTAX_KEYWORDS  # the registry: only when naming a rarer syntax

    return dict(TRANSFER_SYNTAX_KEYWORDS).get(uid, uid)
