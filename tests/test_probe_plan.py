"""``dcmnet probe``'s batching and interpretation, without sockets: the plan against our own pure acceptor
(:func:`negotiate_acceptor`) and against hand-made answers."""

from __future__ import annotations

import pytest

from dcmnet_cli.services.scu.probe_plan import (
    ROLE_GRANTED, ROLE_NO_ANSWER, ROLE_REFUSED, SERVICE_SYNTAXES, STORAGE_SYNTAXES, ProbePlan, default_classes,
    extended_words, resolve_sop_class)
from dcmnet_cli.ul.items import ContextResult, PresentationContextAC, RoleSelection, SOPClassExtendedNegotiation, UserInformation
from dcmnet_cli.ul.negotiation import AcceptorPolicy, build_request, negotiate_acceptor
from dcmnet_cli.ul.pdu import AssociateAC

VERIFICATION = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
EXPLICIT, IMPLICIT, DEFLATE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.1.99"
JPEG_BASELINE, J2K_LOSSLESS, RLE = "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5"


def run(plan: ProbePlan, policy: AcceptorPolicy) -> list:
    """Drive the plan with our acceptor; return the batches proposed."""
    batches = []
    while (batch := plan.next_batch()) is not None:
        batches.append(batch)
        assert len(batches) < 200, "the plan does not converge"
        rq = build_request("ANY-SCP", "DCMNET", batch.contexts, roles=batch.roles, extended=batch.extended)
        answer = negotiate_acceptor(rq, policy)
        if isinstance(answer, AssociateAC):
            plan.record_accept(batch, answer)
        else:
            plan.record_reject(batch, "no reason given")
    return batches


def storescp_like(compressed: bool = False) -> AcceptorPolicy:
    """Verification, CT and MR in explicit/implicit LE (plus JPEG baseline and RLE for storage with
    ``compressed``), nothing else; answers the SCP role for MR only."""
    storage = (EXPLICIT, IMPLICIT, JPEG_BASELINE, RLE) if compressed else (EXPLICIT, IMPLICIT)
    table = {VERIFICATION: (EXPLICIT, IMPLICIT), CT: storage, MR: storage}
    return AcceptorPolicy("ANY-SCP", table.get, scp_roles=lambda uid: uid == MR)


def test_default_classes_cover_every_family_without_duplicates() -> None:
    classes = default_classes()
    assert len(classes) == len(set(classes))
    assert classes[0] == VERIFICATION
    for uid in (CT, STUDY_FIND, "1.2.840.10008.5.1.4.1.2.1.3", "1.2.840.10008.5.1.4.31", "1.2.840.10008.1.20.1",
                "1.2.840.10008.3.1.2.3.3", "1.2.840.10008.5.1.4.1.2.4.3"):
        assert uid in classes


def test_exact_syntaxes_for_an_uncompressed_storage_scp() -> None:
    plan = ProbePlan(default_classes())
    batches = run(plan, storescp_like())
    ct = plan.probes[CT]
    assert ct.ordered_accepted() == [EXPLICIT, IMPLICIT]
    assert set(ct.refused) == set(STORAGE_SYNTAXES) - {EXPLICIT, IMPLICIT}
    assert set(ct.refused.values()) == {"transfer syntaxes not supported"}
    assert plan.probes[VERIFICATION].ordered_accepted() == [EXPLICIT, IMPLICIT]
    assert plan.probes[VERIFICATION].refused == {DEFLATE: "transfer syntaxes not supported"}
    assert plan.probes[STUDY_FIND].accepted == []
    assert set(plan.probes[STUDY_FIND].refused) == set(SERVICE_SYNTAXES)
    assert set(plan.probes[STUDY_FIND].refused.values()) == {"abstract syntax not supported"}
    assert all(probe.done for probe in plan.probes.values())
    assert all(len(batch.contexts) <= 128 for batch in batches)
    assert len(batches) <= 5, "elimination rounds: a narrow peer costs few associations"


def test_exact_syntaxes_with_compression() -> None:
    plan = ProbePlan([VERIFICATION, CT, MR])
    run(plan, storescp_like(compressed=True))
    assert plan.probes[CT].ordered_accepted() == [EXPLICIT, IMPLICIT, JPEG_BASELINE, RLE]
    assert J2K_LOSSLESS in plan.probes[CT].refused


def test_every_pair_fits_in_one_association_when_narrowed() -> None:
    plan = ProbePlan([CT], [EXPLICIT, IMPLICIT, J2K_LOSSLESS])
    batches = run(plan, storescp_like())
    assert len(batches) == 1
    assert [c.transfer_syntaxes for c in batches[0].contexts] == [(EXPLICIT,), (IMPLICIT,), (J2K_LOSSLESS,)]
    assert plan.probes[CT].ordered_accepted() == [EXPLICIT, IMPLICIT]
    assert plan.probes[CT].refused == {J2K_LOSSLESS: "transfer syntaxes not supported"}


@pytest.mark.parametrize("limit", [3, 7, 128])
def test_batches_respect_the_context_limit_and_carry_an_anchor(limit: int) -> None:
    """Every association after the first accepted one starts with a context known to be accepted, so a
    peer that rejects associations with nothing acceptable (our listen) still answers every context."""
    plan = ProbePlan(default_classes()[:40], limit=limit)
    batches = run(plan, storescp_like())
    assert all(len(batch.contexts) <= limit for batch in batches)
    assert all(batch.anchor_id == 1 for batch in batches[1:])
    reasons = {reason for probe in plan.probes.values() for reason in probe.refused.values()}
    assert not any("association rejected" in reason for reason in reasons)
    assert plan.probes[CT].ordered_accepted() == [EXPLICIT, IMPLICIT]


def test_a_rejected_association_refuses_its_contexts_with_the_reason() -> None:
    plan = ProbePlan([STUDY_FIND])
    run(plan, storescp_like())  # nothing acceptable: our acceptor answers A-ASSOCIATE-RJ
    assert set(plan.probes[STUDY_FIND].refused.values()) == {"association rejected (no reason given)"}


def test_unexplained_refusal_splits_the_class_into_one_context_per_syntax() -> None:
    """Result 2 (no reason) for a context with several syntaxes says nothing about each one: the next
    association proposes each syntax alone."""
    plan = ProbePlan([CT], [EXPLICIT, IMPLICIT, RLE], limit=2)  # too small for all pairs at once
    first = plan.next_batch()
    assert first is not None and [c.transfer_syntaxes for c in first.contexts] == [(EXPLICIT, IMPLICIT, RLE)]
    plan.record_accept(first, AssociateAC("A", "B", UserInformation(), presentation_contexts=(
        PresentationContextAC(1, ContextResult.NO_REASON),)))
    assert not plan.probes[CT].done and plan.probes[CT].split
    second = plan.next_batch()
    assert second is not None and [c.transfer_syntaxes for c in second.contexts] == [(EXPLICIT,), (IMPLICIT,)]
    plan.record_accept(second, AssociateAC("A", "B", UserInformation(), presentation_contexts=(
        PresentationContextAC(1, ContextResult.ACCEPTANCE, EXPLICIT), PresentationContextAC(3, ContextResult.NO_REASON))))
    third = plan.next_batch()
    assert third is not None and third.anchor_id == 1 and third.contexts[1].transfer_syntaxes == (RLE,)
    plan.record_accept(third, AssociateAC("A", "B", UserInformation(), presentation_contexts=(
        PresentationContextAC(1, ContextResult.ACCEPTANCE, EXPLICIT), PresentationContextAC(3, ContextResult.USER_REJECTION))))
    assert plan.next_batch() is None
    assert plan.probes[CT].accepted == [EXPLICIT]
    assert plan.probes[CT].refused == {IMPLICIT: "rejected (no reason given)", RLE: "rejected by the user"}


def test_a_syntax_never_proposed_is_not_taken_as_accepted() -> None:
    plan = ProbePlan([CT], [EXPLICIT])
    batch = plan.next_batch()
    assert batch is not None
    plan.record_accept(batch, AssociateAC("A", "B", UserInformation(), presentation_contexts=(
        PresentationContextAC(1, ContextResult.ACCEPTANCE, JPEG_BASELINE),)))
    assert plan.probes[CT].accepted == []
    assert "not proposed" in plan.probes[CT].refused[EXPLICIT]


def test_role_selection_answers_for_storage_classes() -> None:
    plan = ProbePlan([VERIFICATION, CT, MR])
    batches = run(plan, storescp_like())
    assert RoleSelection(CT, 1, 1) in batches[0].roles  # both roles: SCP as a C-GET SCU needs, SCU to keep the context
    assert all(role.sop_class_uid != VERIFICATION for role in batches[0].roles)
    assert plan.probes[MR].scp_role == ROLE_GRANTED
    assert plan.probes[CT].scp_role == ROLE_REFUSED
    assert plan.probes[VERIFICATION].scp_role is None


def test_no_role_answer_means_default_roles() -> None:
    plan = ProbePlan([CT], [EXPLICIT])
    batch = plan.next_batch()
    assert batch is not None
    plan.record_accept(batch, AssociateAC("A", "B", UserInformation(), presentation_contexts=(
        PresentationContextAC(1, ContextResult.ACCEPTANCE, EXPLICIT),)))
    assert plan.probes[CT].scp_role == ROLE_NO_ANSWER


def test_extended_negotiation_is_proposed_and_its_reply_kept() -> None:
    plan = ProbePlan([STUDY_FIND, "1.2.840.10008.5.1.4.1.2.2.3"], [EXPLICIT])
    batch = plan.next_batch()
    assert batch is not None
    assert SOPClassExtendedNegotiation(STUDY_FIND, b"\x01\x01\x01\x01") in batch.extended
    assert SOPClassExtendedNegotiation("1.2.840.10008.5.1.4.1.2.2.3", b"\x01") in batch.extended
    reply = UserInformation.build(extended=(SOPClassExtendedNegotiation(STUDY_FIND, b"\x01\x00\x00\x01"),))
    plan.record_accept(batch, AssociateAC("A", "B", reply, presentation_contexts=(
        PresentationContextAC(1, ContextResult.ACCEPTANCE, EXPLICIT),)))
    assert plan.probes[STUDY_FIND].extended == b"\x01\x00\x00\x01"
    assert extended_words(STUDY_FIND, b"\x01\x00\x00\x01") == ["relational queries", "timezone query adjustment"]
    assert extended_words("1.2.840.10008.5.1.4.1.2.2.3", b"\x01") == ["relational retrieval"]


def test_abandon_marks_the_rest_not_probed() -> None:
    plan = ProbePlan([CT], [EXPLICIT, IMPLICIT])
    plan.abandon("connection lost")
    assert plan.next_batch() is None
    assert plan.probes[CT].refused == {EXPLICIT: "not probed: connection lost", IMPLICIT: "not probed: connection lost"}


def test_sop_class_keywords_and_uids() -> None:
    assert resolve_sop_class("CTImageStorage") == CT
    assert resolve_sop_class(" 1.2.3.4 ") == "1.2.3.4"
    assert resolve_sop_class("StudyRootQueryRetrieveInformationModelFind") == STUDY_FIND
    with pytest.raises(ValueError, match="neither a SOP class UID nor"):
        resolve_sop_class("ExplicitVRLittleEndian")  # a transfer syntax, not a SOP class
    with pytest.raises(ValueError):
        resolve_sop_class("NoSuchThing")
