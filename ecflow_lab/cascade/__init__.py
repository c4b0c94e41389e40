"""ecflow_lab.cascade — the DAG engine: a fluent API, a plain-data task graph, a scheduler for
heterogeneous workers, a ZeroMQ executor with shared-memory data and a Dask backend.

    from ecflow_lab.cascade import from_source, LocalCluster
    action = from_source([partial(load, m) for m in members], dims=["member"]).map(regrid).mean("member")
    with LocalCluster(workers=4) as cluster:
        result = cluster.run(action)

Names are imported lazily so worker processes start fast.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "Graph": ".graph", "Handle": ".graph", "Requirements": ".graph", "GraphError": ".graph", "mark": ".graph",
    "Action": ".fluent", "from_source": ".fluent", "merge": ".fluent", "Node": ".fluent",
    "LocalCluster": ".executor", "Cluster": ".executor", "RunResult": ".executor", "TaskFailed": ".executor",
    "RemoteTraceback": ".executor",
    "Trace": ".trace",
    "DaskBackend": ".dask", "run_on_dask": ".dask",
    "WorkerSpec": ".schedule", "plan": ".schedule",
}  # fmt: skip

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
