"""The ZeroMQ executor: controller (a thread in the caller), one host agent per machine, worker processes.

Names are imported lazily: an agent or worker process imports only its own module."""

from __future__ import annotations

from ..._lazy import lazy_exports

_EXPORTS = {"Cluster": ".cluster", "LocalCluster": ".cluster", "RemoteTraceback": ".controller",
            "RunResult": ".controller", "TaskFailed": ".controller"}  # fmt: skip

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
