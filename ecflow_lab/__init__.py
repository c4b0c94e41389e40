"""ecflow_lab: ECMWF-style operational workflow tooling for Jupyter.

The public surface uses the names ecFlow users already know (``Defs``, ``Suite``, ``Family``, ``Task``,
``Client``, ...). Subsystems are imported lazily so that ``import ecflow_lab`` stays cheap: a job script
sending child commands should not pay for Bokeh or Dask.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

__version__ = "0.1.0"

# Names served by a module other than ecflow_lab.defs (which serves every name in its __all__).
_LAZY: dict[str, str] = {
    "Client": "ecflow_lab.client",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        return getattr(importlib.import_module(module), name)
    # ``from ecflow_lab import protocol`` asks here before importing the submodule: answer at once rather
    # than import the whole definition model (job-side child commands must start fast).
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is None:
        defs = importlib.import_module("ecflow_lab.defs")
        if name in getattr(defs, "__all__", ()):
            return getattr(defs, name)
    raise AttributeError(f"module 'ecflow_lab' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext ecflow_lab``: register the %ecflow, %%suite, %cascade and %ecpds magics."""
    from ecflow_lab.jupyter.magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """Stop everything the magics started on behalf of this kernel."""
    from ecflow_lab.jupyter.magics import unload_ipython_extension as _unload

    _unload(ipython)
