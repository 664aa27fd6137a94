"""tests/test_statemachine.py again, with the transition cache emptied before each test.

``transition()`` builds each cell's Transition on first use and caches it (ul/statemachine.py). Once a
test process has used a cell, a later test of it only reads the cache: a wrong ``_build`` would pass if
another test had warmed the cell first (``make mutate`` found 56 such survivors, its workers being
forked from a process that had run every cell). Here every test starts from an empty cache, so the
cell-by-cell checks against the PS3.8 oracle exercise ``_build`` itself.
"""

from __future__ import annotations

import pytest
import test_statemachine as base

from dcmnet_cli.errors import AbortReason, LocalProtocolError
from dcmnet_cli.ul import statemachine
from dcmnet_cli.ul.statemachine import Effect, Event, Role, State, transition


@pytest.fixture(autouse=True)
def cold_cache(monkeypatch):
    monkeypatch.setattr(statemachine, "_TRANSITIONS", {})


test_defined_cell_next_state = base.test_defined_cell_next_state
test_blank_cell_raises = base.test_blank_cell_raises
test_ae6_reject_sends_rj_and_starts_artim = base.test_ae6_reject_sends_rj_and_starts_artim
test_aa8_sends_abort_indicates_p_abort_and_starts_artim = base.test_aa8_sends_abort_indicates_p_abort_and_starts_artim
test_ar8_release_collision_per_role = base.test_ar8_release_collision_per_role
test_aa3_indication_depends_on_abort_source = base.test_aa3_indication_depends_on_abort_source
test_effects_per_action = base.test_effects_per_action
test_every_action_reachable_and_effects_role_independent_except_ar8 = \
    base.test_every_action_reachable_and_effects_role_independent_except_ar8


def test_defaults_accept_the_request_and_take_an_abort_from_the_provider():
    """Without the keywords: AE-6 accepts (indicate to the user), AA-3 indicates A-P-ABORT."""
    assert transition(State.STA2, Event.EVT6, Role.ACCEPTOR).next_state is State.STA3
    assert transition(State.STA6, Event.EVT16, Role.REQUESTOR).effects == (Effect.INDICATE_P_ABORT,
                                                                            Effect.CLOSE_TRANSPORT)


def test_cells_are_cached_per_branch():
    first = transition(State.STA2, Event.EVT6, Role.ACCEPTOR, acceptable=False)
    assert transition(State.STA2, Event.EVT6, Role.ACCEPTOR, acceptable=False) is first
    assert transition(State.STA2, Event.EVT6, Role.ACCEPTOR, acceptable=True) is not first
    assert len(statemachine._TRANSITIONS) == 2


def test_a_local_event_that_cannot_occur_is_not_specified():
    with pytest.raises(LocalProtocolError) as info:
        transition(State.STA1, Event.EVT9, Role.REQUESTOR)  # P-DATA request while idle: our bug
    assert info.value.reason is AbortReason.NOT_SPECIFIED


def test_table_built_afresh_matches_the_oracle():
    """``TABLE`` is built on first access and then kept in the module (ul/statemachine.py ``__getattr__``):
    a worker that imported it before a change to ``_table`` would keep the old one. Build it here."""
    monkey = pytest.MonkeyPatch()
    monkey.delattr(statemachine, "TABLE", raising=False)
    try:
        fresh = statemachine.__getattr__("TABLE")
        assert fresh is statemachine.TABLE  # kept for the next access
        assert len(fresh) == 247
        for event, state, action in base.CELLS:
            assert fresh[(state, event)] is action, (state, event)
        with pytest.raises(AttributeError, match="no attribute 'TABEL'"):
            statemachine.__getattr__("TABEL")
        with pytest.raises(TypeError):
            fresh[(State.STA1, Event.EVT1)] = None  # a read-only view
    finally:
        monkey.undo()
