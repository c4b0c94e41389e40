"""Project-wide test rules: no test may leave a process behind."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ../shared folder (conformance corpus, bench anchors, references)."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is not present")
    return SHARED


def _children() -> set[int]:
    try:
        return {p.pid for p in psutil.Process(os.getpid()).children(recursive=True)}
    except psutil.Error:
        return set()


@pytest.fixture(autouse=True)
def _no_leftover_processes(request: pytest.FixtureRequest):
    """Fail a test that leaves child processes running (they get killed so the next test is clean)."""
    before = _children()
    yield
    deadline = time.monotonic() + 5.0
    left: set[int] = set()
    while time.monotonic() < deadline:
        left = _children() - before
        if not left:
            return
        time.sleep(0.05)
    procs = []
    for pid in left:
        try:
            p = psutil.Process(pid)
            procs.append(f"{pid} {' '.join(p.cmdline())[:120]}")
            p.kill()
        except psutil.Error:
            pass
    if procs:
        pytest.fail("test left processes behind:\n  " + "\n  ".join(procs), pytrace=False)
