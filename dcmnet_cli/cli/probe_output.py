"""How ``dcmnet probe`` shows its result: plain lines, a Rich table on a terminal, or one JSON object.

``--json`` carries the shared ``identity`` field (type, user, whether confirmed; never a secret) when a
user identity was proposed. The report has two parts: what the peer said about itself (from its first A-ASSOCIATE-AC: implementation,
maximum PDU length, asynchronous operations window, user identity and extended negotiation replies,
the time to associate, the C-ECHO), then the SOP classes grouped by family (Verification, Storage,
Query/Retrieve, Worklist, Storage Commitment, MPPS), each with its accepted transfer syntaxes and, for
storage classes, the answer to the SCP role a C-GET SCU asks for. Only the accepted classes are listed
unless ``--all``; ``--json`` always has every class. Transfer syntaxes are shown by their registry
keyword (what ``--transfer-syntax`` takes). A user identity server response is never shown, only its
length: it may be a token.
"""

from __future__ import annotations

from typing import Any

from .. import counted
from ..part10.syntax_keywords import TRANSFER_SYNTAX_KEYWORDS
from ..services.scu.probe import ProbeResult
from ..services.scu.probe_plan import FAMILIES, ROLE_NO_ANSWER, ClassProbe, extended_words

_KEYWORDS = dict(TRANSFER_SYNTAX_KEYWORDS)


def syntax_label(uid: str) -> str:
    return _KEYWORDS.get(uid, uid)


def class_name(uid: str) -> str:
    """The registry name of a SOP class (pydicom's table; only ``probe`` pays for it), or the UID."""
    from pydicom.uid import UID

    name = UID(uid).name
    return name if name and name != uid else uid


def refusals(probe: ClassProbe) -> str:
    """Why syntaxes were refused, grouped by reason: ``abstract syntax not supported`` when it is one
    reason for every syntax, else ``JPEGBaseline8Bit, RLELossless (transfer syntaxes not supported)``."""
    if not probe.refused:
        return ""
    by_reason: dict[str, list[str]] = {}
    for syntax in probe.syntaxes:
        if syntax in probe.refused:
            by_reason.setdefault(probe.refused[syntax], []).append(syntax)
    if len(by_reason) == 1 and not probe.accepted:
        return next(iter(by_reason))
    return "; ".join(f"{', '.join(syntax_label(s) for s in syntaxes)} ({reason})" for reason, syntaxes in by_reason.items())


def identity_text(result: ProbeResult) -> str:
    """The peer's answer to our user identity: the type, user name and sizes only, never a secret."""
    identity = result.identity
    if identity is None:
        return "none proposed"
    return identity.describe_answer().removeprefix("user identity sent: ")


def header_lines(result: ProbeResult) -> list[str]:
    """What the peer said about itself, one ``name: value`` line each."""
    peer = result.peer
    lines = [f"peer: {peer} (called AE {peer.called_ae}, calling AE {result.calling_ae})"]
    info = result.peer_info
    if info is not None:
        lines.append(f"implementation: {info.implementation_class_uid or '-'} {info.implementation_version_name or ''}".rstrip())
        max_pdu = info.max_length
        lines.append(f"max PDU length: {'not given' if max_pdu is None else 'unlimited' if max_pdu == 0 else max_pdu}")
        window = info.async_window
        lines.append("async operations window: " + (f"{window.invoked} invoked, {window.performed} performed"
                                                      if window else "not negotiated (no reply)"))
        lines.append(f"user identity: {identity_text(result)}")
        for uid, probe in result.plan.probes.items():
            if probe.extended is not None:
                words = ", ".join(extended_words(uid, probe.extended)) or "none"
                lines.append(f"extended negotiation: {class_name(uid)}: {words}")
    if result.setup_ms:
        lines.append(f"associations: {result.associations}, the first accepted in {result.setup_ms[0]:.1f} ms")
    if result.echo_status is not None:
        from ..dimse.status import describe

        lines.append(f"C-ECHO: {describe(result.echo_status, 'echo').meaning} (0x{result.echo_status:04X}) "
                     f"in {result.echo_ms or 0:.1f} ms")
    return lines


def grouped(result: ProbeResult, show_all: bool) -> list[tuple[str, list[ClassProbe]]]:
    """(family, classes) in display order; refused classes only with ``show_all``."""
    groups: dict[str, list[ClassProbe]] = {}
    for probe in result.plan.probes.values():
        if probe.accepted or show_all:
            groups.setdefault(probe.family, []).append(probe)
    return [(family, groups[family]) for family in FAMILIES if family in groups]


def class_line(probe: ClassProbe, show_all: bool) -> str:
    """``  Name (uid): Syntax, Syntax; SCP role: …`` or ``  Name (uid): refused: why``."""
    text = f"  {class_name(probe.uid)} ({probe.uid}): "
    if probe.accepted:
        text += ", ".join(syntax_label(s) for s in probe.ordered_accepted())
        if probe.scp_role is not None:
            text += f"; SCP role: {probe.scp_role}"
        if show_all and probe.refused:
            text += f"; refused: {refusals(probe)}"
    else:
        text += f"refused: {refusals(probe)}"
    return text


def summary_line(result: ProbeResult, show_all: bool) -> str:
    total = len(result.plan.probes)
    accepted = len(result.accepted_classes)
    refused = total - accepted
    hint = f" (--all lists the {refused} refused)" if refused and not show_all else ""
    return f"{accepted} of {counted(total, 'SOP class', 'SOP classes')} accepted{hint}"


def plain(result: ProbeResult, show_all: bool) -> list[str]:
    """The whole report as plain lines (stdout not a terminal)."""
    lines = header_lines(result)
    for family, probes in grouped(result, show_all):
        lines.append("")
        lines.append(family)
        lines.extend(class_line(probe, show_all) for probe in probes)
    lines.append("")
    lines.append(summary_line(result, show_all))
    return lines


def table(result: ProbeResult, show_all: bool, out: Any, color: bool) -> None:
    """The report on a terminal: the header lines, then one Rich table with a row per family heading."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, no_color=not color, highlight=False)
    for line in header_lines(result):
        console.print(line, markup=False)
    grid = Table(show_lines=False)
    grid.add_column("SOP class", overflow="fold")
    grid.add_column("UID", overflow="fold")
    grid.add_column("Accepted transfer syntaxes", overflow="fold")
    grid.add_column("SCP role")
    if show_all:
        grid.add_column("Refused (why)", overflow="fold")
    for family, probes in grouped(result, show_all):
        grid.add_row(f"[bold]{family}[/bold]", *([""] * (len(grid.columns) - 1)))
        for probe in probes:
            cells = [class_name(probe.uid), probe.uid, "\n".join(syntax_label(s) for s in probe.ordered_accepted()) or "-",
                     probe.scp_role or ""]
            if show_all:
                cells.append(refusals(probe))
            grid.add_row(*cells)
    console.print(grid)
    console.print(summary_line(result, show_all), markup=False)


def as_json(result: ProbeResult) -> dict[str, Any]:
    """The JSON body (the command adds the shared head and tail fields)."""
    info = result.peer_info
    window = info.async_window if info is not None else None
    rejection = result.rejection
    return {
        "implementation_class_uid": info.implementation_class_uid if info else None,
        "implementation_version_name": info.implementation_version_name if info else None,
        "max_pdu": info.max_length if info else None,
        "async_operations_window": {"invoked": window.invoked, "performed": window.performed} if window else None,
        "associate_ms": round(result.setup_ms[0], 3) if result.setup_ms else None,
        "associations": result.associations,
        "echo": None if result.echo_status is None else
        {"status": f"0x{result.echo_status:04X}", "rtt_ms": round(result.echo_ms or 0.0, 3)},
        "rejection": None if rejection is None else
        {"result": rejection.result, "source": rejection.source, "reason": rejection.reason,
         "cause": rejection.words, "fix": rejection.hint},
        "sop_classes": [_class_json(probe) for probe in result.plan.probes.values()],
    }


def _class_json(probe: ClassProbe) -> dict[str, Any]:
    extended = None
    if probe.extended is not None:
        extended = {"info": probe.extended.hex(), "supported": extended_words(probe.uid, probe.extended)}
    return {"uid": probe.uid, "name": class_name(probe.uid), "family": probe.family,
            "accepted": probe.ordered_accepted(), "refused": {s: probe.refused[s] for s in probe.syntaxes if s in probe.refused},
            "scp_role": _ROLE_JSON.get(probe.scp_role or "", probe.scp_role), "extended_negotiation": extended}


_ROLE_JSON = {ROLE_NO_ANSWER: "no answer"}
"""The SCP role answer in --json: "granted", "refused", "no answer" (default roles: SCU only), or null."""
