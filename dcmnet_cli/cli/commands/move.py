"""``dcmnet move``: C-MOVE studies, series or instances to an AE, optionally receiving them here.

Also home of what ``move`` and ``get`` share in the CLI: the storage options, the progress bar, the
summary, the JSON object and the exit code of a retrieve (``get`` imports them from here).
"""

from __future__ import annotations

import threading
from typing import Any

import click

from ..app import App, escape
from ..exitcodes import ExitCode, combine, for_error, for_status
from ..options import _stack, ae_title, network_options, tls_options, parse_peer, positive_seconds, server_tls_from, timeouts_from
from ..query_options import query_options

storage_options = _stack(
    click.option("-od", "--output-directory", type=click.Path(file_okay=False), default=None,
                 help="Write received objects below this folder (created if missing) [default: current folder]."),
    click.option("--filepath", default=None, metavar="TEMPLATE",
                 help="Path of each received file below -od, from element keywords, e.g. "
                      "'{PatientID}/{StudyInstanceUID}/{SOPInstanceUID}.dcm' [default: {SOPInstanceUID}.dcm]."),
    click.option("--on-duplicate", type=click.Choice(["replace", "keep", "rename"]), default="replace",
                 show_default=True, help="An instance whose file exists: replace it atomically, keep it, or store as NAME_1.dcm."),
    click.option("--no-fsync", is_flag=True, help="Do not fsync received files before answering (faster, less safe)."),
)

retrieve_options = _stack(
    click.option("--cancel-after-seconds", "cancel_after", type=float, default=None, callback=positive_seconds,
                 metavar="S", help="Send C-CANCEL-RQ after S seconds; a cancel we asked for exits 0."),
    click.option("--deadline", type=float, default=None, callback=positive_seconds, metavar="S",
                 help="Abort when the whole retrieve takes longer than S seconds (exit 6). Unlike -td, "
                      "which restarts with every message from the peer, this is never restarted."),
    click.option("--no-progress", is_flag=True, help="No progress bar (only drawn when stderr is a terminal)."),
    click.option("--json", "as_json", is_flag=True, help="One JSON summary object on stdout."),
    click.option("--warnings-ok", is_flag=True, help="Exit 0 instead of 1 when the peer answered warnings only."),
    click.option("-q", "--quiet", "quiet_here", is_flag=True, help="Print nothing but errors."),
    click.option("-v", "--verbose", "verbose_here", count=True, help="Every response, every received file."),
)

STORE_EVENTS = ("stored", "received", "store-failed")


class Say:
    """stderr lines from the command thread and the receiver threads, whole lines only, above the bar."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.bar: RetrieveProgress | None = None
        self.lock = threading.Lock()

    def __call__(self, text: str, level: str = "detail") -> None:
        """level: "error" (always), "warning"/"info" (unless -q), "detail" (-v only)."""
        app = self.app
        if level != "error" and app.quiet or level == "detail" and not app.verbose:
            return
        prefix = {"error": f"{app.command}: error: ", "warning": f"{app.command}: warning: "}.get(level, "")
        with self.lock:
            if self.bar is not None:
                self.bar.print(prefix + text)
            elif level == "error":
                app.error(text)
            else:
                print(prefix + text, file=app.err, flush=True)


@click.command("move", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("peer", nargs=-1, required=True, metavar="PEER")
@network_options
@tls_options
@query_options
@click.option("--dest", "-aem", "--move-destination", "destination", default=None, callback=ae_title, metavar="AET",
              help="AE title to move to (the peer must know it) [default: our -aet when --store-port is given].")
@click.option("--from-json", "from_json", type=click.File("r", encoding="utf-8"), default=None, metavar="FILE|-",
              help="Move each match `dcmnet find --json` printed (one DICOM JSON object per line) at its level.")
@click.option("--store-port", type=click.IntRange(1, 65535), default=None, metavar="PORT",
              help="Receive the moved objects in this process: a Storage SCP on PORT while the move runs.")
@click.option("--bind", default="0.0.0.0", show_default=True, help="Address the --store-port receiver listens on.")
@click.option("--store-tls", is_flag=True,
              help="The --store-port receiver requires TLS too, with --tls-cert/--tls-key as its certificate "
                   "(client certificates checked against --tls-ca when offered).")
@storage_options
@retrieve_options
@click.pass_obj
def command(app: App, peer: tuple[str, ...], destination: str | None, from_json: Any, store_port: int | None,
            bind: str, store_tls: bool, output_directory: str | None, filepath: str | None, on_duplicate: str, no_fsync: bool,
            **options: Any) -> int:
    """Move objects from a Q/R SCP to an AE (C-MOVE).

    PEER is HOST PORT, [AET@]HOST:PORT or a node name. What to move comes from -k/-f at -L level
    (the unique keys of that level and, for -P, those above it), or from --from-json: the NDJSON that
    `dcmnet find --json` printed, each line moved at its own QueryRetrieveLevel, so
    `dcmnet find ... --json | dcmnet move ... --from-json -` works.

    --store-port PORT receives the objects here: a Storage SCP (listen's storage code: atomic writes,
    --filepath templates, path-safe names) runs on PORT for the length of the move, and --dest defaults
    to our -aet. The peer must know that AE title with this host and PORT.

    Exit 7 when the peer reports failed sub-operations (their SOP Instance UIDs are listed when it
    names them) or a failure status such as 0xA801 (move destination unknown); 1 on warnings; 8 when
    the peer cancelled on its own; 0 when it confirms a cancel we asked for (--cancel-after-seconds).
    """
    _local_flags(app, options)
    target = parse_peer(peer, options["called_aet"], options, tls_detail_used=store_tls)
    if store_port is None and (output_directory or filepath or store_tls):
        raise click.UsageError("-od, --filepath and --store-tls need --store-port (objects go to --dest otherwise)")
    receiver_tls = None
    if store_tls:
        if not options.get("tls_cert"):
            raise click.UsageError("--store-tls needs --tls-cert FILE (and --tls-key FILE): the receiver's certificate")
        receiver_tls = server_tls_from({"tls": True, **{k: options.get(k) for k in
                                                         ("tls_cert", "tls_key", "tls_ca", "tls_key_password_env")}})
    destination = destination or (options["calling_aet"] if store_port is not None else None)
    if not destination:
        raise click.UsageError("missing --dest AET: the AE title the peer should send the objects to "
                               "(or --store-port PORT to receive them here)")
    model, requests, problems = build_requests(options, from_json)
    for problem in problems:
        app.error(problem)
    if not requests:
        if from_json is not None:
            app.error("nothing to move: no usable line in --from-json")
        return finish(app, options, "move", target, None, None, problems, destination)
    received: list[dict] = []
    say = Say(app)
    if store_port is None:
        result = run_retrieve(say, options, "move", target, model.move, requests, destination=destination)
        return finish(app, options, "move", target, result, None, problems, destination)
    storage, contexts = make_storage(say, output_directory, filepath, on_duplicate, no_fsync, received)
    if storage is None:
        return ExitCode.USAGE
    from ...services.scu.retrieve import StoreReceiver

    receiver = StoreReceiver(storage, contexts, options["calling_aet"], bind, store_port, options["max_pdu"],
                             on_event=storage.on_event, network_timeout=options["network_timeout"], tls=receiver_tls)
    try:
        receiver.__enter__()
    except OSError as error:
        app.error(f"cannot listen on {bind}:{store_port} for --store-port: {error.strerror or error}")
        return ExitCode.CONNECT
    try:
        say(f"receiving on {bind}:{receiver.port}{' (TLS)' if receiver_tls is not None else ''} as {options['calling_aet']}")
        result = run_retrieve(say, options, "move", target, model.move, requests, destination=destination)
    finally:
        receiver.__exit__(None, None, None)
    return finish(app, options, "move", target, result, received, problems, destination)


# ------------------------------------------------------------------ shared with ``get``


def _local_flags(app: App, options: dict[str, Any]) -> None:
    app.quiet = app.quiet or options.pop("quiet_here")
    app.verbose += options.pop("verbose_here")


def build_requests(options: dict[str, Any], from_json: Any) -> tuple[Any, list, list[str]]:
    """The model and the requests (from -k/-f, or from --from-json lines), plus unusable-line messages."""
    from ...services.query import MODELS
    from ...services.scu.retrieve import request_for_dataset, requests_from_ndjson
    from ..query_options import query_from_options

    if from_json is None:
        spec = query_from_options(options, for_retrieve=True)
        return spec.model, [request_for_dataset(spec.identifier, spec.level)], []
    if options.get("keys") or options.get("query_file"):
        raise click.UsageError("--from-json takes the keys from its lines: drop -k/-f")
    name = options.get("model") or "study"
    name = "study" if name is True else name
    if not MODELS[name].move:
        raise click.UsageError("the modality worklist model (-W) supports find only")
    level = options["level"].upper() if options.get("level") else None
    requests, problems = requests_from_ndjson(from_json.read().splitlines(), name, level)
    return MODELS[name], requests, problems


def make_storage(say: Say, output_directory: str | None, filepath: str | None, on_duplicate: str, no_fsync: bool,
                 received: list[dict]) -> tuple[Any, Any]:
    """listen's Storage SCP writing below -od (default "."); its events fill ``received`` and the -v log."""
    from .listen import build_storage, log_line

    def on_event(event: dict) -> None:
        kind = event.get("event")
        if kind in STORE_EVENTS:
            with say.lock:
                received.append(event)
        if kind in ("store-failed", "error", "internal-error", "protocol-error", "rejected", "hook-error", "tls-error"):
            say(f"receiver: {log_line(event)}", "warning")
        elif kind != "check-skipped":
            say(log_line(event))

    return build_storage(say.app, output_directory or ".", filepath, on_duplicate, False, (), False, no_fsync, None, None,
                          60.0, on_event)


def run_retrieve(say: Say, options: dict[str, Any], kind: str, target: Any, sop_class: str, requests: list, *,
                 destination: str | None = None, storage: Any = None, storage_classes: tuple[str, ...] = ()) -> Any:
    from ...services.scu.retrieve import RetrieveCallbacks, retrieve

    app = say.app
    bar = None
    if app.err_is_terminal and not options["no_progress"] and not app.quiet:
        bar = RetrieveProgress(app.err, kind, color=app.color)

    def on_response(operation: Any, message: Any) -> None:
        if bar is not None:
            bar.update(operation)
        say(f"{operation.label}: {_status_words(message.status, kind)} ({_counts(operation)})")

    def trace(direction: str, summary: str) -> None:
        say(f"{'->' if direction == 'sent' else '<-'} {escape(summary)}", "info")

    callbacks = RetrieveCallbacks(on_response=on_response, log=say, trace=trace if app.debug else None)
    run = lambda: retrieve(kind, target, options["calling_aet"], sop_class, requests, destination=destination,  # noqa: E731
                           storage=storage, storage_classes=storage_classes, timeouts=timeouts_from(options),
                           max_pdu=options["max_pdu"], deadline=options["deadline"],
                           cancel_after=options["cancel_after"], callbacks=callbacks)
    if bar is None:
        return run()
    say.bar = bar
    try:
        with bar:
            return run()
    finally:
        say.bar = None


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
        self._progress.update(self._task, completed=done, total=max(total, done, 1), count=f"{done}/{total}",
                              detail=f"{operation.failed or 0} failed, {operation.warning or 0} warning")

    def print(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)


def _status_words(status: int | None, kind: str) -> str:
    if status is None:
        return "no final status"
    from ...dimse.status import describe

    return f"0x{status:04X} {describe(status, kind).meaning}"


def _counts(operation: Any) -> str:
    parts = [f"{operation.completed or 0} completed", f"{operation.failed or 0} failed", f"{operation.warning or 0} warning"]
    if operation.remaining:
        parts.insert(0, f"{operation.remaining} remaining")
    return ", ".join(parts)


def operation_code(operation: Any) -> ExitCode:
    """Exit code of one C-MOVE/C-GET (DESIGN.md): failed sub-operations are a failure (7) whatever the
    status; a Cancel we asked for is 0, one the peer chose is 8."""
    from ...dimse.status import Category

    if operation.status is None:
        return ExitCode.SUCCESS  # never answered: the error that ended the run decides
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


def exit_code(result: Any, received: list[dict] | None, problems: list[str], warnings_ok: bool) -> ExitCode:
    codes: list[ExitCode] = [ExitCode.INPUT] if problems else []
    if result is not None:
        codes += [operation_code(op) for op in result.operations]
        if result.error is not None:
            codes.append(for_error(result.error))
    if any(event.get("event") == "store-failed" for event in received or ()):
        codes.append(ExitCode.FAILURE)
    return combine(codes or [ExitCode.SUCCESS], warnings_ok=warnings_ok)


def finish(app: App, options: dict[str, Any], kind: str, target: Any, result: Any, received: list[dict] | None,
           problems: list[str], destination: str | None = None) -> ExitCode:
    """Print the summary (stderr) or the JSON object (stdout); return the exit code. ``received`` is None
    when nothing is received in this process (a move to another AE)."""
    code = exit_code(result, received, problems, options["warnings_ok"])
    if options["as_json"]:
        app.json(summary(kind, target, result, received, problems, destination, code))
        if result is not None and result.error is not None:
            app.error(str(result.error))
        return code
    if result is None:
        return code
    for operation in result.operations:
        _report_operation(app, kind, operation, len(result.operations) > 1)
    if result.error is not None:
        app.error(str(result.error))
    if received and not app.quiet:
        stored = sum(1 for e in received if e.get("event") in ("stored", "received"))
        failed = sum(1 for e in received if e.get("event") == "store-failed")
        app.info(f"received {stored} object(s)" + (f", {failed} could not be stored" if failed else ""))
    return code


def _report_operation(app: App, kind: str, operation: Any, several: bool) -> None:
    name = "C-MOVE" if kind == "move" else "C-GET"
    prefix = f"{operation.label}: " if several else ""
    code = operation_code(operation)
    if operation.status is None:
        return
    line = f"{prefix}{name} {_status_words(operation.status, kind)}: {_counts(operation)}"
    if operation.cancel_sent:
        line += " (cancel requested)"
    if operation.error_comment:
        line += f"; peer says: {escape(operation.error_comment)}"
    if code in (ExitCode.FAILURE, ExitCode.CANCELLED):
        app.error(line)
    elif not app.quiet:
        print(line if code is ExitCode.SUCCESS else f"{app.command}: warning: {line}", file=app.err, flush=True)
    if operation.failed_uids:
        app.error(f"{prefix}failed SOP Instance UIDs: " + ", ".join(escape(u) for u in operation.failed_uids))
    elif operation.failed:
        app.error(f"{prefix}{operation.failed} sub-operation(s) failed; the peer did not list their SOP Instance UIDs")
    for problem in operation.identifier_problems:
        app.info(f"{app.command}: warning: {prefix}ignored a malformed response identifier: {escape(problem)}")


def summary(kind: str, target: Any, result: Any, received: list[dict] | None, problems: list[str],
            destination: str | None, code: ExitCode) -> dict[str, Any]:
    from ...dimse.status import describe

    operations = list(result.operations) if result is not None else []
    final = next((op for op in operations if operation_code(op) == code and op.status is not None), None) \
        or next((op for op in reversed(operations) if op.status is not None), None)
    total = lambda name: sum(getattr(op, name) or 0 for op in operations)  # noqa: E731
    obj: dict[str, Any] = {
        "operation": kind,
        "peer": str(target),
        "called_ae": target.called_ae,
        "status": None if final is None else f"0x{final.status:04X}",
        "meaning": None if final is None else describe(final.status, kind).meaning,
        "completed": total("completed"),
        "failed": total("failed"),
        "warning": total("warning"),
        "remaining": total("remaining"),
        "failed_sop_instance_uids": [uid for op in operations for uid in op.failed_uids],
        "operations": [_operation_json(op, kind) for op in operations],
        "cancel_sent": bool(result is not None and result.cancel_sent),
        "input_errors": problems,
        "error": None if result is None or result.error is None else str(result.error),
        "elapsed_s": round(result.elapsed, 3) if result is not None else 0.0,
        "exit_code": int(code),
    }
    if destination is not None:
        obj["destination"] = destination
    if received is not None:
        obj["received"] = [{"path": e.get("path"), "sop_class_uid": e.get("sop_class_uid"),
                            "sop_instance_uid": e.get("sop_instance_uid"), "status": e.get("status"),
                            "bytes": e.get("bytes"), **({"detail": e["detail"]} if e.get("detail") else {})}
                           for e in received]
    return obj


def _operation_json(operation: Any, kind: str) -> dict[str, Any]:
    from ...dimse.status import describe

    return {
        "label": operation.label,
        "status": None if operation.status is None else f"0x{operation.status:04X}",
        "meaning": None if operation.status is None else describe(operation.status, kind).meaning,
        "remaining": operation.remaining, "completed": operation.completed, "failed": operation.failed,
        "warning": operation.warning, "failed_sop_instance_uids": operation.failed_uids,
        "pending_responses": operation.pending, "cancel_sent": operation.cancel_sent,
        "error_comment": operation.error_comment, "identifier_problems": operation.identifier_problems,
        "exit_code": int(operation_code(operation)),
    }


__all__ = ["command", "storage_options", "retrieve_options", "finish", "run_retrieve", "make_storage", "build_requests"]
