"""Helpers shared by test modules (importable as ``_support``: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

CLIENT = f"{sys.executable} -m ecflow_lab client"  # the child-command CLI as a job script calls it


def wait_for(pred: Callable[[], object], timeout: float = 60.0, interval: float = 0.05) -> bool:
    """Poll ``pred`` until it is true (True) or ``timeout`` seconds pass (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(interval)
    return False
