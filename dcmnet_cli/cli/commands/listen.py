"""``dcmnet listen``: a DICOM node on a port (Verification and Storage SCP; with an index also C-FIND,
C-MOVE and C-GET SCP, and with --worklist a worklist SCP; --verify-only for C-ECHO only).

The accept loop, the worker processes of --workers and the stop on SIGTERM/SIGINT live in transport/
(``transport.workers.run_workers``); this module turns options into a listener, and events into lines.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import click

from ...transport.workers import run_workers
from ..app import App, escape
from ..exitcodes import ExitCode
from ..options import (
    SectionedCommand,
    ae_title,
    listen_identity_from,
    listen_identity_options,
    output_options,
    positive_seconds,
    seconds_from_zero,
    seconds_or_unlimited,
    server_tls_from,
    server_tls_options,
)
from ..cluster_options import cluster_options, cluster_servers, cluster_setup, summarize as cluster_summary
from ..archive_options import archive_options, check_archive_options, index_path, open_archive
from ..retrieve_scp_options import move_destination_option, retrieve_handlers_for
from ..worklist_options import add_worklist_handlers, with_worklist, worklist_option
from ..storage_options import NOTABLE_EVENTS, bind_hint, build_storage, human_size, log_line

LISTEN_MAX_PDU = 4 << 20
"""What listen advertises by default (dcmnet's SCUs keep 131056). 2 x 100 MB, store -> listen -od on tmpfs: the
association took ~88 ms against ~106 with 128 KiB PDUs (issue 13; transport/bulk.py). Memory is unchanged: a P-DATA-TF over 256 KiB is streamed, never held whole (ul/framing.py)."""

TLS_MAX_PDU = 131056
"""With --tls: TLS records are decrypted in user space, so nothing is spliced, and larger PDUs only cost
(2 x 100 MB over TLS, 5 interleaved runs: ~278 ms with 4 MiB PDUs against ~254 with these)."""

STORAGE_ONLY = ("filepath", "accept_syntaxes", "promiscuous", "exec_on_receive", "exec_on_association_end")
"""Options that mean nothing with --verify-only."""
QUERY_ONLY = {"move_destinations": "--move-destination", "worklist_dir": "--worklist", "index_path": "--index",
              "case_insensitive_names": "--case-insensitive-names"}
"""Options of the query/retrieve node that mean nothing with --verify-only either."""


class EventLog:
    """Where the listener's events go: the dashboard's counters, and JSON lines on stdout or log lines
    on stderr (the routine ones with -v only). Called from every association thread; App keeps each
    line whole. ``storage`` is the Storage SCP with -od/--ignore (its totals end the summary).
    """

    def __init__(self, app: App, as_json: bool) -> None:
        self.app, self.as_json = app, as_json
        self.dashboard: Any = None
        self.storage: Any = None
        self.query: Any = None
        """The C-FIND SCP's QueryConfig when listen keeps an index (-od DIR or --index), else None."""
        self.cluster: Any = None
        """services/scp/cluster.NodeEvents: the node id in every JSON event, health checks only with -v."""
        self.worker: int | None = None
        """This process's index with --workers N > 1 (0 the parent): in every JSON event and log line."""

    def __call__(self, event: Any) -> None:
        """One event record (services/scp/events.py, transport/notices.py)."""
        if self.cluster is not None and self.cluster.is_health_check(event) and not self.app.verbose:
            return
        if self.dashboard is not None:
            self.dashboard.event(event)
        if self.as_json:
            from ...services.scp.events import event_dict

            record = event_dict(event)
            if "duration_ms" in record:  # the shared --json name and unit (cli/json_fields.py)
                record["elapsed_s"] = round(record.pop("duration_ms") / 1000, 3)
            if self.worker is not None:
                record["worker"] = self.worker
            if self.cluster is not None:
                record.update(self.cluster.fields)
            self.app.json(record)
            return
        if event.event not in NOTABLE_EVENTS and not self.app.verbose:
            return
        line = log_line(event) if self.worker is None else f"worker {self.worker}: {log_line(event)}"
        self.app.say(line, "info" if event.event in NOTABLE_EVENTS else "detail")

    def trace(self, peer: str, direction: str, summary: str) -> None:
        """One PDU summary (--debug)."""
        self.app.trace(direction, f"{peer} {summary}")


@click.command("listen", cls=SectionedCommand)
@click.argument("port", type=click.IntRange(0, 65535))
@click.option("-aet", "--aetitle", default="DCMNET", show_default=True, callback=ae_title, envvar="DCMNET_AETITLE",
              help="Our AE title.")
@click.option("--bind", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--require-called-aet", is_flag=True, help="Reject requests whose called AE title is not ours.")
@click.option("--allow-calling-aet", multiple=True, callback=lambda c, p, v: tuple(ae_title(c, p, x) for x in v),
              help="Accept only these calling AE titles (repeatable).")
@click.option("--max-associations", type=click.IntRange(min=1), default=64, show_default=True,
              help="Simultaneous associations; beyond it requests are rejected (transient, local limit).")
@click.option("--artim-timeout", type=float, default=30.0, show_default=True, callback=positive_seconds,
              help="Seconds a connection may take to send its whole A-ASSOCIATE-RQ, and to close after release/abort.")
@click.option("--network-timeout", "--idle-timeout", type=float, default=120.0, show_default=True,
              callback=seconds_or_unlimited,
              help="Seconds an association may stay idle, or a peer may stop reading what we send, before the "
                   "association is aborted (bounds what a stalled or hostile peer can hold); 0 = no limit.")
@click.option("-pdu", "--max-pdu", type=click.IntRange(min=0, max=0xFFFFFFFF), default=None,
              show_default=f"{LISTEN_MAX_PDU}; {TLS_MAX_PDU} with --tls",
              help="Largest P-DATA-TF we accept (0 = no limit). Large by default: a sender of big objects then "
                   "sends few PDU headers, and their pixel data is moved to the file by splice (one copy).")
@click.option("--async-window", type=click.IntRange(min=1, max=0xFFFF), default=16, show_default=True,
              help="C-STORE requests a client may keep outstanding when it proposes an asynchronous operations "
                   "window (PS3.7 D.3.3.3, e.g. dcmnet store --async); answered in order; 1 = never grant.")
@click.option("--shutdown-grace", type=float, default=10.0, show_default=True, callback=seconds_from_zero,
              help="On SIGINT/SIGTERM, seconds to let in-flight associations finish.")
@click.option("--no-progress", is_flag=True, help="No live dashboard on a terminal (log lines only).")
@click.option("-od", "--output-directory", type=click.Path(file_okay=False), default=None,
              help="Write received objects below this folder (created if missing) [default: the current folder].")
@click.option("--verify-only", "--no-store", "verify_only", is_flag=True,
              help="A Verification SCP only: answer C-ECHO, accept no storage.")
@click.option("--filepath", default=None, metavar="TEMPLATE",
              help="Path of each file below -od, from element keywords, e.g. "
                   "'{PatientID}/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm' "
                   "[default: {SOPInstanceUID}.dcm]. Also {CallingAET}, {CalledAET}. Unsafe values are hashed; "
                   "File Meta (0002) elements inside a data set are not stored.")
@click.option("--on-duplicate", type=click.Choice(["replace", "keep", "rename"]), default="replace", show_default=True,
              help="An instance whose file exists: replace it atomically, keep the old one, or store as NAME_1.dcm.")
@click.option("--ignore", is_flag=True, help="Storage SCP that receives and discards (no file written; benchmarks).")
@click.option("--accept", "accept_syntaxes", multiple=True, metavar="UID_OR_KEYWORD",
              help="Accept only these transfer syntaxes for storage (repeatable) [default: all known].")
@click.option("--promiscuous", is_flag=True, help="Accept unknown SOP classes too (any abstract syntax).")
@click.option("--no-fsync", is_flag=True, help="Do not fsync files and folders before answering (faster, less safe).")
@click.option("--exec-on-receive", default=None, metavar="CMD",
              help="Run CMD (split like a shell, never run by one) for each stored file; the path is appended and "
                   "DCMNET_PATH, DCMNET_SOP_CLASS_UID, DCMNET_SOP_INSTANCE_UID, DCMNET_REMOTE_AET (the calling AE), DCMNET_LOCAL_AET (the called AE), "
                   "DCMNET_PEER are set.")
@click.option("--exec-on-association-end", default=None, metavar="CMD",
              help="Run CMD after each association that stored something; the folder is appended and "
                   "DCMNET_COUNT, DCMNET_DIR, DCMNET_REMOTE_AET (the calling AE), DCMNET_LOCAL_AET (the called AE), DCMNET_PEER are set, "
                   "and DCMNET_FILES: a temporary file listing the stored files, one path a line. Every hook gets DCMNET_NODE_ID.")
@click.option("--exec-timeout", type=float, default=60.0, show_default=True, callback=positive_seconds,
              help="Seconds a hook may run before it is killed (at most 8 run at once).")
@click.option("--workers", type=click.IntRange(min=1, max=256), default=1, show_default=True,
              help="Processes sharing the port (SO_REUSEPORT), to use more than one core.")
@server_tls_options
@listen_identity_options
@archive_options
@move_destination_option
@worklist_option
@cluster_options
@output_options(json_help="One JSON object per line on stdout: per stored object and per association event.")
@click.pass_obj
def command(app: App, port: int, aetitle: str, bind: str, workers: int, shutdown_grace: float, as_json: bool,
            no_progress: bool, **options: Any) -> int:
    """Run a DICOM node until interrupted: Verification and Storage SCP (storescp's habit), and with -od DIR
    a query/retrieve node serving what it stored, from an index of DIR: C-FIND (Patient Root, Study Root,
    Patient/Study Only), C-MOVE (to --move-destination and the config's nodes) and C-GET; --worklist DIR
    adds a Modality Worklist SCP (worklist C-FIND).

    Received objects are written into the current folder, or below -od DIR (--verify-only: C-ECHO only,
    no storage; --ignore: receive and discard). Every Storage SOP class is accepted in every known transfer
    syntax (explicit VR little endian preferred, then implicit; a compressed syntax is taken when it is all
    that is proposed, and stored as sent). Each object is streamed to a temporary file in DIR, then renamed
    and fsynced before Success is answered; an abort leaves nothing behind. Peer values in file names are
    made safe (UIDs kept, anything else hashed). Failures answer 0xA700 (disk full, folder gone), 0xA900
    (data set UIDs differ from the command) or 0xC000 (unparsable where parsing is needed, or a path outside
    DIR). An output folder that cannot be created or written, or a port that cannot be bound, exits 3.

    With -od DIR (or --index PATH) every stored file is indexed (SQLite, DIR/.dcmnet-index.sqlite) once it
    is complete; at start the index and DIR are reconciled, so files already in DIR are served. A bare
    listen storing into the current folder keeps no index unless the folder has one. C-MOVE and C-GET send
    each object in the transfer syntax it is stored in whenever the receiver proposed it. --read-only
    serves queries and retrieves but refuses every C-STORE (0x0124); --no-index stores only.

    With --tls every connection must complete a TLS handshake (TLS 1.2 or later, bounded by
    --artim-timeout) before any DICOM is read; a failure is logged as one tls-error line and the
    connection closed. With --tls-ca clients must present a certificate signed by it (as DCMTK's
    storescp); --tls-allow-anonymous also accepts clients without one.

    Connections that have not sent a whole A-ASSOCIATE-RQ hold no thread: idle or slow ones are closed by
    --artim-timeout, and the oldest are dropped beyond 1024 per address or 4096 in all (logged).

    PORT 0 picks a free port (printed on stderr at start). Ctrl-C or SIGTERM stops accepting, lets
    in-flight associations finish, and exits 0 with a summary.
    """
    if (cluster := cluster_setup(app, aetitle, options)) is None:  # --print-health-check
        return ExitCode.SUCCESS
    tls = server_tls_from(options)
    app.stdout_optional = True  # a reader of --json that went away must never fail a store
    app.capture_warnings()  # pydicom's warnings about peer values go to -v, not one stderr line per object
    events = EventLog(app, as_json)
    contexts: Any = None  # Verification only
    if options["verify_only"]:
        _check_verify_only(options)
    else:
        events.storage, contexts = _storage(app, options, events)
        if events.storage is None:
            return ExitCode.INPUT
    make_server = cluster_servers(cluster, events, _server_factory(app, aetitle, bind, workers, tls, contexts, events, options))
    server = make_server(port)
    try:
        bound = server.bind()
    except OSError as error:
        app.error(f"cannot listen on {bind}:{port}: {error.strerror or error}{bind_hint(error, port)}")
        return ExitCode.INPUT
    escape("")  # load the codec now: a listener out of descriptors could not import it for a log line later
    _announce(app, events, bind, bound, aetitle, tls is not None, dashboard=workers == 1 and not no_progress,
              store=None if options["verify_only"] or options["ignore"] else options["output_directory"])

    settle_heap()
    _serve(app, events, server, lambda: make_server(bound), workers, shutdown_grace)
    return ExitCode.SUCCESS


def settle_heap() -> None:
    """Move everything made at start-up (modules, tables, the index's caches) out of the garbage collector's
    reach: a long-lived listener's full collections otherwise walk all of it again and again (issue 13:
    ~10 % of listen's CPU per object under store --async; gc.freeze() took 115 -> 100 µs per object). It
    also keeps those pages shared with --workers' forked processes (no reference-count writes from the
    collector)."""
    import gc

    gc.collect()
    gc.freeze()


def _check_verify_only(options: dict[str, Any]) -> None:
    """--verify-only with an option that only storage, the index, C-MOVE or the worklist use: exit 2."""
    if options["output_directory"] or options["ignore"] or any(options[name] for name in (*STORAGE_ONLY, "read_only")):
        raise click.UsageError("--verify-only accepts no storage: drop -od, --ignore, --filepath, --accept, "
                               "--promiscuous and --exec-*")
    for name, flag in QUERY_ONLY.items():
        if options.get(name):
            raise click.UsageError(f"--verify-only answers C-ECHO only: drop {flag}")


def _serve(app: App, events: EventLog, server: Any, make_server: Callable[[], Any], workers: int,
           shutdown_grace: float) -> None:
    """Serve in this process and ``workers`` - 1 forked ones until SIGTERM/SIGINT; then the summaries."""

    def serve(first: Any) -> None:
        with app.showing(events.dashboard):
            first.serve_forever()

    def on_stop(stopped: Any, worker: int) -> None:
        stopped.stop(shutdown_grace)
        if events.storage is not None:
            events.storage.close(shutdown_grace)
        if worker:  # a worker process reports its own totals; the parent's come after the reaping
            _summary(app, events, stopped, worker)

    def make_worker(index: int) -> Any:
        events.worker = index  # this process's copy of the event log (after the fork)
        return make_server()

    if workers > 1:
        events.worker = 0
    run_workers(workers, make_worker, on_stop, shutdown_grace, first=server, serve=serve,
                on_error=lambda worker, error: app.error(f"worker {worker}: {type(error).__name__}: {error}"))
    _summary(app, events, server, 0 if workers > 1 else None)


def _announce(app: App, events: EventLog, bind: str, port: int, aetitle: str, tls: bool, dashboard: bool,
              store: str | None) -> None:
    """The ``listening`` line (or JSON event), saying where objects go; the live dashboard when stderr is
    a terminal and ``dashboard`` (one process, no --no-progress) and neither --json nor -q."""
    where = "verification only" if events.storage is None else f"storing into {store}" if store \
        else "receiving and discarding (--ignore)"
    index = events.query.index.path if events.query is not None else None
    if index is not None:
        read_only = events.storage.config.read_only
        where = (f"serving {store} read-only" if read_only else where) + f", C-FIND from index {index}"
    if events.as_json:
        app.json({"event": "listening", "address": bind, "port": port, "aet": aetitle, "tls": tls, "store": store,
                  "index": index, **(events.cluster.fields if events.cluster is not None else {})})
    else:
        app.info(f"listening on {bind}:{port}{' (TLS)' if tls else ''} as {aetitle}, {where} (Ctrl-C to stop)")
    if dashboard and app.err_is_terminal and not (events.as_json or app.quiet):
        from ..dashboard import Dashboard

        events.dashboard = Dashboard(app.err, f"dcmnet listen {bind}:{port} as {aetitle}", color=app.color)


def _storage(app: App, options: dict[str, Any], events: EventLog) -> tuple[Any, Any]:
    """The Storage SCP (-od, default ".", or --ignore) and its negotiation callable; (None, None) when
    unusable. The output folder is checked first (created if missing, written to): InputError, exit 3.
    With an index (cli/archive_options.py) the folder is reconciled with it and the C-FIND classes join
    the negotiation (``events.query``)."""
    from ...services.scp.find_handler import with_find_contexts
    from ...services.scp.retrieve_handler import with_retrieve_contexts

    check_archive_options(options)
    options["output_directory_given"] = options["output_directory"] is not None
    if not options["ignore"]:  # created and checked writable by build_storage, after the usage checks
        options["output_directory"] = os.path.abspath(options["output_directory"] or ".")
    if options["move_destinations"] and index_path(options) is None:
        raise click.UsageError("--move-destination needs an index to retrieve from: give -od DIR or --index PATH "
                               "(not --no-index or --ignore)")
    storage, contexts = build_storage(app, options["output_directory"], options["filepath"], options["on_duplicate"],
                                      options["ignore"], options["accept_syntaxes"], options["promiscuous"],
                                      options["no_fsync"], options["exec_on_receive"],
                                      options["exec_on_association_end"], options["exec_timeout"], events)
    if storage is None:
        return None, None
    events.query = open_archive(app, options, storage)
    if events.query is not None:
        contexts = with_retrieve_contexts(with_find_contexts(contexts))  # C-FIND, C-MOVE, C-GET classes
    contexts = with_worklist(app, options, contexts, events)
    return storage, contexts


def default_max_pdu(given: int | None, tls: Any) -> int:
    """--max-pdu as given, else 4 MiB on plain TCP (the splice path) and 131056 with TLS."""
    if given is not None:
        return given
    return TLS_MAX_PDU if tls is not None else LISTEN_MAX_PDU


def _server_factory(app: App, aetitle: str, bind: str, workers: int, tls: Any, contexts: Any, events: EventLog,
                    options: dict[str, Any]) -> Callable[[int], Any]:
    """``make_server(port)``: a listener (unbound) with these settings; one per worker process."""
    from ...services.scp.entity import ListenerSettings, build_listener
    from ...services.scp.find_handler import find_handlers
    from ...services.scp.retrieve_handler import held_syntaxes, storage_role
    from ...services.scp.store_handler import storage_handlers

    allowed = options["allow_calling_aet"]
    settings = ListenerSettings(
        ae_title=aetitle, host=bind, port=0, max_pdu=default_max_pdu(options["max_pdu"], tls),
        require_called_aet=options["require_called_aet"], allowed_calling_aets=frozenset(allowed) if allowed else None,
        max_associations=options["max_associations"], artim_timeout=options["artim_timeout"],
        network_timeout=options["network_timeout"], reuse_port=workers > 1, tls=tls,
        async_window=options["async_window"], identity=listen_identity_from(options),
        scp_roles=storage_role if events.query is not None else None,  # C-GET sub-operations
        held_syntaxes=held_syntaxes(events.query.index) if events.query is not None else None,
    )
    trace = events.trace if app.debug else None

    def make_server(port: int) -> Any:
        storage = events.storage
        if storage is None:
            return build_listener(settings._replace(port=port), contexts, None, events, trace)
        handlers = storage_handlers(storage)
        if events.query is not None:  # an index: C-FIND, C-MOVE and C-GET handlers
            handlers.update(find_handlers(events.query._replace(ae_title=aetitle)))
            handlers.update(retrieve_handlers_for(events.query, aetitle, options, events))
        handlers = add_worklist_handlers(handlers, options)
        return build_listener(settings._replace(port=port), contexts, handlers, events, trace,
                              on_association_end=storage.association_ended, on_release=storage.released)

    return make_server


def _summary(app: App, events: EventLog, server: Any, worker: int | None = None) -> None:
    """The ``stopped`` line (or JSON event): connections, associations, and with storage the totals."""
    stats = server.stats
    summary: dict[str, Any] = {"event": "stopped", "connections": stats.connections,
                               "associations": stats.associations, "rejected": stats.rejected, "errors": stats.errors,
                               "protocol_errors": stats.protocol_errors, "dropped": stats.dropped}
    text = (f"stopped: {plural(stats.connections, 'connection')}, {plural(stats.associations, 'association')}, "
            f"{stats.rejected} rejected, {plural(stats.errors, 'error')}")
    if stats.protocol_errors:
        text += f", {plural(stats.protocol_errors, 'protocol error')} of peers"
    if stats.dropped:
        text += f", {stats.dropped} dropped before their association request"
    storage = events.storage
    if storage is not None:
        totals = storage.totals
        summary.update(stored=totals.stored, failed=totals.failed, bytes=totals.bytes)
        text += f", {totals.stored} stored, {totals.failed} failed, {human_size(totals.bytes)}"
    text = cluster_summary(events, summary, text)
    if worker is not None:
        summary["worker"] = worker
        text = f"worker {worker} {text}"
    if events.as_json:
        app.json(summary)
    else:
        app.info(text)


def plural(count: int, noun: str) -> str:
    """``1 connection``, ``2 connections``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
