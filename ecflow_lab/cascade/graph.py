"""The low-level task graph: plain data that the fluent layer builds and the schedulers/executors consume.

A graph is a set of tasks. Each task has a callable, positional/keyword arguments in which
:class:`Handle` objects (``(task id, output index)`` — a *dataset id*) stand for outputs of other tasks,
a human name, a number of outputs (a generator task yields its outputs one by one and each is published
as soon as it is yielded), resource requirements and optional known duration/output size.

Edges are per output (dataset), not per task, so a consumer of a generator's first output can start
before the generator has finished.

    g = Graph()
    a = g.add_task(load, "a.grib", name="load")
    b = g.add_task(np.sqrt, a)
    g.set_outputs([b])
"""

from __future__ import annotations

import base64
import importlib
import inspect
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "Graph",
    "GraphError",
    "Handle",
    "Requirements",
    "Task",
    "mark",
]


class GraphError(ValueError):
    """The graph is malformed (unknown input, cycle, impossible requirement)."""


@dataclass(frozen=True, slots=True)
class Handle:
    """A dataset id: output ``output`` of task ``task``. ``h[i]`` is output *i* of the same task."""

    task: str
    output: int = 0

    def __getitem__(self, i: int) -> Handle:
        return Handle(self.task, int(i))

    def __repr__(self) -> str:
        return f"Handle({self.task!r}, {self.output})" if self.output else f"Handle({self.task!r})"


@dataclass(frozen=True, slots=True)
class Requirements:
    """What a task needs from the worker that runs it.

    ``needs_gpu``: only GPU workers run it. ``cpus``/``memory_mb``: minimum worker capacity.
    ``worker``: pin to a worker id (``"host/w1"`` or just ``"w1"``) — for experiments and benchmarks.
    """

    needs_gpu: bool = False
    cpus: int = 1
    memory_mb: int = 0
    worker: str | None = None

    def merge(self, other: Requirements | None) -> Requirements:
        if other is None:
            return self
        return Requirements(
            needs_gpu=self.needs_gpu or other.needs_gpu,
            cpus=max(self.cpus, other.cpus),
            memory_mb=max(self.memory_mb, other.memory_mb),
            worker=other.worker or self.worker,
        )


DEFAULT_REQUIREMENTS = Requirements()


class mark:  # noqa: N801 - decorator namespace like the original's ``mark``
    """Decorators that attach requirements to a function: ``@mark.needs_gpu``, ``@mark.requires(memory_mb=..)``."""

    @staticmethod
    def needs_gpu(func: Callable) -> Callable:
        return mark.requires(needs_gpu=True)(func)

    @staticmethod
    def needs_cpu(func: Callable, cpus: int = 1) -> Callable:
        return mark.requires(cpus=cpus)(func)

    @staticmethod
    def requires(**kw: Any) -> Callable[[Callable], Callable]:
        def deco(func: Callable) -> Callable:
            cur = getattr(func, "__cascade_requirements__", DEFAULT_REQUIREMENTS)
            func.__cascade_requirements__ = replace(cur, **kw)  # type: ignore[attr-defined]
            return func

        return deco


@dataclass(slots=True)
class Task:
    """One node of the graph. ``args``/``kwargs`` may contain :class:`Handle` (also nested in lists,
    tuples and dicts)."""

    id: str
    func: Callable[..., Any]
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    name: str = ""
    num_outputs: int = 1
    generator: bool = False
    requirements: Requirements = DEFAULT_REQUIREMENTS
    duration: float | None = None  # known/expected seconds
    size: int | None = None  # known/expected output bytes
    inputs: tuple[Handle, ...] = ()  # derived: every Handle in args/kwargs, in order, deduplicated

    def __post_init__(self) -> None:
        if not self.inputs:
            self.inputs = tuple(dict.fromkeys(_find_handles((self.args, self.kwargs))))


def _find_handles(obj: Any) -> Iterator[Handle]:
    if isinstance(obj, Handle):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            if isinstance(x, (Handle, list, tuple, dict)):
                yield from _find_handles(x)
    elif isinstance(obj, dict):
        for x in obj.values():
            if isinstance(x, (Handle, list, tuple, dict)):
                yield from _find_handles(x)


def substitute(obj: Any, lookup: Callable[[Handle], Any]) -> Any:
    """Replace every :class:`Handle` in ``obj`` (nested lists/tuples/dicts) by ``lookup(handle)``."""
    t = type(obj)
    if t is Handle:
        return lookup(obj)
    if t is tuple or t is list:
        return t(substitute(x, lookup) if type(x) in _CONTAINERS else x for x in obj)
    if t is dict:
        return {k: (substitute(v, lookup) if type(v) in _CONTAINERS else v) for k, v in obj.items()}
    return obj


_CONTAINERS = (Handle, tuple, list, dict)


def func_name(func: Callable) -> str:
    """A short human name for a callable (functools.partial and methods included)."""
    inner = getattr(func, "func", None)
    if inner is not None and callable(inner):  # functools.partial
        return func_name(inner)
    return getattr(func, "__name__", None) or type(func).__name__


class Graph:
    """A task graph of plain data. Build it with :meth:`add_task`; name outputs with :meth:`set_outputs`
    (default: every output of every sink task)."""

    def __init__(self) -> None:
        self.tasks: dict[str, Task] = {}
        self._outputs: list[Handle] | None = None
        self._counter = 0

    # -- building -------------------------------------------------------------------------------------
    def add_task(
        self,
        func: Callable[..., Any],
        *args: Any,
        name: str | None = None,
        id: str | None = None,  # noqa: A002 - task id as in the original
        num_outputs: int = 1,
        generator: bool | None = None,
        requirements: Requirements | None = None,
        duration: float | None = None,
        size: int | None = None,
        kwargs: dict | None = None,
        **kw: Any,
    ) -> Handle:
        """Add ``func(*args, **kwargs)``; returns the handle of its (first) output.

        Inputs are earlier handles or plain values. ``num_outputs > 1``: the function yields (or returns a
        sequence of) that many values; ``handle[i]`` is the i-th. ``generator`` defaults to whether ``func``
        is a generator function; a generator's outputs are published one by one as they are yielded.
        Extra keyword arguments are passed to ``func`` (``kwargs=`` avoids clashes with the options)."""
        if not callable(func):
            raise GraphError(f"task function must be callable, got {func!r}")
        call_kwargs = dict(kwargs or {})
        call_kwargs.update(kw)
        label = name or func_name(func)
        if id is None:
            self._counter += 1
            id = f"{label}-{self._counter}"
            while id in self.tasks:
                self._counter += 1
                id = f"{label}-{self._counter}"
        elif id in self.tasks:
            raise GraphError(f"duplicate task id {id!r}")
        if generator is None:
            generator = inspect.isgeneratorfunction(getattr(func, "func", func))
        if num_outputs < 1:
            raise GraphError(f"task {id!r}: num_outputs must be >= 1, got {num_outputs}")
        reqs = getattr(func, "__cascade_requirements__", DEFAULT_REQUIREMENTS)
        inner = getattr(func, "func", None)
        if inner is not None:
            reqs = getattr(inner, "__cascade_requirements__", DEFAULT_REQUIREMENTS).merge(reqs)
        reqs = reqs.merge(requirements)
        task = Task(id, func, tuple(args), call_kwargs, label, num_outputs, bool(generator), reqs, duration, size)
        for h in task.inputs:
            src = self.tasks.get(h.task)
            if src is None:
                raise GraphError(f"task {id!r}: input {h!r} is not a task of this graph (add it first)")
            if not 0 <= h.output < src.num_outputs:
                raise GraphError(f"task {id!r}: input {h!r} but {h.task!r} has {src.num_outputs} output(s)")
        self.tasks[id] = task
        return Handle(id, 0)

    def set_outputs(self, outputs: Iterable[Handle]) -> None:
        """Name the datasets returned to the caller (default: all outputs of the sinks)."""
        outs = list(outputs)
        for h in outs:
            if not isinstance(h, Handle):
                raise GraphError(f"outputs must be Handles, got {h!r}")
            if h.task not in self.tasks or h.output >= self.tasks[h.task].num_outputs:
                raise GraphError(f"output {h!r} is not in the graph")
        self._outputs = outs

    # -- reading -------------------------------------------------------------------------------------
    @property
    def outputs(self) -> list[Handle]:
        if self._outputs is not None:
            return list(self._outputs)
        used = {h.task for t in self.tasks.values() for h in t.inputs}
        return [Handle(t.id, i) for t in self.tasks.values() if t.id not in used for i in range(t.num_outputs)]

    def __len__(self) -> int:
        return len(self.tasks)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self.tasks

    def __repr__(self) -> str:
        return f"<Graph {len(self.tasks)} tasks, {len(self.outputs)} outputs>"

    def edges(self) -> list[tuple[Handle, str]]:
        """``(dataset, consumer task id)`` pairs."""
        return [(h, t.id) for t in self.tasks.values() for h in t.inputs]

    def consumers(self) -> dict[str, list[str]]:
        """task id -> ids of the tasks that use any of its outputs."""
        out: dict[str, list[str]] = {tid: [] for tid in self.tasks}
        for t in self.tasks.values():
            for src in dict.fromkeys(h.task for h in t.inputs):
                out[src].append(t.id)
        return out

    def topological_order(self) -> list[str]:
        """Task ids, inputs first (Kahn's algorithm; raises GraphError on a cycle)."""
        indeg = {tid: len({h.task for h in t.inputs}) for tid, t in self.tasks.items()}
        cons = self.consumers()
        order = [tid for tid, d in indeg.items() if d == 0]
        i = 0
        while i < len(order):
            for c in cons[order[i]]:
                indeg[c] -= 1
                if indeg[c] == 0:
                    order.append(c)
            i += 1
        if len(order) != len(self.tasks):
            bad = sorted(tid for tid, d in indeg.items() if d > 0)[:5]
            raise GraphError(f"graph has a cycle through {bad}")
        return order

    def validate(self) -> None:
        self.topological_order()

    def run_local(self) -> dict[Handle, Any]:
        """Run the graph sequentially in this process (debugging, tests): output handle -> value."""
        values: dict[Handle, Any] = {}
        cons = self.consumers()
        left = {tid: len(c) for tid, c in cons.items()}
        outs = set(self.outputs)
        for tid in self.topological_order():
            t = self.tasks[tid]
            args = substitute(t.args, values.__getitem__)
            kwargs = substitute(t.kwargs, values.__getitem__)
            res = t.func(*args, **kwargs)
            vals = list(res) if (t.generator or t.num_outputs > 1) else [res]
            if len(vals) != t.num_outputs:
                raise ValueError(f"task {tid!r} produced {len(vals)} outputs, {t.num_outputs} declared")
            for k, v in enumerate(vals):
                values[Handle(tid, k)] = v
            for src in {h.task for h in t.inputs}:
                left[src] -= 1
                if left[src] == 0:
                    for k in range(self.tasks[src].num_outputs):
                        if Handle(src, k) not in outs:
                            values.pop(Handle(src, k), None)
        return {h: values[h] for h in self.outputs}

    # -- serialisation -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-able): functions by import path when importable, else base64 cloudpickle."""
        tasks = []
        for t in self.tasks.values():
            tasks.append(
                {
                    "id": t.id,
                    "func": _func_ref(t.func),
                    "args": _encode(t.args),
                    "kwargs": _encode(t.kwargs),
                    "name": t.name,
                    "num_outputs": t.num_outputs,
                    "generator": t.generator,
                    "requirements": {
                        "needs_gpu": t.requirements.needs_gpu,
                        "cpus": t.requirements.cpus,
                        "memory_mb": t.requirements.memory_mb,
                        "worker": t.requirements.worker,
                    },
                    "duration": t.duration,
                    "size": t.size,
                }
            )
        return {
            "version": 1,
            "tasks": tasks,
            "outputs": [[h.task, h.output] for h in self.outputs],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Graph:
        """Inverse of :meth:`to_dict` (only use on data you trust: it may import and unpickle code)."""
        g = cls()
        for td in data["tasks"]:
            g.add_task(
                _func_load(td["func"]),
                *_decode(td["args"]),
                id=td["id"],
                name=td["name"],
                num_outputs=td["num_outputs"],
                generator=td["generator"],
                requirements=Requirements(**td["requirements"]),
                duration=td.get("duration"),
                size=td.get("size"),
                kwargs=_decode(td["kwargs"]),
            )
        g.set_outputs(Handle(t, o) for t, o in data["outputs"])
        return g

    @classmethod
    def from_dask(cls, dsk: Any, keys: Sequence[Any] | Any | None = None) -> Graph:
        """Convert a Dask graph (dict / HighLevelGraph / dask collection) into a Graph."""
        from .dask import graph_from_dask

        return graph_from_dask(dsk, keys)


def _func_ref(func: Callable) -> dict[str, str]:
    mod, qual = getattr(func, "__module__", None), getattr(func, "__qualname__", None)
    if mod and qual and mod != "__main__" and "<" not in qual:
        try:
            obj: Any = importlib.import_module(mod)
            for part in qual.split("."):
                obj = getattr(obj, part)
            if obj is func:
                return {"import": f"{mod}:{qual}"}
        except Exception:  # noqa: BLE001 - fall back to pickling by value
            pass
    import cloudpickle

    return {"pickle": base64.b64encode(cloudpickle.dumps(func)).decode()}


def _func_load(ref: dict[str, str]) -> Callable:
    if "import" in ref:
        mod, qual = ref["import"].split(":")
        obj: Any = importlib.import_module(mod)
        for part in qual.split("."):
            obj = getattr(obj, part)
        return obj
    import cloudpickle

    return cloudpickle.loads(base64.b64decode(ref["pickle"]))


def _encode(obj: Any) -> Any:
    if isinstance(obj, Handle):
        return {"$handle": [obj.task, obj.output]}
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, list):
        return [_encode(x) for x in obj]
    if isinstance(obj, tuple):
        return {"$tuple": [_encode(x) for x in obj]}
    if isinstance(obj, dict) and all(isinstance(k, str) for k in obj):
        return {"$dict": {k: _encode(v) for k, v in obj.items()}}
    import cloudpickle

    return {"$pickle": base64.b64encode(cloudpickle.dumps(obj)).decode()}


def _decode(obj: Any) -> Any:
    if isinstance(obj, list):
        return [_decode(x) for x in obj]
    if isinstance(obj, dict):
        if "$handle" in obj:
            return Handle(*obj["$handle"])
        if "$tuple" in obj:
            return tuple(_decode(x) for x in obj["$tuple"])
        if "$dict" in obj:
            return {k: _decode(v) for k, v in obj["$dict"].items()}
        if "$pickle" in obj:
            import cloudpickle

            return cloudpickle.loads(base64.b64decode(obj["$pickle"]))
    return obj
