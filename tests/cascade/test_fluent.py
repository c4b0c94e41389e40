"""The fluent API: graph shapes and semantics (run in-process), and a map-reduce on real workers."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

from ecflow_lab.cascade import LocalCluster, from_source
from ecflow_lab.cascade.fluent import Action, merge
from ecflow_lab.cascade.graph import Graph


def member(i: int, n: int = 4) -> np.ndarray:
    return np.full(n, float(i))


def values(action: Action):
    g = action.graph()
    return g.layout(g.run_local())


def ens(n=6):
    return from_source([functools.partial(member, i) for i in range(n)], dims=["member"])


def test_map_reduce_numbers_on_real_workers():
    action = ens(10).map(np.sqrt).sum("member")
    with LocalCluster(workers=2) as cluster:
        res = cluster.run(action)
    expected = sum(np.sqrt(float(i)) for i in range(10))
    np.testing.assert_allclose(res.value, np.full(4, expected))
    assert res.array.dims == [] and res.array.item() is res.value
    # one task per member, a map per member, one reducer
    assert len(res.trace.spans()) == 21


def test_reductions_and_batching():
    a = ens(10)
    np.testing.assert_allclose(values(a.sum("member")).item(), np.full(4, 45.0))
    np.testing.assert_allclose(values(a.sum("member", batch_size=3)).item(), np.full(4, 45.0))
    np.testing.assert_allclose(values(a.mean("member", batch_size=3)).item(), np.full(4, 4.5))
    np.testing.assert_allclose(values(a.mean("member")).item(), np.full(4, 4.5))
    np.testing.assert_allclose(values(a.max("member", batch_size=4)).item(), np.full(4, 9.0))
    np.testing.assert_allclose(values(a.min("member")).item(), np.zeros(4))
    np.testing.assert_allclose(values(a.std("member")).item(), np.full(4, np.std(np.arange(10.0))))
    # batching makes a tree: no task has more than batch_size inputs
    g = a.sum("member", batch_size=3).graph()
    assert max(len(t.inputs) for t in g.tasks.values()) == 3
    assert values(a.sum("member", keep_dim=True)).shape == (1,)


def test_two_dims_select_and_reduce_other_dim():
    pays = [[functools.partial(lambda i, j: 10 * i + j, i, j) for j in range(3)] for i in range(2)]
    a = from_source(pays, dims=["x", "step"], coords={"step": [0, 6, 12]})
    assert a.sizes == {"x": 2, "step": 3}
    assert values(a.sum("x")).tolist() == [10, 12, 14]
    assert values(a.sel(step=6)).tolist() == [1, 11]
    assert values(a.sel(step=[6, 12])).tolist() == [[1, 2], [11, 12]]
    assert values(a.isel(x=1)).tolist() == [10, 11, 12]
    with pytest.raises(KeyError, match="18"):
        a.sel(step=18)


def test_join_transform_expand_broadcast_flatten():
    a = from_source([lambda: 1, lambda: 2], dims=["x"])
    b = from_source([lambda: 3], dims=["x"])
    j = a.join(b, "x")
    assert values(j).tolist() == [1, 2, 3]
    s = a.join(a.multiply(10), ("kind", ["raw", "scaled"]))
    assert s.dims == ["x", "kind"] and values(s).tolist() == [[1, 10], [2, 20]]
    t = a.transform(lambda act, k: act.add(k), [100, 200], "offset")
    assert t.dims == ["offset", "x"] or t.dims == ["x", "offset"]
    lab = values(t)
    assert lab.sel(offset=200, x=1) == 202
    e = from_source([lambda: np.arange(6).reshape(3, 2)], dims=["f"]).expand(("row", ["a", "b", "c"]), axis=0)
    assert e.sizes == {"f": 1, "row": 3}
    np.testing.assert_array_equal(values(e).sel(f=0, row="c"), [4, 5])
    grid = from_source([[lambda: 0] * 3] * 2, dims=["x", "y"])
    bc = a.broadcast(grid)
    assert bc.sizes == {"x": 2, "y": 3}
    assert values(bc).tolist() == [[1, 1, 1], [2, 2, 2]]
    assert values(bc.add(grid)).tolist() == [[1, 1, 1], [2, 2, 2]]
    fl = bc.flatten("all")
    assert fl.sizes == {"all": 6} and fl.coords["all"][0] == (0, 0)
    # the broadcast re-uses tasks: 2 sources + nothing else
    assert len(bc.graph()) == 2


def test_arithmetic_concatenate_stack():
    a = ens(3)
    assert values((a + 1) * 2 - a).sel(member=2)[0] == (2 + 1) * 2 - 2
    c = values(a.concatenate("member")).item()
    assert c.shape == (12,)
    st = values(a.stack("member", axis=0)).item()
    assert st.shape == (3, 4)


def gen_steps(base: int):
    for s in range(3):
        yield base + s


def test_generator_yields_make_a_dimension():
    a = from_source([functools.partial(gen_steps, 10), functools.partial(gen_steps, 20)], dims=["m"],
                    yields=("step", [0, 6, 12]))
    assert a.sizes == {"m": 2, "step": 3}
    g = a.graph()
    assert len(g) == 2 and all(t.num_outputs == 3 and t.generator for t in g.tasks.values())
    assert values(a.map(lambda x: x * 2)).tolist() == [[20, 22, 24], [40, 42, 44]]


def test_requirements_and_merge_and_serialisation():
    from ecflow_lab.cascade.graph import Requirements

    a = ens(2).map(np.sum, requirements=Requirements(needs_gpu=True))
    g = a.graph()
    assert sum(t.requirements.needs_gpu for t in g.tasks.values()) == 2
    m = merge(a, ens(2).sum("member"))
    assert len(m.outputs) == 3
    g2 = Graph.from_dict(json.loads(json.dumps(m.to_dict())))
    assert [t.requirements for t in g2.tasks.values()] == [t.requirements for t in m.tasks.values()]
    r1, r2 = m.run_local(), g2.run_local()
    for h in m.outputs:
        np.testing.assert_allclose(r1[h], r2[h])


def test_large_fluent_graph_lowers_to_one_task_per_node():
    g = from_source([functools.partial(member, i) for i in range(3000)], dims=["m"]).map(np.sqrt).sum("m").graph()
    assert len(g) == 6001
    assert len(g.outputs) == 1 and len(g.tasks[g.outputs[0].task].inputs) == 3000
