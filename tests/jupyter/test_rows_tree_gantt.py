"""The tree's row table, the tree widget's Python side and the Gantt, on real Defs / a real cascade run."""

from __future__ import annotations

import threading
import time

import pytest

from ecflow_lab.defs import parse_text
from ecflow_lab.jupyter.gantt import Gantt, SuiteGantt
from ecflow_lab.jupyter.rows import REMOVED, SUSPENDED, RowTable, decode_delta, decode_snapshot
from ecflow_lab.jupyter.tree import NodeTree, run_action

DEF = """
suite s
  family f1
    task a
      event go
      meter m 0 10
      label info "hello"
    task b
  endfamily
  family f2
    repeat integer i 1 3
    task c
  endfamily
endsuite
suite t
  task x
endsuite
"""


@pytest.fixture
def defs():
    return parse_text(DEF)


def test_snapshot_rows_in_depth_first_order_with_attributes(defs):
    table = RowTable.from_defs(defs)
    assert table.paths == ["/s", "/s/f1", "/s/f1/a", "/s/f1/b", "/s/f2", "/s/f2/c", "/t", "/t/x"]
    snap = decode_snapshot(table.encode_snapshot())
    assert snap["names"] == ["s", "f1", "a", "b", "f2", "c", "t", "x"]
    assert list(snap["parent"]) == [-1, 0, 1, 1, 0, 4, -1, 6]
    assert list(snap["kind"]) == [0, 1, 2, 2, 1, 2, 0, 2]
    a = snap["attrs"][2]
    assert a["e"] == {"go": False}
    assert a["m"]["m"][0] == 0 and a["m"]["m"][2] == 10
    assert a["l"] == {"info": "hello"}
    assert snap["attrs"][4]["r"][0] == "i"


def test_deltas_change_only_named_rows_and_encode_them(defs):
    table = RowTable.from_defs(defs)
    table.encode_snapshot()
    assert table.take_delta() is None
    need = table.apply({"seq": 7, "changes": [
        {"path": "/s/f1/a", "state": "active", "events": {"go": True}, "meters": {"m": 4}},
        {"path": "/s/f1", "suspended": True},
        {"path": "/s/nothere", "state": "complete"}]})
    assert need == ["/s/nothere"]
    assert table.seq == 7
    assert table.row("/s/f1/a")["state"] == "active"
    assert table.row("/s/f1")["suspended"]
    d = decode_delta(table.take_delta())
    assert sorted(d["rows"].tolist()) == [1, 2]
    by_row = dict(zip(d["rows"].tolist(), zip(d["state"].tolist(), d["flags"].tolist())))
    assert by_row[2][0] == 5  # active
    assert by_row[1][1] & SUSPENDED
    assert d["attrs"][2]["e"] == {"go": True} and d["attrs"][2]["m"]["m"][0] == 4
    assert table.take_delta() is None  # nothing re-sent


def test_removed_and_added_nodes(defs):
    table = RowTable.from_defs(defs)
    table.encode_snapshot()
    table.apply({"removed": ["/s/f1"]})
    assert all(table.flags[table.index[p]] & REMOVED for p in ("/s/f1", "/s/f1/a", "/s/f1/b"))
    assert not table.flags[table.index["/s/f2"]] & REMOVED
    table.take_delta()
    bigger = parse_text(DEF.replace("  task x\n", "  task x\n  task y\n"))
    assert table.apply({"added": ["/t/y"]}) == ["/t/y"]
    assert table.merge_defs(bigger) == 1
    d = decode_delta(table.take_delta())
    assert d["names"] == ["y"] and d["new_parent"].tolist() == [table.index["/t"]]


def test_tree_sends_snapshot_once_then_throttled_deltas(defs):
    sent: list[tuple[dict, list]] = []
    tree = NodeTree(defs, interval=0.1)
    tree.send = lambda content, buffers=None: sent.append((content, buffers or []))  # record comm traffic
    first = tree.snapshot
    assert decode_snapshot(first)["names"][0] == "s"
    tree.start()
    try:
        t0 = time.monotonic()
        for i in range(40):  # 40 changes over ~0.4 s
            tree.on_delta({"seq": i, "changes": [{"path": "/s/f1/a", "state": "active" if i % 2 else "queued"}]})
            time.sleep(0.01)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and tree.table.dirty:
            time.sleep(0.02)
        elapsed = time.monotonic() - t0
    finally:
        tree.close()
    deltas = [c for c, _ in sent if c["type"] == "delta"]
    assert 1 <= len(deltas) <= elapsed / 0.1 + 2  # throttled to ~10/s, coalesced
    assert all(decode_delta(b[0])["rows"].tolist() == [2] for c, b in sent if c["type"] == "delta")
    assert tree.snapshot is first  # the whole tree is never re-sent for ordinary changes
    assert not any(t.name == "ecflow-tree-flush" for t in threading.enumerate())


def test_tree_full_message_replaces_snapshot_and_actions_need_a_client(defs):
    tree = NodeTree()
    tree.send = lambda *a, **k: None
    tree.on_delta({"full": True, "seq": 3, "defs": defs})
    assert len(tree.table) == 8 and tree.table.seq == 3
    res = tree.do_action("suspend", "/s")
    assert not res["ok"] and "not connected" in res["text"]
    tree.close()


class _Recorder:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *a: self.calls.append((name, a)) or ("because" if name == "why" else None)


def test_run_action_maps_to_client_calls():
    c = _Recorder()
    for action in ("suspend", "resume", "requeue", "force complete", "run", "kill"):
        run_action(c, action, "/s/f1")
    assert [n for n, _ in c.calls] == ["suspend", "resume", "requeue", "force_state_recursive", "run", "kill"]
    assert run_action(c, "why", "/s") == "because"
    with pytest.raises(ValueError, match="unknown action"):
        run_action(c, "explode", "/s")


def _square(x):
    time.sleep(0.01)
    return x * x


def test_gantt_from_a_real_cascade_run(tmp_path):
    from ecflow_lab.cascade import Graph, LocalCluster

    g = Graph()
    hs = [g.add_task(_square, i) for i in range(6)]
    g.set_outputs(hs)
    live = Gantt()
    with LocalCluster(workers=2) as cl:
        res = cl.run(g, on_event=live.on_event)
    live.close()
    assert sorted(res[h] for h in hs) == [i * i for i in range(6)]
    gantt = Gantt(res.trace)
    compute = [p for p in gantt.source.data["phase"] if p == "compute"]
    assert len(compute) == 6
    assert set(gantt.source.data["lane"]) <= {w for w in gantt.lanes} and gantt.lanes
    assert live.n_bars >= 6  # the live stream drew the same tasks
    assert all(r >= left for left, r in zip(gantt.source.data["left"], gantt.source.data["right"]))
    out = gantt.save(tmp_path / "g.html")
    html = out.read_text()
    assert "<html" in html.lower() and "Bokeh" in html and "cdn.bokeh.org" not in html


def test_gantt_switches_to_webgl_past_threshold():
    spans = [{"task": i, "name": f"f-{i}", "worker": f"w{i % 3}", "start": i * 0.1, "end": i * 0.1 + 0.05}
             for i in range(30)]
    g = Gantt(spans, webgl_threshold=20)
    assert g.figure.output_backend == "webgl" and g.n_bars == 30


def test_suite_gantt_from_log_and_deltas():
    log = "\n".join([
        "LOG:[10:00:00 1.1.2026] submitted: /s/f1/a",
        "LOG:[10:00:01 1.1.2026] active: /s/f1/a",
        "LOG:[10:00:05 1.1.2026] complete: /s/f1/a",
        "LOG:[10:00:02 1.1.2026] submitted: /s/f1/b",
        "LOG:[10:00:03 1.1.2026] active: /s/f1/b",
        "LOG:[10:00:04 1.1.2026] aborted: /s/f1/b",
        "LOG:[10:00:06 1.1.2026]  submitted: /s/f1/c job_size:68",  # this server's own lines
        "MSG:[10:00:07 1.1.2026] chd:init /s/f1/c",
        "MSG:[10:00:09 1.1.2026] chd:abort /s/f1/c",
    ])
    g = SuiteGantt.from_log(log)
    d = g.source.data
    spans = sorted(zip(d["lane"], d["phase"], d["duration"], d["ok"]))
    assert spans == [("/s/f1/a", "active", 4.0, True), ("/s/f1/a", "submitted", 1.0, True),
                     ("/s/f1/b", "active", 1.0, False), ("/s/f1/b", "submitted", 1.0, True),
                     ("/s/f1/c", "active", 2.0, False), ("/s/f1/c", "submitted", 1.0, True)]
    live = SuiteGantt()
    live.on_delta({"seq": 1, "time": 100.0, "changes": [{"path": "/s/t", "state": "submitted"}]})
    live.on_delta({"seq": 2, "time": 101.5, "changes": [{"path": "/s/t", "state": "active"}]})
    live.on_delta({"seq": 3, "time": 103.0, "changes": [{"path": "/s/t", "state": "complete"}]})
    live.close()
    assert sorted(live.source.data["duration"]) == [1.5, 1.5]


def test_suite_gantt_closes_what_changed_during_a_gap_in_the_deltas():
    """After a gap the client sends a full snapshot: spans whose task moved on meanwhile end there, tasks
    that became active meanwhile open a span, deleted tasks' spans end, and unchanged ones run on."""
    live = SuiteGantt()
    live.on_delta({"seq": 1, "time": 100.0, "changes": [{"path": "/s/t", "state": "submitted"},
                                                          {"path": "/s/v", "state": "active"},
                                                          {"path": "/s/gone", "state": "active"}]})
    snap = parse_text("suite s\n  task t\n  task u\n  task v\nendsuite\n")
    snap.find_abs_node("/s/t").state = "complete"
    snap.find_abs_node("/s/u").state = "active"
    snap.find_abs_node("/s/v").state = "active"
    live.on_delta({"full": True, "seq": 9, "time": 105.0, "defs": snap})
    live.on_delta({"seq": 10, "time": 107.0, "changes": [{"path": "/s/u", "state": "complete"},
                                                           {"path": "/s/v", "state": "complete"}]})
    live.close()
    d = live.source.data
    spans = sorted(zip(d["lane"], d["phase"], d["duration"]))
    assert spans == [("/s/gone", "active", 5.0), ("/s/t", "submitted", 5.0), ("/s/u", "active", 2.0),
                     ("/s/v", "active", 7.0)]
    assert live.tasks == {"/s/t", "/s/u", "/s/v"}


def test_front_end_is_loaded_from_the_single_js_source():
    from pathlib import Path

    import tomllib

    from ecflow_lab.jupyter.tree import asset

    root = Path(__file__).resolve().parents[2]
    assert asset("tree.js") == root / "js" / "tree.js"
    assert "export default" in asset("tree.js").read_text()
    esm = NodeTree._esm
    assert "export default" in (esm if isinstance(esm, str) else str(esm))
    wheel = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert wheel["force-include"] == {"js/tree.js": "ecflow_lab/static/tree.js",
                                      "js/tree.css": "ecflow_lab/static/tree.css"}
    with pytest.raises(FileNotFoundError, match="nope.js"):
        asset("nope.js")
