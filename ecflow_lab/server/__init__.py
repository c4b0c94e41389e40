"""The suite server: one process, one thread owning the definition.

``SuiteServer`` (``app.py``) is the process's sockets and threads; ``Scheduler`` (``scheduler.py``) is the
socket-free scheduling core the simulator reuses; ``Engine`` (``engine.py``) is the request layer on top.
Start one from the shell with ``ecflow-lab server start --home DIR --port N``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SuiteServer", "Scheduler", "Engine"]


def __getattr__(name: str) -> Any:
    if name == "SuiteServer":
        from ecflow_lab.server.app import SuiteServer

        return SuiteServer
    if name == "Scheduler":
        from ecflow_lab.server.scheduler import Scheduler

        return Scheduler
    if name == "Engine":
        from ecflow_lab.server.engine import Engine

        return Engine
    raise AttributeError(f"module 'ecflow_lab.server' has no attribute {name!r}")
