"""Reassemble incoming PDVs into DIMSE events, streaming data sets (PS3.8 §9.3.5, Annex E; PS3.7 §6.3).

Every hostile sequence from scenarios E/F (28–36) ends in :class:`RemoteProtocolError` carrying the
A-ABORT reason, never in another exception. Data set fragments are handed out as memoryviews of the
received PDU without copying: consume (write out) each :class:`DatasetFragment` before feeding the
next PDU, because the buffer behind it may be reused by the transport.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Container

from ..ul.records import NamedTuple
from ..errors import AbortReason, RemoteProtocolError
from .commandset import NO_DATASET, CommandSetError, Message, decode
from .fragment import CONTROL_COMMAND, CONTROL_LAST

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up)
if TYPE_CHECKING:
    from typing import Final

MAX_COMMAND_BYTES: Final = 64 * 1024  # real command sets are < 1 KiB; bound memory (scenario 31)
_INVALID = AbortReason.INVALID_PDU_PARAMETER_VALUE
_UNEXPECTED = AbortReason.UNEXPECTED_PDU_PARAMETER
_PDV_LEN = struct.Struct(">I")
_new = tuple.__new__
"""Builds the per-PDV event records without their Python-level ``__new__`` (a frame each, issue 13)."""


class CommandReceived(NamedTuple):
    """A whole, valid command set arrived; ``has_dataset`` says whether fragments follow."""

    context_id: int
    message: Message
    has_dataset: bool


class InvalidCommand(NamedTuple):
    """A command set was malformed but its Message ID is known (PS3.7 scenario 34): answer a failure
    status. Any announced data set is silently discarded by the assembler."""

    context_id: int
    error: CommandSetError


class DatasetFragment(NamedTuple):
    """A slice of the data set; valid only until the next PDU is fed in (zero-copy)."""

    context_id: int
    data: memoryview
    last: bool


class MessageComplete(NamedTuple):
    """The message (command and any data set) is complete. ``dataset`` holds the data set's bytes when
    the assembler collected it (see ``collect``); a streamed data set came as :class:`DatasetFragment`."""

    context_id: int
    message: Message
    dataset: bytes | None = None


Event = CommandReceived | InvalidCommand | DatasetFragment | MessageComplete
ContextCheck = Container[int] | Callable[[int], bool] | None


class _State:
    """The assembler's states: plain ints, not an Enum (compared on every PDV; no class construction at import)."""

    IDLE = 0  # expecting a command fragment
    COMMAND = 1  # command fragments are accumulating
    DATASET = 2  # data set fragments expected
    DISCARD = 3  # swallowing the data set of an invalid command
    MAYBE_DATASET = 4  # invalid command without Command Data Set Type: a data set may or may not follow


class Assembler:
    """Sans-IO PDV → event state machine for one association (PS3.8 Annex E, PS3.7 §6.3)."""

    def __init__(self, valid_context_ids: ContextCheck = None, max_dataset_bytes: int | None = None,
                 max_command_bytes: int = MAX_COMMAND_BYTES, allow_odd_fragments: bool = False,
                 collect: Callable[[Message], bool] | None = None,
                 max_collected_bytes: int | None = None) -> None:
        """``collect(message)`` True: gather that message's data set and hand it whole in MessageComplete
        instead of as fragments (None: stream every data set). A collected data set over
        ``max_collected_bytes`` ends the association (the peer decides its size, and we hold it whole)."""
        self._valid = valid_context_ids
        self._collect = collect
        self.max_collected_bytes = max_collected_bytes
        self._collected: list[bytes] | None = None
        self._max_dataset = max_dataset_bytes
        self._max_command = max_command_bytes
        self._allow_odd = allow_odd_fragments
        self._state = _State.IDLE
        self._ctx = 0
        self._parts: list[bytes] = []
        self._cmd_len = 0
        self._ds_len = 0
        self._message: Message | None = None

    @property
    def idle(self) -> bool:
        """True between messages (nothing half-received)."""
        return self._state == _State.IDLE

    def streamable(self, context_id: int, count: int) -> int:
        """How many of ``count`` data-set bytes on ``context_id`` may bypass :meth:`receive_pdv` (the driver
        moves them to the handler's file itself, see :meth:`skipped`): those of a streamed data set (not
        collected, not discarded), within the quota; 0 otherwise."""
        if not self.streaming or context_id != self._ctx:
            return 0
        if self._max_dataset is not None:
            count = min(count, max(0, self._max_dataset - self._ds_len))
        return count

    @property
    def streaming(self) -> bool:
        """A data set is being streamed as fragments (not collected, not discarded)."""
        return self._state == _State.DATASET and self._collected is None

    def skipped(self, count: int) -> None:
        """``count`` bytes :meth:`streamable` allowed went past: counted as if received."""
        self._ds_len += count

    def receive_pdv(self, context_id: int, control: int, data: memoryview) -> list[Event]:
        """Feed one PDV (bits 2–7 of ``control`` are reserved and not tested, PS3.8 E.2)."""
        # The context check inline, not a method: it runs for every PDV received.
        valid = self._valid
        if not (context_id & 1 and (valid is None or (valid(context_id) if callable(valid) else context_id in valid))):
            self._not_accepted(context_id)
        last = bool(control & CONTROL_LAST)
        if not last and len(data) & 1 and not self._allow_odd:
            raise RemoteProtocolError(f"odd-length ({len(data)}) non-final PDV fragment", reason=_INVALID)
        state = self._state
        if state == _State.MAYBE_DATASET and control & CONTROL_COMMAND:
            state = self._state = _State.IDLE  # the invalid command had no data set after all
        if state != _State.IDLE and context_id != self._ctx:
            raise RemoteProtocolError(f"PDV on context {context_id} inside a message on context {self._ctx}",
                                      reason=_UNEXPECTED)
        if control & CONTROL_COMMAND:
            return self._command(context_id, data, last)
        return self._dataset(context_id, data, last)

    @staticmethod
    def _not_accepted(context_id: int) -> None:
        """A PDV on an even context ID, or one the check refuses (PS3.8 §9.3.2.2; scenario E.29)."""
        raise RemoteProtocolError(f"PDV on presentation context {context_id}, which is not accepted",
                                  reason=_INVALID)

    def _command(self, context_id: int, data: memoryview, last: bool) -> list[Event]:
        if self._state == _State.DATASET or self._state == _State.DISCARD:
            raise RemoteProtocolError("command fragment while a data set is outstanding", reason=_UNEXPECTED)
        if self._state != _State.COMMAND:
            if last and len(data) <= self._max_command:  # the usual command set: one PDV, no gathering
                self._ctx = context_id
                return self._command_complete(context_id, bytes(data))
            self._state, self._ctx, self._parts, self._cmd_len = _State.COMMAND, context_id, [], 0
        self._cmd_len += len(data)
        if self._cmd_len > self._max_command:
            raise RemoteProtocolError(f"command set exceeds {self._max_command} bytes", reason=_INVALID)
        self._parts.append(bytes(data))
        if not last:
            return []
        raw = b"".join(self._parts)
        self._parts = []
        return self._command_complete(context_id, raw)

    def _command_complete(self, context_id: int, raw: bytes) -> list[Event]:
        try:
            message = decode(raw)
        except CommandSetError as exc:
            if exc.message_id is None:
                raise RemoteProtocolError(f"undecodable command set: {exc}", reason=_INVALID) from exc
            self._ds_len = 0
            self._state = {True: _State.DISCARD, False: _State.IDLE,
                           None: _State.MAYBE_DATASET}[exc.has_dataset]
            return [InvalidCommand(context_id, exc)]
        if message.command_data_set_type == NO_DATASET:  # not message.has_dataset (a property), inlined
            self._state = _State.IDLE
            return [CommandReceived(context_id, message, False), MessageComplete(context_id, message)]
        self._state, self._message, self._ds_len = _State.DATASET, message, 0
        collect = self._collect
        self._collected = [] if collect is not None and collect(message) else None
        return [_new(CommandReceived, (context_id, message, True))]

    def _dataset(self, context_id: int, data: memoryview, last: bool) -> list[Event]:
        state = self._state
        if state == _State.COMMAND:
            raise RemoteProtocolError("data set fragment before the command set is complete",
                                      reason=_UNEXPECTED)
        if state == _State.IDLE:
            raise RemoteProtocolError("data set fragment with no command announcing one", reason=_UNEXPECTED)
        self._ds_len += len(data)
        if self._max_dataset is not None and self._ds_len > self._max_dataset:
            raise RemoteProtocolError(f"data set exceeds the {self._max_dataset}-byte quota", reason=_INVALID)
        if state != _State.DATASET:  # DISCARD / MAYBE_DATASET: drop the bytes
            if last:
                self._state, self._ds_len = _State.IDLE, 0
            elif state == _State.MAYBE_DATASET:
                self._state = _State.DISCARD
            return []
        collected = self._collected
        if collected is not None:
            cap = self.max_collected_bytes
            if cap is not None and self._ds_len > cap:
                raise RemoteProtocolError(f"{_collected_name(self._message)} larger than {size_text(cap)}",
                                          reason=_INVALID)
            collected.append(bytes(data))
            if not last:
                return []
            message, self._message, self._state, self._collected = self._message, None, _State.IDLE, None
            return [MessageComplete(context_id, message, b"".join(collected))]  # type: ignore[arg-type]
        fragment = _new(DatasetFragment, (context_id, data, last))
        if not last:
            return [fragment]
        message, self._message, self._state = self._message, None, _State.IDLE
        return [fragment, _new(MessageComplete, (context_id, message, None))]


_IDENTIFIER_FIELDS: Final = frozenset((0x0020, 0x8020, 0x0021, 0x8021, 0x0010, 0x8010, 0x0FFF))
"""C-FIND, C-MOVE, C-GET requests and responses and C-CANCEL: their data set is an identifier (PS3.7 §9.3)."""


def _collected_name(message: Message | None) -> str:
    if message is None:
        return "data set"
    word = "identifier" if message.command_field in _IDENTIFIER_FIELDS else "data set"
    return f"{message.name} {word}"


def size_text(count: int) -> str:
    """64 MiB, 512 KiB, 1000 bytes: a byte count as a user wrote it."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if count >= 1 << shift and count % (1 << shift) == 0:
            return f"{count >> shift} {unit}"
    return f"{count} bytes"
