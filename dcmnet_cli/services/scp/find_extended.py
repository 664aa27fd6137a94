"""C-FIND SOP Class Extended Negotiation on the accepting side (PS3.4 C.5.1.1.1 and Table C.5-1, PS3.7
D.3.3.5): what ``listen`` grants, and the matching options a granted request switches on.

Bytes of the application information, 1 = asked (RQ) / granted (AC): relational queries, combined
date-time matching (C.2.2.2.5.4), fuzzy semantic matching of person names (C.2.2.2.1.1: ours is
case-insensitive PN matching, the same as ``listen --case-insensitive-names``), timezone query adjustment.
The first three are granted whenever asked; timezone adjustment is refused (0), as is any later byte.
Because listen grants exactly what was asked, the request alone says what an association negotiated.
"""

from __future__ import annotations

from typing import Any

GRANTED = (True, True, True, False)
"""Per byte of Table C.5-1: whether listen grants it when asked."""


def extended_reply(asked: bytes) -> bytes:
    """The AC's application information for a requestor's ``asked`` (as long as asked, at most 5 bytes)."""
    return bytes(1 if index < len(GRANTED) and GRANTED[index] and byte == 1 else 0
                 for index, byte in enumerate(bytes(asked)[:5]))


def negotiated_options(base: Any, request: Any, sop_class: str) -> Any:
    """``base`` (a :class:`~..archive.matching.MatchOptions`) with fuzzy PN matching and combined
    date-time matching turned on where the association's request asked for them on ``sop_class``."""
    from ...ul.items import SOPClassExtendedNegotiation

    if request is None:
        return base
    for item in request.user_info.sub_items:
        if isinstance(item, SOPClassExtendedNegotiation) and item.sop_class_uid == sop_class:
            reply = extended_reply(item.info)
            combined, fuzzy = reply[1:2] == b"\x01", reply[2:3] == b"\x01"
            if combined or fuzzy:
                return base._replace(fuzzy_names=base.fuzzy_names or fuzzy,
                                     combined_datetime=base.combined_datetime or combined)
    return base
