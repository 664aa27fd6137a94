"""The Query/Retrieve option stack shared by ``find``, ``move`` and ``get``: model, level, keys, query file.

Flags follow DCMTK's findscu/movescu/getscu (``-P -S -O -W``, ``-k``, ``-f``); ``-L/--level`` is ours.
pydicom is imported only when :func:`query_from_options` runs for move/get or reads ``-f``; ``find``'s
identifier is a lean data set (:mod:`..services.query_build`), never at import time.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable

import click

from .options import as_click_error, stack
from .peer import UsageProblem
from .query_spec import MODEL_FLAGS, level_key as _level_key, model_from_flags, query_spec

__all__ = ["MODEL_FLAGS", "_level_key"]

if TYPE_CHECKING:  # pragma: no cover
    from ..services.query import QuerySpec

F = Callable[..., Any]

LEVEL_CHOICES = ("PATIENT", "STUDY", "SERIES", "IMAGE")


def _model_from_flags(function: F) -> F:
    """Turn the four model flags into one ``model`` keyword argument, refusing more than one (exit 2)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            model_from_flags(kwargs)
        except UsageProblem as problem:
            raise as_click_error(problem) from None
        return function(*args, **kwargs)

    return wrapper


def _query_stack(worklist_shown: bool) -> Callable[[F], F]:
    return stack(
        click.option("-P", "--patient-root", is_flag=True, help="Patient Root information model."),
        click.option("-S", "--study-root", is_flag=True, help="Study Root information model [default]."),
        click.option("-O", "--patient-study-only", is_flag=True, help="Patient/Study Only information model (retired)."),
        # move/get accept -W only to refuse it with a clear message; it is not listed in their help
        click.option("-W", "--worklist", is_flag=True, hidden=not worklist_shown,
                     help="Modality Worklist information model."),
        click.option("-L", "--level", type=click.Choice(LEVEL_CHOICES, case_sensitive=False), default=None,
                     help="Query/Retrieve Level [default: PATIENT for -P/-O, STUDY for -S"
                          + ("; none for -W]." if worklist_shown else "].")),
        click.option("-k", "--key", "keys", multiple=True, metavar="KEY[=VALUE]",
                     help="Attribute by keyword or gggg,eeee, with =VALUE to match on, alone to return it; "
                          "sequences by path (Seq[0].Keyword=VALUE). Repeatable; overrides -f."),
        click.option("-f", "--query-file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                     help="Start from the query data set in FILE (DICOM or DICOM JSON); -k overrides it."),
        _model_from_flags,
    )


query_options = _query_stack(worklist_shown=True)
"""Decorator stack: the command receives ``model`` ("patient", "study", "patient-study", "worklist"),
``level``, ``keys`` and ``query_file``; pass those (e.g. the whole ``**options``) to query_from_options."""

retrieve_query_options = _query_stack(worklist_shown=False)
"""The same for move/get: -W is accepted (and refused by query_from_options) but not listed."""


def query_from_options(options: dict[str, Any], *, for_retrieve: bool) -> "QuerySpec":
    """The QuerySpec for ``options`` (the click parameters of the stack above): :func:`.query_spec.query_spec`
    with click's usage errors (exit 2) and its notes said as warnings. InputError for an unreadable -f."""
    try:
        spec, notes = query_spec(options, for_retrieve=for_retrieve)
    except UsageProblem as problem:
        raise as_click_error(problem) from None
    _say_notes(notes)
    return spec


def _say_notes(notes: list[str]) -> None:
    """Hints about the keys (a keyword read in another case) as warnings on stderr."""
    if not notes:
        return
    from .app import App

    ctx = click.get_current_context(silent=True)
    app = ctx.find_object(App) if ctx is not None else None
    for note in notes:
        if app is not None:
            app.say(note, "warning")
        else:
            click.echo(f"warning: {note}", err=True)
