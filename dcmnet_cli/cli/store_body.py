"""The body of ``dcmnet store`` without click: the click command (:mod:`.commands.store`) and the fast path
(:mod:`.fastpath`) both split the arguments (:func:`split_args`), parse PEER, then call :func:`store_body`."""

from __future__ import annotations

import sys
import time
from ..ul.typenames import Any

from .. import counted
from ..services.peer import Peer
from .app import App
from .exitcodes import ExitCode, combine, for_error, for_status
from .peer import AET_HOST_PORT, UsageProblem, timeouts_from


def split_args(args: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """PEER is one word (``[AET@]HOST:PORT`` or a node name) or two (``HOST PORT``); the rest are paths."""
    if not args:
        raise UsageProblem("missing PEER and PATH", bad=False)
    if len(args) >= 2 and args[0].isdigit() and not args[1].isdigit() and not AET_HOST_PORT.match(args[1]):
        raise UsageProblem(f"{args[0]!r} is a port number where HOST is expected: did you swap HOST and PORT? "
                           f"(dcmnet store {args[1]} {args[0]} PATH...)", bad=False)
    if len(args) >= 2 and not AET_HOST_PORT.match(args[0]) and args[1].isdigit():
        peer, paths = args[:2], args[2:]
    else:
        peer, paths = args[:1], args[1:]
    if not paths:
        raise UsageProblem("missing PATH: give files, folders, a DICOMDIR, or - to read paths from stdin", bad=False)
    return peer, paths


def read_paths(paths: tuple[str, ...]) -> list[str]:
    """Expand ``-`` into the paths listed on stdin, one per line (blank lines ignored)."""
    result: list[str] = []
    for path in paths:
        if path == "-":
            result.extend(line.rstrip("\r\n") for line in sys.stdin if line.strip())
        else:
            result.append(path)
    return result


def _local_host(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def _auto_jobs(app: App, target: Any, files: list[Any]) -> int:
    """``-j auto``: the number chosen for these files on this machine, said with -v."""
    import os

    from ..services.scu.store_plan import auto_jobs

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local = _local_host(target.host)
    jobs = auto_jobs(files, cpus, local)
    if app.verbose:
        mean = sum(f.dataset_length for f in files) / max(1, len(files))
        app.detail(f"-j auto: {counted(jobs, 'association')} for {counted(len(files), 'file')} of {_size(int(mean))} "
                   f"on average, {counted(cpus, 'CPU')}{' shared with the peer on this machine' if local else ''}")
    return jobs


class Tally:
    """What the run has done so far, counted as each file's outcome arrives: the summary line, also
    after Ctrl-C (when the service's result never comes back)."""

    def __init__(self, total: int) -> None:
        self.total, self.stored, self.bytes = total, 0, 0
        self.counts: dict[str, int] = {}
        self.started = time.perf_counter()
        self.errors_shown: set[str] = set()

    def add(self, outcome: Any, code: ExitCode | None = None) -> None:
        if outcome.status == 0x0000:  # the common case, per file: no lookups
            self.stored += 1
            self.bytes += outcome.bytes
            return
        if code is None:
            code = _file_code(outcome)
        if outcome.status is not None:
            self.bytes += outcome.bytes
        if code in (ExitCode.SUCCESS, ExitCode.WARNING):
            self.stored += 1
        kind = {ExitCode.WARNING: "with warnings", ExitCode.INPUT: "not DICOM or unreadable",
                ExitCode.FAILURE: "failed", ExitCode.CANCELLED: "cancelled"}.get(code)
        if kind is None and code is not ExitCode.SUCCESS:
            kind = "not sent" if outcome.status is None else "failed"
        if kind is not None:
            self.counts[kind] = self.counts.get(kind, 0) + 1

    def first_time(self, line: str) -> bool:
        """True the first time a line is seen: a connection failure is reported once, not per file."""
        if line in self.errors_shown:
            return False
        self.errors_shown.add(line)
        return True

    def line(self, interrupted: bool = False) -> str:
        """``stored 3 of 5 files (2 not DICOM or unreadable), 1.2 MB in 0.4 s``."""
        elapsed = time.perf_counter() - self.started
        detail = ", ".join(f"{n} {kind}" for kind, n in self.counts.items())
        text = f"stored {self.stored} of {self.total} files" + (f" ({detail})" if detail else "")
        text += f", {_size(self.bytes)} in {elapsed:.{2 if elapsed < 1 else 1}f} s"
        if self.bytes and elapsed:
            text += f" ({self.bytes / elapsed / 1e6:.1f} MB/s)"
        return ("interrupted: " + text) if interrupted else text


def store_body(app: App, target: Peer, path_args: tuple[str, ...], recursive: bool, pattern: str | None, jobs: int,
               window: int, retries: int, retry_delay: float, max_rate: float | None, no_progress: bool, as_json: bool,
               report: str | None, warnings_ok: bool, **options: Any) -> int:
    """Send the files of ``path_args`` to ``target``; print the outcome; the exit code."""
    from ..services.scu.store import store
    from ..services.scu.store_inputs import collect

    paths = read_paths(path_args)
    if not paths:
        app.error("stdin held no paths: give one file or folder per line after '-' (e.g. find DIR -name '*.dcm' | "
                  "dcmnet store PEER -)")
        return ExitCode.INPUT
    files, problems = collect(paths, recursive, pattern)
    tally = Tally(len(files) + len(problems))
    for problem in problems:
        app.error(str(problem.error))
        tally.add(problem)
    if not files:
        if not problems:
            app.error("no files to send: the folders are empty or nothing matches --pattern")
        code = ExitCode.INPUT
        app.info(tally.line())
        _emit(app, as_json, report, target, problems, [], 0.0, code, warnings_ok, calling_ae=options["calling_aet"])
        return code

    if jobs == 0:
        jobs = _auto_jobs(app, target, files)
    bar = _progress_bar(app, files, no_progress)
    callbacks = _callbacks(app, target, files, bar, tally)
    try:
        with app.showing(bar):
            result = store(target, files, options["calling_aet"], timeouts_from(options), max_pdu=options["max_pdu"],
                           jobs=jobs, retries=retries, backoff=retry_delay,
                           max_rate=max_rate * 1_000_000 if max_rate else None, callbacks=callbacks, window=window)
    except KeyboardInterrupt:
        app.error(tally.line(interrupted=True))
        return ExitCode.INTERRUPTED

    outcomes = problems + result.files
    code = combine([_file_code(o) for o in outcomes], warnings_ok=warnings_ok)
    if app.verbose:
        app.detail(f"{counted(len(result.associations), 'association')} to {target}")
    app.info(tally.line())
    _emit(app, as_json, report, target, problems, result.files, result.elapsed, code, warnings_ok, len(result.associations),
          calling_ae=options["calling_aet"])
    return code



def _progress_bar(app: App, files: list[Any], no_progress: bool) -> Any:
    """The transfer bar (files, bytes, rate, ETA) when stderr is a terminal and neither -q nor --no-progress."""
    if not app.err_is_terminal or no_progress or app.quiet:
        return None
    from .progress import TransferProgress

    return TransferProgress(app.err, len(files), sum(f.dataset_length for f in files), color=app.color)


def _callbacks(app: App, target: Any, files: list[Any], bar: Any, tally: Tally) -> Any:
    """The store's callbacks: the bar, one line per failed or warned file (per file with -v), association
    and retry lines. Called from the job threads; App.say keeps lines whole."""
    from ..services.scu.store_results import Callbacks

    sizes = {f.path: f.dataset_length for f in files}

    def on_file(outcome: Any) -> None:
        code = _file_code(outcome)
        tally.add(outcome, code)
        if bar is not None:
            bar.file_done()
            if outcome.status is None or outcome.converted:
                on_disk = sizes.get(outcome.path, 0)
                bar.adjust_total(outcome.bytes - on_disk if outcome.status is not None else -on_disk)
        if code is ExitCode.SUCCESS and not app.verbose:
            return
        if code not in (ExitCode.SUCCESS, ExitCode.WARNING):
            line = _file_line(outcome)
            if tally.first_time(line):  # an association-level error is the same line for every file
                app.say(line, "error")
        elif code is ExitCode.WARNING:
            app.say(_file_line(outcome), "warning")
        elif app.verbose:  # the line costs a status lookup: only when it is shown
            app.say(_file_line(outcome), "detail")

    def on_association(log: Any) -> None:
        if app.verbose:
            state = f"{log.accepted}/{log.contexts} contexts accepted" if log.outcome == "released" else log.detail
            app.say(f"association to {target} ({target.called_ae}): {log.files} files, {state}", "detail")

    def on_retry(reason: str, delay: float) -> None:
        line = f"retrying in {delay:g} s: {reason}"
        if tally.first_time(line):  # -j N: every association backs off alike; one line says it
            app.say(line, "info")

    return Callbacks(on_file=on_file, on_bytes=bar.advance if bar is not None else (lambda n: None),
                     on_association=on_association, on_retry=on_retry,
                     trace=app.trace if app.debug else None, log=app.detail if app.verbose else None)


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def _file_code(outcome) -> ExitCode:  # type: ignore[no-untyped-def]
    status = outcome.status
    if status is not None:
        return ExitCode.SUCCESS if status == 0x0000 else for_status(status)
    return for_error(outcome.error) if outcome.error is not None else ExitCode.INTERNAL


def _file_line(outcome) -> str:  # type: ignore[no-untyped-def]
    if outcome.status is None:
        return str(outcome.error)
    from ..dimse.status import describe

    info = describe(outcome.status, "storage")
    line = f"{outcome.path}: 0x{outcome.status:04X} {info.meaning} ({outcome.bytes} bytes"
    if outcome.converted:
        from ..part10.syntaxes import syntax_name

        line += f", converted from {syntax_name(outcome.transfer_syntax)} to {syntax_name(outcome.sent_syntax)}"
    return line + ")"


def _file_json(outcome) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from ..dimse.status import describe

    entry: dict[str, Any] = {
        "path": outcome.path,
        "sop_class_uid": outcome.sop_class_uid,
        "sop_instance_uid": outcome.sop_instance_uid,
        "transfer_syntax": outcome.transfer_syntax,
        "sent_transfer_syntax": outcome.sent_syntax,
        "status": None if outcome.status is None else f"0x{outcome.status:04X}",
        "meaning": describe(outcome.status, "storage").meaning if outcome.status is not None else None,
        "bytes": outcome.bytes if outcome.status is not None else 0,
        "exit_code": int(_file_code(outcome)),
    }
    if outcome.error is not None:
        entry["error"] = str(outcome.error)
    return entry


def _emit(app: App, as_json: bool, report: str | None, target, problems, results, elapsed: float,  # type: ignore[no-untyped-def]
          code: ExitCode, warnings_ok: bool, associations: int = 0, calling_ae: str = "") -> None:
    if not as_json and report is None:
        return
    from .json_fields import head, tail  # only for --json / --report: its typing import costs start-up

    outcomes = list(problems) + list(results)
    codes = [_file_code(o) for o in outcomes]
    sent = sum(o.bytes for o in results if o.status is not None)
    deciding = next((o.status for o in results if o.status is not None and _file_code(o) == code), None)
    summary = {
        **head(target, calling_ae, deciding),
        "files": [_file_json(o) for o in outcomes],
        "totals": {
            "files": len(outcomes),
            "succeeded": codes.count(ExitCode.SUCCESS),
            "warnings": codes.count(ExitCode.WARNING),
            "failed": sum(1 for o in results if o.status is not None and _file_code(o) not in (ExitCode.SUCCESS, ExitCode.WARNING)),
            "not_sent": sum(1 for o in outcomes if o.status is None),
            "bytes": sent,
        },
        "associations": associations,
        "mb_per_s": round(sent / elapsed / 1e6, 3) if elapsed else 0.0,
        "warnings_ok": warnings_ok,
        **tail(elapsed, code),
    }
    if as_json:
        app.json(summary)
    if report is not None:
        import json

        try:
            with open(report, "w", encoding="utf-8") as handle:
                json.dump(summary, handle, indent=2)
                handle.write("\n")
        except OSError as error:
            app.error(f"cannot write the report {report}: {error.strerror or error}")
