"""What ``move`` and ``get`` share in the CLI: the retrieve options, the requests, the receiving Storage
SCP, the progress bar, the summary, the JSON object and the exit code of a retrieve.

Exit codes (DESIGN.md): failed sub-operations are a failure (7) whatever the final status; a Cancel we
asked for is 0, one the peer chose is 8; an object we could not store is 7.
"""

from __future__ import annotations

from typing import Any

import click

from .. import counted
from .app import App, escape
from .exitcodes import ExitCode, combine, for_error, for_status
from .json_fields import head, tail
from .options import output_options, positive_seconds, stack, timeouts_from
from .storage_options import NOTABLE_EVENTS, STORE_EVENTS, build_storage, check_output_folder, log_line

retrieve_options = stack(
    click.option("--cancel-after-seconds", "cancel_after", type=float, default=None, callback=positive_seconds,
                 metavar="S", help="Send C-CANCEL-RQ after S seconds; a cancel we asked for exits 0."),
    click.option("--deadline", type=float, default=None, callback=positive_seconds, metavar="S",
                 help="Abort when the whole retrieve takes longer than S seconds (exit 6). Unlike -td, "
                      "which restarts with every message from the peer, this is never restarted."),
    click.option("--all", "retrieve_all", is_flag=True,
                 help="Allow a retrieve without matching keys (everything that matches, possibly the whole archive)."),
    click.option("--no-progress", is_flag=True, help="No progress bar (only drawn when stderr is a terminal)."),
    click.option("--warnings-ok", is_flag=True, help="Exit 0 instead of 1 when the peer answered warnings only."),
    output_options(json_help="One JSON summary object on stdout."),
)
"""The options after the query: the command receives ``cancel_after``, ``deadline``, ``retrieve_all``,
``no_progress``, ``warnings_ok`` and ``as_json`` (pass them on in ``options``); -q/-v/--debug/--no-color go to the App."""


def build_requests(options: dict[str, Any], from_json: str | None) -> tuple[Any, list[Any], list[str]]:
    """The model and the requests (from -k/-f, or from --from-json lines), plus unusable-line messages."""
    from ..services.query import MODELS
    from ..services.scu.retrieve_requests import request_for_dataset, requests_from_ndjson
    from .query_options import query_from_options

    if from_json is None:
        spec = query_from_options(options, for_retrieve=True)
        if not options.get("retrieve_all"):
            require_keys(spec)
        return spec.model, [request_for_dataset(spec.identifier, spec.level)], []
    if options.get("retrieve_all"):
        raise click.UsageError("--all is for -k/-f retrieves: --from-json names what to retrieve")
    if options.get("keys") or options.get("query_file"):
        raise click.UsageError("--from-json takes the keys from its lines: drop -k/-f")
    name = options.get("model") or "study"
    name = "study" if name is True else name
    if not MODELS[name].move:
        raise click.UsageError("the modality worklist model (-W) supports find only")
    level = options.get("level") or None  # any case: requests_from_ndjson reads it in upper case
    requests, problems = requests_from_ndjson(read_lines(from_json), name, level)
    return MODELS[name], requests, problems


MAX_FROM_JSON = 1 << 30
"""--from-json holds one line per match, ~1 KB each: a million matches is far below this."""


def read_lines(source: str) -> list[str]:
    """The lines of --from-json: ``-`` is stdin (read to its end: `dcmnet find --json | dcmnet move`), a
    path is read without blocking on a FIFO or running on from a device (:mod:`..transport.inputfiles`).
    Unreadable or non-UTF-8 input is a usage error, never a traceback."""
    import sys

    from ..transport.inputfiles import read_limited

    data = b""
    try:
        if source == "-":
            data = sys.stdin.buffer.read() if sys.stdin is not None else b""
        else:
            data = read_limited(source, MAX_FROM_JSON)
        return data.decode("utf-8").splitlines()
    except OSError as error:
        raise click.UsageError(f"--from-json: cannot read {source}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise click.UsageError(f"--from-json: {source} is not UTF-8 text (line {line})") from None


def require_keys(spec: Any) -> None:
    """A retrieve must say what to retrieve (PS3.4 C.4.2.2.1): at SERIES/IMAGE level the unique keys of
    that level and the levels above; at PATIENT/STUDY level at least one key with a value. Without one
    the peer sends everything it holds, which is never what a typo meant: ask for --all (exit 2)."""
    from ..services.query import HIGHER_KEYS, UNIQUE_KEYS

    ds, level = spec.identifier, spec.level

    from pydicom.multival import MultiValue  # the identifier is a pydicom Dataset: pydicom is loaded

    def given(keyword: str) -> bool:
        value = ds.get(keyword)
        if isinstance(value, MultiValue):
            value = "\\".join(map(str, value))  # a multi-valued key: its values, not the list's repr
        return bool(str(value or "").strip().strip("*?\\ "))

    if level in ("SERIES", "IMAGE"):
        keys = (*HIGHER_KEYS.get(spec.model.name, {}).get(level, ()), UNIQUE_KEYS[level])
        missing = [key for key in keys if not given(key)]
        if missing:
            raise click.UsageError(f"a {level} retrieve needs {', '.join(missing)}: add "
                                   + " ".join(f"-k {key}=..." for key in missing)
                                   + " (or --all to retrieve everything that matches)")
        return
    if not any(given(element.keyword) for element in ds if element.keyword not in _NOT_MATCHING):
        example = f"-k {UNIQUE_KEYS[level or 'STUDY']}=..."
        raise click.UsageError(f"no matching key: this would retrieve the whole archive; add {example} "
                               "(or another -k KEY=VALUE), or --all if that is what you want")


_NOT_MATCHING = ("QueryRetrieveLevel", "SpecificCharacterSet", "TimezoneOffsetFromUTC", "")


def make_storage(app: App, output_directory: str | None, filepath: str | None, on_duplicate: str, no_fsync: bool,
                 received: list[Any]) -> tuple[Any, Any]:
    """listen's Storage SCP writing below -od (default "."); its events fill ``received`` and the log."""

    def on_event(event: Any) -> None:
        kind = event.event
        if kind in STORE_EVENTS:
            received.append(event)  # list.append is atomic: receiver threads need no lock for it
        if kind in NOTABLE_EVENTS and kind != "association":
            app.say(f"receiver: {log_line(event)}", "warning")
        else:
            app.say(log_line(event), "detail")

    return build_storage(app, check_output_folder(output_directory or "."), filepath, on_duplicate, False, (), False, no_fsync, None, None,
                         60.0, on_event)


def run_retrieve(app: App, options: dict[str, Any], kind: str, target: Any, sop_class: str, requests: list[Any], *,
                 destination: str | None = None, storage: Any = None, storage_classes: tuple[str, ...] = (),
                 storage_syntaxes: tuple[str, ...] | None = None) -> Any:
    """Run the C-MOVE/C-GET requests with a progress bar on a terminal and -v lines per response."""
    from ..services.scu.retrieve import RetrieveCallbacks, retrieve

    bar = None
    if app.err_is_terminal and not options["no_progress"] and not app.quiet:
        bar = RetrieveProgress(app.err, kind, color=app.color)

    def on_response(operation: Any, message: Any) -> None:
        if bar is not None:
            bar.update(operation)
        app.say(f"{operation.label}: {_status_words(message.status, kind)} ({_counts(operation)})", "detail")

    callbacks = RetrieveCallbacks(on_response=on_response, log=app.detail, trace=app.trace if app.debug else None)
    with app.showing(bar):
        return retrieve(kind, target, options["calling_aet"], sop_class, requests, destination=destination,
                        storage=storage, storage_classes=storage_classes, timeouts=timeouts_from(options),
                        max_pdu=options["max_pdu"], deadline=options["deadline"],
                        cancel_after=options["cancel_after"], callbacks=callbacks, storage_syntaxes=storage_syntaxes)


class RetrieveProgress:
    """Sub-operations done out of the total the pending responses announce (rich, stderr terminals only)."""

    def __init__(self, stream: Any, kind: str, color: bool = True) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(file=stream, no_color=not color, highlight=False)
        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                  TextColumn("{task.fields[count]}  {task.fields[detail]}"),
                                  TimeElapsedColumn(), console=self.console, transient=False)
        self._task = self._progress.add_task(kind, total=None, count="", detail="waiting for the first response")

    def __enter__(self) -> "RetrieveProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.stop()

    def update(self, operation: Any) -> None:
        done = sum(v or 0 for v in (operation.completed, operation.failed, operation.warning))
        total = done + (operation.remaining or 0)
        self._progress.update(self._task, completed=done, total=max(total, 1), count=f"{done}/{total}",
                              detail=f"{operation.failed or 0} failed, {operation.warning or 0} warning")

    def print(self, text: str, style: str | None = None) -> None:
        """A log line above the bar (never interleaved with it)."""
        self.console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)


def _status_words(status: int | None, kind: str) -> str:
    if status is None:
        return "no final status"
    from ..dimse.status import describe

    return f"0x{status:04X} {describe(status, kind).meaning}"


def _counts(operation: Any) -> str:
    parts = [f"{operation.completed or 0} completed", f"{operation.failed or 0} failed", f"{operation.warning or 0} warning"]
    if operation.remaining:
        parts.insert(0, f"{operation.remaining} remaining")
    return ", ".join(parts)


def operation_code(operation: Any) -> ExitCode:
    """Exit code of one C-MOVE/C-GET (DESIGN.md): failed sub-operations are a failure (7) whatever the
    status; a Cancel we asked for is 0, one the peer chose is 8."""
    from ..dimse.status import Category

    if operation.status is None:
        # never answered: the error that ended it decides (an abort is 6, never 0)
        return for_error(operation.error) if operation.error is not None else ExitCode.SUCCESS
    category = operation.category
    if category is Category.CANCEL:
        code = ExitCode.SUCCESS if operation.cancel_sent else ExitCode.CANCELLED
    else:
        code = for_status(operation.status)
    if operation.failed:
        return combine([code, ExitCode.FAILURE])
    if operation.warning and code is ExitCode.SUCCESS and category is not Category.CANCEL:
        return ExitCode.WARNING
    return code


def exit_code(result: Any, received: list[Any] | None, problems: list[str], warnings_ok: bool) -> ExitCode:
    """The run's exit code: input problems, every operation, the error that ended it, failed stores."""
    codes: list[ExitCode] = [ExitCode.INPUT] if problems else []
    if result is not None:
        codes += [operation_code(op) for op in result.operations]
        codes += [for_error(op.error) for op in result.operations if op.error is not None]
        if result.not_attempted and result.error is None and not result.cancel_sent:
            codes.append(ExitCode.ABORTED)  # stopped by the deadline after an operation's own error
        if result.error is not None:
            codes.append(for_error(result.error))
    if any(event.event == "store-failed" for event in received or ()):
        codes.append(ExitCode.FAILURE)
    return combine(codes or [ExitCode.SUCCESS], warnings_ok=warnings_ok)


def finish(app: App, options: dict[str, Any], kind: str, target: Any, result: Any, received: list[Any] | None,
           problems: list[str], destination: str | None = None, hints: dict[str, str] | None = None) -> ExitCode:
    """Print the summary (stderr) or the JSON object (stdout); return the exit code. ``received`` is None
    when nothing is received in this process (a move to another AE). ``hints``: the words filled into the
    status hints (see :mod:`.retrieve_hints`)."""
    code = exit_code(result, received, problems, options["warnings_ok"])
    if options["as_json"]:
        app.json(summary(kind, target, result, received, problems, destination, code, options["calling_aet"]))
        for error in _errors(result):
            app.error(error)
        return code
    if result is None:
        return code
    for operation in result.operations:
        _report_operation(app, kind, operation, len(result.operations) > 1, hints)
    if result.error is not None:
        app.error(str(result.error))
    if result.not_attempted:
        app.error(f"{counted(len(result.not_attempted), 'request')} not attempted: " + ", ".join(map(escape, result.not_attempted)))
    if received:
        stored = sum(1 for e in received if e.event in ("stored", "received"))
        failed = sum(1 for e in received if e.event == "store-failed")
        app.info(f"received {counted(stored, 'object')}" + (f", {failed} could not be stored" if failed else ""))
    return code


def _errors(result: Any) -> list[str]:
    """The errors of a run for stderr: each operation's, then the run's own."""
    if result is None:
        return []
    lines = [f"{op.label}: {op.error}" for op in result.operations if op.error is not None]
    return lines + ([str(result.error)] if result.error is not None else [])


def _report_operation(app: App, kind: str, operation: Any, several: bool, hints: dict[str, str] | None) -> None:
    from .retrieve_hints import hint_for

    name = "C-MOVE" if kind == "move" else "C-GET"
    prefix = f"{operation.label}: " if several else ""
    code = operation_code(operation)
    if operation.foreign_elements:
        app.detail(f"{prefix}the peer put {', '.join(operation.foreign_elements)} (outside group 0000) in its "
                   f"command set: ignored")
    if operation.status is None:
        if operation.error is not None:
            app.error(f"{prefix}{name} ended without a final status: {operation.error}")
        return
    line = f"{prefix}{name} {_status_words(operation.status, kind)}: {_counts(operation)}"
    if operation.cancel_sent:
        line += " (cancel requested)"
    if operation.error_comment:
        line += f"; peer says: {escape(operation.error_comment)}"
    if code in (ExitCode.FAILURE, ExitCode.CANCELLED):
        app.error(line)
        hint = hint_for(kind, operation, hints or {})
        if hint:
            app.error(f"{prefix}hint: {hint}")
    else:
        app.say(line, "info" if code is ExitCode.SUCCESS else "warning")
    if operation.failed_uids:
        app.error(f"{prefix}failed SOP Instance UIDs: " + ", ".join(escape(u) for u in operation.failed_uids))
    elif operation.failed:
        app.error(f"{prefix}{counted(operation.failed, 'sub-operation')} failed; the peer did not list their SOP Instance UIDs")
    for problem in operation.identifier_problems:
        app.say(f"{prefix}ignored a malformed response identifier: {escape(problem)}", "warning")


def summary(kind: str, target: Any, result: Any, received: list[Any] | None, problems: list[str],
            destination: str | None, code: ExitCode, calling_ae: str = "") -> dict[str, Any]:
    """The JSON summary object of a retrieve (shared fields: :mod:`.json_fields`)."""
    from ..dimse.status import describe

    operations = list(result.operations) if result is not None else []
    final = next((op for op in operations if operation_code(op) == code and op.status is not None), None) \
        or next((op for op in reversed(operations) if op.status is not None), None)

    def total(name: str) -> int:
        return sum(getattr(op, name) or 0 for op in operations)

    obj: dict[str, Any] = {
        "operation": kind,
        **head(target, calling_ae, None if final is None else final.status),
        "meaning": None if final is None else describe(final.status, kind).meaning,
        "completed": total("completed"),
        "failed": total("failed"),
        "warning": total("warning"),
        "remaining": total("remaining"),
        "failed_sop_instance_uids": [uid for op in operations for uid in op.failed_uids],
        "operations": [_operation_json(op, kind) for op in operations],
        "cancel_sent": bool(result is not None and result.cancel_sent),
        "input_errors": problems,
        "error": next(iter(_errors(result)), None),
        "not_attempted": list(result.not_attempted) if result is not None else [],
        **tail(result.elapsed if result is not None else 0.0, code),
    }
    if destination is not None:
        obj["destination"] = destination
    if received is not None:
        obj["received"] = [{"path": e.path, "sop_class_uid": e.sop_class_uid, "sop_instance_uid": e.sop_instance_uid,
                            "status": e.status, "bytes": e.bytes, **({"detail": e.detail} if e.detail else {})}
                           for e in received]
    return obj


def _operation_json(operation: Any, kind: str) -> dict[str, Any]:
    from ..dimse.status import describe

    return {
        "label": operation.label,
        "status": None if operation.status is None else f"0x{operation.status:04X}",
        "meaning": None if operation.status is None else describe(operation.status, kind).meaning,
        "remaining": operation.remaining, "completed": operation.completed, "failed": operation.failed,
        "warning": operation.warning, "failed_sop_instance_uids": operation.failed_uids,
        "pending_responses": operation.pending, "cancel_sent": operation.cancel_sent,
        "error_comment": operation.error_comment, "identifier_problems": operation.identifier_problems,
        "error": None if operation.error is None else str(operation.error),
        "ignored_command_elements": operation.foreign_elements,
        "exit_code": int(operation_code(operation)),
    }
