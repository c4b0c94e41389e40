"""``ecflow-lab demo`` as a user runs it: a subprocess, its summary, its HTML, nothing left running."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

TASKS = ("/demo/obs/fetch", "/demo/obs/qc", "/demo/forecast/model", "/demo/products/plot",
         "/demo/products/archive")


def _demo_cmd(*args: str) -> list[str]:
    exe = shutil.which("ecflow-lab")
    return [exe, "demo", *args] if exe else [sys.executable, "-m", "ecflow_lab", "demo", *args]


def _procs_using(path: Path) -> list[str]:
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or ())
        except psutil.Error:
            continue
        if str(path) in cmd and p.info["pid"] != os.getpid():
            found.append(f"{p.info['pid']} {cmd[:150]}")
    return found


def _assert_nothing_left(home: Path) -> None:
    deadline = time.monotonic() + 5
    while _procs_using(home) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _procs_using(home), _procs_using(home)


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    out, home = tmp_path / "out", tmp_path / "home"
    r = subprocess.run(_demo_cmd("--out", str(out), "--home", str(home)), capture_output=True, text=True,
                       timeout=180, cwd=tmp_path)
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    text = r.stdout
    assert "== suite /demo: complete" in text
    for task in TASKS:   # every task reported complete, with its number of runs
        m = re.search(rf"^\s+{re.escape(task)}\s+(\w+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)$", text, re.M)
        assert m, f"no summary line for {task}:\n{text}"
        assert m.group(1) == "complete"
        assert int(m.group(2)) == (3 if task == "/demo/forecast/model" else 1)   # repeat 0 12 6: 3 runs
    assert "event data_ready = true" in text and "repeat STEP = 12" in text and "meter progress = 50" in text
    assert re.search(r"== DAG: 17 tasks on \d worker\(s\)", text), text
    assert "verified against a local computation" in text
    m = re.search(r"DataFileId=(\d+) Done .*\n\s+checksum sha256:([0-9a-f]{64}) verified at (\S+)", text)
    assert m, text
    arrived = Path(m.group(3))
    import hashlib

    assert hashlib.sha256(arrived.read_bytes()).hexdigest() == m.group(2)
    html = out / "ecflow-lab-demo.html"
    assert f"Gantt (HTML): {html}" in text
    page = html.read_text()
    assert "Bokeh" in page and "/demo/forecast/model" in page and "anomaly" in page
    # real jobs ran: their output files hold what the scripts echoed
    assert "model run for step 12" in (home / "demo" / "forecast" / "model.1").read_text()
    _assert_nothing_left(home)


def test_demo_failing_step_exits_nonzero_and_stops_everything(tmp_path: Path) -> None:
    home = tmp_path / "home"
    r = subprocess.run(_demo_cmd("--out", str(tmp_path), "--home", str(home), "--timeout", "0.05"),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "step 'suite' failed: /demo is" in r.stderr and "not complete" in r.stderr
    assert not (tmp_path / "ecflow-lab-demo.html").exists()
    _assert_nothing_left(home)


def test_demo_interrupted_stops_everything(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = subprocess.Popen(_demo_cmd("--out", str(tmp_path), "--home", str(home)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:   # interrupt while the DAG's cluster is starting (server already up)
            if line.startswith("[2/4]"):
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, out + err
    assert "interrupted during step" in err
    _assert_nothing_left(home)


def test_demo_bad_out_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    r = subprocess.run(_demo_cmd("--out", str(blocker / "sub")), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "cannot create --out" in r.stderr and str(blocker) in r.stderr


@pytest.mark.slow
def test_demo_runs_again_on_the_same_home(tmp_path: Path) -> None:
    """--home keeps job outputs, the server log and the transfer database; a second run reuses them."""
    home = tmp_path / "home"
    for run in (1, 2):
        r = subprocess.run(_demo_cmd("--out", str(tmp_path), "--home", str(home)), capture_output=True,
                           text=True, timeout=180)
        assert r.returncode == 0, f"run {run}:\n{r.stdout}\n{r.stderr}"
        assert "== suite /demo: complete" in r.stdout
    assert re.search(r"DataFileId=2 Done", r.stdout), r.stdout   # the second push is a new data file
    _assert_nothing_left(home)


def test_demo_rejects_bad_options() -> None:
    r = subprocess.run(_demo_cmd("--workers", "0"), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--workers must be positive, got 0" in r.stderr
