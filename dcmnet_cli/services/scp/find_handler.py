"""Query/Retrieve C-FIND SCP over the index (PS3.4 C.4.1, PS3.7 §9.1.2): Patient Root, Study Root and
Patient/Study Only information models, every query level.

One C-FIND-RQ:

1. The identifier is decoded (pydicom, in the context's transfer syntax); an undecodable one, or none,
   is 0xC000. Its QueryRetrieveLevel must be one of the model's levels (PS3.4 C.6.1–C.6.3), else 0xA900
   "identifier does not match SOP class".
2. The index is searched (:mod:`..archive.search`: SQL prefilter, then matching.matches for what SQL
   cannot decide exactly). Each match is answered with a pending C-FIND-RSP, 0xFF00, or 0xFF01 when the
   identifier holds keys the index cannot match (they are returned zero-length): exactly the requested
   keys, QueryRetrieveLevel, RetrieveAETitle (ours) and InstanceAvailability (ONLINE) when asked. The
   answer is encoded straight from the index's values (:mod:`.find_encode`) unless the identifier has
   sequences or an ISO 2022 character set; then matching.response and pydicom build it.
3. Character sets: values are stored as UTF-8; an answer whose values are all ASCII carries no Specific
   Character Set unless the query named one; otherwise it is encoded in the query's character set when
   every value fits it, and in ISO_IR 192 (UTF-8) when not.
4. Answers are computed in batches of :data:`BATCH` (under the index's gate) and each batch is sent in
   one gathered write. Before each batch the association is looked at without waiting (the session
   serves what arrived): a C-CANCEL-RQ for this request ends the answers with 0xFE00 (PS3.7 §9.3.2.3).
5. The final response: 0x0000 (or 0xFE00); an error while searching is 0xC000 with the reason as Error
   Comment (an index that cannot be read: 0xA700).
"""

from __future__ import annotations

from itertools import islice
from typing import Any, Iterator, NamedTuple

from ...dimse.commandset import c_find_rsp
from ...dimse.status import CANNOT_UNDERSTAND, DATASET_MISMATCH, OUT_OF_RESOURCES
from .find_answers import PENDING, PENDING_WARNING, FindAnswers, answering, decode_request_identifier

BATCH = 32
"""Answers computed per turn of the index's gate."""

FIND_MODELS = {
    "1.2.840.10008.5.1.4.1.2.1.1": "patient",
    "1.2.840.10008.5.1.4.1.2.2.1": "study",
    "1.2.840.10008.5.1.4.1.2.3.1": "patient-study",
}
"""C-FIND SOP classes of Query/Retrieve (PS3.4 C.6) → information model."""


class QueryConfig(NamedTuple):
    """What the C-FIND SCP needs: the index (an IndexRef), matching options, our AE title."""

    index: Any
    options: Any = None
    ae_title: str = ""


class FindHandler(FindAnswers):
    """One C-FIND-RQ on a Query/Retrieve FIND class; see the module docstring."""

    def __init__(self, config: QueryConfig) -> None:
        self.config = config

    def _answer(self, sop_class: str, dataset: bytes | None, syntax: str) -> tuple[int, str | None]:
        model = FIND_MODELS.get(sop_class)
        if model is None:
            return DATASET_MISMATCH, "not a Query/Retrieve FIND SOP class"
        identifier, problem = decode_request_identifier(dataset, syntax)
        if identifier is None:
            return CANNOT_UNDERSTAND, problem
        level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
        from ..archive.search import MODEL_LEVELS

        if level not in MODEL_LEVELS[model]:
            return DATASET_MISMATCH, f"query level {level or '(none)'!r} not in this information model"[:64]
        problem = None if self._relational(sop_class) else hierarchical_problem(model, level, identifier)
        if problem is not None:
            return CANNOT_UNDERSTAND, problem
        answers = self._matches(model, level, identifier, syntax)

        def run() -> None:
            gate = self.config.index.get().gate
            while True:
                with gate:  # compute a batch with the gate held, send it without (see Index.gate)
                    batch = list(islice(answers, BATCH))
                if not batch:
                    break
                self._check_cancel()
                driver = self.session.driver
                for status, data in batch:  # one batch goes out together (one gathered write)
                    driver.send_message(self.context_id, c_find_rsp(self.message.message_id or 0, status, sop_class,
                                                                    True), data, flush=False)
                driver.flush()

        return answering(run, on_os_error=(OUT_OF_RESOURCES, "index"))

    def _matches(self, model: str, level: str, identifier: Any, syntax: str) -> Iterator[tuple[int, bytes]]:
        """(status, encoded answer) per match: find_encode's fast path, else matching.response + pydicom."""
        from ..archive.matching import MatchOptions, response
        from .find_extended import negotiated_options
        from ..archive.search import search_attrs, to_dataset, unsupported_keys
        from .find_encode import answer_bytes, plan

        status = PENDING_WARNING if unsupported_keys(identifier, level) else PENDING
        options = negotiated_options(self.config.options or MatchOptions(), self.session.driver.assoc.request_pdu,
                                     self.message.affected_sop_class_uid or "")  # find_extended.py
        index = self.config.index.get()
        asked = _charsets(identifier)
        layout = plan(identifier, level, asked, syntax)
        keywords = {element.keyword for element in identifier if element.keyword}
        for attrs in search_attrs(index, model, level, identifier, options):
            if "RetrieveAETitle" in identifier:
                attrs["RetrieveAETitle"] = self.config.ae_title
            if "InstanceAvailability" in identifier:
                attrs["InstanceAvailability"] = "ONLINE"
            data = answer_bytes(layout, attrs) if layout is not None else None
            if data is None:
                candidate = to_dataset(attrs, keywords)
                for keyword, vr in (("RetrieveAETitle", "AE"), ("InstanceAvailability", "CS")):
                    if keyword in attrs:
                        candidate.add_new(keyword, vr, attrs[keyword])
                data = _encode(_charset(response(identifier, candidate, level), asked), syntax)
            yield status, data

    def _relational(self, sop_class: str) -> bool:
        """Relational queries were negotiated for this class (asked: we grant them, see extended_answer)."""
        from ...ul.items import SOPClassExtendedNegotiation

        request = self.session.driver.assoc.request_pdu
        return request is not None and any(
            isinstance(item, SOPClassExtendedNegotiation) and item.sop_class_uid == sop_class and item.info[:1] == b"\x01"
            for item in request.user_info.sub_items)


def hierarchical_problem(model: str, level: str, identifier: Any) -> str | None:
    """Why a hierarchical query (relational not negotiated) cannot be processed, or None: each level above
    the query level must hold its unique key with a value (PS3.4 C.4.1.3.1.1). 0xC000 when one is missing
    (as dcmqrscp) or empty (dcmqrscp then answers everything); a UID list or a wildcard PatientID is
    accepted (dcmqrscp matches those too)."""
    from ..archive.search import MODEL_LEVELS, UNIQUE_KEYS

    levels = MODEL_LEVELS[model]
    for upper in levels[:levels.index(level)]:
        keyword = UNIQUE_KEYS[upper][0]
        value = identifier.get(keyword)
        text = "" if value is None else "\\".join(str(v) for v in value) if not isinstance(value, str) else value
        if not text.strip():
            return f"hierarchical query: {keyword} must be given"[:64]
    return None


def _charsets(identifier: Any) -> list[str]:
    value = identifier.get("SpecificCharacterSet")
    if not value:
        return []
    return [str(v).strip() for v in value] if not isinstance(value, str) else [value.strip()]


_PYTHON_CODECS = {"ISO_IR 100": "latin_1", "ISO_IR 101": "iso8859_2", "ISO_IR 109": "iso8859_3",
                  "ISO_IR 110": "iso8859_4", "ISO_IR 144": "iso8859_5", "ISO_IR 127": "iso8859_6",
                  "ISO_IR 126": "iso8859_7", "ISO_IR 138": "iso8859_8", "ISO_IR 148": "iso8859_9",
                  "ISO_IR 192": "utf-8", "GB18030": "gb18030", "GBK": "gbk", "ISO_IR 13": "shift_jis",
                  "ISO_IR 166": "tis-620"}


def _charset(answer: Any, asked: list[str]) -> Any:
    """Set the answer's Specific Character Set: the query's when every value fits it, else ISO_IR 192."""
    texts = [str(e.value) for e in answer if e.VR in ("PN", "LO", "SH", "ST", "LT", "UT", "UC") and e.value]
    if all(text.isascii() for text in texts):
        if asked:
            answer.SpecificCharacterSet = asked if len(asked) > 1 else asked[0]
        elif "SpecificCharacterSet" in answer:
            del answer.SpecificCharacterSet
        return answer
    if asked and _fits(texts, asked):
        answer.SpecificCharacterSet = asked if len(asked) > 1 else asked[0]
    else:
        answer.SpecificCharacterSet = "ISO_IR 192"
    return answer


def _fits(texts: list[str], charsets: list[str]) -> bool:
    if len(charsets) == 1 and charsets[0] in _PYTHON_CODECS:
        try:
            for text in texts:
                text.encode(_PYTHON_CODECS[charsets[0]])
            return True
        except UnicodeEncodeError:
            return False
    from ...part10 import iso2022

    if not iso2022.handles(charsets):
        return False
    try:
        for text in texts:
            iso2022.encode(text, charsets)
        return True
    except (ValueError, UnicodeEncodeError):
        return False


def _encode(answer: Any, syntax: str) -> bytes:
    from ..query import encode_identifier

    return encode_identifier(answer, syntax)


def find_handlers(config: QueryConfig) -> dict[int, Any]:
    """The handler factories the C-FIND SCP registers (``listen``'s ``_server_factory`` merges them)."""
    from ...dimse.commandset import C_FIND_RQ

    load_query_modules()
    return {C_FIND_RQ: lambda: FindHandler(config)}


def load_query_modules() -> None:
    """Import now, in the one thread that builds the server, what the query and retrieve handlers import
    on first use. Left to the association threads, twenty C-FINDs arriving at once each began the first
    ``import pydicom``; a package whose modules import each other (pydicom) can then hand one thread a
    half-initialised module ("cannot import name 'convert_numbers' from partially initialized module
    'pydicom.values'"), and that association was aborted. Costs ~0.4 s once, at start, only with an index."""
    from importlib import import_module

    for name in _QUERY_MODULES:
        import_module(name)


_QUERY_MODULES = ("pydicom", "pydicom.dataset", "pydicom.filereader", "pydicom.filewriter", "dcmnet_cli.services.query",
                  "dcmnet_cli.services.archive.matching", "dcmnet_cli.services.archive.search",
                  "dcmnet_cli.services.scp.find_encode", "dcmnet_cli.services.scp.find_extended")


FIND_SYNTAXES = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99")
"""Transfer syntaxes accepted for C-FIND contexts: explicit LE preferred, implicit, explicit BE, deflated."""


def with_find_contexts(contexts: Any) -> Any:
    """The negotiation callable ``contexts`` plus the Query/Retrieve FIND classes."""
    def negotiate(abstract_syntax: str) -> Any:
        if abstract_syntax in FIND_MODELS:
            return FIND_SYNTAXES
        if contexts is None:
            return None
        return contexts(abstract_syntax) if callable(contexts) else contexts.get(abstract_syntax)

    return negotiate


def extended_answer(request: Any, answer: Any) -> Any:
    """The A-ASSOCIATE-AC ``answer`` with a SOP Class Extended Negotiation reply (PS3.4 C.5.1.1.1, PS3.7
    D.3.3.5) for each Query/Retrieve FIND class the requestor asked about and we accepted: relational
    queries granted when asked (the search matches keys of the levels above the query level whether or not
    they are unique keys), combined date-time matching and fuzzy semantic PN matching granted too (see
    find_extended.py), timezone adjustment and the rest refused (0). No reply when nothing was asked."""
    from ...ul.items import SOPClassExtendedNegotiation, UserInformation
    from .find_extended import extended_reply

    accepted = {request_context.abstract_syntax for request_context in request.presentation_contexts
                for answer_context in answer.presentation_contexts
                if answer_context.context_id == request_context.context_id and answer_context.result == 0}
    replies = []
    for item in request.user_info.sub_items:
        if isinstance(item, SOPClassExtendedNegotiation) and item.sop_class_uid in FIND_MODELS \
                and item.sop_class_uid in accepted and item.info:
            info = extended_reply(item.info)  # find_extended.py
            replies.append(SOPClassExtendedNegotiation(item.sop_class_uid, info))
    if not replies:
        return answer
    return answer._replace(user_info=UserInformation((*answer.user_info.sub_items, *replies)))
