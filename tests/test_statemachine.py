"""PS3.8 Table 9-10 state machine, checked cell by cell against the shared CSV oracle."""

from __future__ import annotations

import ast
import csv
import os
import re
from pathlib import Path

import pytest

from dcmnet_cli.errors import AbortReason, LocalProtocolError, RemoteProtocolError
from dcmnet_cli.ul import statemachine as sm
from dcmnet_cli.ul.statemachine import TABLE, Action, Effect, Event, Role, State, Transition, transition

CSV_NAME = "ps3.8-table-9-10.csv"


def _find_shared() -> Path:
    candidates = [Path(__file__).resolve().parent.parent.parent / "shared"]
    if os.environ.get("DCMNET_SHARED"):
        candidates.append(Path(os.environ["DCMNET_SHARED"]))
    for shared in candidates:
        if (shared / CSV_NAME).is_file():
            return shared
    # Fail at collection, never skip: without the oracle the table is untested.
    raise FileNotFoundError(f"{CSV_NAME} not found in any of {[str(c) for c in candidates]} (set DCMNET_SHARED)")


SHARED = _find_shared()


def _load_cells() -> list[tuple[Event, State, Action | None]]:
    with (SHARED / CSV_NAME).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [
        (Event(int(r["event"].removeprefix("Evt"))), State(int(r["state"].removeprefix("Sta"))),
         Action(r["action"]) if r["action"].strip() else None)
        for r in rows
    ]


def _load_next_states() -> dict[str, str]:
    """Parse the "AE-1→Sta4, ..." paragraph of the .md: action -> raw target text."""
    text = (SHARED / "ps3.8-table-9-10.md").read_text(encoding="utf-8")
    return dict(re.findall(r"\b(A[AER]-\d+|DT-\d+)→(Sta\d+(?: \([^)]*\) or Sta\d+ \([^)]*\))?)", text))


CELLS = _load_cells()
NEXT = _load_next_states()
DEFINED = [c for c in CELLS if c[2] is not None]
BLANK = [c for c in CELLS if c[2] is None]
REMOTE = {Event.EVT3, Event.EVT4, Event.EVT6, Event.EVT10, Event.EVT12, Event.EVT13, Event.EVT16, Event.EVT19}


def _cell_id(cell: tuple[Event, State, Action | None]) -> str:
    return f"{cell[0].name}-{cell[1].name}"


def _sta(text: str) -> State:
    return State(int(text.removeprefix("Sta")))


def test_oracle_shape() -> None:
    assert len(CELLS) == 247 == len(set((e, s) for e, s, _ in CELLS))
    assert len(DEFINED) == 123 and len(BLANK) == 124
    assert set(NEXT) == {a.value for a in Action}


def test_table_covers_every_cell() -> None:
    assert len(TABLE) == 247
    assert set(TABLE) == {(s, e) for s in State for e in Event}


@pytest.mark.parametrize("cell", CELLS, ids=_cell_id)
def test_table_matches_csv(cell: tuple[Event, State, Action | None]) -> None:
    event, state, action = cell
    assert TABLE[(state, event)] is action


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.name)
@pytest.mark.parametrize("cell", DEFINED, ids=_cell_id)
def test_defined_cell_next_state(cell: tuple[Event, State, Action | None], role: Role) -> None:
    event, state, action = cell
    assert action is not None
    target = NEXT[action.value]
    if action is Action.AE_6:
        m = re.fullmatch(r"(Sta\d+) \(acceptable RQ\) or (Sta\d+) \(RJ sent\)", target)
        assert m, target
        ok = transition(state, event, role, acceptable=True)
        rj = transition(state, event, role, acceptable=False)
        assert (ok.action, ok.next_state) == (action, _sta(m[1]))
        assert (rj.action, rj.next_state) == (action, _sta(m[2]))
        return
    if action is Action.AR_8:
        m = re.fullmatch(r"(Sta\d+) \(requestor\) or (Sta\d+) \(acceptor\)", target)
        assert m, target
        expected = _sta(m[1] if role is Role.REQUESTOR else m[2])
    else:
        expected = _sta(target)
    for acceptable in (True, False):
        for from_user in (True, False):
            t = transition(state, event, role, acceptable=acceptable, abort_from_user=from_user)
            assert isinstance(t, Transition)
            assert (t.action, t.next_state) == (action, expected)
            assert t.effects and all(isinstance(e, Effect) for e in t.effects)


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.name)
@pytest.mark.parametrize("cell", BLANK, ids=_cell_id)
def test_blank_cell_raises(cell: tuple[Event, State, Action | None], role: Role) -> None:
    event, state, _ = cell
    if event in REMOTE:
        with pytest.raises(RemoteProtocolError) as info:
            transition(state, event, role)
        assert info.value.reason is AbortReason.UNEXPECTED_PDU
    else:
        with pytest.raises(LocalProtocolError) as info:
            transition(state, event, role)
    assert not isinstance(info.value, LocalProtocolError if event in REMOTE else RemoteProtocolError)
    assert state.name in str(info.value) and event.name in str(info.value)


def test_ae6_reject_sends_rj_and_starts_artim() -> None:
    t = transition(State.STA2, Event.EVT6, Role.ACCEPTOR, acceptable=False)
    assert t.effects == (Effect.STOP_ARTIM, Effect.SEND_ASSOCIATE_RJ, Effect.START_ARTIM)
    assert t.next_state is State.STA13
    t = transition(State.STA2, Event.EVT6, Role.ACCEPTOR)
    assert t.effects == (Effect.STOP_ARTIM, Effect.INDICATE_ASSOCIATE_REQUEST)
    assert t.next_state is State.STA3


def test_aa8_sends_abort_indicates_p_abort_and_starts_artim() -> None:
    t = transition(State.STA6, Event.EVT19, Role.REQUESTOR)
    assert t.action is Action.AA_8
    assert t.effects == (Effect.SEND_ABORT, Effect.INDICATE_P_ABORT, Effect.START_ARTIM)
    assert t.next_state is State.STA13


@pytest.mark.parametrize(("role", "expected"), [(Role.REQUESTOR, State.STA9), (Role.ACCEPTOR, State.STA10)])
def test_ar8_release_collision_per_role(role: Role, expected: State) -> None:
    t = transition(State.STA7, Event.EVT12, role)
    assert t.action is Action.AR_8
    assert t.effects == (Effect.INDICATE_RELEASE_REQUEST,)
    assert t.next_state is expected


@pytest.mark.parametrize(("from_user", "indication"), [(True, Effect.INDICATE_ABORT), (False, Effect.INDICATE_P_ABORT)])
def test_aa3_indication_depends_on_abort_source(from_user: bool, indication: Effect) -> None:
    t = transition(State.STA6, Event.EVT16, Role.REQUESTOR, abort_from_user=from_user)
    assert t.effects == (indication, Effect.CLOSE_TRANSPORT)
    assert t.next_state is State.STA1


@pytest.mark.parametrize(
    ("state", "event", "effects"),
    [
        (State.STA1, Event.EVT1, (Effect.CONNECT_TRANSPORT,)),
        (State.STA4, Event.EVT2, (Effect.SEND_ASSOCIATE_RQ,)),
        (State.STA5, Event.EVT3, (Effect.INDICATE_ASSOCIATE_ACCEPTED,)),
        (State.STA5, Event.EVT4, (Effect.INDICATE_ASSOCIATE_REJECTED, Effect.CLOSE_TRANSPORT)),
        (State.STA1, Event.EVT5, (Effect.ACCEPT_TRANSPORT, Effect.START_ARTIM)),
        (State.STA3, Event.EVT7, (Effect.SEND_ASSOCIATE_AC,)),
        (State.STA3, Event.EVT8, (Effect.SEND_ASSOCIATE_RJ, Effect.START_ARTIM)),
        (State.STA6, Event.EVT9, (Effect.SEND_PDATA,)),
        (State.STA6, Event.EVT10, (Effect.INDICATE_PDATA,)),
        (State.STA6, Event.EVT11, (Effect.SEND_RELEASE_RQ,)),
        (State.STA6, Event.EVT12, (Effect.INDICATE_RELEASE_REQUEST,)),
        (State.STA7, Event.EVT13, (Effect.INDICATE_RELEASE_CONFIRM, Effect.CLOSE_TRANSPORT)),
        (State.STA8, Event.EVT14, (Effect.SEND_RELEASE_RP, Effect.START_ARTIM)),
        (State.STA13, Event.EVT17, (Effect.STOP_ARTIM,)),
        (State.STA7, Event.EVT10, (Effect.INDICATE_PDATA,)),
        (State.STA8, Event.EVT9, (Effect.SEND_PDATA,)),
        (State.STA9, Event.EVT14, (Effect.SEND_RELEASE_RP,)),
        (State.STA10, Event.EVT13, (Effect.INDICATE_RELEASE_CONFIRM,)),
        (State.STA6, Event.EVT15, (Effect.SEND_ABORT, Effect.START_ARTIM)),
        (State.STA13, Event.EVT18, (Effect.STOP_ARTIM, Effect.CLOSE_TRANSPORT)),
        (State.STA6, Event.EVT17, (Effect.INDICATE_P_ABORT,)),
        (State.STA2, Event.EVT17, (Effect.STOP_ARTIM,)),
        (State.STA13, Event.EVT10, (Effect.IGNORE_PDU,)),
        (State.STA13, Event.EVT6, (Effect.SEND_ABORT,)),
    ],
    ids=lambda v: v.name if isinstance(v, (State, Event)) else None,
)
def test_effects_per_action(state: State, event: Event, effects: tuple[Effect, ...]) -> None:
    assert transition(state, event, Role.REQUESTOR).effects == effects
    assert transition(state, event, Role.ACCEPTOR).effects == effects


def test_every_action_reachable_and_effects_role_independent_except_ar8() -> None:
    seen = {a for a in TABLE.values() if a is not None}
    assert seen == set(Action)
    for (state, event), action in TABLE.items():
        if action is None or action is Action.AR_8:
            continue
        assert transition(state, event, Role.REQUESTOR) == transition(state, event, Role.ACCEPTOR)


def test_module_is_sans_io() -> None:
    tree = ast.parse(Path(sm.__file__).read_text(encoding="utf-8"))
    forbidden = {"socket", "asyncio", "threading", "time", "selectors", "ssl"}
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in {"open", "__import__"}, f"{node.func.id}() in the state machine"
    assert not imported & forbidden, imported & forbidden
