"""The notebook layer: magics, the live node tree, the Gantt and the transfer widget.

It only presents and forwards user intent: every action goes through the same ``Client`` /
``TransferClient`` / ``LocalCluster`` APIs a plain script uses. Heavy imports happen on first use.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_LAZY: dict[str, str] = {
    "NodeTree": "ecflow_lab.jupyter.tree",
    "RowTable": "ecflow_lab.jupyter.rows",
    "Gantt": "ecflow_lab.jupyter.gantt",
    "SuiteGantt": "ecflow_lab.jupyter.gantt",
    "TransferWidget": "ecflow_lab.jupyter.transfers",
    "load_ipython_extension": "ecflow_lab.jupyter.magics",
    "unload_ipython_extension": "ecflow_lab.jupyter.magics",
}

__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
