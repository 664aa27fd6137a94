"""C-STORE-RQ and C-STORE-RSP command sets packed from a template (PS3.7 §9.3.1, Annex E): per object, only
the Message ID (Being Responded To), the SOP UIDs and the status change, so one ``struct`` call makes the
bytes :func:`~..dimse.commandset.encode` would make by walking its whole element table (same elements, same
order, same padding: tests/test_store_perobject.py holds them equal). Anything unusual (an Error Comment,
a C-MOVE originator, a value out of range, text that is not Latin-1) takes the general :class:`Message`.
"""

from __future__ import annotations

import struct

from ..dimse.commandset import C_STORE_RQ, C_STORE_RSP, DATASET_PRESENT, NO_DATASET, Message, c_store_rq, c_store_rsp

_HEAD = struct.Struct("<HHIIHHI")  # (0000,0000) UL group length; the (0000,0002) UI header
_TAIL = struct.Struct("<HHIHHHIHHHIHHHIHHHI")  # four US elements; the (0000,1000) UI header
_FIXED = 8 + 40 + 8  # the (0000,0002) header, four US elements, the (0000,1000) header


class EncodedCommand:
    """A command set already encoded: sent as it is (``Session.send`` / ``Driver.send_message`` take it
    wherever they take a :class:`Message`, see :class:`~..dimse.connection.Command`)."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def encode(self) -> bytes:
        return self.raw


def _uids(sop_class: str, sop_instance: str) -> tuple[bytes, bytes] | None:
    try:
        cls, inst = sop_class.encode("latin-1"), sop_instance.encode("latin-1")
    except UnicodeEncodeError:
        return None
    return (cls + b"\0" if len(cls) & 1 else cls), (inst + b"\0" if len(inst) & 1 else inst)


def _pack(cls: bytes, inst: bytes, us: tuple[int, int, int, int, int, int, int, int]) -> EncodedCommand:
    e1, v1, e2, v2, e3, v3, e4, v4 = us
    return EncodedCommand(b"".join((
        _HEAD.pack(0, 0, 4, _FIXED + len(cls) + len(inst), 0, 0x0002, len(cls)), cls,
        _TAIL.pack(0, e1, 2, v1, 0, e2, 2, v2, 0, e3, 2, v3, 0, e4, 2, v4, 0, 0x1000, len(inst)), inst)))


def store_rsp(message_id: int, status: int, sop_class: str | None, sop_instance: str | None,
              comment: str | None = None) -> Message | EncodedCommand:
    """The C-STORE-RSP to a request (no Error Comment: packed; else the general :class:`Message`)."""
    if comment is None and sop_class is not None and sop_instance is not None \
            and 0 <= message_id <= 0xFFFF and 0 <= status <= 0xFFFF:
        uids = _uids(sop_class, sop_instance)
        if uids is not None:
            return _pack(*uids, (0x0100, C_STORE_RSP, 0x0120, message_id, 0x0800, NO_DATASET, 0x0900, status))
    return c_store_rsp(message_id, status, sop_class, sop_instance, comment)


def store_rq(message_id: int, sop_class: str, sop_instance: str, priority: int = 0) -> Message | EncodedCommand:
    """A C-STORE-RQ with a data set (no C-MOVE originator: packed; else the general :class:`Message`)."""
    if 0 <= message_id <= 0xFFFF and 0 <= priority <= 0xFFFF:
        uids = _uids(sop_class, sop_instance)
        if uids is not None:
            return _pack(*uids, (0x0100, C_STORE_RQ, 0x0110, message_id, 0x0700, priority, 0x0800, DATASET_PRESENT))
    return c_store_rq(message_id, sop_class, sop_instance, priority)
