"""Execution trace: structured events collected by the controller and returned with the results.

``trace.events`` is a list of plain dicts ``{"t", "kind", "task", "name", "worker", ...}`` where ``kind``
is one of :data:`KINDS`; ``trace.spans()`` gives one dict per executed task (and per data transfer) for a
Gantt chart. Both are plain data: JSON-able and cheap to stream (``cluster.run(graph, on_event=f)``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

KINDS = (
    "planned",
    "started",
    "finished",
    "failed",
    "transfer_start",
    "transfer_end",
    "worker_joined",
    "worker_lost",
)

EventCallback = Callable[[dict], Any]


class Trace:
    """Events of one run, in arrival order (not necessarily sorted by ``t``)."""

    def __init__(self, events: Iterable[dict] | None = None) -> None:
        self.events: list[dict] = list(events or [])

    def __len__(self) -> int:
        return len(self.events)

    def __repr__(self) -> str:
        return f"<Trace {len(self.events)} events, {len(self.workers())} workers>"

    def workers(self) -> list[str]:
        return sorted({e["worker"] for e in self.events if e.get("worker")})

    def spans(self) -> list[dict]:
        """One dict per executed task attempt (``phase="compute"``) and per transfer (``"transfer"``):
        ``{"task", "name", "worker", "start", "end", "kind", "phase", "ok"}``, sorted by start."""
        open_: dict[tuple, dict] = {}
        out: list[dict] = []
        for e in self.events:
            k = e["kind"]
            if k == "started":
                open_[("c", e["task"], e["worker"])] = e
            elif k in ("finished", "failed"):
                s = open_.pop(("c", e["task"], e.get("worker")), None)
                start = s["t"] if s else e.get("start", e["t"])
                out.append(
                    {
                        "task": e["task"],
                        "name": e.get("name", ""),
                        "worker": e.get("worker"),
                        "start": start,
                        "end": e["t"],
                        "kind": e.get("func", e.get("name", "")),
                        "phase": "compute",
                        "ok": k == "finished",
                    }
                )
            elif k == "transfer_start":
                open_[("t", e["task"], e["worker"], e.get("dataset"))] = e
            elif k == "transfer_end":
                s = open_.pop(("t", e["task"], e["worker"], e.get("dataset")), None)
                out.append(
                    {
                        "task": e["task"],
                        "name": e.get("name", ""),
                        "worker": e.get("worker"),
                        "start": s["t"] if s else e["t"],
                        "end": e["t"],
                        "kind": "transfer",
                        "phase": "transfer",
                        "ok": True,
                        "bytes": e.get("bytes"),
                    }
                )
        out.sort(key=lambda s: s["start"])
        return out

    def summary(self) -> dict[str, Any]:
        """Totals per worker: tasks, busy seconds; and the run's makespan."""
        spans = [s for s in self.spans() if s["phase"] == "compute"]
        per: dict[str, dict] = {}
        for s in spans:
            d = per.setdefault(s["worker"], {"tasks": 0, "busy_s": 0.0})
            d["tasks"] += 1
            d["busy_s"] += s["end"] - s["start"]
        ts = [e["t"] for e in self.events]
        return {"workers": per, "makespan_s": (max(ts) - min(ts)) if ts else 0.0, "tasks": len(spans)}

    def to_json(self) -> str:
        return json.dumps(self.events, default=str)

    def to_chrome(self) -> list[dict]:
        """Chrome/Perfetto trace events (open in ui.perfetto.dev)."""
        spans = self.spans()
        t0 = min((s["start"] for s in spans), default=0.0)
        return [
            {
                "name": s["name"] or s["task"],
                "cat": s["phase"],
                "ph": "X",
                "ts": (s["start"] - t0) * 1e6,
                "dur": (s["end"] - s["start"]) * 1e6,
                "pid": (s["worker"] or "?").split("/")[0],
                "tid": s["worker"],
                "args": {"task": s["task"], "ok": s["ok"]},
            }
            for s in spans
        ]
