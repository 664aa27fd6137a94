"""What ``dcmnet probe`` proposes, in which associations, and what the answers mean: no sockets here.

PS3.8 §9.3.2.2 / §9.3.3.2: a presentation context carries one abstract syntax and a list of transfer
syntaxes, and the acceptor answers with at most ONE of them (its preference), or a result code for the
whole context: 3 abstract syntax not supported, 4 none of the transfer syntaxes supported, 1/2 refused by
the user / no reason. One context per SOP class therefore tells which syntax the peer prefers, never
the whole set it accepts. To make the report exact, each SOP class is probed by *elimination rounds*:

1. propose one context with every syntax still unknown for the class;
2. accepted with syntax S: S is accepted, and the next round proposes the others again (without S);
   result 4: every syntax proposed is refused (that is what 4 means: none of them is supported);
   result 3: the class is not supported (every syntax refused for that reason);
   result 1/2 (a refusal that does not say which syntax): the class is split, one context per
   remaining syntax, so each syntax gets its own answer.

A class ends when no syntax is unknown. It costs (accepted syntaxes + 1) contexts, never more than one
context per (class, syntax) pair plus one, and far fewer against a peer that accepts little (a Storage
SCP without compression: 2 or 3 contexts per class instead of 15). The work of all classes is packed
into associations of at most 128 contexts (:data:`~..ul.negotiation.MAX_CONTEXTS`), proposed one
association at a time by :mod:`.probe`. When all the unknown (class, syntax) pairs left fit in one
association, each pair gets its own context and that association ends the probe (a probe narrowed with
--sop-class needs one or two associations). Every association after the first also carries an *anchor*: a
(class, syntax) already accepted, so the peer accepts the association even when it supports nothing
else in it (``dcmnet listen`` answers A-ASSOCIATE-RJ when no context is acceptable, PS3.8 §7.1.1.7),
and every other context still gets its own result code. The anchor's own answer is not recorded.

Storage classes are proposed with a role selection item (PS3.7 D.3.3.4) asking for both roles, as a
C-GET SCU that must receive the C-STOREs would (the SCP role); proposing SCU too keeps the context
usable for C-STORE, so a peer that refuses the SCP role does not refuse the context and the syntax
results stay true. Query/Retrieve FIND classes and the worklist carry SOP Class Extended Negotiation
asking for every option of PS3.4 C.5.1.1 (MOVE/GET: relational retrieval, C.5.2.1/C.5.3.1); the replies
are reported as they come.
"""

from __future__ import annotations

import re
from typing import Iterable, NamedTuple, Sequence

from ...dimse.commandset import VERIFICATION_SOP_CLASS
from ...part10.sopclasses import STORAGE_SOP_CLASSES
from ...part10.syntaxes import DEFLATED_LE, EXPLICIT_LE, IMPLICIT_LE
from ...ul.items import (ContextResult, PresentationContextRQ, RoleSelection, SOPClassExtendedNegotiation)
from ...ul.negotiation import MAX_CONTEXTS
from ...ul.pdu import AssociateAC

VERIFICATION = "Verification"
STORAGE = "Storage"
QUERY_RETRIEVE = "Query/Retrieve"
WORKLIST = "Worklist"
COMMITMENT = "Storage Commitment"
MPPS = "MPPS"
OTHER = "Other"
FAMILIES = (VERIFICATION, STORAGE, QUERY_RETRIEVE, WORKLIST, COMMITMENT, MPPS, OTHER)
"""Display order of the report's groups."""

_QR = "1.2.840.10008.5.1.4.1.2."
FIND_CLASSES = (_QR + "1.1", _QR + "2.1", _QR + "3.1", "1.2.840.10008.5.1.4.31")
"""Patient root, study root, patient/study only FIND, and Modality Worklist FIND."""
RETRIEVE_CLASSES = (_QR + "1.2", _QR + "1.3", _QR + "2.2", _QR + "2.3", _QR + "3.2", _QR + "3.3",
                    _QR + "4.2", _QR + "4.3", _QR + "5.3")
"""MOVE and GET of every model: patient root, study root, patient/study only, composite instance root,
composite instance retrieve without bulk data (GET only)."""

SERVICE_CLASSES: tuple[tuple[str, str], ...] = (
    (VERIFICATION_SOP_CLASS, VERIFICATION),
    *((uid, QUERY_RETRIEVE) for uid in sorted({*FIND_CLASSES[:3], *RETRIEVE_CLASSES}, key=lambda u: [int(p) for p in u.split(".")])),
    ("1.2.840.10008.5.1.4.31", WORKLIST),
    ("1.2.840.10008.1.20.1", COMMITMENT),
    ("1.2.840.10008.3.1.2.3.3", MPPS),
)

STORAGE_SYNTAXES: tuple[str, ...] = (
    EXPLICIT_LE, IMPLICIT_LE, DEFLATED_LE,
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51",  # JPEG baseline, extended
    "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",  # JPEG lossless, lossless SV1
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",  # JPEG-LS lossless, near-lossless
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",  # JPEG 2000 lossless, lossy
    "1.2.840.10008.1.2.5",  # RLE lossless
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203",  # HTJ2K
)
"""The common syntaxes proposed for Storage classes (and for classes given with --sop-class that we do
not know)."""

SERVICE_SYNTAXES: tuple[str, ...] = (EXPLICIT_LE, IMPLICIT_LE, DEFLATED_LE)
"""The syntaxes proposed for the other services: their data sets have no pixel data, so the image
compressions do not apply."""

FIND_EXTENDED = b"\x01\x01\x01\x01"
"""Relational queries, combined date-time matching, fuzzy person names, timezone adjustment (C.5.1.1)."""
RETRIEVE_EXTENDED = b"\x01"
"""Relational retrieval (PS3.4 C.5.2.1, C.5.3.1)."""

_FIND_WORDS = ("relational queries", "combined date-time matching", "fuzzy semantic matching of person names",
               "timezone query adjustment", "enhanced multi-frame image conversion")
_RETRIEVE_WORDS = ("relational retrieval", "enhanced multi-frame image conversion")

ROLE_GRANTED, ROLE_REFUSED, ROLE_NO_ANSWER = "granted", "refused", "no answer (SCU only)"


def family_of(uid: str) -> str:
    """The report group of a SOP class."""
    for known, family in SERVICE_CLASSES:
        if uid == known:
            return family
    return STORAGE if uid in STORAGE_SOP_CLASSES else OTHER


def _numeric(uid: str) -> list[int]:
    return [int(part) if part.isdigit() else 0 for part in uid.split(".")]


def default_classes() -> list[str]:
    """Every class probed without --sop-class: the services first, then the common storage classes
    (``get``'s default list), then the rest of the storage classes in UID order."""
    from .retrieve_classes import DEFAULT_STORAGE_CLASSES

    common = [uid for uid in DEFAULT_STORAGE_CLASSES if uid in STORAGE_SOP_CLASSES]
    rest = sorted(STORAGE_SOP_CLASSES.difference(common), key=_numeric)
    return [uid for uid, _family in SERVICE_CLASSES] + common + rest


def syntaxes_for(uid: str, chosen: Sequence[str] | None = None) -> tuple[str, ...]:
    """The syntaxes proposed for a class: ``chosen`` (--transfer-syntax) when given, else by family."""
    if chosen:
        return tuple(dict.fromkeys(chosen))
    return STORAGE_SYNTAXES if family_of(uid) in (STORAGE, OTHER) else SERVICE_SYNTAXES


def extended_words(uid: str, info: bytes) -> list[str]:
    """The options an extended negotiation reply says the peer supports (bytes equal to 1)."""
    words = _FIND_WORDS if uid in FIND_CLASSES else _RETRIEVE_WORDS if uid in RETRIEVE_CLASSES else ()
    return [words[i] if i < len(words) else f"byte {i}" for i, value in enumerate(info) if value == 1]


class ClassProbe:
    """One SOP class under probe: its syntaxes accepted, refused (with the reason in words), unknown."""

    def __init__(self, uid: str, syntaxes: Sequence[str]) -> None:
        self.uid = uid
        self.family = family_of(uid)
        self.syntaxes = tuple(syntaxes)
        self.accepted: list[str] = []
        self.refused: dict[str, str] = {}
        self.pending: list[str] = list(self.syntaxes)
        self.split = False
        self.scp_role: str | None = None
        self.extended: bytes | None = None

    @property
    def done(self) -> bool:
        return not self.pending

    def accept(self, syntax: str) -> None:
        if syntax in self.pending:
            self.pending.remove(syntax)
            self.accepted.append(syntax)

    def refuse(self, syntaxes: Iterable[str], reason: str) -> None:
        for syntax in syntaxes:
            if syntax in self.pending:
                self.pending.remove(syntax)
                self.refused[syntax] = reason

    def proposals(self, room: int) -> list[tuple[str, ...]]:
        """The contexts to propose for this class in the next association (at most ``room``)."""
        if self.done or room <= 0:
            return []
        if self.split:
            return [(syntax,) for syntax in self.pending[:room]]
        return [tuple(self.pending)]

    def ordered_accepted(self) -> list[str]:
        """Accepted syntaxes in proposal order (the acceptor's preference order is not knowable)."""
        return [s for s in self.syntaxes if s in self.accepted]


class Batch(NamedTuple):
    """One association's proposal: the contexts, what each probes, the anchor, roles, extended items."""

    contexts: tuple[PresentationContextRQ, ...]
    entries: dict[int, tuple[str, tuple[str, ...]]]
    """context ID → (SOP class, syntaxes proposed) for the probing contexts (the anchor is not here)."""
    anchor_id: int | None
    roles: tuple[RoleSelection, ...]
    extended: tuple[SOPClassExtendedNegotiation, ...]

    def classes(self) -> list[str]:
        return list(dict.fromkeys(uid for uid, _syntaxes in self.entries.values()))


class ProbePlan:
    """The elimination rounds of the module docstring: :meth:`next_batch` proposes, :meth:`record_accept`
    or :meth:`record_reject` reads the answer, until :meth:`next_batch` returns None."""

    def __init__(self, classes: Sequence[str], chosen_syntaxes: Sequence[str] | None = None,
                 limit: int = MAX_CONTEXTS) -> None:
        self.probes = {uid: ClassProbe(uid, syntaxes_for(uid, chosen_syntaxes)) for uid in dict.fromkeys(classes)}
        self.limit = limit
        self.anchor: tuple[str, str] | None = None
        self._cursor = 0

    def next_batch(self) -> Batch | None:
        """The next association's contexts, or None when every class is done. Classes are taken in a
        rotating order, so each round reaches every class before any class gets its next round."""
        order = list(self.probes.values())
        room = self.limit - (1 if self.anchor else 0)
        pairs: list[tuple[str, tuple[str, ...]]] = [(probe.uid, (syntax,)) for probe in order for syntax in probe.pending]
        if pairs and len(pairs) <= room:  # everything left fits: one context per (class, syntax), one association
            return self._batch(pairs)
        picked: list[tuple[str, tuple[str, ...]]] = []
        start, taken = self._cursor, 0
        for step in range(len(order)):
            probe = order[(start + step) % len(order)]
            proposals = probe.proposals(room - len(picked))
            if not proposals and not probe.done:
                break  # no room left for this class: it leads the next association
            picked.extend((probe.uid, syntaxes) for syntaxes in proposals)
            taken = step + 1
        self._cursor = (start + taken) % len(order) if order else 0
        if not picked:
            return None
        return self._batch(picked)

    def _batch(self, picked: list[tuple[str, tuple[str, ...]]]) -> Batch:
        pairs = list(picked)
        anchor_id = None
        if self.anchor is not None:
            pairs.insert(0, (self.anchor[0], (self.anchor[1],)))
            anchor_id = 1
        contexts = tuple(PresentationContextRQ(2 * i + 1, uid, syntaxes) for i, (uid, syntaxes) in enumerate(pairs))
        entries = {c.context_id: (c.abstract_syntax, c.transfer_syntaxes) for c in contexts if c.context_id != anchor_id}
        classes = list(dict.fromkeys(uid for uid, _syntaxes in picked))
        roles = tuple(RoleSelection(uid, 1, 1) for uid in classes if self.probes[uid].family == STORAGE)
        extended = tuple(SOPClassExtendedNegotiation(uid, FIND_EXTENDED if uid in FIND_CLASSES else RETRIEVE_EXTENDED)
                         for uid in classes if uid in FIND_CLASSES or uid in RETRIEVE_CLASSES)
        return Batch(contexts, entries, anchor_id, roles, extended)

    def record_accept(self, batch: Batch, ac: AssociateAC) -> None:
        """Read an A-ASSOCIATE-AC: each context's result, the role and extended negotiation replies."""
        answers = {c.context_id: c for c in ac.presentation_contexts}
        accepted_classes: set[str] = set()
        for context_id, (uid, syntaxes) in batch.entries.items():
            probe = self.probes[uid]
            answer = answers.get(context_id)
            if answer is None:
                self._refuse(probe, syntaxes, "no answer for its presentation context")
            elif answer.result == ContextResult.ACCEPTANCE:
                if answer.transfer_syntax in syntaxes:
                    probe.accept(answer.transfer_syntax)
                    accepted_classes.add(uid)
                    if self.anchor is None:
                        self.anchor = (uid, answer.transfer_syntax)
                else:
                    probe.refuse(syntaxes, f"accepted with {answer.transfer_syntax or 'no transfer syntax'}, which was not proposed")
            elif answer.result in (ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED, ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED):
                probe.refuse(syntaxes, ContextResult.MEANING[answer.result])
            else:
                self._refuse(probe, syntaxes, ContextResult.MEANING.get(answer.result, f"result {answer.result}"))
        self._record_roles(batch, ac, accepted_classes)
        for item in ac.user_info.extended:
            replied = self.probes.get(item.sop_class_uid)
            if replied is not None and replied.extended is None:
                replied.extended = item.info

    def _record_roles(self, batch: Batch, ac: AssociateAC, accepted_classes: set[str]) -> None:
        """The first answer for each storage class accepted in this association (a role answer for a
        refused class means nothing)."""
        answered = {r.sop_class_uid: r for r in ac.user_info.roles}
        for proposed in batch.roles:
            probe = self.probes[proposed.sop_class_uid]
            if probe.scp_role is not None or proposed.sop_class_uid not in accepted_classes:
                continue
            answer = answered.get(proposed.sop_class_uid)
            if answer is None:
                probe.scp_role = ROLE_NO_ANSWER
            else:
                probe.scp_role = ROLE_GRANTED if answer.scp_role == 1 else ROLE_REFUSED

    @staticmethod
    def _refuse(probe: ClassProbe, syntaxes: tuple[str, ...], reason: str) -> None:
        """A refusal that does not say which syntax: final for one syntax, else split the class."""
        if len(syntaxes) == 1:
            probe.refuse(syntaxes, reason)
        else:
            probe.split = True

    def record_reject(self, batch: Batch, reason: str) -> None:
        """The association proposing ``batch`` was rejected: its syntaxes are refused for that reason."""
        for uid, syntaxes in batch.entries.values():
            self.probes[uid].refuse(syntaxes, f"association rejected ({reason})")

    def abandon(self, reason: str) -> None:
        """The run stopped: whatever is still unknown is reported as not probed."""
        for probe in self.probes.values():
            probe.refuse(list(probe.pending), f"not probed: {reason}")


def resolve_sop_class(text: str) -> str:
    """A SOP class UID or registry keyword (``CTImageStorage``) → UID; ValueError if neither."""
    value = text.strip()
    if re.fullmatch(r"[0-9]+(\.[0-9]+)*", value) and len(value) <= 64:
        return value
    from pydicom._uid_dict import UID_dictionary  # the registry: only for a keyword given on the command line

    for uid, (_name, kind, _info, _retired, keyword) in UID_dictionary.items():
        if keyword == value and kind in ("SOP Class", "Meta SOP Class"):
            return uid
    raise ValueError(f"{text!r} is neither a SOP class UID nor a SOP class keyword (e.g. CTImageStorage)")
