"""Which SOP classes and transfer syntaxes the Storage SCP accepts, taken from pydicom's UID registry.

Imported only when ``listen`` stores (pydicom is imported lazily inside the functions), so ``dcmnet echo``
and ``dcmnet --help`` never pay for it.

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
_WORD_STORAGE = re.compile(r"\bStorage\b")


def encoding_of(transfer_syntax: str) -> tuple[bool, bool, bool]:
    """``(implicit_vr, little_endian, deflated)`` of a data set in ``transfer_syntax`` (PS3.5 §10, A).

    Unknown (private) syntaxes are taken as explicit VR little endian, which every encapsulated syntax is.
    """
    return (transfer_syntax in _IMPLICIT, transfer_syntax not in _BIG_ENDIAN, transfer_syntax in _DEFLATED)


@lru_cache(maxsize=1)
def storage_sop_classes() -> frozenset[str]:
    from pydicom._uid_dict import UID_dictionary

    return frozenset(
        uid for uid, (name, kind, *_rest) in UID_dictionary.items()
        if kind == "SOP Class" and _WORD_STORAGE.search(name) and "Commitment" not in name
    )


@lru_cache(maxsize=1)
def all_transfer_syntaxes() -> tuple[str, ...]:
    """Every binary transfer syntax in the registry, in our order of preference.

    Explicit VR little endian, then implicit VR little endian, then the rest in registry order: when a
    requestor proposes an uncompressed syntax we take it; when it proposes only a compressed one, we take
    that and store the pixel data as sent.
    """
    from pydicom._uid_dict import UID_dictionary

    rest = [uid for uid, (_name, kind, *_r) in UID_dictionary.items()
            if kind == "Transfer Syntax" and uid not in NOT_NETWORK_SYNTAXES and uid not in (EXPLICIT_VR_LE, IMPLICIT_VR_LE)]
    return (EXPLICIT_VR_LE, IMPLICIT_VR_LE, *rest)


def resolve_transfer_syntax(text: str) -> str:
    """A transfer syntax UID or pydicom keyword (``RLELossless``) → UID; ValueError if neither."""
    from pydicom._uid_dict import UID_dictionary

    value = text.strip()
    for uid, (_name, kind, _info, _retired, keyword) in UID_dictionary.items():
        if kind == "Transfer Syntax" and value in (uid, keyword):
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
