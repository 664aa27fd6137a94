"""Acceptor negotiation where the requestor takes the SCP role (ul/negotiation.py ``sender_preferences``):
on those storage contexts we send (C-GET sub-operations), so the syntaxes we hold come first, then the
requestor's order; every other context keeps the acceptor's own preference. Sans-IO."""

from __future__ import annotations

from dcmnet_cli.ul.items import RoleSelection
from dcmnet_cli.ul.negotiation import AcceptorPolicy, build_contexts, build_request, negotiate_acceptor
from dcmnet_cli.ul.pdu import AssociateAC

CT, MR = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"
GET = "1.2.840.10008.5.1.4.1.2.2.3"
EXPLICIT, IMPLICIT, RLE, JPEG, JLS = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.5",
                                      "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.80")
OURS = (EXPLICIT, IMPLICIT, JPEG, JLS, RLE)  # a receiver's preference, as listen's storage contexts


def accepted(held: dict[str, tuple[str, ...]] | None, roles: bool = True) -> tuple[list[str | None], list[int]]:
    calls: list[int] = []

    def holdings() -> dict[str, tuple[str, ...]]:
        calls.append(1)
        return held or {}

    policy = AcceptorPolicy("SCP", lambda uid: OURS, scp_roles=lambda uid: uid != GET,
                            held_syntaxes=None if held is None else holdings)
    contexts = build_contexts([(GET, (EXPLICIT,)), (CT, (JPEG, JLS, RLE)), (CT, (EXPLICIT, IMPLICIT)),
                               (MR, (JPEG, RLE)), (MR, (EXPLICIT, IMPLICIT))])
    rq = build_request("SCP", "SCU", contexts, roles=[RoleSelection(CT, 0, 1), RoleSelection(MR, 0, 1)] if roles else [])
    ac = negotiate_acceptor(rq, policy)
    assert isinstance(ac, AssociateAC)
    return [c.transfer_syntax for c in ac.presentation_contexts], calls


def test_held_syntaxes_come_first_then_the_requestors_order() -> None:
    syntaxes, calls = accepted({CT: (IMPLICIT, RLE, EXPLICIT)})
    assert syntaxes == [EXPLICIT, RLE, IMPLICIT, JPEG, EXPLICIT]  # MR: nothing held, the requestor's order
    assert calls == [1]  # one look at the archive per request


def test_without_a_role_reversal_the_acceptor_keeps_its_preference() -> None:
    syntaxes, calls = accepted({CT: (IMPLICIT, RLE)}, roles=False)
    assert syntaxes == [EXPLICIT, JPEG, EXPLICIT, JPEG, EXPLICIT]
    assert calls == []  # no SCP role proposed: the archive is not asked


def test_without_holdings_the_acceptor_keeps_its_preference() -> None:
    syntaxes, _ = accepted(None)
    assert syntaxes == [EXPLICIT, JPEG, EXPLICIT, JPEG, EXPLICIT]
