"""The one PS3.5 element walker: element headers, sequences, items and fragments, never values.

Everything in dcmnet that meets a binary data set without pydicom goes through :class:`Walker`: ``store``
finding a file's File Meta group (a plain one held in the first read is read by index in
``filehead.meta_by_index``, which leaves every unusual group to this walker) or the SOP UIDs of a bare data set, ``listen`` checking a received data
set's SOP UIDs against the command, ``find`` checking an identifier's lengths before pydicom reads it.

What it knows of PS3.5:

- an element is a tag, in explicit VR a VR, and a 2- or 4-byte length (§7.1.2; the 4-byte VRs of
  Table 7.1-1 have 2 reserved bytes first), in little or big endian (§7.3);
- an undefined length (FFFFFFFFH) opens a sequence of items (§7.5): on SQ, on UN (whose content is then
  implicit VR little endian whatever the transfer syntax, §6.2.2), and on any element in implicit VR;
  on Pixel Data (7FE0,0010) it opens encapsulated fragments instead (§A.4): items of defined length only;
- items and delimiters are a tag and a 4-byte length in every syntax; an item of undefined length ends
  at its Item Delimitation Item, a sequence of undefined length at its Sequence Delimitation Item, and
  those of defined length where their length says. A sequence or item of defined length is skipped like
  any value unless ``descend`` asks for what it holds to be checked too; either way every top-level
  boundary is found. In explicit VR a sequence is an element of VR SQ; in implicit VR (no VR on the wire)
  it is an element whose tag the public data dictionary gives VR SQ (:data:`.sequence_tags.SEQUENCE_TAGS`,
  one set lookup per element), at any depth; private and unknown tags of defined length stay opaque.

It is incremental and sans-IO: :meth:`Walker.feed` takes the bytes as they arrive (a memoryview of a
received fragment, a window of a file) and keeps only what it must across calls, a partial header
(at most 11 bytes) and the values the caller asked for (``wanted``, top level only). Values are skipped
by arithmetic, never copied or sliced, and a file reader can jump over them without reading them
(:attr:`Walker.skippable`, :meth:`Walker.skip`). :meth:`Walker.finish` says whether the data ended on an
element boundary with every sequence and item closed. Nesting is a list, not recursion, and is bounded
(``max_depth``), so hostile input costs neither the Python stack nor unbounded memory.

``listen`` walks every received object before it answers, so the walk is built for speed in two tiers.
A fast lane (:meth:`Walker._plain_explicit`, :meth:`Walker._plain_implicit`) takes the run of plain
elements (whole in the bytes at hand, nothing to open or carry) with a few operations each; sequences
and items that end in the bytes at hand are walked without becoming levels (:meth:`Walker._nest`). The
general loop takes everything else, where the fast tiers stop without having changed anything it reads,
so every error is still found by one piece of code, at the same byte, however the bytes arrive.

Errors are :class:`Part10Error` (:class:`Truncated` when the data simply ended too soon), with a one-line
message naming the element and its byte offset; the caller decides whose fault it is (a local file, or
a peer's data set).
"""

from __future__ import annotations

import struct
from ..ul.records import NamedTuple

from .sequence_tags import SEQUENCE_TAGS
from .vr import ITEM, ITEM_END, LONG_VRS, PIXEL_DATA, SEQUENCE_END, SHORT_VRS, UNDEFINED, tag_text

Bytes = bytes | bytearray | memoryview

MAX_DEPTH = 256
"""Sequences nested deeper than this are refused: real data sets nest a few levels (structured reports a
few dozen), and each level costs memory a peer could otherwise make us spend."""
MAX_VALUE = 1 << 16
"""Default bound of a wanted value: the values worth reading this way (UIDs, names, IDs) are short."""
ALL_TAGS = (0, 0xFFFFFFFF)

_ELEMENTS, _ITEMS, _FRAGMENTS = 0, 1, 2  # what comes next at a level: elements (top level, items), items, fragments
_NO_END = 1 << 62  # the end of a level of undefined length
_NOTHING: frozenset[int] = frozenset()


def _vr_numbers(vrs: frozenset[bytes], e: str) -> frozenset[int]:
    return frozenset(struct.unpack(f"{e}H", vr)[0] for vr in vrs)


_PLAIN = {(little, descend): (struct.Struct(f"{e}HHHH").unpack_from, struct.Struct(f"{e}I").unpack_from,
                              _vr_numbers(SHORT_VRS, e), _vr_numbers(LONG_VRS - {b"SQ"} if descend else LONG_VRS, e))
          for little, e in ((True, "<"), (False, ">")) for descend in (False, True)}
"""Per byte order and ``descend``, what the explicit VR fast lane reads with: the header with its VR read
as a number (a set lookup of a small int is cheaper than of a new 2-byte ``bytes``), the 4-byte length,
the short VRs, and the long VRs whose value it skips whole (descending, SQ is not one)."""
_ILLEGAL_GROUPS = frozenset({0x0001, 0x0003, 0x0005, 0x0007, 0xFFFF})  # PS3.5 §7.1: shall not be used
_STRUCTS = {little: (struct.Struct(f"{e}HH2sH"), struct.Struct(f"{e}HHI"), struct.Struct(f"{e}I"), struct.Struct(f"{e}HH"))
            for little, e in ((True, "<"), (False, ">"))}


class Part10Error(ValueError):
    """Bytes that are not a well-formed data set (or File Meta group), or a value that cannot be encoded."""


class Truncated(Part10Error):
    """The data ended inside an element, or with a sequence or item still open."""


class _Level(NamedTuple):
    """An open sequence, item or run of fragments, and the encoding of what it holds."""

    expect: int
    end: int  # where it ends, or _NO_END (undefined length: ends at its delimiter)
    limit: int  # the nearest end among it and every level around it: nothing inside may pass it
    tag: int
    start: int
    explicit: bool
    little: bool

    def describe(self) -> str:
        if self.expect == _ELEMENTS:
            return f"the item at byte {self.start}"
        kind = "encapsulated fragments" if self.expect == _FRAGMENTS else "sequence"
        return f"{kind} {tag_text(self.tag)} from byte {self.start}"


class Walker:
    """Walks a data set fed in pieces; see the module docstring.

    ``explicit``/``little``: the encoding of the data set (:func:`.syntaxes.encoding_of`). ``wanted``:
    top-level tags whose values to keep in :attr:`values` (raw bytes), each at most ``max_value`` bytes
    (longer is an error). ``span``: the walk stops, before it, at the first top-level element whose tag is
    outside ``(first, last)``; :attr:`stopped` is then True and :attr:`stopped_at` its offset (the File
    Meta group is the span of group 0002; the SOP UIDs need nothing past (0008,0018)). ``ordered``: top-
    level tags must increase and avoid the groups PS3.5 §7.1 forbids (a test for "is this DICOM at all").
    ``max_depth``: the deepest nesting of sequences allowed (None: unbounded). ``descend``: walk into
    sequences and items of defined length too, for a full structural check (else they are skipped); in
    implicit VR the sequences are told by tag (see the module docstring).
    """

    def __init__(self, explicit: bool, little: bool, wanted: frozenset[int] = frozenset(), max_value: int = MAX_VALUE,
                 span: tuple[int, int] = ALL_TAGS, ordered: bool = False, max_depth: int | None = MAX_DEPTH,
                 descend: bool = False) -> None:
        self.values: dict[int, bytes] = {}
        self.stopped = False
        self.stopped_at: int | None = None
        self._base = (explicit, little)
        self._wanted, self._max_value, self._span, self._ordered = wanted, max_value, span, ordered
        self._descend = descend
        self._plain_top = span == ALL_TAGS and not ordered  # top level: no tag to test against span or order
        self._lane = _PLAIN[little, descend]  # every explicit VR level has the data set's byte order (UN: implicit)
        self._max_depth = max_depth
        self._levels: list[_Level] = []
        self._depth = 0  # open sequences and runs of fragments
        self._pos = 0  # bytes consumed (a carried partial header is not)
        self._carry = b""
        self._skip = 0  # bytes of the current value still to come
        self._value: bytearray | None = None  # a wanted value being gathered across feeds
        self._current = (0, 0, 0)  # (tag, offset, length) of the value being skipped, for messages
        self._last = -1
        self._failed: Part10Error | None = None
        self._enter(explicit, little, _ELEMENTS, _NO_END)

    # ------------------------------------------------------------------------------------ public

    @property
    def offset(self) -> int:
        """Bytes walked so far (fed or skipped), not counting a partial header carried to the next feed."""
        return self._pos

    @property
    def skippable(self) -> int:
        """Bytes the walker will pass over without looking at them: a file reader may :meth:`skip` them."""
        return self._skip if self._value is None else 0

    @property
    def depth(self) -> int:
        """Sequences (and runs of fragments) open at this point."""
        return self._depth

    def skip(self, count: int) -> None:
        """Pass over ``count`` bytes of the current value without their being fed (at most :attr:`skippable`)."""
        if count < 0 or count > self.skippable:
            raise ValueError(f"cannot skip {count} bytes: only {self.skippable} are skippable")
        self._skip -= count
        self._pos += count

    def feed(self, data: Bytes) -> None:
        """Walk the next bytes of the data set. Raises :class:`Part10Error` at the first malformed header
        (and again on any later call); after the walk :attr:`stopped`, further bytes are ignored."""
        if self._failed is not None:
            raise self._failed
        if self.stopped or not data:
            return
        if self._skip > len(data) and self._value is None:  # all inside a value passed over (pixel data)
            self._skip -= len(data)
            self._pos += len(data)
            return
        try:
            base = self._pos + len(self._carry)  # the offset of data[0]
            i = self._join(data) if self._carry else 0
            if not self._carry and not self.stopped:
                if not i and self._plain_top and not self._skip and not self._levels:  # top-level elements next
                    i = (self._plain_explicit if self._explicit else self._plain_implicit)(data, 0, len(data), self._wanted)
                    if i == len(data):  # all plain: a whole small data set, or the run of elements before Pixel Data
                        self._pos = base + i
                        return
                self._walk(data, i, base)
        except Part10Error as error:
            self._failed = error
            raise
        except struct.error as error:  # unreachable by construction; never let it escape as another type
            self._failed = Part10Error(f"malformed element header at byte {self._pos}: {error}")
            raise self._failed from None

    def finish(self) -> None:
        """The data set ended: raises :class:`Truncated` unless it ended on an element boundary with every
        sequence and item closed (or the walk had already stopped at the end of its span)."""
        if self._failed is not None:
            raise self._failed
        if self.stopped:
            return
        if self._carry:
            raise Truncated(f"the data ends inside an element header at byte {self._pos} ({len(self._carry)} bytes of it)")
        if self._skip:
            tag, start, length = self._current
            raise Truncated(f"element {tag_text(tag)} at byte {start} declares {length} bytes, {length - self._skip} present")
        if self._levels:
            open_ = len(self._levels)
            raise Truncated(f"the data ends inside {self._levels[-1].describe()} ({open_} level{'s' * (open_ > 1)} open)")

    # ------------------------------------------------------------------------------------ levels

    def _enter(self, explicit: bool, little: bool, expect: int, limit: int) -> None:
        """Make the innermost level current: the locals the walking loops read come from here."""
        self._explicit, self._little, self._expect, self._limit = explicit, little, expect, limit
        self._s_explicit, self._s_implicit, self._s_u32, self._s_tag = _STRUCTS[little]

    def _push(self, expect: int, end: int, tag: int, start: int, explicit: bool, little: bool) -> None:
        if expect != _ELEMENTS:
            if self._max_depth is not None and self._depth >= self._max_depth:
                raise Part10Error(f"sequences nested deeper than {self._max_depth} at byte {start} ({tag_text(tag)})")
            self._depth += 1
        limit = min(end, self._limit)
        self._levels.append(_Level(expect, end, limit, tag, start, explicit, little))
        self._enter(explicit, little, expect, limit)

    def _pop(self) -> None:
        if self._levels.pop().expect != _ELEMENTS:
            self._depth -= 1
        if self._levels:
            top = self._levels[-1]
            self._enter(top.explicit, top.little, top.expect, top.limit)
        else:
            self._enter(*self._base, _ELEMENTS, _NO_END)

    def _close(self, pos: int) -> None:
        """Close the levels of defined length that end at ``pos``; one still open inside them is an error."""
        while self._levels and pos >= self._limit:
            level = self._levels[-1]
            if level.end != pos:
                raise Part10Error(f"{level.describe()} is not closed at byte {pos}, where the item or sequence holding it ends")
            self._pop()

    # ------------------------------------------------------------------------------------ walking

    def _join(self, data: Bytes) -> int:
        """Complete the header carried from the last feed with the first bytes of ``data``; the index in
        ``data`` where walking goes on (the carry is kept, grown, when ``data`` is still too short)."""
        carry = self._carry
        start = self._pos
        buf = carry + bytes(data[:12 - len(carry)])
        self._carry = b""
        self._walk(buf, 0, start)
        consumed = self._pos - start
        if consumed == 0:
            return len(data)  # still partial (the carry is now all of buf) or stopped before it
        self._carry = b""  # a later partial header in buf: its bytes are in data too, walked from there
        return consumed - len(carry)

    def _walk(self, buf: Bytes, i: int, base: int) -> None:
        """Walk ``buf[i:]`` (``base``: the offset of ``buf[0]``) to its end, a stop, or a partial header."""
        n = len(buf)
        while True:
            if self._skip:
                i = self._pass(buf, i)
                if self._skip:
                    break
            if base + i >= self._limit:
                self._close(base + i)
            if i >= n:
                break
            i = self._elements(buf, i, base) if self._expect == _ELEMENTS else self._items(buf, i, base)
            if self._carry or self.stopped:
                break
        self._pos = base + i

    def _pass(self, buf: Bytes, i: int) -> int:
        """Go on over the value being skipped (keeping it when wanted); the index after what was passed."""
        take = min(self._skip, len(buf) - i)
        self._skip -= take
        if self._value is not None:
            self._value += buf[i:i + take]
            if not self._skip:
                self.values[self._current[0]] = bytes(self._value)
                self._value = None
        return i + take

    def _partial(self, buf: Bytes, i: int, base: int, top: bool) -> int:
        """A header cut by the end of ``buf``: keep it for the next feed (unless its tag ends the span)."""
        if top and len(buf) - i >= 4:
            group, element = self._s_tag.unpack_from(buf, i)
            tag = group << 16 | element
            if tag < self._span[0] or tag > self._span[1]:
                self.stopped, self.stopped_at = True, base + i
                return i
        self._carry = bytes(buf[i:])
        return i

    def _elements(self, buf: Bytes, i: int, base: int) -> int:
        """Elements of the top level or of an item, as many as ``buf`` holds; returns at a change of level.
        The plain elements go by the fast lane (:meth:`_plain_explicit`); this loop takes each element the
        lane stops at, and every element where the top level has a span or an order to check."""
        n = len(buf)
        top = not self._levels
        explicit, stop = self._explicit, self._limit - base
        bound = min(n, stop)
        wanted = self._wanted if top else _NOTHING
        plain = None
        if self._plain_top or not top:
            plain = self._plain_explicit if explicit else self._plain_implicit
            i = plain(buf, i, bound, wanted)
            if i >= bound:
                return i
        descend = self._descend
        sequences = SEQUENCE_TAGS if descend and not explicit else _NOTHING  # implicit VR: SQ by the dictionary
        s_explicit, s_implicit, s_u32 = self._s_explicit, self._s_implicit, self._s_u32
        long_vrs, short_vrs = LONG_VRS, SHORT_VRS
        first, last = self._span if top else ALL_TAGS
        ordered = top and self._ordered
        while i < bound:
            if n - i < 8:
                return self._partial(buf, i, base, top)
            if explicit:
                group, element, vr, length = s_explicit.unpack_from(buf, i)
                header = 8
            else:
                group, element, length = s_implicit.unpack_from(buf, i)
                vr, header = b"", 8
            tag = group << 16 | element
            if tag < first or tag > last:
                self.stopped, self.stopped_at = True, base + i
                return i
            if ordered:
                self._in_order(tag, base + i)
            if group == 0xFFFE:  # an item or delimiter tag (PS3.5 §7.5): no VR in any syntax
                self._delimiter(base + i, tag)
                return i + 8
            if explicit:
                if vr in long_vrs:
                    if n - i < 12:
                        return self._partial(buf, i, base, False)
                    length = s_u32.unpack_from(buf, i + 8)[0]
                    header = 12
                elif vr not in short_vrs:
                    raise Part10Error(f"invalid VR {bytes(vr)!r} for element {tag_text(tag)} at byte {base + i}")
            if length == 0xFFFFFFFF:  # UNDEFINED
                levels = len(self._levels)
                i = self._open(buf, i, base, tag, vr, header)
                if len(self._levels) != levels:
                    return i
                if plain is not None:
                    i = plain(buf, i, bound, wanted)
                continue
            end = i + header + length
            if end > stop:
                raise Part10Error(f"element {tag_text(tag)} at byte {base + i} ({length} bytes) runs past the end of "
                                  f"{self._levels[-1].describe()}, at byte {self._limit}")
            if (descend and vr == b"SQ") or tag in sequences:
                if not self._may_nest():
                    self._push(_ITEMS, base + end, tag, base + i, explicit, self._little)  # refused: raises
                    return i + header
                levels = len(self._levels)
                i = self._nest(buf, i + header, base, (_ITEMS, end, end, tag, i))
                if len(self._levels) != levels:
                    return i  # it goes on past buf, or holds what the general walk must judge: levels opened
            else:
                if tag in wanted:
                    self._want(buf, i + header, tag, base + i, length)
                if end > n:
                    self._skip, self._current = end - n, (tag, base + i, length)
                    return n
                i = end
            if plain is not None:
                i = plain(buf, i, bound, wanted)
        return i  # the end of buf, or of the level (then _walk closes it)

    def _plain_explicit(self, buf: Bytes, i: int, bound: int, wanted: frozenset[int]) -> int:
        """The fast lane (explicit VR): plain elements, whole in ``buf[:bound]``, nothing to open, check or
        carry; the wanted ones kept, one copy each. Returns the index of the first element that is not plain
        (a delimiter, a sequence, an undefined length, a bad VR, a header or value cut by ``bound``, an
        over-long wanted value), for the general loop to take, or ``bound``."""
        unpack, u32, short_vrs, long_vrs = self._lane
        values, max_value = self.values, self._max_value
        view = None
        last = bound - 8  # the last index where a header fits
        while i <= last:
            group, element, vr, length = unpack(buf, i)
            if group == 0xFFFE:
                break
            if vr in short_vrs:
                at = i + 8
            elif vr in long_vrs:
                at = i + 12
                if at > bound:
                    break
                length = u32(buf, i + 8)[0]
                if length == 0xFFFFFFFF:  # UNDEFINED: a sequence or encapsulated Pixel Data
                    break
            else:
                break
            end = at + length
            if end > bound:
                break
            tag = group << 16 | element
            if tag in wanted:
                if length > max_value:
                    break
                if view is None:
                    view = buf if isinstance(buf, memoryview) else memoryview(buf)
                values[tag] = view[at:end].tobytes()
            i = end
        return i

    def _plain_implicit(self, buf: Bytes, i: int, bound: int, wanted: frozenset[int]) -> int:
        """:meth:`_plain_explicit` for implicit VR: a sequence is an undefined length or (descending) a tag
        the dictionary gives VR SQ."""
        unpack = self._s_implicit.unpack_from
        sequences = SEQUENCE_TAGS if self._descend else _NOTHING
        values, max_value = self.values, self._max_value
        view = None
        last = bound - 8
        while i <= last:
            group, element, length = unpack(buf, i)
            end = i + 8 + length
            if group == 0xFFFE or length == 0xFFFFFFFF or end > bound:
                break
            tag = group << 16 | element
            if tag in sequences:
                break
            if tag in wanted:
                if length > max_value:
                    break
                if view is None:
                    view = buf if isinstance(buf, memoryview) else memoryview(buf)
                values[tag] = view[i + 8:end].tobytes()
            i = end
        return i

    def _items(self, buf: Bytes, i: int, base: int) -> int:
        """One item (or fragment, or delimiter) header of a sequence or of encapsulated Pixel Data."""
        if len(buf) - i < 8:
            return self._partial(buf, i, base, False)
        group, element, length = self._s_implicit.unpack_from(buf, i)
        tag = group << 16 | element
        pos = base + i
        level = self._levels[-1]
        if tag == SEQUENCE_END and level.end == _NO_END:
            self._pop()
            return i + 8
        if tag != ITEM:
            raise Part10Error(f"{tag_text(tag)} at byte {pos} where {level.describe()} needs an item")
        if length == UNDEFINED:
            if self._expect == _FRAGMENTS:
                raise Part10Error(f"fragment at byte {pos} of {level.describe()} has an undefined length")
            return self._nest(buf, i + 8, base, (_ELEMENTS, _NO_END, self._limit - base, tag, i))
        end: int = pos + 8 + length
        if end > self._limit:
            raise Part10Error(f"item at byte {pos} ({length} bytes) runs past the end of {level.describe()}")
        if self._expect == _ITEMS and self._descend:
            return self._nest(buf, i + 8, base, (_ELEMENTS, end - base, end - base, tag, i))
        if end > base + len(buf):  # a fragment, or an item of defined length: skipped like a value
            self._skip, self._current = end - base - len(buf), (tag, pos, length)
            return len(buf)
        return end - base

    def _delimiter(self, pos: int, tag: int) -> None:
        """An item or sequence delimiter where elements are expected: only an undefined-length item's end."""
        if not self._levels:
            raise Part10Error(f"{tag_text(tag)} at byte {pos} outside any sequence")
        level = self._levels[-1]
        if tag != ITEM_END or level.end != _NO_END:
            raise Part10Error(f"unexpected {tag_text(tag)} at byte {pos} in {level.describe()}")
        self._pop()  # its length should be 0; like pydicom and DCMTK we do not hold that against the sender

    def _open(self, buf: Bytes, i: int, base: int, tag: int, vr: bytes, header: int) -> int:
        """An element of undefined length: a sequence (walked on by :meth:`_nest`), or encapsulated Pixel
        Data (PS3.5 §7.5, §A.4). The index to go on from."""
        pos = base + i
        if pos + header > self._limit:
            raise Part10Error(f"element {tag_text(tag)} at byte {pos} runs past the end of {self._levels[-1].describe()}")
        explicit, little = self._explicit, self._little
        if tag == PIXEL_DATA and vr in (b"OB", b"OW", b""):
            self._push(_FRAGMENTS, _NO_END, tag, pos, explicit, little)
        elif vr in (b"SQ", b""):
            if self._may_nest():
                return self._nest(buf, i + header, base, (_ITEMS, _NO_END, self._limit - base, tag, i))
            self._push(_ITEMS, _NO_END, tag, pos, explicit, little)  # refused: raises
        elif vr == b"UN":  # PS3.5 §6.2.2: an SQ read as UN; its items are implicit VR little endian
            self._push(_ITEMS, _NO_END, tag, pos, False, True)
        else:
            raise Part10Error(f"element {tag_text(tag)} ({vr.decode('ascii', 'replace')}) at byte {pos} has an "
                              f"undefined length, which only SQ, UN and encapsulated Pixel Data may have")
        return i + header

    def _may_nest(self) -> bool:
        """One more sequence is within ``max_depth``: else :meth:`_push` refuses it."""
        return self._max_depth is None or self._depth < self._max_depth

    def _nest(self, buf: Bytes, i: int, base: int, opened: tuple[int, int, int, int, int]) -> int:
        """Walk on from ``buf[i]`` inside the sequence or item just ``opened`` without making it a level,
        nor anything it holds: items, their plain elements (by the fast lane) and the sequences in them,
        all in the encoding of the current level. Levels cost more than the few elements most items hold.

        Open sequences and items are kept on a local stack, each ``(expect, end, limit, tag, start)`` as
        indices into ``buf`` (``end`` :data:`_NO_END` when undefined); an item that holds plain elements
        only and ends in ``buf`` is not even put there. Returns the index it stopped at: where everything
        opened here is closed, or else (``buf`` ends, or anything the general walk must judge: an error, a
        delimiter out of place, UN, a value cut by the end of ``buf``, the depth bound) the levels still
        open are pushed, just as the general walk would have them at that index, and the walk goes on
        from there. It never raises itself: every error is found by the general walk, at the same byte."""
        n = len(buf)
        unpack = self._s_implicit.unpack_from  # items and delimiters: a tag and a 4-byte length in any syntax
        explicit, descend, max_depth = self._explicit, self._descend, self._max_depth
        lane = self._plain_explicit if explicit else self._plain_implicit
        stack = [opened]  # outermost first
        depth = self._depth + (opened[0] == _ITEMS)  # sequences open, as _push counts them
        while stack:
            expect, end, limit, _, _ = stack[-1]
            bound = n if n < limit else limit
            if expect == _ITEMS:  # a sequence: items, until its end or its delimiter
                item = None
                while i != end and i + 8 <= bound:
                    group, element, length = unpack(buf, i)
                    if group << 16 | element != ITEM:
                        break
                    start = i
                    if length == UNDEFINED:
                        i = lane(buf, i + 8, bound, _NOTHING)
                        if i + 8 <= bound:
                            group, element, _ = unpack(buf, i)
                            if group << 16 | element == ITEM_END:
                                i += 8
                                continue
                        item = (_ELEMENTS, _NO_END, limit, ITEM, start)
                        break
                    stop = i + 8 + length
                    if stop > limit or (not descend and stop > n):
                        break
                    if not descend:
                        i = stop
                        continue
                    i = lane(buf, i + 8, stop if stop < n else n, _NOTHING)
                    if i != stop:
                        item = (_ELEMENTS, stop, stop, ITEM, start)
                        break
                if item is not None:  # one holding more than plain elements, or going on past buf
                    stack.append(item)
                    continue
                if i != end:
                    if i + 8 > bound:
                        break
                    group, element, _ = unpack(buf, i)
                    if group << 16 | element != SEQUENCE_END or end != _NO_END:
                        break
                    i += 8
                stack.pop()
                depth -= 1
                continue
            i = lane(buf, i, bound, _NOTHING)  # an item: its plain elements, then what stopped the lane
            if i == end:
                stack.pop()
                continue
            if i + 8 > bound:
                break
            if explicit:
                group, element, vr, length = self._s_explicit.unpack_from(buf, i)
                header = 12
            else:
                group, element, length = unpack(buf, i)
                vr, header = b"", 8
            tag = group << 16 | element
            if group == 0xFFFE:
                if tag != ITEM_END or end != _NO_END:
                    break
                stack.pop()
                i += 8
                continue
            if explicit:
                if vr != b"SQ" or i + 12 > bound:
                    break
                length = self._s_u32.unpack_from(buf, i + 8)[0]
                if length != UNDEFINED and not descend:
                    break  # a value to skip, which the lane did not: it runs past buf
            elif tag == PIXEL_DATA or (length != UNDEFINED and not (descend and tag in SEQUENCE_TAGS)):
                break
            if max_depth is not None and depth >= max_depth:
                break
            if length == UNDEFINED:
                stack.append((_ITEMS, _NO_END, limit, tag, i))
            else:
                stop = i + header + length
                if stop > limit:
                    break
                stack.append((_ITEMS, stop, stop, tag, i))
            depth += 1
            i += header
        little = self._little
        for expect, end, _, tag, start in stack:
            self._push(expect, _NO_END if end == _NO_END else base + end, tag, base + start, explicit, little)
        return i

    def _in_order(self, tag: int, pos: int) -> None:
        if tag <= self._last or tag >> 16 in _ILLEGAL_GROUPS:
            raise Part10Error(f"element {tag_text(tag)} out of order at byte {pos}")
        self._last = tag

    def _want(self, buf: Bytes, at: int, tag: int, pos: int, length: int) -> None:
        if length > self._max_value:
            raise Part10Error(f"element {tag_text(tag)} at byte {pos} has {length} bytes, more than the {self._max_value} expected")
        if at + length <= len(buf):
            self.values[tag] = bytes(buf[at:at + length])
        else:
            self._value = bytearray(buf[at:])


def walk(data: Bytes, explicit: bool, little: bool, wanted: frozenset[int] = frozenset(),
         max_value: int = MAX_VALUE, max_depth: int | None = MAX_DEPTH, descend: bool = True) -> dict[int, bytes]:
    """Walk a whole data set held in memory; the ``wanted`` values. Raises :class:`Part10Error` unless it
    is well formed to its last byte (every length within the data, every sequence and item closed, by
    default those of defined length too)."""
    walker = Walker(explicit, little, wanted, max_value, max_depth=max_depth, descend=descend)
    walker.feed(data)
    walker.finish()
    return walker.values
