"""Differential: our simulator (the server's Scheduler) counts the same completions as ecFlow 5.9.2's.

Each definition gets ``verify complete:999`` on every task and family; ecFlow's simulator then reports
how often each completed, and ours must count the same. One subprocess runs ecFlow for all cases.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ecflow_lab.defs import Defs
from ecflow_lab.server import simulate

HERE = Path(__file__).resolve().parent
ECFLOW_PY = "/usr/bin/python3"
sys.path.insert(0, str(HERE / "data"))
from sim_cases import CASES  # noqa: E402


def with_verify(text: str) -> str:
    out = []
    for ln in text.splitlines():
        out.append(ln)
        s = ln.strip()
        if s.startswith(("task ", "family ")):
            out.append(ln[: len(ln) - len(s)] + "  verify complete:999")
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def ecflow_counts() -> dict:
    if not os.path.exists(ECFLOW_PY) or subprocess.run([ECFLOW_PY, "-c", "import ecflow"],
                                                       capture_output=True).returncode:
        pytest.skip("Debian's python3-ecflow is not installed")
    r = subprocess.run([ECFLOW_PY, str(HERE / "_ecflow_simulate.py")],
                       input=json.dumps({k: with_verify(v) for k, v in CASES.items()}),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.ecflow
@pytest.mark.parametrize("name", sorted(CASES))
def test_completion_counts_match_ecflow(name: str, ecflow_counts: dict) -> None:
    want = dict(ecflow_counts[name])
    assert "error" not in want, want
    res = simulate.run(Defs.from_string(with_verify(CASES[name]), name + ".def"))
    not_completed = sorted(re.findall(r"suite '(/\S+)' has not completed", res.report))
    assert not_completed == want.pop("not completed")
    if not_completed:
        return        # ecFlow stops there, before checking verify attributes
    assert want, "ecFlow reported no counts"
    ours = {p: actual for p, _, _, actual in res.verifies}
    assert {p: ours.get(p) for p in want} == want
