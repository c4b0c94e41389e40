"""The Dask backend: our graphs on distributed, and Dask graphs on our executor."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from ecflow_lab.cascade import LocalCluster, from_source
from ecflow_lab.cascade.graph import Graph

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")


def member(i: int) -> np.ndarray:
    return np.full(3, float(i))


def split3(x):
    yield x
    yield x + 1
    yield x + 2


@pytest.fixture(scope="module")
def dask_client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc:
        with distributed.Client(lc) as client:
            yield client


def test_fluent_action_on_dask(dask_client):
    from ecflow_lab.cascade.dask import DaskBackend

    action = from_source([functools.partial(member, i) for i in range(6)], dims=["m"]).map(np.sqrt).mean("m")
    res = DaskBackend(dask_client).run(action)
    np.testing.assert_allclose(res.value, np.full(3, np.mean(np.sqrt(np.arange(6.0)))))
    spans = [s for s in res.trace.spans() if s["phase"] == "compute"]
    assert len(spans) == 13 and all(s["worker"].startswith("tcp://") for s in spans)


def test_multi_output_graph_on_dask(dask_client):
    from ecflow_lab.cascade.dask import run_on_dask

    g = Graph()
    s = g.add_task(split3, 10, num_outputs=3)
    t = g.add_task(lambda a, b, c: a * b * c, s[0], s[1], s[2])
    g.set_outputs([t, s[2]])
    res = run_on_dask(g, dask_client)
    assert res[t] == 10 * 11 * 12 and res[s[2]] == 12


def test_dask_collection_runs_on_our_executor():
    x = da.arange(100, chunks=10)
    y = ((x + 1) ** 2).sum()
    g = Graph.from_dask(y)
    assert len(g) > 10
    with LocalCluster(workers=2) as cluster:
        res = cluster.run(g)
    assert res.value == int(((np.arange(100) + 1) ** 2).sum())


def test_legacy_dask_dict_graph():
    from operator import add

    dsk = {"a": 1, "b": (add, "a", 2), "c": (sum, ["a", "b"])}
    g = Graph.from_dask(dsk, ["c", "b"])
    out = g.run_local()
    assert [out[h] for h in g.outputs] == [4, 3]
