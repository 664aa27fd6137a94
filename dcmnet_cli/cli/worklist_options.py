"""``listen --worklist DIR``: the Modality Worklist SCP (services/scp/worklist.py) joins the node.

Two calls from ``cli/commands/listen.py``: :func:`with_worklist` while the negotiation is built (checks
DIR, reads it once, adds the worklist class), :func:`add_worklist_handlers` for every server it makes.
"""

from __future__ import annotations

from typing import Any, Callable

import click

from .app import App

worklist_option = click.option(
    "--worklist", "worklist_dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
    help="Also a Modality Worklist SCP: answer worklist C-FIND (findscu -W, dcmnet find -W) from the items in "
         "DIR (DICOM or DICOM JSON files, each holding a ScheduledProcedureStepSequence), read again when "
         "they change. Unreadable files are skipped with one log line. Dates and times match as the items write "
         "them: a Timezone Offset From UTC (0008,0201) in the query does not shift them (PS3.4 C.2.2.2.5).")


def with_worklist(app: App, options: dict[str, Any], contexts: Any, on_event: Callable[[Any], None]) -> Any:
    """The negotiation ``contexts`` plus the worklist class when --worklist DIR was given (the folder kept
    in ``options["worklist_source"]``); InputError (exit 3) when DIR cannot be listed."""
    folder = options.get("worklist_dir")
    if not folder:
        return contexts
    from ..errors import InputError
    from ..services.scp.worklist import WorklistFolder, with_worklist_contexts

    source = WorklistFolder(folder, on_event)
    try:
        count = len(source.items())
    except OSError as error:
        raise InputError(f"cannot read worklist folder {folder}: {error.strerror or error}") from None
    app.info(f"worklist: {count} item{'' if count == 1 else 's'} in {source.folder}")
    options["worklist_source"] = source
    return with_worklist_contexts(contexts)


def add_worklist_handlers(handlers: dict[int, Any], options: dict[str, Any]) -> dict[int, Any]:
    """``handlers`` plus the worklist's C-FIND (dispatching on the SOP class) when --worklist is on."""
    source = options.get("worklist_source")
    if source is None:
        return handlers
    from ..services.archive.matching import MatchOptions
    from ..services.scp.worklist import worklist_handlers

    return worklist_handlers(handlers, source, MatchOptions(fuzzy_names=bool(options.get("case_insensitive_names"))))
