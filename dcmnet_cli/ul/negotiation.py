"""Association negotiation as pure functions (PS3.8 §7.1.1, PS3.7 Annex D.3.3).

The acceptor side turns an A-ASSOCIATE-RQ and a local :class:`AcceptorPolicy` into either an
A-ASSOCIATE-AC or an A-ASSOCIATE-RJ; the requestor side turns the AC it received into the table of usable
presentation contexts. Nothing here does I/O, so every rule is a unit test.
"""

from __future__ import annotations

from .records import NamedTuple
from .. import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from ..errors import AbortReason, PDUDecodeError
from .items import (
    ContextResult,
    PresentationContextAC,
    PresentationContextRQ,
    RoleSelection,
    SOPClassExtendedNegotiation,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
)
from .pdu import APPLICATION_CONTEXT_NAME, AssociateAC, AssociateRJ, AssociateRQ

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

MAX_CONTEXTS = 128
SEND_CAP = 1 << 20
"""Largest P-DATA-TF variable field we send when the peer advertises 0 ("no limit")."""

DEFAULT_MAX_PDU = 16382 * 8  # 128 KiB - 16: large enough for throughput, small enough for any peer

MIN_MAX_PDU = 8
"""The smallest peer Maximum Length we can send to: one PDV header (6 bytes) plus a 2-byte fragment, the
least :mod:`dcmnet_cli.dimse.fragment` can produce (PDV fragments stay even, PS3.5 §7.5). A peer that
declares 1 to 7 (0 means "no limit", PS3.8 D.1) is refused at negotiation: an A-ASSOCIATE-RJ permanent,
service-user, no-reason-given from an acceptor (PS3.8 Table 9-21 has no reason for a bad user-information
value; the listener's log names it), an A-ABORT (source 2, reason 6 invalid-PDU-parameter-value) from a
requestor, which has no way to reject an A-ASSOCIATE-AC."""


def peer_max_pdu_problem(max_length: int | None) -> str | None:
    """Why we cannot work with a peer that declares this Maximum Length, or None when we can."""
    if max_length and max_length < MIN_MAX_PDU:
        return f"the peer's maximum PDU length {max_length} is below the minimum {MIN_MAX_PDU}"
    return None


class RejectResult:
    PERMANENT = 1
    TRANSIENT = 2


class RejectSource:
    SERVICE_USER = 1
    PROVIDER_ACSE = 2
    PROVIDER_PRESENTATION = 3


class RejectReason:
    """Reasons by source (PS3.8 Table 9-21)."""

    NO_REASON = 1
    APPLICATION_CONTEXT_NOT_SUPPORTED = 2
    CALLING_AE_NOT_RECOGNIZED = 3
    CALLED_AE_NOT_RECOGNIZED = 7
    PROTOCOL_VERSION_NOT_SUPPORTED = 2  # source 2
    TEMPORARY_CONGESTION = 1  # source 3
    LOCAL_LIMIT_EXCEEDED = 2  # source 3


_REJECT_WORDS = {
    (1, 1): ("no reason given", "the peer refused without saying why; check its configuration and logs"),
    (1, 2): ("application context name not supported", "the peer is not a DICOM application entity"),
    (1, 3): ("calling AE title not recognised", "the peer does not know us: use an -aet it is configured for"),
    (1, 7): ("called AE title not recognised", "the peer expects another -aec"),
    (2, 1): ("no reason given (ACSE)", "the peer refused at the ACSE level"),
    (2, 2): ("protocol version not supported", "the peer does not speak DICOM UL protocol version 1"),
    (3, 1): ("temporary congestion", "the peer is busy: retry later"),
    (3, 2): ("local limit exceeded", "the peer has too many associations open: retry later"),
}
_SOURCE_WORDS = {1: "service user", 2: "service provider (ACSE)", 3: "service provider (presentation)"}


def describe_rejection(rj: AssociateRJ) -> tuple[str, str]:
    """One-line explanation and a hint for an A-ASSOCIATE-RJ."""
    result = "permanent" if rj.result == RejectResult.PERMANENT else "transient" if rj.result == 2 else f"result {rj.result}"
    source = _SOURCE_WORDS.get(rj.source, f"source {rj.source}")
    reason, hint = _REJECT_WORDS.get((rj.source, rj.reason), (f"reason {rj.reason}", "see the peer's logs"))
    return f"{result} rejection by the {source}: {reason}", hint


class IdentityVerdict(NamedTuple):
    """An acceptor's judgement of a User Identity sub-item (PS3.7 D.3.3.7).

    ``reason`` is what the listener may log (the user name, never the passcode or token): why the
    identity was refused, or whom it identified. ``server_response`` goes in the positive response
    (Table D.3-15) when one was requested: empty for username (and passcode) and JWT identities."""

    accepted: bool
    reason: str = ""
    server_response: bytes = b""


if TYPE_CHECKING:
    IdentityCheck = Callable[[UserIdentityRQ], "bool | IdentityVerdict"]
    """``AcceptorPolicy.accept_user_identity``: True/False, or an :class:`IdentityVerdict` with the words."""


class AcceptedContext(NamedTuple):
    """A presentation context both sides agreed on, with the roles this side may play on it."""

    context_id: int
    abstract_syntax: str
    transfer_syntax: str
    scu_role: bool = True
    scp_role: bool = True


# --------------------------------------------------------------------------- acceptor side


if TYPE_CHECKING:
    SupportedSyntaxes = Mapping[str, Sequence[str]] | Callable[[str], Sequence[str] | None]


class AcceptorPolicy(NamedTuple):
    """What an acceptor supports and whom it lets in.

    ``contexts`` maps an abstract syntax to the transfer syntaxes accepted for it, in order of preference
    (or is a function returning them, or None when the abstract syntax is not supported).
    ``scp_roles`` names the SOP classes for which we accept the requestor acting as SCP (C-GET storage).
    """

    ae_title: str
    contexts: SupportedSyntaxes
    require_called_aet: bool = False
    allowed_calling_aets: frozenset[str] | None = None
    max_pdu: int = DEFAULT_MAX_PDU
    scp_roles: Callable[[str], bool] = lambda uid: False
    accept_user_identity: IdentityCheck | None = None
    """Judges a requestor's User Identity sub-item; None: identities are not checked (and never answered,
    PS3.7 D.3.3.7: a positive response means the identity was verified)."""
    require_user_identity: bool = False
    """Reject requests that carry no User Identity sub-item (``listen --require-identity``)."""
    held_syntaxes: Callable[[], Mapping[str, Sequence[str]]] | None = None
    """Per SOP class, the transfer syntaxes of the objects we hold, most common first (``listen``'s index):
    the order of preference on contexts where the requestor takes the SCP role, see
    :func:`sender_preferences`. Called at most once per request, only when such a context is proposed."""
    implementation_class_uid: str = IMPLEMENTATION_CLASS_UID
    implementation_version_name: str = IMPLEMENTATION_VERSION_NAME

    def syntaxes_for(self, abstract_syntax: str) -> Sequence[str] | None:
        if callable(self.contexts):
            return self.contexts(abstract_syntax)
        return self.contexts.get(abstract_syntax)


def check_request_structure(rq: AssociateRQ) -> None:
    """Refuse malformed context lists (scenario C.18) before any negotiation: the PDU is invalid."""
    if len(rq.presentation_contexts) > MAX_CONTEXTS:
        raise PDUDecodeError(f"{len(rq.presentation_contexts)} presentation contexts (at most {MAX_CONTEXTS})")
    seen: set[int] = set()
    for context in rq.presentation_contexts:
        cid = context.context_id
        if cid % 2 == 0 or cid in seen:
            reason = "duplicate" if cid in seen else "even or zero"
            raise PDUDecodeError(f"presentation context ID {cid} is {reason}", AbortReason.INVALID_PDU_PARAMETER_VALUE)
        seen.add(cid)


def negotiate_context(context: PresentationContextRQ, policy: AcceptorPolicy,
                      held: Sequence[str] | None = None) -> PresentationContextAC:
    """Result 3 for an unknown abstract syntax, 4 when no syntax matches, else the acceptor's preference;
    on a context where we send (``held`` not None, see :func:`sender_preferences`): the syntaxes we hold
    the class in, then the requestor's order."""
    accepted = policy.syntaxes_for(context.abstract_syntax)
    if not accepted:
        return PresentationContextAC(context.context_id, ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED)
    proposed = set(context.transfer_syntaxes)
    if held is not None:
        allowed = set(accepted)
        accepted = [s for s in (*held, *context.transfer_syntaxes) if s in allowed]
    for syntax in accepted:
        if syntax in proposed:
            return PresentationContextAC(context.context_id, ContextResult.ACCEPTANCE, syntax)
    return PresentationContextAC(context.context_id, ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED)


def sender_preferences(rq: AssociateRQ, policy: AcceptorPolicy) -> Callable[[str], Sequence[str] | None]:
    """Per abstract syntax, the transfer syntaxes to prefer where the requestor takes the SCP role and we
    grant it (PS3.7 D.3.3.4): there we are the one sending (the C-STORE sub-operations of a C-GET, PS3.4
    C.4.3.3), so the syntaxes our objects of that class are held in come first, then the requestor's order.

    Why: the acceptor picks any one of the proposed syntaxes (PS3.8 §9.3.3.2), and our usual preference
    (explicit VR little endian) is a receiver's. A sender that picks the syntax it holds sends each object
    as stored, byte for byte; any other choice forces a conversion (a decompression at best; a lossy object
    never gets its stored bytes back) although the requestor proposed the stored syntax and so can take it.
    When we hold nothing of the class, only the requestor's order says anything about what it wants.
    None for every other context (and without ``policy.held_syntaxes``): the acceptor's own order."""
    if policy.held_syntaxes is None:
        return lambda uid: None
    sending = {r.sop_class_uid for r in rq.user_info.roles if r.scp_role and policy.scp_roles(r.sop_class_uid)}
    if not sending:
        return lambda uid: None
    held = policy.held_syntaxes()
    return lambda uid: tuple(held.get(uid, ())) if uid in sending else None


def negotiate_role(proposed: RoleSelection, policy: AcceptorPolicy) -> RoleSelection:
    """Agree to the requestor's proposed roles only where we support them (PS3.7 Table D.3-11)."""
    scp = proposed.scp_role if policy.scp_roles(proposed.sop_class_uid) else 0
    return RoleSelection(proposed.sop_class_uid, proposed.scu_role, scp)


_RJ_NO_REASON = AssociateRJ(RejectResult.PERMANENT, RejectSource.SERVICE_USER, RejectReason.NO_REASON)


def _reject_for_policy(rq: AssociateRQ, policy: AcceptorPolicy) -> tuple[AssociateRJ | None, str | None]:
    if rq.application_context != APPLICATION_CONTEXT_NAME:
        return AssociateRJ(RejectResult.PERMANENT, RejectSource.SERVICE_USER, RejectReason.APPLICATION_CONTEXT_NOT_SUPPORTED), None
    if policy.require_called_aet and rq.called_ae != policy.ae_title:
        return AssociateRJ(RejectResult.PERMANENT, RejectSource.SERVICE_USER, RejectReason.CALLED_AE_NOT_RECOGNIZED), None
    if policy.allowed_calling_aets is not None and rq.calling_ae not in policy.allowed_calling_aets:
        return AssociateRJ(RejectResult.PERMANENT, RejectSource.SERVICE_USER, RejectReason.CALLING_AE_NOT_RECOGNIZED), None
    problem = peer_max_pdu_problem(rq.user_info.max_length)
    if not rq.presentation_contexts or problem is not None:
        return _RJ_NO_REASON, problem
    return None, None


def judge_identity(rq: AssociateRQ, policy: AcceptorPolicy) -> IdentityVerdict | None:
    """The policy's verdict on the request's user identity; None when there is nothing to judge.

    No sub-item: refused only with ``require_user_identity``. A sub-item and no check: accepted
    unverified (no positive response will be sent). Refusals become A-ASSOCIATE-RJ permanent,
    service-user, no reason given: the requestor learns nothing about which part was wrong."""
    identity = rq.user_info.user_identity
    if identity is None:
        return IdentityVerdict(False, "no user identity given (identity required)") if policy.require_user_identity else None
    if policy.accept_user_identity is None:
        return None
    verdict = policy.accept_user_identity(identity)
    if isinstance(verdict, IdentityVerdict):
        return verdict
    return IdentityVerdict(bool(verdict), "" if verdict else f"user identity refused: {identity.describe()}")


def identity_label(rq: AssociateRQ, policy: AcceptorPolicy) -> str | None:
    """Who an accepted association says it is, for the listener's log: the user name (a repr, at most 64
    characters) or the identity type, marked unverified when the policy checks no identities."""
    identity = rq.user_info.user_identity
    if identity is None:
        return None
    user = identity.user
    label = repr(user[:64]) if user is not None else identity.describe().split(" (")[0]
    return label if policy.accept_user_identity is not None else f"{label} (unverified)"


def negotiate_acceptor(rq: AssociateRQ, policy: AcceptorPolicy) -> AssociateAC | AssociateRJ:
    """Decide an A-ASSOCIATE-RQ: AE checks first (with the right RJ reason), then every context."""
    return negotiate_acceptor_explained(rq, policy)[0]


def negotiate_acceptor_explained(rq: AssociateRQ, policy: AcceptorPolicy) -> tuple[AssociateAC | AssociateRJ, str | None]:
    """:func:`negotiate_acceptor`, with words for the log: why a request was refused beyond what the RJ
    says (a bad maximum length, a refused identity), or whom an accepted identity names."""
    rejection, problem = _reject_for_policy(rq, policy)
    if rejection is not None:
        return rejection, problem
    verdict = judge_identity(rq, policy)
    if verdict is not None and not verdict.accepted:
        return _RJ_NO_REASON, verdict.reason
    prefer = sender_preferences(rq, policy)
    contexts = tuple(negotiate_context(c, policy, prefer(c.abstract_syntax)) for c in rq.presentation_contexts)
    if not any(c.result == ContextResult.ACCEPTANCE for c in contexts):
        return _RJ_NO_REASON, None
    identity = rq.user_info.user_identity
    identity_answer = None
    if verdict is not None and identity is not None and identity.positive_response_requested:
        identity_answer = UserIdentityAC(verdict.server_response)
    user_info = UserInformation.build(
        max_length=policy.max_pdu,
        implementation_class_uid=policy.implementation_class_uid,
        implementation_version_name=policy.implementation_version_name,
        roles=tuple(negotiate_role(r, policy) for r in rq.user_info.roles),
        user_identity=identity_answer,
    )
    ac = AssociateAC(
        called_ae=rq.called_ae,
        calling_ae=rq.calling_ae,
        user_info=user_info,
        application_context=APPLICATION_CONTEXT_NAME,
        presentation_contexts=contexts,
    )
    return ac, verdict.reason if verdict is not None else None


def acceptor_contexts(rq: AssociateRQ, ac: AssociateAC) -> dict[int, AcceptedContext]:
    """The contexts an acceptor may use after sending ``ac``; roles from the role-selection answer."""
    abstract = {c.context_id: c.abstract_syntax for c in rq.presentation_contexts}
    proposed_roles = {r.sop_class_uid: r for r in rq.user_info.roles}
    answered_roles = {r.sop_class_uid: r for r in ac.user_info.roles}
    result = {}
    for context in ac.presentation_contexts:
        if context.result != ContextResult.ACCEPTANCE:
            continue
        uid = abstract[context.context_id]
        scu, scp = _roles(proposed_roles.get(uid), answered_roles.get(uid))
        # From the acceptor's side the roles are mirrored: it is SCP where the requestor is SCU.
        result[context.context_id] = AcceptedContext(context.context_id, uid, context.transfer_syntax, scu_role=scp, scp_role=scu)
    return result


# --------------------------------------------------------------------------- requestor side


def _roles(proposed: RoleSelection | None, answered: RoleSelection | None) -> tuple[bool, bool]:
    """The requestor's (SCU, SCP) roles after negotiation; default is SCU only (PS3.7 D.3.3.4)."""
    if proposed is None:
        return True, False
    if answered is None:
        return True, False  # no answer: default roles
    return bool(proposed.scu_role and answered.scu_role), bool(proposed.scp_role and answered.scp_role)


def requestor_contexts(rq: AssociateRQ, ac: AssociateAC) -> dict[int, AcceptedContext]:
    """Usable contexts for the requestor: accepted, proposed by us, with a syntax we offered."""
    proposed = {c.context_id: c for c in rq.presentation_contexts}
    proposed_roles = {r.sop_class_uid: r for r in rq.user_info.roles}
    answered_roles = {r.sop_class_uid: r for r in ac.user_info.roles}
    result = {}
    for context in ac.presentation_contexts:
        ours = proposed.get(context.context_id)
        if ours is None or context.result != ContextResult.ACCEPTANCE:
            continue
        if context.transfer_syntax not in ours.transfer_syntaxes:
            continue  # the acceptor picked something we never offered: treat as not accepted
        scu, scp = _roles(proposed_roles.get(ours.abstract_syntax), answered_roles.get(ours.abstract_syntax))
        result[context.context_id] = AcceptedContext(context.context_id, ours.abstract_syntax, context.transfer_syntax, scu, scp)
    return result


def send_limit(peer_max_length: int | None) -> int:
    """Largest P-DATA-TF variable field we may send: the peer's maximum, or our cap for 0/absent."""
    if not peer_max_length:
        return SEND_CAP
    return peer_max_length


def build_contexts(pairs: Iterable[tuple[str, Sequence[str]]]) -> tuple[PresentationContextRQ, ...]:
    """Number proposed contexts 1, 3, 5, … (odd IDs, PS3.8 §9.3.2.2); at most 128."""
    contexts = tuple(
        PresentationContextRQ(2 * index + 1, abstract, tuple(syntaxes)) for index, (abstract, syntaxes) in enumerate(pairs)
    )
    if len(contexts) > MAX_CONTEXTS:
        raise ValueError(f"{len(contexts)} presentation contexts: at most {MAX_CONTEXTS} fit in one association")
    return contexts


def build_request(
    called_ae: str,
    calling_ae: str,
    contexts: Sequence[PresentationContextRQ],
    max_pdu: int = DEFAULT_MAX_PDU,
    roles: Sequence[RoleSelection] = (),
    user_identity: UserIdentityRQ | None = None,
    extended: Sequence[SOPClassExtendedNegotiation] = (),
) -> AssociateRQ:
    """An A-ASSOCIATE-RQ; ``extended`` adds SOP Class Extended Negotiation sub-items (PS3.7 D.3.3.5)."""
    return AssociateRQ(
        called_ae=called_ae,
        calling_ae=calling_ae,
        user_info=UserInformation.build(
            max_length=max_pdu,
            implementation_class_uid=IMPLEMENTATION_CLASS_UID,
            implementation_version_name=IMPLEMENTATION_VERSION_NAME,
            roles=tuple(roles),
            user_identity=user_identity,
            extended=tuple(extended),
        ),
        presentation_contexts=tuple(contexts),
    )
