"""The DICOM Upper Layer state machine (PS3.8 §9.2, Table 9-10) as pure data and pure functions.

Sans-IO, in the spirit of h11's ``_state.py``: this module never touches a socket, a clock or a thread.
The driver feeds it ``(state, event)`` and gets back a :class:`Transition`: the action of Table 9-10,
the next state, and the ordered :class:`Effect` list the driver must carry out (send a PDU, start or stop
ARTIM, indicate a primitive to the user, close the transport).

Rules:

* :data:`TABLE` holds all 247 cells of Table 9-10 (19 events x 13 states). A ``None`` cell means the
  event cannot occur in that state.
* A ``None`` cell hit by a *local* event (a service-user primitive, our own transport or ARTIM event)
  is a bug in our code: :class:`LocalProtocolError`, nothing goes on the wire.
* A ``None`` cell hit by a *received PDU* event is the peer's fault: :class:`RemoteProtocolError` with
  ``AbortReason.UNEXPECTED_PDU``, so the driver aborts (PS3.8 Table 9-26).
* Three actions branch on context the table cannot know: AE-6 on whether the A-ASSOCIATE-RQ is
  acceptable (Table 9-6), AR-8 on our role in a release collision (Table 9-8), AA-3 on whether the
  A-ABORT came from the peer user or the peer provider (Table 9-9).
* :data:`TABLE` (the mapping view of :data:`_GRID`) is built on first access, and the :class:`Transition`
  of each cell on its first use, then cached (building every state/event/role/branch combination up front
  would cost ~3 ms of every start-up), so from then on :func:`transition` is one dict lookup on the hot path.
"""

from __future__ import annotations

from enum import Enum, IntEnum
from types import MappingProxyType

from ..errors import AbortReason, LocalProtocolError, RemoteProtocolError
from .records import NamedTuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Mapping


class State(IntEnum):
    """Upper Layer states (PS3.8 §9.2.1, Table 9-1)."""

    STA1 = 1
    """Idle."""
    STA2 = 2
    """Transport connection open (awaiting A-ASSOCIATE-RQ PDU)."""
    STA3 = 3
    """Awaiting local A-ASSOCIATE response primitive (from local user)."""
    STA4 = 4
    """Awaiting transport connection opening to complete (from local transport service)."""
    STA5 = 5
    """Awaiting A-ASSOCIATE-AC or A-ASSOCIATE-RJ PDU."""
    STA6 = 6
    """Association established and ready for data transfer."""
    STA7 = 7
    """Awaiting A-RELEASE-RP PDU."""
    STA8 = 8
    """Awaiting local A-RELEASE response primitive (from local user)."""
    STA9 = 9
    """Release collision, requestor side: awaiting A-RELEASE response (from local user)."""
    STA10 = 10
    """Release collision, acceptor side: awaiting A-RELEASE-RP PDU."""
    STA11 = 11
    """Release collision, requestor side: awaiting A-RELEASE-RP PDU."""
    STA12 = 12
    """Release collision, acceptor side: awaiting A-RELEASE response primitive (from local user)."""
    STA13 = 13
    """Awaiting transport connection close indication (association no longer exists)."""


class Event(IntEnum):
    """Upper Layer events (PS3.8 §9.2, rows of Table 9-10)."""

    EVT1 = 1
    """A-ASSOCIATE request primitive (local user)."""
    EVT2 = 2
    """Transport connection confirm (local transport service)."""
    EVT3 = 3
    """A-ASSOCIATE-AC PDU received."""
    EVT4 = 4
    """A-ASSOCIATE-RJ PDU received."""
    EVT5 = 5
    """Transport connection indication (local transport service)."""
    EVT6 = 6
    """A-ASSOCIATE-RQ PDU received."""
    EVT7 = 7
    """A-ASSOCIATE response primitive (accept)."""
    EVT8 = 8
    """A-ASSOCIATE response primitive (reject)."""
    EVT9 = 9
    """P-DATA request primitive."""
    EVT10 = 10
    """P-DATA-TF PDU received."""
    EVT11 = 11
    """A-RELEASE request primitive."""
    EVT12 = 12
    """A-RELEASE-RQ PDU received."""
    EVT13 = 13
    """A-RELEASE-RP PDU received."""
    EVT14 = 14
    """A-RELEASE response primitive."""
    EVT15 = 15
    """A-ABORT request primitive."""
    EVT16 = 16
    """A-ABORT PDU received."""
    EVT17 = 17
    """Transport connection closed indication (local transport service)."""
    EVT18 = 18
    """ARTIM timer expired."""
    EVT19 = 19
    """Unrecognized or invalid PDU received."""


class Action(Enum):
    """Upper Layer actions (PS3.8 §9.2, Tables 9-6 to 9-9)."""

    AE_1 = "AE-1"
    AE_2 = "AE-2"
    AE_3 = "AE-3"
    AE_4 = "AE-4"
    AE_5 = "AE-5"
    AE_6 = "AE-6"
    AE_7 = "AE-7"
    AE_8 = "AE-8"
    DT_1 = "DT-1"
    DT_2 = "DT-2"
    AR_1 = "AR-1"
    AR_2 = "AR-2"
    AR_3 = "AR-3"
    AR_4 = "AR-4"
    AR_5 = "AR-5"
    AR_6 = "AR-6"
    AR_7 = "AR-7"
    AR_8 = "AR-8"
    AR_9 = "AR-9"
    AR_10 = "AR-10"
    AA_1 = "AA-1"
    AA_2 = "AA-2"
    AA_3 = "AA-3"
    AA_4 = "AA-4"
    AA_5 = "AA-5"
    AA_6 = "AA-6"
    AA_7 = "AA-7"
    AA_8 = "AA-8"


class Role(IntEnum):
    """Which side requested the association; decides the release-collision branch of AR-8."""

    REQUESTOR = 1
    ACCEPTOR = 2


class Effect(IntEnum):
    """One thing the driver must do; a transition lists them in the order they must be done."""

    CONNECT_TRANSPORT = 1
    SEND_ASSOCIATE_RQ = 2
    SEND_ASSOCIATE_AC = 3
    SEND_ASSOCIATE_RJ = 4
    SEND_PDATA = 5
    SEND_RELEASE_RQ = 6
    SEND_RELEASE_RP = 7
    SEND_ABORT = 8
    START_ARTIM = 9
    STOP_ARTIM = 10
    CLOSE_TRANSPORT = 11
    INDICATE_ASSOCIATE_ACCEPTED = 12
    INDICATE_ASSOCIATE_REJECTED = 13
    INDICATE_ASSOCIATE_REQUEST = 14
    INDICATE_PDATA = 15
    INDICATE_RELEASE_REQUEST = 16
    INDICATE_RELEASE_CONFIRM = 17
    INDICATE_ABORT = 18
    INDICATE_P_ABORT = 19
    ACCEPT_TRANSPORT = 20
    IGNORE_PDU = 21


# PS3.8 Table 9-10, one row per event, one column per state; None = the event cannot occur there.
_GRID: tuple[tuple[str | None, ...], ...] = (
    # Sta1  Sta2    Sta3    Sta4    Sta5    Sta6    Sta7    Sta8    Sta9    Sta10    Sta11   Sta12   Sta13
    ("AE-1", None, None, None, None, None, None, None, None, None, None, None, None),  # Evt1
    (None, None, None, "AE-2", None, None, None, None, None, None, None, None, None),  # Evt2
    (None, "AA-1", "AA-8", None, "AE-3", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-6"),  # Evt3
    (None, "AA-1", "AA-8", None, "AE-4", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-6"),  # Evt4
    ("AE-5", None, None, None, None, None, None, None, None, None, None, None, None),  # Evt5
    (None, "AE-6", "AA-8", None, "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-7"),  # Evt6
    (None, None, "AE-7", None, None, None, None, None, None, None, None, None, None),  # Evt7
    (None, None, "AE-8", None, None, None, None, None, None, None, None, None, None),  # Evt8
    (None, None, None, None, None, "DT-1", None, "AR-7", None, None, None, None, None),  # Evt9
    (None, "AA-1", "AA-8", None, "AA-8", "DT-2", "AR-6", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-6"),  # Evt10
    (None, None, None, None, None, "AR-1", None, None, None, None, None, None, None),  # Evt11
    (None, "AA-1", "AA-8", None, "AA-8", "AR-2", "AR-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-6"),  # Evt12
    (None, "AA-1", "AA-8", None, "AA-8", "AA-8", "AR-3", "AA-8", "AA-8", "AR-10", "AR-3", "AA-8", "AA-6"),  # Evt13
    (None, None, None, None, None, None, None, "AR-4", "AR-9", None, None, "AR-4", None),  # Evt14
    (None, None, "AA-1", "AA-2", "AA-1", "AA-1", "AA-1", "AA-1", "AA-1", "AA-1", "AA-1", "AA-1", None),  # Evt15
    (None, "AA-2", "AA-3", None, "AA-3", "AA-3", "AA-3", "AA-3", "AA-3", "AA-3", "AA-3", "AA-3", "AA-2"),  # Evt16
    (None, "AA-5", "AA-4", "AA-4", "AA-4", "AA-4", "AA-4", "AA-4", "AA-4", "AA-4", "AA-4", "AA-4", "AR-5"),  # Evt17
    (None, "AA-2", None, None, None, None, None, None, None, None, None, None, "AA-2"),  # Evt18
    (None, "AA-1", "AA-8", None, "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-7"),  # Evt19
)

if TYPE_CHECKING:
    TABLE: Mapping[tuple[State, Event], Action | None]
    """PS3.8 Table 9-10: every ``(state, event)`` cell; ``None`` = the event cannot occur in that state.
    Built from :data:`_GRID` on first access (module ``__getattr__``): :func:`transition` reads the grid
    itself, so a command never pays for the 247 cells it does not visit."""


def _table() -> Mapping[tuple[State, Event], Action | None]:
    return MappingProxyType({
        (state, event): (Action(cell) if cell else None)
        for event, row in zip(Event, _GRID, strict=True)
        for state, cell in zip(State, row, strict=True)
    })


def __getattr__(name: str) -> object:
    if name == "TABLE":
        table = globals()["TABLE"] = _table()
        return table
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# Events caused by a received PDU; every other event is local (user primitive, transport, ARTIM).
_REMOTE_EVENTS = frozenset(Event(n) for n in (3, 4, 6, 10, 12, 13, 16, 19))


class Transition(NamedTuple):
    """The outcome of one event: the Table 9-10 action, the state to enter, and effects in order."""

    action: Action
    next_state: State
    effects: tuple[Effect, ...]


# Actions whose effects and next state depend on nothing but the action (PS3.8 Tables 9-6 to 9-9).
_SIMPLE: dict[Action, tuple[tuple[Effect, ...], State]] = {
    Action.AE_1: ((Effect.CONNECT_TRANSPORT,), State.STA4),
    Action.AE_2: ((Effect.SEND_ASSOCIATE_RQ,), State.STA5),
    Action.AE_3: ((Effect.INDICATE_ASSOCIATE_ACCEPTED,), State.STA6),
    Action.AE_4: ((Effect.INDICATE_ASSOCIATE_REJECTED, Effect.CLOSE_TRANSPORT), State.STA1),
    Action.AE_5: ((Effect.ACCEPT_TRANSPORT, Effect.START_ARTIM), State.STA2),
    Action.AE_7: ((Effect.SEND_ASSOCIATE_AC,), State.STA6),
    Action.AE_8: ((Effect.SEND_ASSOCIATE_RJ, Effect.START_ARTIM), State.STA13),
    Action.DT_1: ((Effect.SEND_PDATA,), State.STA6),
    Action.DT_2: ((Effect.INDICATE_PDATA,), State.STA6),
    Action.AR_1: ((Effect.SEND_RELEASE_RQ,), State.STA7),
    Action.AR_2: ((Effect.INDICATE_RELEASE_REQUEST,), State.STA8),
    Action.AR_3: ((Effect.INDICATE_RELEASE_CONFIRM, Effect.CLOSE_TRANSPORT), State.STA1),
    Action.AR_4: ((Effect.SEND_RELEASE_RP, Effect.START_ARTIM), State.STA13),
    Action.AR_5: ((Effect.STOP_ARTIM,), State.STA1),
    Action.AR_6: ((Effect.INDICATE_PDATA,), State.STA7),
    Action.AR_7: ((Effect.SEND_PDATA,), State.STA8),
    Action.AR_9: ((Effect.SEND_RELEASE_RP,), State.STA11),
    Action.AR_10: ((Effect.INDICATE_RELEASE_CONFIRM,), State.STA12),
    Action.AA_1: ((Effect.SEND_ABORT, Effect.START_ARTIM), State.STA13),
    # "Stop ARTIM if running": stopping a stopped timer is a no-op, so it is always listed.
    Action.AA_2: ((Effect.STOP_ARTIM, Effect.CLOSE_TRANSPORT), State.STA1),
    Action.AA_4: ((Effect.INDICATE_P_ABORT,), State.STA1),
    Action.AA_5: ((Effect.STOP_ARTIM,), State.STA1),
    Action.AA_6: ((Effect.IGNORE_PDU,), State.STA13),
    Action.AA_7: ((Effect.SEND_ABORT,), State.STA13),
    Action.AA_8: ((Effect.SEND_ABORT, Effect.INDICATE_P_ABORT, Effect.START_ARTIM), State.STA13),
}


def _build(action: Action, role: Role, acceptable: bool, abort_from_user: bool) -> Transition:
    """Effects and next state of ``action`` (PS3.8 §9.2, Tables 9-6 to 9-9)."""
    E, S = Effect, State
    if action is Action.AE_6:  # Table 9-6: accept -> indicate to user; reject -> send RJ and wait for close
        if acceptable:
            return Transition(action, S.STA3, (E.STOP_ARTIM, E.INDICATE_ASSOCIATE_REQUEST))
        return Transition(action, S.STA13, (E.STOP_ARTIM, E.SEND_ASSOCIATE_RJ, E.START_ARTIM))
    if action is Action.AR_8:  # Table 9-8: release collision; the requestor answers first
        return Transition(action, S.STA9 if role is Role.REQUESTOR else S.STA10, (E.INDICATE_RELEASE_REQUEST,))
    if action is Action.AA_3:  # Table 9-9: A-ABORT if the peer user aborted, else A-P-ABORT
        indication = E.INDICATE_ABORT if abort_from_user else E.INDICATE_P_ABORT
        return Transition(action, S.STA1, (indication, E.CLOSE_TRANSPORT))
    effects, next_state = _SIMPLE[action]
    return Transition(action, next_state, effects)


# Filled on first use of each cell: building all 984 combinations at import costs ~3 ms of start-up.
_TRANSITIONS: dict[tuple[State, Event, Role, bool, bool], Transition] = {}


def transition(
    state: State, event: Event, role: Role, *, acceptable: bool = True, abort_from_user: bool = False,
) -> Transition:
    """Look up what ``event`` does in ``state`` (PS3.8 Table 9-10).

    ``acceptable`` picks the AE-6 branch (is the received A-ASSOCIATE-RQ acceptable?), ``abort_from_user``
    the AA-3 indication (A-ABORT PDU source is the peer service-user). Whether ARTIM runs is the driver's
    business: AA-2 always lists STOP_ARTIM, which is harmless when ARTIM is not running.

    Raises :class:`LocalProtocolError` for a local event that cannot occur in ``state`` and
    :class:`RemoteProtocolError` (``AbortReason.UNEXPECTED_PDU``) for a received PDU that cannot.
    """
    key = (state, event, role, bool(acceptable), bool(abort_from_user))
    try:
        return _TRANSITIONS[key]
    except KeyError:
        pass
    # A bad state/event/role value raises ValueError here rather than passing for a protocol error.
    state, event, role = State(state), Event(event), Role(role)
    cell = _GRID[event - 1][state - 1]  # the table as data: Event and State carry the standard's numbers
    action = Action(cell) if cell else None
    if action is not None:
        result = _TRANSITIONS[key] = _build(action, role, bool(acceptable), bool(abort_from_user))
        return result
    if event in _REMOTE_EVENTS:
        raise RemoteProtocolError(
            f"unexpected PDU: {event.name} cannot occur in {state.name}", reason=AbortReason.UNEXPECTED_PDU
        )
    raise LocalProtocolError(f"{event.name} cannot occur in {state.name}", reason=AbortReason.NOT_SPECIFIED)
