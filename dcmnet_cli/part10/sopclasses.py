"""Which SOP classes and transfer syntaxes the Storage SCP accepts, from static copies of pydicom's UID registry.

The tables below were generated once from pydicom 3.0.2's ``pydicom._uid_dict`` (so ``listen`` starts without
importing pydicom, which was most of its start-up time); ``tests/test_storage_scp_part10.py`` recomputes them
from the installed pydicom with the rule below, so they cannot drift silently when pydicom is upgraded.

Rule for "a Storage SOP class" (PS3.4 Annex B.5 lists them; the registry does not flag them): a registry
entry of type "SOP Class" whose name contains the word "Storage" and not "Commitment" (Storage Commitment
is a service, not something stored). That keeps the retired and trial storage classes, which some old
modalities still send, and the few storage classes outside 1.2.840.10008.5.1.4.1.1 (RT delivery
instructions, hanging protocols, colour palettes, implant templates).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable, Sequence

EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"
DEFLATED_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1.99"

NOT_NETWORK_SYNTAXES = frozenset({"1.2.840.10008.1.2.6.1", "1.2.840.10008.1.2.6.2"})
"""RFC 2557 MIME and XML encoding (both retired): not binary DICOM encodings, never sent over DIMSE."""

_IMPLICIT = frozenset({IMPLICIT_VR_LE, "1.2.840.10008.1.20"})  # the latter: Papyrus 3 implicit VR LE
_BIG_ENDIAN = frozenset({EXPLICIT_VR_BE})
_DEFLATED = frozenset({DEFLATED_EXPLICIT_VR_LE, "1.2.840.10008.1.2.4.95", "1.2.840.10008.1.2.4.205"})

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")

# ---- generated from pydicom._uid_dict (registry order); see the module docstring and the drift test ----
TRANSFER_SYNTAX_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("1.2.840.10008.1.2", "ImplicitVRLittleEndian"),
    ("1.2.840.10008.1.2.1", "ExplicitVRLittleEndian"),
    ("1.2.840.10008.1.2.1.98", "EncapsulatedUncompressedExplicitVRLittleEndian"),
    ("1.2.840.10008.1.2.1.99", "DeflatedExplicitVRLittleEndian"),
    ("1.2.840.10008.1.2.2", "ExplicitVRBigEndian"),
    ("1.2.840.10008.1.2.4.50", "JPEGBaseline8Bit"),
    ("1.2.840.10008.1.2.4.51", "JPEGExtended12Bit"),
    ("1.2.840.10008.1.2.4.52", "JPEGExtended35"),
    ("1.2.840.10008.1.2.4.53", "JPEGSpectralSelectionNonHierarchical68"),
    ("1.2.840.10008.1.2.4.54", "JPEGSpectralSelectionNonHierarchical79"),
    ("1.2.840.10008.1.2.4.55", "JPEGFullProgressionNonHierarchical1012"),
    ("1.2.840.10008.1.2.4.56", "JPEGFullProgressionNonHierarchical1113"),
    ("1.2.840.10008.1.2.4.57", "JPEGLossless"),
    ("1.2.840.10008.1.2.4.58", "JPEGLosslessNonHierarchical15"),
    ("1.2.840.10008.1.2.4.59", "JPEGExtendedHierarchical1618"),
    ("1.2.840.10008.1.2.4.60", "JPEGExtendedHierarchical1719"),
    ("1.2.840.10008.1.2.4.61", "JPEGSpectralSelectionHierarchical2022"),
    ("1.2.840.10008.1.2.4.62", "JPEGSpectralSelectionHierarchical2123"),
    ("1.2.840.10008.1.2.4.63", "JPEGFullProgressionHierarchical2426"),
    ("1.2.840.10008.1.2.4.64", "JPEGFullProgressionHierarchical2527"),
    ("1.2.840.10008.1.2.4.65", "JPEGLosslessHierarchical28"),
    ("1.2.840.10008.1.2.4.66", "JPEGLosslessHierarchical29"),
    ("1.2.840.10008.1.2.4.70", "JPEGLosslessSV1"),
    ("1.2.840.10008.1.2.4.80", "JPEGLSLossless"),
    ("1.2.840.10008.1.2.4.81", "JPEGLSNearLossless"),
    ("1.2.840.10008.1.2.4.90", "JPEG2000Lossless"),
    ("1.2.840.10008.1.2.4.91", "JPEG2000"),
    ("1.2.840.10008.1.2.4.92", "JPEG2000MCLossless"),
    ("1.2.840.10008.1.2.4.93", "JPEG2000MC"),
    ("1.2.840.10008.1.2.4.94", "JPIPReferenced"),
    ("1.2.840.10008.1.2.4.95", "JPIPReferencedDeflate"),
    ("1.2.840.10008.1.2.4.100", "MPEG2MPML"),
    ("1.2.840.10008.1.2.4.100.1", "MPEG2MPMLF"),
    ("1.2.840.10008.1.2.4.101", "MPEG2MPHL"),
    ("1.2.840.10008.1.2.4.101.1", "MPEG2MPHLF"),
    ("1.2.840.10008.1.2.4.102", "MPEG4HP41"),
    ("1.2.840.10008.1.2.4.102.1", "MPEG4HP41F"),
    ("1.2.840.10008.1.2.4.103", "MPEG4HP41BD"),
    ("1.2.840.10008.1.2.4.103.1", "MPEG4HP41BDF"),
    ("1.2.840.10008.1.2.4.104", "MPEG4HP422D"),
    ("1.2.840.10008.1.2.4.104.1", "MPEG4HP422DF"),
    ("1.2.840.10008.1.2.4.105", "MPEG4HP423D"),
    ("1.2.840.10008.1.2.4.105.1", "MPEG4HP423DF"),
    ("1.2.840.10008.1.2.4.106", "MPEG4HP42STEREO"),
    ("1.2.840.10008.1.2.4.106.1", "MPEG4HP42STEREOF"),
    ("1.2.840.10008.1.2.4.107", "HEVCMP51"),
    ("1.2.840.10008.1.2.4.108", "HEVCM10P51"),
    ("1.2.840.10008.1.2.4.201", "HTJ2KLossless"),
    ("1.2.840.10008.1.2.4.202", "HTJ2KLosslessRPCL"),
    ("1.2.840.10008.1.2.4.203", "HTJ2K"),
    ("1.2.840.10008.1.2.4.204", "JPIPHTJ2KReferenced"),
    ("1.2.840.10008.1.2.4.205", "JPIPHTJ2KReferencedDeflate"),
    ("1.2.840.10008.1.2.5", "RLELossless"),
    ("1.2.840.10008.1.2.6.1", "RFC2557MIMEEncapsulation"),
    ("1.2.840.10008.1.2.6.2", "XMLEncoding"),
    ("1.2.840.10008.1.2.7.1", "SMPTEST211020UncompressedProgressiveActiveVideo"),
    ("1.2.840.10008.1.2.7.2", "SMPTEST211020UncompressedInterlacedActiveVideo"),
    ("1.2.840.10008.1.2.7.3", "SMPTEST211030PCMDigitalAudio"),
    ("1.2.840.10008.1.20", "Papyrus3ImplicitVRLittleEndian"),
)
STORAGE_SOP_CLASSES: frozenset[str] = frozenset({
    "1.2.840.10008.1.3.10", "1.2.840.10008.5.1.1.27", "1.2.840.10008.5.1.1.29", "1.2.840.10008.5.1.1.30",
    "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1.1",
    "1.2.840.10008.5.1.4.1.1.1.2", "1.2.840.10008.5.1.4.1.1.1.2.1", "1.2.840.10008.5.1.4.1.1.1.3",
    "1.2.840.10008.5.1.4.1.1.1.3.1", "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1",
    "1.2.840.10008.5.1.4.1.1.2.2", "1.2.840.10008.5.1.4.1.1.3", "1.2.840.10008.5.1.4.1.1.3.1",
    "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.4.1", "1.2.840.10008.5.1.4.1.1.4.2",
    "1.2.840.10008.5.1.4.1.1.4.3", "1.2.840.10008.5.1.4.1.1.4.4", "1.2.840.10008.5.1.4.1.1.5",
    "1.2.840.10008.5.1.4.1.1.6", "1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.6.2",
    "1.2.840.10008.5.1.4.1.1.6.3", "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.7.1",
    "1.2.840.10008.5.1.4.1.1.7.2", "1.2.840.10008.5.1.4.1.1.7.3", "1.2.840.10008.5.1.4.1.1.7.4",
    "1.2.840.10008.5.1.4.1.1.8", "1.2.840.10008.5.1.4.1.1.9", "1.2.840.10008.5.1.4.1.1.9.1",
    "1.2.840.10008.5.1.4.1.1.9.1.1", "1.2.840.10008.5.1.4.1.1.9.1.2", "1.2.840.10008.5.1.4.1.1.9.1.3",
    "1.2.840.10008.5.1.4.1.1.9.1.4", "1.2.840.10008.5.1.4.1.1.9.2.1", "1.2.840.10008.5.1.4.1.1.9.3.1",
    "1.2.840.10008.5.1.4.1.1.9.4.1", "1.2.840.10008.5.1.4.1.1.9.4.2", "1.2.840.10008.5.1.4.1.1.9.5.1",
    "1.2.840.10008.5.1.4.1.1.9.6.1", "1.2.840.10008.5.1.4.1.1.9.6.2", "1.2.840.10008.5.1.4.1.1.9.7.1",
    "1.2.840.10008.5.1.4.1.1.9.7.2", "1.2.840.10008.5.1.4.1.1.9.7.3", "1.2.840.10008.5.1.4.1.1.9.7.4",
    "1.2.840.10008.5.1.4.1.1.9.8.1", "1.2.840.10008.5.1.4.1.1.10", "1.2.840.10008.5.1.4.1.1.11",
    "1.2.840.10008.5.1.4.1.1.11.1", "1.2.840.10008.5.1.4.1.1.11.2", "1.2.840.10008.5.1.4.1.1.11.3",
    "1.2.840.10008.5.1.4.1.1.11.4", "1.2.840.10008.5.1.4.1.1.11.5", "1.2.840.10008.5.1.4.1.1.11.6",
    "1.2.840.10008.5.1.4.1.1.11.7", "1.2.840.10008.5.1.4.1.1.11.8", "1.2.840.10008.5.1.4.1.1.11.9",
    "1.2.840.10008.5.1.4.1.1.11.10", "1.2.840.10008.5.1.4.1.1.11.11", "1.2.840.10008.5.1.4.1.1.11.12",
    "1.2.840.10008.5.1.4.1.1.12.1", "1.2.840.10008.5.1.4.1.1.12.1.1", "1.2.840.10008.5.1.4.1.1.12.2",
    "1.2.840.10008.5.1.4.1.1.12.2.1", "1.2.840.10008.5.1.4.1.1.12.3", "1.2.840.10008.5.1.4.1.1.13.1.1",
    "1.2.840.10008.5.1.4.1.1.13.1.2", "1.2.840.10008.5.1.4.1.1.13.1.3", "1.2.840.10008.5.1.4.1.1.13.1.4",
    "1.2.840.10008.5.1.4.1.1.13.1.5", "1.2.840.10008.5.1.4.1.1.14.1", "1.2.840.10008.5.1.4.1.1.14.2",
    "1.2.840.10008.5.1.4.1.1.20", "1.2.840.10008.5.1.4.1.1.30", "1.2.840.10008.5.1.4.1.1.66",
    "1.2.840.10008.5.1.4.1.1.66.1", "1.2.840.10008.5.1.4.1.1.66.2", "1.2.840.10008.5.1.4.1.1.66.3",
    "1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.5", "1.2.840.10008.5.1.4.1.1.66.6",
    "1.2.840.10008.5.1.4.1.1.67", "1.2.840.10008.5.1.4.1.1.68.1", "1.2.840.10008.5.1.4.1.1.68.2",
    "1.2.840.10008.5.1.4.1.1.77.1", "1.2.840.10008.5.1.4.1.1.77.2", "1.2.840.10008.5.1.4.1.1.77.1.1",
    "1.2.840.10008.5.1.4.1.1.77.1.1.1", "1.2.840.10008.5.1.4.1.1.77.1.2", "1.2.840.10008.5.1.4.1.1.77.1.2.1",
    "1.2.840.10008.5.1.4.1.1.77.1.3", "1.2.840.10008.5.1.4.1.1.77.1.4", "1.2.840.10008.5.1.4.1.1.77.1.4.1",
    "1.2.840.10008.5.1.4.1.1.77.1.5.1", "1.2.840.10008.5.1.4.1.1.77.1.5.2", "1.2.840.10008.5.1.4.1.1.77.1.5.3",
    "1.2.840.10008.5.1.4.1.1.77.1.5.4", "1.2.840.10008.5.1.4.1.1.77.1.5.5", "1.2.840.10008.5.1.4.1.1.77.1.5.6",
    "1.2.840.10008.5.1.4.1.1.77.1.5.7", "1.2.840.10008.5.1.4.1.1.77.1.5.8", "1.2.840.10008.5.1.4.1.1.77.1.6",
    "1.2.840.10008.5.1.4.1.1.77.1.7", "1.2.840.10008.5.1.4.1.1.77.1.8", "1.2.840.10008.5.1.4.1.1.77.1.9",
    "1.2.840.10008.5.1.4.1.1.78.1", "1.2.840.10008.5.1.4.1.1.78.2", "1.2.840.10008.5.1.4.1.1.78.3",
    "1.2.840.10008.5.1.4.1.1.78.4", "1.2.840.10008.5.1.4.1.1.78.5", "1.2.840.10008.5.1.4.1.1.78.6",
    "1.2.840.10008.5.1.4.1.1.78.7", "1.2.840.10008.5.1.4.1.1.78.8", "1.2.840.10008.5.1.4.1.1.79.1",
    "1.2.840.10008.5.1.4.1.1.80.1", "1.2.840.10008.5.1.4.1.1.81.1", "1.2.840.10008.5.1.4.1.1.82.1",
    "1.2.840.10008.5.1.4.1.1.88.1", "1.2.840.10008.5.1.4.1.1.88.2", "1.2.840.10008.5.1.4.1.1.88.3",
    "1.2.840.10008.5.1.4.1.1.88.4", "1.2.840.10008.5.1.4.1.1.88.11", "1.2.840.10008.5.1.4.1.1.88.22",
    "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.88.35",
    "1.2.840.10008.5.1.4.1.1.88.40", "1.2.840.10008.5.1.4.1.1.88.50", "1.2.840.10008.5.1.4.1.1.88.59",
    "1.2.840.10008.5.1.4.1.1.88.65", "1.2.840.10008.5.1.4.1.1.88.67", "1.2.840.10008.5.1.4.1.1.88.68",
    "1.2.840.10008.5.1.4.1.1.88.69", "1.2.840.10008.5.1.4.1.1.88.70", "1.2.840.10008.5.1.4.1.1.88.71",
    "1.2.840.10008.5.1.4.1.1.88.72", "1.2.840.10008.5.1.4.1.1.88.73", "1.2.840.10008.5.1.4.1.1.88.74",
    "1.2.840.10008.5.1.4.1.1.88.75", "1.2.840.10008.5.1.4.1.1.88.76", "1.2.840.10008.5.1.4.1.1.88.77",
    "1.2.840.10008.5.1.4.1.1.90.1", "1.2.840.10008.5.1.4.1.1.91.1", "1.2.840.10008.5.1.4.1.1.104.1",
    "1.2.840.10008.5.1.4.1.1.104.2", "1.2.840.10008.5.1.4.1.1.104.3", "1.2.840.10008.5.1.4.1.1.104.4",
    "1.2.840.10008.5.1.4.1.1.104.5", "1.2.840.10008.5.1.4.1.1.128", "1.2.840.10008.5.1.4.1.1.128.1",
    "1.2.840.10008.5.1.4.1.1.129", "1.2.840.10008.5.1.4.1.1.130", "1.2.840.10008.5.1.4.1.1.131",
    "1.2.840.10008.5.1.4.1.1.200.1", "1.2.840.10008.5.1.4.1.1.200.2", "1.2.840.10008.5.1.4.1.1.200.3",
    "1.2.840.10008.5.1.4.1.1.200.7", "1.2.840.10008.5.1.4.1.1.200.8", "1.2.840.10008.5.1.4.1.1.201.1",
    "1.2.840.10008.5.1.4.1.1.481.1", "1.2.840.10008.5.1.4.1.1.481.2", "1.2.840.10008.5.1.4.1.1.481.3",
    "1.2.840.10008.5.1.4.1.1.481.4", "1.2.840.10008.5.1.4.1.1.481.5", "1.2.840.10008.5.1.4.1.1.481.6",
    "1.2.840.10008.5.1.4.1.1.481.7", "1.2.840.10008.5.1.4.1.1.481.8", "1.2.840.10008.5.1.4.1.1.481.9",
    "1.2.840.10008.5.1.4.1.1.481.10", "1.2.840.10008.5.1.4.1.1.481.11", "1.2.840.10008.5.1.4.1.1.481.12",
    "1.2.840.10008.5.1.4.1.1.481.13", "1.2.840.10008.5.1.4.1.1.481.14", "1.2.840.10008.5.1.4.1.1.481.15",
    "1.2.840.10008.5.1.4.1.1.481.16", "1.2.840.10008.5.1.4.1.1.481.17", "1.2.840.10008.5.1.4.1.1.481.18",
    "1.2.840.10008.5.1.4.1.1.481.19", "1.2.840.10008.5.1.4.1.1.481.20", "1.2.840.10008.5.1.4.1.1.481.21",
    "1.2.840.10008.5.1.4.1.1.481.22", "1.2.840.10008.5.1.4.1.1.481.23", "1.2.840.10008.5.1.4.1.1.481.24",
    "1.2.840.10008.5.1.4.1.1.481.25", "1.2.840.10008.5.1.4.1.1.501.1", "1.2.840.10008.5.1.4.1.1.501.2.1",
    "1.2.840.10008.5.1.4.1.1.501.2.2", "1.2.840.10008.5.1.4.1.1.501.3", "1.2.840.10008.5.1.4.1.1.501.4",
    "1.2.840.10008.5.1.4.1.1.501.5", "1.2.840.10008.5.1.4.1.1.501.6", "1.2.840.10008.5.1.4.1.1.601.1",
    "1.2.840.10008.5.1.4.1.1.601.2", "1.2.840.10008.5.1.4.34.1", "1.2.840.10008.5.1.4.34.7",
    "1.2.840.10008.5.1.4.34.10", "1.2.840.10008.5.1.4.38.1", "1.2.840.10008.5.1.4.39.1", "1.2.840.10008.5.1.4.43.1",
    "1.2.840.10008.5.1.4.44.1", "1.2.840.10008.5.1.4.45.1",
})
# ---- end of generated tables ----


def encoding_of(transfer_syntax: str) -> tuple[bool, bool, bool]:
    """``(implicit_vr, little_endian, deflated)`` of a data set in ``transfer_syntax`` (PS3.5 §10, A).

    Unknown (private) syntaxes are taken as explicit VR little endian, which every encapsulated syntax is.
    """
    return (transfer_syntax in _IMPLICIT, transfer_syntax not in _BIG_ENDIAN, transfer_syntax in _DEFLATED)


def storage_sop_classes() -> frozenset[str]:
    return STORAGE_SOP_CLASSES


@lru_cache(maxsize=1)
def all_transfer_syntaxes() -> tuple[str, ...]:
    """Every binary transfer syntax in the registry, in our order of preference.

    Explicit VR little endian, then implicit VR little endian, then the rest in registry order: when a
    requestor proposes an uncompressed syntax we take it; when it proposes only a compressed one, we take
    that and store the pixel data as sent.
    """
    rest = [uid for uid, _keyword in TRANSFER_SYNTAX_KEYWORDS
            if uid not in NOT_NETWORK_SYNTAXES and uid not in (EXPLICIT_VR_LE, IMPLICIT_VR_LE)]
    return (EXPLICIT_VR_LE, IMPLICIT_VR_LE, *rest)


def resolve_transfer_syntax(text: str) -> str:
    """A transfer syntax UID or pydicom keyword (``RLELossless``) → UID; ValueError if neither."""
    value = text.strip()
    for uid, keyword in TRANSFER_SYNTAX_KEYWORDS:
        if value in (uid, keyword):
            return uid
    if _UID.match(value) and len(value) <= 64:
        return value  # a private transfer syntax: allowed, treated as explicit VR little endian
    raise ValueError(f"{text!r} is neither a transfer syntax UID nor a transfer syntax keyword (e.g. ExplicitVRLittleEndian)")


def narrowed(accept: Iterable[str]) -> tuple[str, ...]:
    """The ``--accept`` list in our preference order; syntaxes unknown to the registry come last."""
    wanted = list(dict.fromkeys(accept))
    known = [uid for uid in all_transfer_syntaxes() if uid in wanted]
    return (*known, *(uid for uid in wanted if uid not in known))


def storage_contexts(syntaxes: Sequence[str], promiscuous: bool, verification: Sequence[str]):
    """The ``AcceptorPolicy.contexts`` callable: abstract syntax → transfer syntaxes, or None."""
    storage = storage_sop_classes()
    accepted = tuple(syntaxes)
    verification = tuple(verification)

    def contexts(abstract_syntax: str) -> Sequence[str] | None:
        if abstract_syntax == "1.2.840.10008.1.1":
            return verification
        if abstract_syntax in storage or promiscuous:
            return accepted
        return None

    return contexts
