"""The trace's derived views (pure data, no processes)."""

from __future__ import annotations

import json

from ecflow_lab.cascade.trace import KINDS, Trace


def _events():
    return [
        {"t": 0.0, "kind": "worker_joined", "task": None, "name": "", "worker": "h/w0"},
        {"t": 1.0, "kind": "planned", "task": "a-1", "name": "a", "worker": "h/w0"},
        {"t": 1.5, "kind": "started", "task": "a-1", "name": "a", "worker": "h/w0"},
        {"t": 2.5, "kind": "finished", "task": "a-1", "name": "a", "worker": "h/w0", "func": "a"},
        {"t": 2.5, "kind": "transfer_start", "task": "a-1", "name": "a", "worker": "h/w0", "bytes": 10},
        {"t": 2.7, "kind": "transfer_end", "task": "a-1", "name": "a", "worker": "h/w0", "bytes": 10},
        {"t": 3.0, "kind": "started", "task": "b-2", "name": "b", "worker": "h/w1"},
        {"t": 3.5, "kind": "failed", "task": "b-2", "name": "b", "worker": "h/w1", "error": "boom"},
        {"t": 4.0, "kind": "worker_lost", "task": None, "name": "", "worker": "h/w1"},
    ]


def test_spans_pair_events_per_task_and_transfer():
    tr = Trace(_events())
    assert all(e["kind"] in KINDS for e in tr.events)
    spans = tr.spans()
    assert [(s["task"], s["phase"], s["ok"]) for s in spans] == [
        ("a-1", "compute", True), ("a-1", "transfer", True), ("b-2", "compute", False)]
    a = spans[0]
    assert (a["start"], a["end"], a["worker"], a["kind"]) == (1.5, 2.5, "h/w0", "a")
    assert spans[1]["bytes"] == 10


def test_summary_chrome_and_json():
    tr = Trace(_events())
    s = tr.summary()
    assert s["tasks"] == 2 and s["makespan_s"] == 4.0
    assert s["workers"]["h/w0"] == {"tasks": 1, "busy_s": 1.0}
    chrome = tr.to_chrome()
    assert chrome[0]["ph"] == "X" and chrome[0]["dur"] == 1e6 and chrome[0]["tid"] == "h/w0"
    assert json.loads(tr.to_json())[3]["kind"] == "finished"
    assert tr.workers() == ["h/w0", "h/w1"]
