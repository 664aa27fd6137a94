"""The Query/Retrieve option stack shared by ``find``, ``move`` and ``get``: model, level, keys, query file.

Flags follow DCMTK's findscu/movescu/getscu (``-P -S -O -W``, ``-k``, ``-f``); ``-L/--level`` is ours.
pydicom is imported only when :func:`query_from_options` runs for move/get or reads ``-f``; ``find``'s
identifier is a lean data set (:mod:`..services.query_build`), never at import time.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable

import click

from .options import stack

if TYPE_CHECKING:  # pragma: no cover
    from ..services.query import QuerySpec

F = Callable[..., Any]

LEVEL_CHOICES = ("PATIENT", "STUDY", "SERIES", "IMAGE")

MODEL_FLAGS: dict[str, str] = {
    "patient_root": "patient", "study_root": "study", "patient_study_only": "patient-study", "worklist": "worklist",
}


def _model_from_flags(function: F) -> F:
    """Turn the four model flags into one ``model`` keyword argument, refusing more than one (exit 2)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        chosen = [model for flag, model in MODEL_FLAGS.items() if kwargs.pop(flag, False)]
        if len(chosen) > 1:
            raise click.UsageError("-P/--patient-root, -S/--study-root, -O/--patient-study-only and -W/--worklist "
                                   "are mutually exclusive: give one")
        kwargs["model"] = chosen[0] if chosen else "study"
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
    """The QuerySpec for ``options`` (the click parameters of the stack above).

    ``for_retrieve`` (move/get): no default return keys are added (a retrieve identifier carries unique
    keys only), the worklist model is refused, and the level defaults the same way as for find.
    Raises click.UsageError / click.BadParameter on bad input (exit 2); InputError for an unreadable -f.
    """
    from ..services.query import MODELS, QuerySpec, build_identifier, check_level, load_query_file
    from ..services.query_build import build_query, load_query

    model_name = options.get("model") or "study"
    if model_name not in MODELS:
        raise click.BadParameter(f"unknown information model {model_name!r}", param_hint="-P/-S/-O/-W")
    model = MODELS[model_name]
    if for_retrieve and not model.move:
        raise click.UsageError("the modality worklist model (-W) supports find only")
    base: Any = None
    if options.get("query_file"):  # read by pydicom; find converts it to its lean data set
        base = load_query_file(options["query_file"]) if for_retrieve else load_query(options["query_file"])
    level = options.get("level")
    if level is not None:
        level = level.upper()
    elif model_name == "worklist":
        level = None
    elif _level_key(options.get("keys", ())) is not None:
        level = _level_key(options.get("keys", ()))
    elif base is not None and str(base.get("QueryRetrieveLevel", "") or "").strip():
        level = str(base.get("QueryRetrieveLevel")).strip().upper()
    else:
        level = "PATIENT" if model_name in ("patient", "patient-study") else "STUDY"
    notes: list[str] = []
    try:
        check_level(model_name, level)
        keys = options.get("keys", ())
        identifier: Any
        if for_retrieve:
            identifier = build_identifier(keys, level, base, False, model=model_name, notes=notes)
        else:  # find: a lean data set, no pydicom (services/query_build.py)
            identifier = build_query(keys, level, base, True, model=model_name, notes=notes)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="-k/--key" if "level" not in str(error) else "-L/--level")
    _say_notes(notes)
    return QuerySpec(model, level, identifier)


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


def _level_key(keys: Any) -> str | None:
    """The level given as ``-k QueryRetrieveLevel=X`` (DCMTK habit), last one wins."""
    level = None
    for key in keys:
        name, _, value = key.partition("=")
        if name.strip() in ("QueryRetrieveLevel", "0008,0052", "(0008,0052)") and value.strip():
            level = value.strip().upper()
    return level
