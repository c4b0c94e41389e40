"""Node states, default states and flags, with ecFlow's numbering and status propagation.

ecFlow keeps two enums: :class:`NState` (what a node *is*: unknown, complete, queued, aborted,
submitted, active) and :class:`DState` (what ``defstatus`` may say, which adds ``suspended``).
Suspension is a node flag (``Node.suspended``), never a state.  Numbers match ecFlow so that
trigger expressions that compare states numerically (``a < active``) behave the same.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum

__all__ = ["NState", "DState", "State", "SState", "FLAG_NAMES", "computed_state", "state_from_name"]


class NState(IntEnum):
    """A node's state. Values are ecFlow's (``libs/core/.../NState.hpp``)."""

    unknown = 0
    complete = 1
    queued = 2
    aborted = 3
    submitted = 4
    active = 5

    def __str__(self) -> str:
        return self.name


#: ecFlow's python module calls the node state enum ``State``.
State = NState


class DState(IntEnum):
    """A ``defstatus`` value: the node states plus ``suspended``."""

    unknown = 0
    complete = 1
    queued = 2
    aborted = 3
    submitted = 4
    active = 5
    suspended = 6

    def __str__(self) -> str:
        return self.name


class SState(IntEnum):
    """The server's state (``server_state:`` in checkpoints)."""

    HALTED = 0
    SHUTDOWN = 1
    RUNNING = 2

    def __str__(self) -> str:
        return self.name


#: Flag names as ecFlow prints them in the state form (``flag:late,zombie``).  Stored on nodes as
#: strings in a set (``Node.flags``), so servers may add their own without touching this module.
FLAG_NAMES: tuple[str, ...] = (
    "force_aborted",
    "user_edit",
    "task_aborted",
    "edit_failed",
    "ecfcmd_failed",
    "killcmd_failed",
    "statuscmd_failed",
    "no_script",
    "killed",
    "status",
    "late",
    "message",
    "by_rule",
    "queue_limit",
    "task_waiting",
    "locked",
    "zombie",
    "no_reque",
    "archived",
    "restored",
    "threshold",
    "sigterm",
    "log_error",
    "checkpt_error",
    "remote_error",
)

# Priority of a child state when computing the state of its container (ecFlow's
# theComputedNodeState): aborted > active > submitted > queued > complete > unknown.
_PRIORITY = {
    NState.aborted: 5,
    NState.active: 4,
    NState.submitted: 3,
    NState.queued: 2,
    NState.complete: 1,
    NState.unknown: 0,
}

_BY_NAME = {s.name: s for s in NState}
_DBY_NAME = {s.name: s for s in DState}


def computed_state(states: Iterable[NState]) -> NState:
    """The state of a container from its children's states (``unknown`` when there are none)."""
    best = NState.unknown
    rank = -1
    for s in states:
        r = _PRIORITY[s]
        if r > rank:
            best, rank = s, r
            if r == 5:
                break
    return best


def state_from_name(name: str, *, default: bool = False) -> NState | DState:
    """``'complete'`` -> ``NState.complete``; with ``default=True`` a :class:`DState` (allows ``suspended``)."""
    table = _DBY_NAME if default else _BY_NAME
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown state {name!r}; expected one of {', '.join(table)}") from None
