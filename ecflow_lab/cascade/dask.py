"""The Dask backend: the same graphs on a ``distributed.Client`` (LocalCluster or a real cluster), and
conversion of Dask graphs into ours.

    backend = DaskBackend(client)          # same .run(graph_or_action) as LocalCluster
    result = backend.run(action)           # RunResult with outputs and a trace built from Dask's task stream

Generator tasks run to completion on Dask (their outputs are not streamed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from .graph import Graph, Handle, Task, substitute
from .trace import Trace


def _call(func: Callable, args: tuple, kwargs: dict, nout: int, gen: bool, deps: tuple, *values: Any) -> Any:
    args, kwargs, deps = args.value, kwargs.value, deps.value  # type: ignore[attr-defined]
    if deps:
        vals = dict(zip(deps, values))
        args = substitute(args, vals.__getitem__)
        kwargs = substitute(kwargs, vals.__getitem__)
    res = func(*args, **kwargs)
    if gen or nout > 1:
        res = tuple(res)
        if len(res) != nout:
            raise ValueError(f"produced {len(res)} outputs, {nout} declared")
    return res


class _Opaque:
    """Hides a structure from Dask's argument parsing; unwrapped by :func:`_call`."""

    def __init__(self, value: Any) -> None:
        self.value = value


def _pick(values: tuple, k: int) -> Any:
    return values[k]


def _key(h: Handle, tasks: dict[str, Task]) -> str:
    return h.task if tasks[h.task].num_outputs == 1 else f"{h.task}#{h.output}"


def to_dask(graph: Graph) -> tuple[dict, list[str]]:
    """A Dask task graph (``dask._task_spec`` tasks) and the keys of the graph's outputs."""
    from dask._task_spec import Task as DTask
    from dask._task_spec import TaskRef

    tasks = graph.tasks
    dsk: dict[str, Any] = {}
    for t in tasks.values():
        # Handles stay in the (opaque) argument template; their values arrive as direct dependencies
        deps = tuple(t.inputs)
        refs = [TaskRef(_key(h, tasks)) for h in deps]
        dsk[t.id] = DTask(t.id, _call, t.func, _Opaque(t.args), _Opaque(t.kwargs), t.num_outputs, t.generator,
                          _Opaque(deps), *refs)  # fmt: skip
        if t.num_outputs > 1:
            for k in range(t.num_outputs):
                dsk[f"{t.id}#{k}"] = DTask(f"{t.id}#{k}", _pick, TaskRef(t.id), k)
    return dsk, [_key(h, tasks) for h in graph.outputs]


class DaskBackend:
    """Run graphs / fluent actions on a ``distributed.Client`` with the executor's interface."""

    def __init__(self, client: Any = None) -> None:
        if client is None:
            from distributed import get_client

            client = get_client()
        self.client = client

    def run(
        self, graph: Any, on_event: Callable[[dict], Any] | None = None, retries: int = 0, timeout: float | None = None
    ):
        from distributed import get_task_stream

        from .executor.cluster import _as_graph
        from .executor.controller import RunResult

        g = _as_graph(graph)
        dsk, keys = to_dask(g)
        t0 = time.perf_counter()
        with get_task_stream(self.client) as ts:
            fut = self.client.get(dsk, keys, sync=False, retries=retries)
            vals = self.client.gather(fut) if not hasattr(fut, "result") else fut.result(timeout)
        wall = time.perf_counter() - t0
        names = {t.id: t.name for t in g.tasks.values()}
        events: list[dict] = []
        for rec in ts.data:
            key = rec.get("key")
            tid = str(key)
            if tid not in names:
                continue
            for st in rec.get("startstops", ()):
                if st.get("action") == "compute":
                    w = rec.get("worker")
                    events.append({"t": st["start"], "kind": "started", "task": tid, "name": names[tid], "worker": w})
                    events.append({"t": st["stop"], "kind": "finished", "task": tid, "name": names[tid], "worker": w,
                                   "func": names[tid]})  # fmt: skip
                elif st.get("action") == "transfer":
                    w = rec.get("worker")
                    events.append({"t": st["start"], "kind": "transfer_start", "task": tid, "name": names[tid],
                                   "worker": w, "via": "dask"})  # fmt: skip
                    events.append({"t": st["stop"], "kind": "transfer_end", "task": tid, "name": names[tid],
                                   "worker": w, "via": "dask"})  # fmt: skip
        events.sort(key=lambda e: e["t"])
        if on_event is not None:
            for e in events:
                on_event(e)
        outputs = dict(zip(g.outputs, vals))
        return RunResult(outputs, Trace(events), wall, getattr(g, "layout", None))


def run_on_dask(graph: Any, client: Any = None, **kw: Any):
    """Shortcut: ``DaskBackend(client).run(graph)``."""
    return DaskBackend(client).run(graph, **kw)


def _flatten_keys(keys: Any) -> list:
    if isinstance(keys, list):
        out = []
        for k in keys:
            out.extend(_flatten_keys(k))
        return out
    return [keys]


def _run_node(node: Any, dep_keys: tuple, *values: Any) -> Any:
    return node(dict(zip(dep_keys, values)))


def graph_from_dask(dsk: Any, keys: Sequence[Any] | Any | None = None) -> Graph:
    """Convert a Dask graph (mapping, HighLevelGraph or collection) into a :class:`Graph`; ``keys`` become
    its outputs (default: the collection's keys, or the sinks). Task ids are ``str(key)``."""
    import functools

    from dask._task_spec import DataNode, convert_legacy_graph
    from dask.utils import key_split

    if hasattr(dsk, "__dask_graph__"):
        if keys is None:
            keys = _flatten_keys(dsk.__dask_keys__())
        dsk = dsk.__dask_graph__()
    nodes = convert_legacy_graph(dict(dsk))
    if keys is not None and not isinstance(keys, list):
        keys = [keys]
    g = Graph()
    handles: dict[Any, Handle] = {}
    # topological order over dependencies
    indeg = {k: len(n.dependencies) for k, n in nodes.items()}
    users: dict[Any, list] = {k: [] for k in nodes}
    for k, n in nodes.items():
        for d in n.dependencies:
            users[d].append(k)
    order = [k for k, d in indeg.items() if d == 0]
    i = 0
    while i < len(order):
        for u in users[order[i]]:
            indeg[u] -= 1
            if indeg[u] == 0:
                order.append(u)
        i += 1
    for k in order:
        n = nodes[k]
        deps = tuple(n.dependencies)
        if isinstance(n, DataNode) and not deps:
            val = n.value
            handles[k] = g.add_task(_const(val), id=str(k), name=key_split(k))
            continue
        func = functools.partial(_run_node, n, deps)
        handles[k] = g.add_task(func, *[handles[d] for d in deps], id=str(k), name=key_split(k))
    if keys is not None:
        g.set_outputs([handles[k] for k in keys])
    g.dask_keys = {k: handles[k] for k in (keys or [])}  # type: ignore[attr-defined]
    return g


class _const:
    def __init__(self, value: Any) -> None:
        self.value = value
        self.__name__ = "data"

    def __call__(self) -> Any:
        return self.value
