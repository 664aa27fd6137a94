"""Likely causes of a failed C-MOVE/C-GET, in words (human output only): a table of hints as data.

A status says what the peer could not do, rarely why; for the common ones the cause is nearly always
the same misconfiguration, so we name it. The first matching row wins. A row is
``(kind or None, low status, high status, when, text)``: ``when`` is one of

- ``"any"``: every status in the range;
- ``"failed"``: only when sub-operations failed;
- ``"silent-receiver"``: ``move --store-port`` and no association arrived on our port during the move
  (we know the peer sent our objects elsewhere, or nowhere).

``text`` is formatted with the run's words: ``peer`` (its AE title), ``destination``, ``port`` (the
--store-port), ``aet`` (our AE title).
"""

from __future__ import annotations

from typing import Any

HINTS: tuple[tuple[str | None, int, int, str, str], ...] = (
    ("move", 0x0000, 0xFFFF, "silent-receiver",
     "no association arrived on :{port}; check that {peer}'s entry for AE {destination} points at this host "
     "and port {port} (and that nothing blocks the connection from {peer} to us)"),
    ("move", 0xA801, 0xA801, "any",
     "the peer does not know AE {destination}: add {destination} (with its host and port) to {peer}'s list "
     "of move destinations, or give the --dest it knows"),
    ("move", 0xA701, 0xA702, "any",
     "{peer} could not start or finish sending to {destination}: is {destination} running and reachable "
     "from {peer} at the host and port {peer} has for it? does it accept these SOP classes?"),
    ("get", 0xA701, 0xA702, "any",
     "{peer} could not send the objects on this association: it may hold them in a transfer syntax we did "
     "not accept (see --accept) or of a class we did not propose (see --storage-class)"),
    ("get", 0xB000, 0xB000, "failed",
     "objects of a SOP class we did not propose (--storage-class) or in a transfer syntax we did not accept "
     "(--accept) cannot be sent to us; -v shows what was negotiated"),
    (None, 0x0122, 0x0122, "any",
     "{peer} does not support this information model: try the other one (-P patient root, -S study root)"),
    (None, 0xA900, 0xA900, "any",
     "the identifier does not fit the information model: check -P/-S and the -L level against the keys"),
    (None, 0xA700, 0xA7FF, "any", "{peer} is out of resources: retry later, or retrieve less at a time"),
    (None, 0xC000, 0xCFFF, "any",
     "{peer} could not process the request: check the -L level and its keys (a retrieve needs the unique "
     "key of its level and of the levels above), and {peer}'s log"),
)


def hint_for(kind: str, operation: Any, words: dict[str, str]) -> str | None:
    """The hint for a failed operation, or None. ``words`` may hold ``arrived`` ("yes"/"no") for the
    --store-port receiver."""
    status = operation.status
    if status is None:
        return None
    for row_kind, low, high, when, text in HINTS:
        if row_kind not in (None, kind) or not low <= status <= high:
            continue
        if when == "failed" and not operation.failed:
            continue
        if when == "silent-receiver" and (words.get("arrived") != "no" or not (operation.failed or status >= 0xA000)):
            continue
        values = {"peer": "the peer", "destination": "the destination", "port": "?", "aet": "DCMNET", **words}
        return text.format_map(values)
    return None
