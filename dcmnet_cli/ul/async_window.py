"""The Asynchronous Operations Window (PS3.7 D.3.3.3), negotiated as pure functions over the PDUs.

The requestor proposes (invoked, performed): how many operations it may invoke before their responses
come back, and how many the acceptor may invoke on it. The acceptor answers with values no larger than
proposed; 0 means "unlimited" (PS3.7 D.3.3.3.1-2). When either PDU lacks the sub-item the default
(1, 1) applies: the synchronous exchange every peer supports. DCMTK's storescp, for one, answers without
it, so a proposal costs nothing there.

``dcmnet store --async N`` proposes (N, 1) and keeps up to the granted number of C-STORE requests
outstanding; ``dcmnet listen`` grants up to its ``--async-window`` (it answers in order, so granting is
reading ahead) and never invokes operations on the requestor itself (performed 1).
"""

from __future__ import annotations

from .items import AsyncOperationsWindow, ImplementationClassUID, MaximumLength, SubItem, UserInformation
from .pdu import AssociateAC, AssociateRQ

SYNCHRONOUS = 1
"""The default window on both counts: one operation outstanding."""


def _with_window(info: UserInformation, window: AsyncOperationsWindow | None) -> UserInformation:
    """``info`` with its window sub-item replaced (or removed), placed where PS3.7 D.3.3 orders it: after
    the Maximum Length and Implementation Class UID sub-items."""
    subs: list[SubItem] = [s for s in info.sub_items if not isinstance(s, AsyncOperationsWindow)]
    if window is not None:
        at = 0
        while at < len(subs) and isinstance(subs[at], (MaximumLength, ImplementationClassUID)):
            at += 1
        subs.insert(at, window)
    return UserInformation(tuple(subs))


def propose(rq: AssociateRQ, invoked: int) -> AssociateRQ:
    """``rq`` proposing ``invoked`` outstanding operations from us, none from the peer (performed 1);
    ``rq`` itself when ``invoked`` is the default (1)."""
    if invoked == SYNCHRONOUS:
        return rq
    if not 0 < invoked <= 0xFFFF:
        raise ValueError(f"asynchronous operations window {invoked}: must be 1 to 65535")
    return rq._replace(user_info=_with_window(rq.user_info, AsyncOperationsWindow(invoked, SYNCHRONOUS)))


def grant(rq: AssociateRQ, ac: AssociateAC, limit: int) -> AssociateAC:
    """The acceptor's answer: ``ac`` granting the requestor up to ``limit`` outstanding operations when it
    proposed a window (never more than it proposed; its 0, unlimited, becomes ``limit``). We invoke no
    operations on the requestor, so performed is 1. Unchanged when nothing was proposed or ``limit`` is 1."""
    proposed = rq.user_info.async_window
    if proposed is None or limit <= SYNCHRONOUS:
        return ac
    invoked = min(limit, proposed.invoked) if proposed.invoked else limit
    if invoked <= SYNCHRONOUS:
        return ac
    return ac._replace(user_info=_with_window(ac.user_info, AsyncOperationsWindow(invoked, SYNCHRONOUS)))


def granted(rq: AssociateRQ | None, ac: AssociateAC | None) -> int:
    """How many operations the requestor may keep outstanding after this negotiation (at least 1, never
    more than it proposed)."""
    proposed = rq.user_info.async_window if rq is not None else None
    answer = ac.user_info.async_window if ac is not None else None
    if proposed is None or answer is None:
        return SYNCHRONOUS
    limits = [n for n in (proposed.invoked, answer.invoked) if n]  # 0: unlimited
    if not limits:
        return 0xFFFF
    return max(SYNCHRONOUS, min(limits))
