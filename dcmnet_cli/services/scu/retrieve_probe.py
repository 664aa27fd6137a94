"""Before a C-GET: which storage SOP classes will arrive? Ask the peer with C-FIND (PS3.4 C.4.1).

``get`` may propose at most 128 presentation contexts (PS3.8 §9.3.2.2). The default list of 119 storage
classes leaves room for a compressed context for only a few of them; knowing the classes actually
present lets us propose exactly those, each with an uncompressed and a compressed context, so a peer
that cannot transcode can still send what it holds compressed.

The walk is a hierarchical query (PS3.4 C.4.1.2.2.1: the unique keys of the levels above are given): at
the request's own level with the request's keys, then one level at a time down to IMAGE, asking for
SOP Class UID (0008,0016) there. Each C-FIND is its own short association. Anything unexpected (a
failure status, an error, more than ``max_queries`` queries or ``max_classes`` classes, a model
without an IMAGE level) gives None: the caller then proposes its default list, as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

from ... import counted
from ...errors import DcmnetError
from ...transport.client import Timeouts
from ...ul.negotiation import DEFAULT_MAX_PDU
from ..peer import Peer

if TYPE_CHECKING:  # pragma: no cover
    from pydicom import Dataset

    from .retrieve import RetrieveRequest

MAX_QUERIES = 64
MAX_CLASSES = 63
"""63 classes x 2 contexts + the GET and FIND contexts = 128."""


class _GiveUp(Exception):
    """The probe cannot give a trustworthy answer: fall back to the default list."""


class Probe:
    """The C-FIND walk for one ``get`` run; :meth:`classes` is the entry point."""

    def __init__(self, peer: Peer, calling_ae: str, model: Any, timeouts: Timeouts = Timeouts(),
                 max_pdu: int = DEFAULT_MAX_PDU, log: Callable[[str], None] | None = None,
                 max_queries: int = MAX_QUERIES, max_classes: int = MAX_CLASSES) -> None:
        self.peer, self.calling_ae, self.model, self.timeouts = peer, calling_ae, model, timeouts
        self.max_pdu, self.log = max_pdu, log
        self.max_queries, self.max_classes = max_queries, max_classes
        self.queries = 0
        self.found: dict[str, None] = {}

    def classes(self, requests: Sequence["RetrieveRequest"]) -> list[str] | None:
        """The SOP classes the requests will retrieve, in the order first seen; None when unknown."""
        from ..query import MODEL_LEVELS

        if "IMAGE" not in MODEL_LEVELS.get(self.model.name, ()):
            return None
        try:
            for request in requests:
                if request.identifier is None or request.level is None:
                    raise _GiveUp("a request without its identifier")
                self._walk(request.identifier, request.level, {})
        except (_GiveUp, DcmnetError, ValueError) as error:
            self._say(f"the C-FIND probe cannot tell the SOP classes ({error}): proposing the default list")
            return None
        if not self.found:
            self._say("the C-FIND probe found no instances: proposing the default list")
            return None
        self._say(f"C-FIND probe: {counted(len(self.found), 'SOP class', 'SOP classes')} in {counted(self.queries, 'query', 'queries')}: "
                  + ", ".join(self.found))
        return list(self.found)

    def _say(self, text: str) -> None:
        if self.log is not None:
            self.log(text)

    def _walk(self, base: "Dataset | None", level: str, keys: dict[str, str]) -> None:
        """Query at ``level`` (``base``'s keys there, else the unique ``keys`` above) and descend."""
        from ..query import MODEL_LEVELS, UNIQUE_KEYS

        levels = MODEL_LEVELS[self.model.name]
        unique = UNIQUE_KEYS[level]
        matches = self._find(base, level, keys)
        if level == "IMAGE" and matches and not any(m.get("SOPClassUID") for m in matches):
            raise _GiveUp("the peer does not return SOP Class UID (0008,0016)")  # e.g. dcmqrscp
        for match in matches:
            if level == "IMAGE":
                sop_class = str(match.get("SOPClassUID", "") or "").strip()
                if sop_class:
                    self.found.setdefault(sop_class, None)
                    if len(self.found) > self.max_classes:
                        raise _GiveUp(f"more than {self.max_classes} SOP classes")
                continue
            value = str(match.get(unique, "") or "").strip()
            if not value or "\\" in value:
                raise _GiveUp(f"a {level} match without a single {unique}")
            self._walk(None, levels[levels.index(level) + 1], {**keys, unique: value})

    def _find(self, base: "Dataset | None", level: str, keys: dict[str, str]) -> list["Dataset"]:
        from pydicom import Dataset

        from ..query import QuerySpec, UNIQUE_KEYS
        from ...dimse.status import Category
        from .find import find

        self.queries += 1
        if self.queries > self.max_queries:
            raise _GiveUp(f"more than {self.max_queries} queries")
        ds = Dataset() if base is None else base.copy()
        ds.QueryRetrieveLevel = level
        for keyword, value in keys.items():
            setattr(ds, keyword, value)
        if ds.get(UNIQUE_KEYS[level]) is None:
            setattr(ds, UNIQUE_KEYS[level], "")
        if level == "IMAGE" and "SOPClassUID" not in ds:
            ds.SOPClassUID = ""
        matches: list[Dataset] = []
        result = find(self.peer, QuerySpec(self.model, level, ds), self.calling_ae, self.timeouts,
                      max_pdu=self.max_pdu, on_match=lambda _n, match: matches.append(match))
        if result.category is not Category.SUCCESS:
            raise _GiveUp(f"C-FIND at {level} level answered 0x{result.status or 0:04X}")
        return matches
