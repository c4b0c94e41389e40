"""The suite server: one process, one thread owning the definition.

``SuiteServer`` (``app.py``) is the process's sockets and threads; ``Scheduler`` (``scheduler.py``) is the
socket-free scheduling core the simulator reuses; ``Engine`` (``engine.py``) is the request layer on top.
Start one from the shell with ``ecflow-lab server start --home DIR --port N``.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_LAZY = {"SuiteServer": ".app", "Scheduler": ".scheduler", "Engine": ".engine"}

__all__ = ["SuiteServer", "Scheduler", "Engine"]
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
