"""The fluent API: arrays of lazy task outputs over labelled dimensions (no xarray needed).

    members = [functools.partial(load, m) for m in range(50)]
    ens = from_source(members, dims=["member"])          # 50 source tasks
    mean = ens.map(regrid).mean("member", batch_size=8)   # tree reduction, 8 inputs per task
    with LocalCluster(workers=4) as cluster:
        res = cluster.run(mean)                            # res.array -> labelled values

Every verb returns a new :class:`Action`; nothing runs until the graph is executed. Payloads are callables
(``functools.partial`` for static arguments). ``yields=("step", [0, 6, 12])`` makes a payload a generator
whose outputs form a new dimension and are published one by one as they are yielded.
"""

from __future__ import annotations

import functools
import itertools
import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .graph import Graph, Handle, Requirements, func_name

__all__ = ["Action", "Labelled", "Node", "NodeOutput", "from_source", "merge", "backends"]

Coord = tuple  # (name, list of values)


class Node:
    """A lazy task: ``payload(*inputs, **kwargs)``; inputs may be :class:`NodeOutput`."""

    __slots__ = ("payload", "inputs", "kwargs", "name", "num_outputs", "requirements", "generator", "__weakref__")

    def __init__(
        self,
        payload: Callable,
        inputs: Sequence[Any] = (),
        kwargs: dict | None = None,
        name: str | None = None,
        num_outputs: int = 1,
        requirements: Requirements | None = None,
        generator: bool | None = None,
    ) -> None:
        if not callable(payload):
            raise TypeError(f"payload must be callable, got {payload!r}")
        self.payload = payload
        self.inputs = tuple(inputs)
        self.kwargs = kwargs or {}
        self.name = name or func_name(payload)
        self.num_outputs = num_outputs
        self.requirements = requirements
        self.generator = generator

    def output(self, i: int = 0) -> NodeOutput:
        return NodeOutput(self, i)

    def __repr__(self) -> str:
        return f"<Node {self.name} inputs={len(self.inputs)}>"


class NodeOutput:
    __slots__ = ("node", "index")

    def __init__(self, node: Node, index: int = 0) -> None:
        self.node, self.index = node, index

    def __repr__(self) -> str:
        return f"<{self.node.name}[{self.index}]>"


# ----------------------------------------------------------------------------------------------------
# backends: reductions and arithmetic that work on numbers, numpy arrays and array-likes (xarray, ...)


class backends:  # noqa: N801 - namespace
    @staticmethod
    def _fold(op_inplace: Callable, op: Callable, xs: Sequence[Any]) -> Any:
        if not xs:
            raise ValueError("nothing to reduce")
        acc = xs[0]
        if len(xs) == 1:
            return acc
        acc = op(acc, xs[1])
        for x in xs[2:]:
            if isinstance(acc, np.ndarray) and np.result_type(acc, x) == acc.dtype and np.shape(x) == acc.shape:
                op_inplace(acc, x, out=acc)
            else:
                acc = op(acc, x)
        return acc

    @staticmethod
    def sum(*xs: Any) -> Any:
        return backends._fold(np.add, operator.add, xs)

    @staticmethod
    def prod(*xs: Any) -> Any:
        return backends._fold(np.multiply, operator.mul, xs)

    @staticmethod
    def max(*xs: Any) -> Any:
        if any(hasattr(x, "__array__") for x in xs):
            return functools.reduce(np.maximum, xs)
        return max(xs)

    @staticmethod
    def min(*xs: Any) -> Any:
        if any(hasattr(x, "__array__") for x in xs):
            return functools.reduce(np.minimum, xs)
        return min(xs)

    @staticmethod
    def mean(*xs: Any) -> Any:
        return backends.sum(*xs) / len(xs)

    @staticmethod
    def std(*xs: Any) -> Any:
        return np.std(np.stack([np.asarray(x) for x in xs]), axis=0)

    @staticmethod
    def var(*xs: Any) -> Any:
        return np.var(np.stack([np.asarray(x) for x in xs]), axis=0)

    @staticmethod
    def concatenate(*xs: Any, axis: int = 0) -> Any:
        return np.concatenate(xs, axis=axis)

    @staticmethod
    def stack(*xs: Any, axis: int = 0) -> Any:
        return np.stack(xs, axis=axis)

    @staticmethod
    def take(x: Any, i: int, axis: int = 0) -> Any:
        return np.take(x, i, axis=axis)

    @staticmethod
    def divide_by(x: Any, n: float) -> Any:
        return x / n

    @staticmethod
    def mean_from_partials(*parts: tuple) -> Any:
        return backends.sum(*[p[0] for p in parts]) / sum(p[1] for p in parts)


def _sum_count(*xs: Any) -> tuple:
    return backends.sum(*xs), len(xs)


def _merge_sum_count(*parts: tuple) -> tuple:
    return backends.sum(*[p[0] for p in parts]), sum(p[1] for p in parts)


def _finish_mean(part: tuple) -> Any:
    return part[0] / part[1]


_BATCHABLE = {backends.sum, backends.prod, backends.max, backends.min}


# ----------------------------------------------------------------------------------------------------


def _norm_dim(dim: str | Coord, size: int) -> tuple[str, list]:
    if isinstance(dim, tuple):
        name, values = dim
        values = list(values)
        if len(values) != size:
            raise ValueError(f"dimension {name!r}: {len(values)} coordinate values for size {size}")
        return name, values
    return dim, list(range(size))


def _obj_array(items: list, shape: tuple) -> np.ndarray:
    arr = np.empty(len(items), dtype=object)
    for i, x in enumerate(items):
        arr[i] = x
    return arr.reshape(shape)


def _map_array(f: Callable[[Any], Any], arr: np.ndarray) -> np.ndarray:
    return _obj_array([f(x) for x in arr.ravel()], arr.shape)


class Action:
    """An array (``nodes``: numpy object array of :class:`NodeOutput`) with named ``dims`` and ``coords``."""

    def __init__(self, nodes: np.ndarray, dims: Sequence[str], coords: dict[str, list] | None = None) -> None:
        nodes = np.asarray(nodes, dtype=object) if not isinstance(nodes, np.ndarray) else nodes
        if nodes.ndim != len(dims):
            raise ValueError(f"{nodes.ndim}-d nodes but dims {list(dims)}")
        if len(set(dims)) != len(dims):
            raise ValueError(f"duplicate dimension names {list(dims)}")
        self.nodes = nodes
        self.dims = list(dims)
        self.coords = {d: list(range(n)) for d, n in zip(self.dims, nodes.shape)}
        for d, vals in (coords or {}).items():
            if d not in self.coords:
                raise ValueError(f"coordinates for unknown dimension {d!r}")
            if len(vals) != len(self.coords[d]):
                raise ValueError(f"dimension {d!r} has size {len(self.coords[d])}, got {len(vals)} coordinates")
            self.coords[d] = list(vals)

    # -- info ---------------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.nodes.shape

    @property
    def sizes(self) -> dict[str, int]:
        return dict(zip(self.dims, self.nodes.shape))

    def __repr__(self) -> str:
        dims = ", ".join(f"{d}: {n}" for d, n in self.sizes.items())
        return f"<Action ({dims})>"

    def _axis(self, dim: str | None) -> int:
        if dim is None or dim == "":
            if not self.dims:
                raise ValueError("action has no dimensions")
            return 0
        try:
            return self.dims.index(dim)
        except ValueError:
            raise ValueError(f"no dimension {dim!r} (dims: {self.dims})") from None

    def _new(self, nodes: np.ndarray, dims: Sequence[str], coords: dict[str, list]) -> Action:
        return type(self)(nodes, dims, {d: coords[d] for d in dims if d in coords})

    # -- verbs --------------------------------------------------------------------------------------
    def map(
        self,
        payload: Callable | np.ndarray | Sequence[Callable],
        yields: Coord | None = None,
        requirements: Requirements | None = None,
        name: str | None = None,
    ) -> Action:
        """Apply ``payload`` to every element (or ``payload[i]`` to element ``i`` for an array of them)."""
        flat = self.nodes.ravel()
        if callable(payload):
            pays = [payload] * flat.size
        else:
            parr = np.asarray(payload, dtype=object)
            if parr.shape != self.nodes.shape:
                raise ValueError(f"payload array shape {parr.shape} does not match action shape {self.shape}")
            pays = list(parr.ravel())
        nout = len(yields[1]) if yields else 1
        outs = []
        for p, x in zip(pays, flat):
            node = Node(p, [x], name=name, num_outputs=nout, requirements=requirements, generator=bool(yields) or None)
            outs.append([node.output(i) for i in range(nout)] if yields else node.output())
        if yields:
            ydim, yvals = _norm_dim(yields, nout)
            arr = _obj_array([o for row in outs for o in row], (*self.shape, nout))
            return self._new(arr, [*self.dims, ydim], {**self.coords, ydim: yvals})
        return self._new(_obj_array(outs, self.shape), self.dims, self.coords)

    def reduce(
        self,
        payload: Callable,
        dim: str | None = None,
        batch_size: int = 0,
        keep_dim: bool = False,
        requirements: Requirements | None = None,
        name: str | None = None,
    ) -> Action:
        """One ``payload(*elements)`` task per position of the other dims, along ``dim``. With
        ``batch_size > 1`` the reduction is a tree of tasks taking at most ``batch_size`` inputs each
        (the payload must then be associative, like sum/max/min/prod)."""
        ax = self._axis(dim)
        moved = np.moveaxis(self.nodes, ax, -1)
        rest_shape = moved.shape[:-1]
        outs = []
        for idx in np.ndindex(*rest_shape):
            items = list(moved[idx])
            outs.append(_tree(payload, items, batch_size, requirements, name))
        arr = _obj_array(outs, rest_shape)
        dims = [d for i, d in enumerate(self.dims) if i != ax]
        if keep_dim:
            arr = np.expand_dims(arr, ax)
            d = self.dims[ax]
            return self._new(arr, self.dims, {**self.coords, d: [None]})
        return self._new(arr, dims, self.coords)

    def _reduction(self, fn: Callable, dim: str | None, batch_size: int, keep_dim: bool, name: str) -> Action:
        return self.reduce(fn, dim=dim, batch_size=batch_size, keep_dim=keep_dim, name=name)

    def sum(self, dim: str | None = None, batch_size: int = 0, keep_dim: bool = False) -> Action:
        return self._reduction(backends.sum, dim, batch_size, keep_dim, "sum")

    def prod(self, dim: str | None = None, batch_size: int = 0, keep_dim: bool = False) -> Action:
        return self._reduction(backends.prod, dim, batch_size, keep_dim, "prod")

    def max(self, dim: str | None = None, batch_size: int = 0, keep_dim: bool = False) -> Action:
        return self._reduction(backends.max, dim, batch_size, keep_dim, "max")

    def min(self, dim: str | None = None, batch_size: int = 0, keep_dim: bool = False) -> Action:
        return self._reduction(backends.min, dim, batch_size, keep_dim, "min")

    def mean(self, dim: str | None = None, batch_size: int = 0, keep_dim: bool = False) -> Action:
        """Mean along ``dim``; batched as a tree of (sum, count) partials so the result stays exact."""
        if batch_size and batch_size > 1 and self.sizes[self.dims[self._axis(dim)]] > batch_size:
            ax = self._axis(dim)
            moved = np.moveaxis(self.nodes, ax, -1)
            outs = []
            for idx in np.ndindex(*moved.shape[:-1]):
                items = list(moved[idx])
                parts = [Node(_sum_count, items[i : i + batch_size], name="mean.partial").output()
                         for i in range(0, len(items), batch_size)]  # fmt: skip
                top = _tree(_merge_sum_count, parts, batch_size, None, "mean.merge")
                outs.append(Node(_finish_mean, [top], name="mean").output())
            arr = _obj_array(outs, moved.shape[:-1])
            if keep_dim:
                return self._new(np.expand_dims(arr, ax), self.dims, {**self.coords, self.dims[ax]: [None]})
            return self._new(arr, [d for i, d in enumerate(self.dims) if i != ax], self.coords)
        return self._reduction(backends.mean, dim, 0, keep_dim, "mean")

    def std(self, dim: str | None = None, keep_dim: bool = False) -> Action:
        return self._reduction(backends.std, dim, 0, keep_dim, "std")

    def var(self, dim: str | None = None, keep_dim: bool = False) -> Action:
        return self._reduction(backends.var, dim, 0, keep_dim, "var")

    def concatenate(self, dim: str | None = None, axis: int = 0, batch_size: int = 0, keep_dim: bool = False) -> Action:
        """Concatenate the arrays along ``dim`` (numpy axis ``axis``) into one per position."""
        return self.reduce(functools.partial(backends.concatenate, axis=axis), dim, batch_size, keep_dim,
                           name="concatenate")  # fmt: skip

    def stack(self, dim: str | None = None, axis: int = 0, keep_dim: bool = False) -> Action:
        """Stack the arrays along ``dim`` as a new numpy axis ``axis``."""
        return self.reduce(functools.partial(backends.stack, axis=axis), dim, 0, keep_dim, name="stack")

    def join(self, other: Action, dim: str | Coord, match_coord_values: bool = False) -> Action:
        """Concatenate two actions along an existing dimension, or stack them along a new one."""
        name = dim[0] if isinstance(dim, tuple) else dim
        if name in self.dims and name in other.dims:
            if match_coord_values:
                other = other.transpose(*self.dims)
            elif other.dims != self.dims:
                raise ValueError(f"cannot join: dims {self.dims} vs {other.dims}")
            ax = self.dims.index(name)
            for d in self.dims:
                if d != name and self.sizes[d] != other.sizes[d]:
                    raise ValueError(f"cannot join along {name!r}: dimension {d!r} sizes differ")
            arr = np.concatenate([self.nodes, other.nodes], axis=ax)
            coords = {**self.coords, name: self.coords[name] + other.coords[name]}
            if isinstance(dim, tuple):
                coords[name] = list(dim[1])
            return self._new(arr, self.dims, coords)
        if other.dims != self.dims or other.shape != self.shape:
            other = other.transpose(*self.dims) if set(other.dims) == set(self.dims) else other
            if other.shape != self.shape:
                raise ValueError(f"cannot stack shapes {self.sizes} and {other.sizes} along new dim {name!r}")
        name, values = _norm_dim(dim, 2)
        arr = np.stack([self.nodes, other.nodes], axis=-1)
        return self._new(arr, [*self.dims, name], {**self.coords, name: values})

    def transform(self, func: Callable[..., Action], params: Sequence[Any], dim: str | Coord, axis: int = -1) -> Action:
        """``func(self, *p)`` for each parameter ``p``; the results stacked along a new dimension whose
        coordinates are the parameters."""
        results = [func(self, *p) if isinstance(p, tuple) else func(self, p) for p in params]
        first = results[0]
        for r in results[1:]:
            if r.shape != first.shape or r.dims != first.dims:
                raise ValueError("transform: every result must have the same dims and shape")
        name, values = _norm_dim(dim if isinstance(dim, tuple) else (dim, list(params)), len(params))
        ax = axis if axis >= 0 else first.nodes.ndim + 1 + axis
        arr = np.stack([r.nodes for r in results], axis=ax)
        dims = list(first.dims)
        dims.insert(ax, name)
        return self._new(arr, dims, {**first.coords, name: values})

    def expand(self, dim: str | Coord, dim_size: int | None = None, axis: int = 0,
               requirements: Requirements | None = None) -> Action:  # fmt: skip
        """Split each element's array along numpy ``axis`` into a new dimension (one task per piece)."""
        if isinstance(dim, tuple):
            name, values = dim[0], list(dim[1])
            size = len(values)
        else:
            if dim_size is None:
                raise ValueError("expand needs dim_size or a (name, values) coordinate")
            name, size, values = dim, dim_size, list(range(dim_size))
        outs = []
        for x in self.nodes.ravel():
            for i in range(size):
                outs.append(Node(functools.partial(backends.take, i=i, axis=axis), [x], name="take",
                                 requirements=requirements).output())  # fmt: skip
        return self._new(_obj_array(outs, (*self.shape, size)), [*self.dims, name], {**self.coords, name: values})

    def broadcast(self, other: Action, exclude: Sequence[str] | None = None) -> Action:
        """Repeat this action's elements over ``other``'s dimensions (those not in ``exclude``)."""
        exclude = set(exclude or ())
        target_dims = [d for d in other.dims if d not in exclude] + [d for d in self.dims if d not in other.dims]
        for d in self.dims:
            if d in other.dims and d not in exclude and self.coords[d] != other.coords[d] and self.sizes[d] != 1:
                raise ValueError(f"cannot broadcast: coordinates of {d!r} differ")
        sizes = {**{d: other.sizes[d] for d in other.dims}, **self.sizes}
        for d in other.dims:
            if d not in exclude:
                sizes[d] = other.sizes[d]
        shape = tuple(sizes[d] for d in target_dims)
        out = np.empty(shape, dtype=object)
        for idx in np.ndindex(*shape):
            pos = dict(zip(target_dims, idx))
            src = tuple(0 if self.sizes[d] == 1 and sizes[d] != 1 else pos[d] for d in self.dims)
            out[idx] = self.nodes[src]
        coords = {d: (other.coords[d] if d in other.dims and d not in exclude else self.coords[d]) for d in target_dims}
        return self._new(out, target_dims, coords)

    def transpose(self, *dims: str) -> Action:
        order = [self._axis(d) for d in dims]
        return self._new(np.transpose(self.nodes, order), list(dims), self.coords)

    def flatten(self, new_dim: str, keep_dims: Sequence[str] = (), reset_coords: bool = False) -> Action:
        """Merge every dimension not in ``keep_dims`` into ``new_dim`` (coords: tuples of the old ones)."""
        keep = [d for d in self.dims if d in keep_dims]
        flat = [d for d in self.dims if d not in keep]
        t = self.transpose(*keep, *flat)
        n = int(np.prod([self.sizes[d] for d in flat])) if flat else 1
        arr = t.nodes.reshape(*[self.sizes[d] for d in keep], n)
        if reset_coords:
            vals: list = list(range(n))
        elif len(flat) == 1:
            vals = list(self.coords[flat[0]])
        else:
            vals = list(itertools.product(*[self.coords[d] for d in flat]))
        return self._new(arr, [*keep, new_dim], {**{d: self.coords[d] for d in keep}, new_dim: vals})

    def select(self, criteria: dict[str, Any] | None = None, drop: bool = False, **kw: Any) -> Action:
        """Select by coordinate value: a scalar removes the dimension, a list keeps it."""
        crit = {**(criteria or {}), **kw}
        idx = {}
        for d, v in crit.items():
            coords = self.coords[self.dims[self._axis(d)]]
            try:
                idx[d] = [coords.index(x) for x in v] if isinstance(v, (list, tuple, np.ndarray)) else coords.index(v)
            except ValueError:
                raise KeyError(f"{v!r} not in coordinates of {d!r}: {coords}") from None
        return self.iselect(idx, drop=drop)

    sel = select

    def iselect(self, criteria: dict[str, Any] | None = None, drop: bool = False, **kw: Any) -> Action:
        """Select by integer position (scalar removes the dimension, a list keeps it)."""
        crit = {**(criteria or {}), **kw}
        nodes, dims, coords = self.nodes, list(self.dims), dict(self.coords)
        for d, v in crit.items():
            ax = dims.index(d) if d in dims else self._axis(d)
            if isinstance(v, (list, tuple, np.ndarray)):
                v = list(v)
                nodes = np.take(nodes, v, axis=ax)
                coords[d] = [coords[d][i] for i in v]
            else:
                nodes = np.take(nodes, v, axis=ax)
                dims.pop(ax)
                coords.pop(d)
        return self._new(nodes, dims, coords)

    isel = iselect

    # -- arithmetic --------------------------------------------------------------------------------
    def _binary(self, other: Action | Any, op: Callable, name: str) -> Action:
        if isinstance(other, Action):
            o = other.broadcast(self) if other.shape != self.shape or other.dims != self.dims else other
            if o.dims != self.dims:
                o = o.transpose(*self.dims)
            outs = [Node(op, [a, b], name=name).output() for a, b in zip(self.nodes.ravel(), o.nodes.ravel())]
            return self._new(_obj_array(outs, self.shape), self.dims, self.coords)
        outs = [Node(op, [a, other], name=name).output() for a in self.nodes.ravel()]
        return self._new(_obj_array(outs, self.shape), self.dims, self.coords)

    def add(self, other: Action | Any) -> Action:
        return self._binary(other, operator.add, "add")

    def subtract(self, other: Action | Any) -> Action:
        return self._binary(other, operator.sub, "subtract")

    def multiply(self, other: Action | Any) -> Action:
        return self._binary(other, operator.mul, "multiply")

    def divide(self, other: Action | Any) -> Action:
        return self._binary(other, operator.truediv, "divide")

    def power(self, other: Action | Any) -> Action:
        return self._binary(other, operator.pow, "power")

    __add__, __sub__, __mul__, __truediv__, __pow__ = add, subtract, multiply, divide, power

    # -- lowering ----------------------------------------------------------------------------------
    def graph(self) -> Graph:
        """The low-level graph; its outputs are this action's elements (in C order)."""
        return _build_graph([self])[0]


def _tree(payload: Callable, items: list, batch_size: int, requirements: Requirements | None, name: str | None) -> NodeOutput:
    if batch_size and batch_size > 1:
        level = items
        while len(level) > batch_size:
            level = [Node(payload, level[i : i + batch_size], name=name, requirements=requirements).output()
                     for i in range(0, len(level), batch_size)]  # fmt: skip
        items = level
    return Node(payload, items, name=name, requirements=requirements).output()


class Labelled:
    """Values of a fluent action's outputs in its shape, with its dims/coords. ``sel`` as on actions;
    ``to_xarray()`` when xarray is installed."""

    def __init__(self, values: np.ndarray, dims: list[str], coords: dict[str, list]) -> None:
        self.values, self.dims, self.coords = values, dims, coords

    @property
    def shape(self) -> tuple[int, ...]:
        return self.values.shape

    def sel(self, **kw: Any) -> Any:
        idx = []
        dims = []
        for d in self.dims:
            if d in kw:
                idx.append(self.coords[d].index(kw[d]))
            else:
                idx.append(slice(None))
                dims.append(d)
        v = self.values[tuple(idx)]
        if not dims:
            return v
        return Labelled(v, dims, {d: self.coords[d] for d in dims})

    def item(self) -> Any:
        if self.values.size != 1:
            raise ValueError(f"{self.values.size} values, not one")
        return self.values.ravel()[0]

    def tolist(self) -> list:
        return self.values.tolist()

    def to_xarray(self) -> Any:
        import xarray as xr

        return xr.DataArray(self.values, dims=self.dims, coords=self.coords)

    def __repr__(self) -> str:
        return f"<Labelled dims={self.dims} shape={self.shape}>"


def _build_graph(actions: Sequence[Action]) -> list[Graph]:
    g = Graph()
    handles: dict[int, Handle] = {}

    def handle_of(x: Any) -> Any:
        if isinstance(x, NodeOutput):
            return handles[id(x.node)][x.index]
        return x

    # iterative post-order over nodes
    roots = [o.node for a in actions for o in a.nodes.ravel()]
    seen: set[int] = set()
    keep: list[Node] = []  # keep nodes alive so id() stays unique
    for root in roots:
        if id(root) in seen:
            continue
        stack: list[tuple[Node, bool]] = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                if id(node) in handles:
                    continue
                args = [handle_of(x) for x in node.inputs]
                handles[id(node)] = g.add_task(
                    node.payload, *args, name=node.name, num_outputs=node.num_outputs,
                    requirements=node.requirements, generator=node.generator, kwargs=node.kwargs,
                )  # fmt: skip
                keep.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            for x in node.inputs:
                if isinstance(x, NodeOutput) and id(x.node) not in seen:
                    stack.append((x.node, False))
    outs = []
    for a in actions:
        outs.extend(handle_of(o) for o in a.nodes.ravel())
    g.set_outputs(list(dict.fromkeys(outs)))
    if len(actions) == 1:
        a = actions[0]
        hs = [handle_of(o) for o in a.nodes.ravel()]
        shape, dims, coords = a.shape, list(a.dims), dict(a.coords)

        def layout(outputs: dict[Handle, Any]) -> Labelled:
            return Labelled(_obj_array([outputs[h] for h in hs], shape), dims, coords)

        g.layout = layout  # type: ignore[attr-defined]
    return [g]


def from_source(
    payloads: Any,
    yields: Coord | None = None,
    dims: Sequence[str] | None = None,
    coords: dict[str, list] | None = None,
    requirements: Requirements | None = None,
    name: str | None = None,
) -> Action:
    """One source task per payload (an array-like of callables, nested lists allowed). ``yields``: each
    payload is a generator whose outputs form a new trailing dimension."""
    arr = np.empty(0, dtype=object)
    if isinstance(payloads, np.ndarray):
        arr = payloads.astype(object)
    elif callable(payloads):
        arr = _obj_array([payloads], (1,))
    else:
        shape = _nested_shape(payloads)
        arr = _obj_array(list(_flatten(payloads)), shape)
    if dims is None:
        dims = [f"dim_{i}" for i in range(arr.ndim)]
    if len(dims) != arr.ndim:
        raise ValueError(f"{arr.ndim}-d payloads but dims {list(dims)}")
    nout = len(yields[1]) if yields else 1
    outs = []
    for p in arr.ravel():
        node = Node(p, (), name=name, num_outputs=nout, requirements=requirements, generator=bool(yields) or None)
        outs.extend(node.output(i) for i in range(nout))
    if yields:
        ydim, yvals = _norm_dim(yields, nout)
        return Action(_obj_array(outs, (*arr.shape, nout)), [*dims, ydim], {**(coords or {}), ydim: yvals})
    return Action(_obj_array(outs, arr.shape), dims, coords)


def _nested_shape(x: Any) -> tuple[int, ...]:
    if isinstance(x, (list, tuple)) and not callable(x):
        if not x:
            return (0,)
        inner = _nested_shape(x[0])
        for y in x[1:]:
            if _nested_shape(y) != inner:
                raise ValueError("ragged nested payload lists")
        return (len(x), *inner)
    return ()


def _flatten(x: Any):
    if isinstance(x, (list, tuple)):
        for y in x:
            yield from _flatten(y)
    else:
        yield x


def merge(*actions: Action) -> Graph:
    """One graph computing several actions (shared sub-graphs run once); outputs are all their elements."""
    return _build_graph(actions)[0]
