"""Planning on heterogeneous workers.

The executor schedules dynamically (tasks are placed as their inputs appear) with the pieces below:

- :func:`compile_graph` turns a :class:`Graph` into integer-indexed arrays (topological order, per-dataset
  consumers) in O(n + e);
- priorities are *bottom levels*: the longest remaining path to a sink, weighted by known durations
  (1 unit otherwise), so the critical path goes first; a heap keeps the ready set (O(log n) per task);
- :func:`choose_worker` places a task where it finishes earliest: queued work + the cost of moving its
  inputs (zero for data already on that worker or in same-host shared memory), among the workers whose
  resources (GPU, CPUs, memory, pin) fit;
- chains are fused by the executor: a task whose only missing inputs are being produced on one worker is
  sent to that worker with them and runs there without a controller round-trip.

:func:`plan` runs the same policy offline (list scheduling with known durations/sizes) to predict the
placement and makespan of a graph on a given set of workers.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .graph import Graph, GraphError, Requirements

DEFAULT_DURATION = 5e-4  # seconds assumed for a task of unknown duration
HOST_BANDWIDTH = 4e9  # bytes/s for a same-host copy
NET_BANDWIDTH = 1e9  # bytes/s between hosts


@dataclass(slots=True)
class WorkerSpec:
    """What a worker offers."""

    id: str
    host: str = "localhost"
    cpus: int = 1
    memory_mb: int = 0  # 0: unknown (no limit enforced)
    gpu: bool = False

    def fits(self, req: Requirements) -> bool:
        if req.needs_gpu and not self.gpu:
            return False
        if req.cpus > self.cpus:
            return False
        if req.memory_mb and self.memory_mb and req.memory_mb > self.memory_mb:
            return False
        if req.worker and req.worker != self.id and not self.id.endswith("/" + req.worker):
            return False
        return True


@dataclass(slots=True)
class Compiled:
    """Integer-indexed view of a graph. Dataset ids are ``(task index, output)`` tuples."""

    ids: list[str]
    index: dict[str, int]
    tasks: list[Any]  # graph.Task, by index
    inputs: list[list[tuple[int, int]]]
    consumers: dict[tuple[int, int], list[int]]
    outputs: list[tuple[int, int]]
    priority: list[float] = field(default_factory=list)


def compile_graph(graph: Graph) -> Compiled:
    order = graph.topological_order()
    index = {tid: i for i, tid in enumerate(order)}
    tasks = [graph.tasks[tid] for tid in order]
    inputs = [[(index[h.task], h.output) for h in t.inputs] for t in tasks]
    consumers: dict[tuple[int, int], list[int]] = {}
    for i, ins in enumerate(inputs):
        for ds in ins:
            consumers.setdefault(ds, []).append(i)
    outputs = [(index[h.task], h.output) for h in graph.outputs]
    c = Compiled(order, index, tasks, inputs, consumers, outputs)
    c.priority = bottom_levels(c)
    return c


def bottom_levels(c: Compiled) -> list[float]:
    """Longest path (by duration) from each task to a sink, inclusive. O(n + e)."""
    n = len(c.tasks)
    bl = [0.0] * n
    for i in range(n - 1, -1, -1):
        t = c.tasks[i]
        best = 0.0
        for k in range(t.num_outputs):
            for j in c.consumers.get((i, k), ()):
                if bl[j] > best:
                    best = bl[j]
        bl[i] = best + (t.duration if t.duration is not None else 1.0)
    return bl


def check_feasible(c: Compiled, workers: Sequence[WorkerSpec]) -> None:
    """Raise GraphError naming the first task no worker can run."""
    seen: dict[Requirements, bool] = {}
    for t in c.tasks:
        r = t.requirements
        ok = seen.get(r)
        if ok is None:
            ok = seen[r] = any(w.fits(r) for w in workers)
        if not ok:
            raise GraphError(f"no worker can run task {t.id!r}: it requires {r} (workers: {[w.id for w in workers]})")


def choose_worker(
    candidates: Sequence[tuple[WorkerSpec, float]],
    req: Requirements,
    input_cost: dict[str, float] | None = None,
) -> WorkerSpec | None:
    """Among ``(worker, queued seconds)`` pairs, the fitting worker where the task would start first
    (queued work + input-moving seconds). Non-GPU tasks lean away from GPU workers on ties."""
    best, best_cost = None, float("inf")
    for w, load in candidates:
        if not w.fits(req):
            continue
        cost = load + (input_cost.get(w.id, 0.0) if input_cost else 0.0)
        if w.gpu and not req.needs_gpu:
            cost += 1e-6
        if cost < best_cost:
            best, best_cost = w, cost
    return best


@dataclass
class Plan:
    """Offline schedule: task id -> (worker id, start, end); ``makespan`` in seconds."""

    placement: dict[str, tuple[str, float, float]]
    makespan: float


def plan(graph: Graph, workers: Sequence[WorkerSpec]) -> Plan:
    """List-schedule ``graph`` on ``workers`` with known durations (default :data:`DEFAULT_DURATION`) and
    output sizes (default 0): highest bottom level first, earliest-finish worker. O((n + e) log n)."""
    c = compile_graph(graph)
    check_feasible(c, workers)
    n = len(c.tasks)
    missing = [len(set(ins)) for ins in c.inputs]
    ready = [(-c.priority[i], i) for i in range(n) if missing[i] == 0]
    heapq.heapify(ready)
    free_at = {w.id: 0.0 for w in workers}
    where: list[str | None] = [None] * n
    end = [0.0] * n
    placement: dict[str, tuple[str, float, float]] = {}
    while ready:
        _, i = heapq.heappop(ready)
        t = c.tasks[i]
        best, best_start, best_w = float("inf"), 0.0, None
        for w in workers:
            if not w.fits(t.requirements):
                continue
            data_ready = 0.0
            for ds in c.inputs[i]:
                p = ds[0]
                arrive = end[p]
                if where[p] != w.id:
                    size = c.tasks[p].size or 0
                    src_host = next((x.host for x in workers if x.id == where[p]), None)
                    arrive += size / (HOST_BANDWIDTH if src_host == w.host else NET_BANDWIDTH)
                data_ready = max(data_ready, arrive)
            start = max(free_at[w.id], data_ready)
            dur = t.duration if t.duration is not None else DEFAULT_DURATION
            if start + dur < best:
                best, best_start, best_w = start + dur, start, w
        assert best_w is not None
        where[i], end[i] = best_w.id, best
        free_at[best_w.id] = best
        placement[t.id] = (best_w.id, best_start, best)
        for k in range(t.num_outputs):
            for j in c.consumers.get((i, k), ()):
                missing[j] -= 1
                if missing[j] == 0:
                    heapq.heappush(ready, (-c.priority[j], j))
    return Plan(placement, max(end, default=0.0))
