"""The query of ``find``/``move``/``get`` from their options, without click: the information model from the
-P/-S/-O/-W flags and the QuerySpec (model, level, identifier). :mod:`.query_options` declares the options
and turns a :class:`.peer.UsageProblem` into click's error; the fast path declines on one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .peer import UsageProblem

if TYPE_CHECKING:  # pragma: no cover
    from ..services.query import QuerySpec

MODEL_FLAGS: dict[str, str] = {
    "patient_root": "patient", "study_root": "study", "patient_study_only": "patient-study", "worklist": "worklist",
}


def model_from_flags(kwargs: dict[str, Any]) -> None:
    """Replace the four model flags of ``kwargs`` by one ``model`` ("study" when none); more than one is a
    usage error."""
    chosen = [model for flag, model in MODEL_FLAGS.items() if kwargs.pop(flag, False)]
    if len(chosen) > 1:
        raise UsageProblem("-P/--patient-root, -S/--study-root, -O/--patient-study-only and -W/--worklist "
                           "are mutually exclusive: give one", bad=False)
    kwargs["model"] = chosen[0] if chosen else "study"


def query_spec(options: dict[str, Any], *, for_retrieve: bool) -> tuple["QuerySpec", list[str]]:
    """(the QuerySpec for ``options``, notes to show as warnings).

    ``for_retrieve`` (move/get): no default return keys are added (a retrieve identifier carries unique
    keys only), the worklist model is refused, and the level defaults the same way as for find.
    Raises UsageProblem on bad input (exit 2); InputError for an unreadable -f.
    """
    from ..services.query import MODELS, QuerySpec, build_identifier, check_level, load_query_file
    from ..services.query_build import build_query, load_query

    model_name = options.get("model") or "study"
    if model_name not in MODELS:
        raise UsageProblem(f"unknown information model {model_name!r}", param_hint="-P/-S/-O/-W")
    model = MODELS[model_name]
    if for_retrieve and not model.move:
        raise UsageProblem("the modality worklist model (-W) supports find only", bad=False)
    base: Any = None
    if options.get("query_file"):  # read by pydicom; find converts it to its lean data set
        base = load_query_file(options["query_file"]) if for_retrieve else load_query(options["query_file"])
    level = options.get("level")
    if level is not None:
        level = level.upper()
    elif model_name == "worklist":
        level = None
    elif level_key(options.get("keys", ())) is not None:
        level = level_key(options.get("keys", ()))
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
        raise UsageProblem(str(error), param_hint="-k/--key" if "level" not in str(error) else "-L/--level") from None
    return QuerySpec(model, level, identifier), notes


def level_key(keys: Any) -> str | None:
    """The level given as ``-k QueryRetrieveLevel=X`` (DCMTK habit), last one wins."""
    level = None
    for key in keys:
        name, _, value = key.partition("=")
        if name.strip() in ("QueryRetrieveLevel", "0008,0052", "(0008,0052)") and value.strip():
            level = value.strip().upper()
    return level
