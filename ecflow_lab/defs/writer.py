"""Model -> ``.def`` text, in ecFlow's attribute order, optionally with state (checkpoint form).

Definition form is what ``str(defs)`` prints; it parses back to an equal model.  The state form
appends ``# key:value ...`` comments to node and attribute lines, and starts with a ``defs_state``
header, so a checkpoint restores every runtime field.
"""

from __future__ import annotations

from typing import Any

from .nodes import Defs, Node, NodeContainer, Suite, Task
from .state import DState, NState

__all__ = ["write_defs", "write_node", "write_state", "VERSION"]

VERSION = "5.9.2"
_IND = ["  " * i for i in range(64)]


def _ind(depth: int) -> str:
    return _IND[depth] if depth < 64 else "  " * depth


def _node_state(n: Node) -> str:
    parts = ["begun:1"] if isinstance(n, Suite) and n.begun else []  # ecFlow's order
    if n.state is not NState.unknown:
        parts.append(f"state:{n.state.name}")
    if n.suspended:
        parts.append("suspended:1")
    if n.flags:
        parts.append("flag:" + ",".join(sorted(n.flags)))
    if n.state_change:
        parts.append(f"sc:{n.state_change}")
    if isinstance(n, Task):
        if n.try_no:
            parts.append(f"try:{n.try_no}")
        if n.password:
            parts.append(f"passwd:{n.password}")
        if n.rid:
            parts.append(f"rid:{n.rid}")
        if n.alias_no:
            parts.append(f"alias_no:{n.alias_no}")
        if n.abort_reason:
            parts.append(f"abort<:{n.abort_reason}>abort")
    return " ".join(parts)


def _emit(out: list[str], ind: str, attr: Any, state: bool) -> None:
    line = ind + attr.write()
    if state:
        s = attr.state()
        if s:
            line += " # " + s
    out.append(line)


def _write(n: Node, depth: int, out: list[str], state: bool) -> None:
    ind = _ind(depth)
    head = f"{ind}{n.kind} {n.name}"
    if state:
        s = _node_state(n)
        if s:
            head += " # " + s
    out.append(head)
    ind = _ind(depth + 1)
    if n.defstatus is not DState.queued:
        out.append(f"{ind}defstatus {n.defstatus.name}")
    if n.late is not None:
        _emit(out, ind, n.late, state)
    for expr, kw in ((n.complete, "complete"), (n.trigger, "trigger")):
        if expr is not None:
            lines = expr.write_lines(kw)
            if state and expr.free and lines:
                lines[0] += " # free"
            out.extend(ind + line for line in lines)
    if n.repeat is not None:
        _emit(out, ind, n.repeat, state)
    for v in n.variables or ():
        out.append(f"{ind}edit {v.name} '{v.value}'")
    for group in (n.limits, n.inlimits, n.labels, n.meters, n.events, n.times, n.todays, n.dates, n.days,
                  n.crons):
        if group:
            for a in group:
                _emit(out, ind, a, state)
    for a in (n.autocancel, n.autoarchive, n.autorestore):
        if a is not None:
            _emit(out, ind, a, state)
    for group in (n.zombies, n.verifies, n.queues, n.generics, n.avisos, n.mirrors):
        if group:
            for a in group:
                _emit(out, ind, a, state)
    if isinstance(n, Suite):
        if n.clock is not None:
            _emit(out, ind, n.clock, state)
        if n.endclock is not None:
            _emit(out, ind, n.endclock, state)
        if state and n.calendar:
            out.append(ind + "calendar " + " ".join(f"{k}:{v}" for k, v in n.calendar.items()))
    if isinstance(n, NodeContainer):
        for c in n.children:
            _write(c, depth + 1, out, state)
        out.append(_ind(depth) + ("endsuite" if isinstance(n, Suite) else "endfamily"))
    elif state and isinstance(n, Task) and n.aliases:  # aliases only exist in checkpoints
        for a in n.aliases:
            _write(a, depth + 1, out, state)
            out.append(_ind(depth + 1) + "endalias")


def write_node(node: Node, state: bool = False) -> str:
    """One node (and its subtree) as definition text."""
    out: list[str] = []
    _write(node, 0, out, state)
    return "\n".join(out) + "\n"


def write_defs(defs: Defs, state: bool = False) -> str:
    """The whole definition; with ``state=True`` the checkpoint form."""
    out: list[str] = [f"#{VERSION}"]
    if state:
        parts = [f"state>:{defs.state.name}", f"server_state:{defs.server_state.name}"]
        if defs.flags:
            parts.append("flag:" + ",".join(sorted(defs.flags)))
        if defs.state_change:
            parts.append(f"state_change:{defs.state_change}")
        if defs.modify_change:
            parts.append(f"modify_change:{defs.modify_change}")
        out.append("defs_state STATE " + " ".join(parts))
        for v in defs.server_variables or ():
            out.append(f"edit {v.name} '{v.value}' # server")
    for v in defs.variables or ():
        out.append(f"edit {v.name} '{v.value}'")
    for e in sorted(defs.externs):  # ecFlow keeps externs in a sorted set
        out.append(f"extern {e}")
    for s in defs.suites:
        _write(s, 0, out, state)
    out.append("# enddef")
    return "\n".join(out) + "\n"


def write_state(defs: Defs) -> str:
    """The checkpoint (state) form of a whole definition."""
    return write_defs(defs, state=True)
