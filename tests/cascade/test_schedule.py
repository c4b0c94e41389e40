"""Offline planning with known durations/sizes, resources and priorities."""

from __future__ import annotations

import pytest

from ecflow_lab.cascade.graph import Graph, GraphError, Requirements
from ecflow_lab.cascade.schedule import WorkerSpec, compile_graph, plan


def noop(*_):
    return None


def test_independent_tasks_fill_every_worker():
    g = Graph()
    for _ in range(12):
        g.add_task(noop, duration=1.0)
    ws = [WorkerSpec(f"h/w{i}") for i in range(3)]
    p = plan(g, ws)
    assert p.makespan == pytest.approx(4.0)
    per = {w.id: sum(1 for v in p.placement.values() if v[0] == w.id) for w in ws}
    assert per == {"h/w0": 4, "h/w1": 4, "h/w2": 4}


def test_critical_path_goes_first():
    g = Graph()
    long_chain = g.add_task(noop, duration=1.0, name="head")
    for _ in range(3):
        long_chain = g.add_task(noop, long_chain, duration=1.0)
    for _ in range(3):
        g.add_task(noop, duration=1.0, name="filler")
    p = plan(g, [WorkerSpec("a"), WorkerSpec("b")])
    # the chain (4 s) starts at 0 and the 3 fillers share the other worker: makespan 4, not 5+
    assert p.makespan == pytest.approx(4.0)
    head = next(v for k, v in p.placement.items() if k.startswith("head"))
    assert head[1] == 0.0


def test_gpu_tasks_only_on_gpu_workers_and_infeasible_is_an_error():
    g = Graph()
    for _ in range(4):
        g.add_task(noop, duration=1.0, requirements=Requirements(needs_gpu=True))
    ws = [WorkerSpec("cpu0"), WorkerSpec("gpu0", gpu=True)]
    p = plan(g, ws)
    assert {v[0] for v in p.placement.values()} == {"gpu0"}
    with pytest.raises(GraphError, match="needs_gpu=True"):
        plan(g, [WorkerSpec("cpu0")])
    g2 = Graph()
    g2.add_task(noop, requirements=Requirements(memory_mb=64_000))
    with pytest.raises(GraphError, match="memory_mb=64000"):
        plan(g2, [WorkerSpec("small", memory_mb=8_000)])


def test_large_inputs_pull_consumers_to_their_data():
    g = Graph()
    big = g.add_task(noop, duration=1.0, size=10**10)  # 10 GB: moving it costs seconds
    other = g.add_task(noop, duration=1.0)
    g.add_task(noop, big, other, duration=1.0, name="use")
    p = plan(g, [WorkerSpec("a", host="h1"), WorkerSpec("b", host="h2")])
    where_big = p.placement[big.task][0]
    use = next(v for k, v in p.placement.items() if k.startswith("use"))
    assert use[0] == where_big


def test_compile_is_linear_and_priorities_are_bottom_levels():
    g = Graph()
    h = g.add_task(noop)
    for _ in range(20_000):
        h = g.add_task(noop, h)
    c = compile_graph(g)
    assert c.priority[0] == 20_001 and c.priority[-1] == 1
    with pytest.raises(GraphError, match="not a task of this graph"):
        Graph().add_task(noop, h)
