"""Apply the server's change deltas to a local Defs (``Client.sync_local``, widgets)."""

from __future__ import annotations

from typing import Any

from ecflow_lab.defs.state import NState
from ecflow_lab.server import model as M


def apply_delta(defs: Any, msg: dict[str, Any]) -> list[str]:
    """Apply one delta message in place; returns the changed paths. RuntimeError if it does not fit."""
    changed = []
    if "server_state" in msg:
        M.set_server_state(defs, msg["server_state"])
    for rec in msg.get("changes", ()):
        path = rec["path"]
        node = M.find_abs(defs, path)
        if node is None:
            raise RuntimeError(f"sync: delta for {path}, which is not in the local definition")
        changed.append(path)
        if "state" in rec:
            M.set_state(node, NState[rec["state"]])
        if "suspended" in rec:
            M.set_suspended(node, bool(rec["suspended"]))
        if "flags" in rec:
            M.set_flags(node, rec["flags"])
        if "tryno" in rec:
            M.set_tryno(node, int(rec["tryno"]))
        if "begun" in rec:
            M.set_begun(node, bool(rec["begun"]))
        if "abort_reason" in rec:
            M.set_abort_reason(node, rec["abort_reason"])
        for name, value in rec.get("events", {}).items():
            ev = M.find_event(node, name)
            if ev is not None:
                ev.value = bool(value)
        for name, value in rec.get("meters", {}).items():
            me = M.find_meter(node, name)
            if me is not None:
                me.value = int(value)
        for name, value in rec.get("labels", {}).items():
            lb = M.find_label(node, name)
            if lb is not None:
                lb.new_value = "" if value == lb.value else value
        for name, value in rec.get("limits", {}).items():
            lim = M.find_limit_on(node, name)
            if lim is not None:
                lim.value = int(value["value"])
                lim.paths = list(value["paths"]) or None
        for name, value in rec.get("variables", {}).items():
            M.set_user_var(node, name, value)
        if "repeat" in rec:
            rep = M.repeat(node)
            if rep is not None:
                M.set_repeat_value(rep, rec["repeat"]["value"], rec["repeat"].get("index"))
    return changed
