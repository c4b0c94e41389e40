"""The ZeroMQ executor: controller (a thread in the caller), one host agent per machine, worker processes.

Names are imported lazily: an agent or worker process imports only its own module."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"Cluster": "cluster", "LocalCluster": "cluster", "RemoteTraceback": "controller",
            "RunResult": "controller", "TaskFailed": "controller"}  # fmt: skip

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'ecflow_lab.cascade.executor' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
