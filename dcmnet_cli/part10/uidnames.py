"""UIDs for people: SOP classes and transfer syntaxes by name (PS3.6 Annex A), without pydicom.

:func:`uid_name` knows the services and syntaxes a DIMSE command negotiates (verification, the
query/retrieve and worklist models, storage commitment, the transfer syntaxes) from static tables;
callers that may pay for pydicom's registry (an error or -v path) pass it as ``fallback``. The names
follow PS3.6 with an en dash before the DIMSE service, as the standard prints them.
"""

from __future__ import annotations

from .syntaxes import syntax_name

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable

_QR = "Query/Retrieve Information Model"
SERVICE_NAMES: dict[str, str] = {
    "1.2.840.10008.1.1": "Verification SOP Class",
    "1.2.840.10008.1.20.1": "Storage Commitment Push Model SOP Class",
    "1.2.840.10008.3.1.2.3.3": "Modality Performed Procedure Step SOP Class",
    "1.2.840.10008.5.1.4.1.2.1.1": f"Patient Root {_QR} – FIND",
    "1.2.840.10008.5.1.4.1.2.1.2": f"Patient Root {_QR} – MOVE",
    "1.2.840.10008.5.1.4.1.2.1.3": f"Patient Root {_QR} – GET",
    "1.2.840.10008.5.1.4.1.2.2.1": f"Study Root {_QR} – FIND",
    "1.2.840.10008.5.1.4.1.2.2.2": f"Study Root {_QR} – MOVE",
    "1.2.840.10008.5.1.4.1.2.2.3": f"Study Root {_QR} – GET",
    "1.2.840.10008.5.1.4.1.2.3.1": f"Patient/Study Only {_QR} – FIND (Retired)",
    "1.2.840.10008.5.1.4.1.2.3.2": f"Patient/Study Only {_QR} – MOVE (Retired)",
    "1.2.840.10008.5.1.4.1.2.3.3": f"Patient/Study Only {_QR} – GET (Retired)",
    "1.2.840.10008.5.1.4.31": "Modality Worklist Information Model – FIND",
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.4": "MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
}

WHAT_FOR: dict[str, str] = {
    "1.2.840.10008.5.1.4.31": "worklist queries",
    "1.2.840.10008.5.1.4.1.2.1.1": "patient root queries (-P)",
    "1.2.840.10008.5.1.4.1.2.2.1": "study root queries (-S)",
    "1.2.840.10008.5.1.4.1.2.3.1": "patient/study only queries (-O)",
}
"""What a user cannot do when the peer lacks the SOP class (for "the peer does not support …")."""


def uid_name(uid: str, fallback: Callable[[str], str | None] | None = None) -> str | None:
    """The name of a SOP class or transfer syntax UID, or None when neither the static tables nor
    ``fallback`` (e.g. a lookup in pydicom's registry) know it."""
    uid = uid.strip().rstrip("\x00")
    if uid in SERVICE_NAMES:
        return SERVICE_NAMES[uid]
    if uid.startswith("1.2.840.10008.1.2"):
        name = syntax_name(uid)
        if name != uid:
            return name
    return fallback(uid) if fallback is not None else None


def described(uid: str, fallback: Callable[[str], str | None] | None = None) -> str:
    """``"Name (uid)"`` when the UID has a name, else the UID alone."""
    name = uid_name(uid, fallback)
    return f"{name} ({uid})" if name else uid
