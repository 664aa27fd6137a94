"""Which presentation contexts ``store`` proposes, how files are split between associations (at most
128 contexts each, PS3.8 §9.3.2.2), and which accepted context each file goes on."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ...part10.syntaxes import DEFLATED_LE, EXPLICIT_BE, EXPLICIT_LE, IMPLICIT_LE
from ...ul.negotiation import MAX_CONTEXTS, AcceptedContext
from ..dicomfiles import DicomFile

FALLBACK = (EXPLICIT_LE, IMPLICIT_LE)
TARGET_PREFERENCE = (EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE, DEFLATED_LE)
"""Syntaxes we can always encode to (pydicom, no codec needed), best first."""


def proposed_contexts(files: Sequence[DicomFile]) -> list[tuple[str, tuple[str, ...]]]:
    """One context per (SOP class, own syntax) plus an explicit/implicit LE fallback per SOP class.

    The fallback is left out only where both little endian syntaxes already have their own context.
    """
    by_class: dict[str, list[str]] = {}
    for file in files:
        syntaxes = by_class.setdefault(file.sop_class_uid, [])
        if file.transfer_syntax not in syntaxes:
            syntaxes.append(file.transfer_syntax)
    pairs: list[tuple[str, tuple[str, ...]]] = []
    for sop_class, syntaxes in by_class.items():
        pairs.extend((sop_class, (syntax,)) for syntax in syntaxes)
        if not set(FALLBACK) <= set(syntaxes):
            pairs.append((sop_class, FALLBACK))
    return pairs


def _contexts_needed(syntaxes: set[str]) -> int:
    return len(syntaxes) + (0 if set(FALLBACK) <= syntaxes else 1)


def partition(files: Sequence[DicomFile], max_contexts: int = MAX_CONTEXTS) -> list[list[DicomFile]]:
    """Split files into groups whose contexts fit one association, keeping each SOP class in one group."""
    by_class: dict[str, list[DicomFile]] = {}
    for file in files:
        by_class.setdefault(file.sop_class_uid, []).append(file)
    groups: list[list[DicomFile]] = []
    current: list[DicomFile] = []
    used = 0
    for members in by_class.values():
        need = min(_contexts_needed({f.transfer_syntax for f in members}), max_contexts)
        if current and used + need > max_contexts:
            groups.append(current)
            current, used = [], 0
        current.extend(members)
        used += need
    if current:
        groups.append(current)
    return groups


def choose_context(file: DicomFile, contexts: Iterable[AcceptedContext]) -> tuple[AcceptedContext | None, bool]:
    """The accepted context to send ``file`` on and whether it must be converted; (None, False) if none."""
    usable = [c for c in contexts if c.abstract_syntax == file.sop_class_uid and c.scu_role]
    for context in usable:
        if context.transfer_syntax == file.transfer_syntax:
            return context, False
    for syntax in TARGET_PREFERENCE:
        for context in usable:
            if context.transfer_syntax == syntax:
                return context, True
    return (usable[0], True) if usable else (None, False)


AUTO_SMALL = 256 * 1024
"""Mean data set size under which ``-j auto`` keeps one association: per-object CPU on both ends is the
cost there, and more associations only split it (bench/store.py: -j 2 was slower for 10 KB files)."""
AUTO_MAX = 8


def auto_jobs(files: Sequence[DicomFile], cpus: int, peer_is_local: bool) -> int:
    """``store -j auto``: associations for these files. One for small objects (use --async for those); for
    larger ones one per CPU (half of them when the peer runs on this machine and shares its CPUs), at most
    :data:`AUTO_MAX` and one per file."""
    if len(files) < 2:
        return 1
    mean = sum(f.dataset_length for f in files) / len(files)
    if mean < AUTO_SMALL:
        return 1
    usable = cpus // 2 if peer_is_local else cpus
    return max(1, min(AUTO_MAX, usable, len(files)))
