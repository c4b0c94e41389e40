"""The magics in IPython's own shell: a real server process, real jobs, a real cluster and transfer service."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.testing.globalipapp import start_ipython

from ecflow_lab.jupyter import magics

SUITE = """
suite m
  edit ECF_HOME '{home}'
  family f
    task a
    task b
      trigger a == complete
  endfamily
  family g
    task c
      time 23:59
  endfamily
endsuite
"""

JOB = """#!/bin/bash
set -e
ecflow_client --init=$$
ecflow_client --complete
"""


@pytest.fixture(scope="module")
def ip():
    shell = start_ipython()
    yield shell


@pytest.fixture
def shell(ip):
    ip.run_line_magic("load_ext", "ecflow_lab")
    yield ip
    ip.run_line_magic("unload_ext", "ecflow_lab")
    assert magics.state() is None


def wait_state(client, path: str, want: str, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    st = ""
    while time.monotonic() < end:
        st = client.query("state", path)
        if st == want:
            return
        time.sleep(0.1)
    raise AssertionError(f"{path} is {st}, expected {want}; log:\n{client.get_log(40)}")


def write_jobs(home: Path) -> None:
    for family, task in (("f", "a"), ("f", "b"), ("g", "c")):
        p = home / "m" / family / f"{task}.ecf"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(JOB)


def test_help_is_there(shell):
    doc = shell.find_line_magic("ecflow").__doc__
    assert "%ecflow start [--port N] [--home DIR]" in doc and "--home HOME" in doc
    assert "--replace" in shell.find_cell_magic("suite").__doc__
    assert "--workers" in shell.find_line_magic("cascade").__doc__
    assert "-destination" in shell.find_line_magic("ecpds").__doc__


def test_server_suite_tree_and_actions(shell, tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir()
    write_jobs(home)
    shell.run_line_magic("ecflow", f"start --home {home}")
    st = magics.state()
    assert st is not None and st.server is not None and st.server.poll() is None
    client = st.client
    shell.run_cell_magic("suite", "--begin --name mydefs", SUITE.format(home=home))
    assert [s.name for s in shell.user_ns["mydefs"].suites] == ["m"]
    wait_state(client, "/m/f", "complete")
    gantt = shell.run_line_magic("ecflow", "gantt")  # the run so far, from the server's log
    gantt.flush()
    spans = set(zip(gantt.source.data["lane"], gantt.source.data["phase"]))
    assert {("/m/f/a", "submitted"), ("/m/f/a", "active"), ("/m/f/b", "active")} <= spans
    assert all(r >= left for left, r in zip(gantt.source.data["left"], gantt.source.data["right"]))
    tree = shell.run_line_magic("ecflow", "tree")
    try:
        end = time.monotonic() + 10
        while time.monotonic() < end and len(tree.table) < 6:
            time.sleep(0.05)
        assert tree.state_of("/m/f/b") == "complete"
        shell.run_line_magic("ecflow", "suspend /m/g")
        end = time.monotonic() + 10
        while time.monotonic() < end and not tree.table.row("/m/g")["suspended"]:
            time.sleep(0.05)
        assert tree.table.row("/m/g")["suspended"]  # the tree followed the server's delta
        result = tree.do_action("resume", "/m/g")  # the context menu's path, through the Client
        assert result["ok"]
        end = time.monotonic() + 10
        while time.monotonic() < end and tree.table.row("/m/g")["suspended"]:
            time.sleep(0.05)
        assert not tree.table.row("/m/g")["suspended"]
    finally:
        pass
    sub = shell.run_line_magic("ecflow", "tree /m/g")
    assert sub.table.paths == ["/m/g", "/m/g/c"]
    capsys.readouterr()
    shell.run_line_magic("ecflow", "why /m/g/c")
    assert "/m/g/c:" in capsys.readouterr().out
    status = shell.run_line_magic("ecflow", "status")
    assert status["suites"]["/m"] in ("queued", "active", "complete")
    n_before = gantt.n_bars
    shell.run_line_magic("ecflow", "requeue /m/f")
    wait_state(client, "/m/f", "complete")
    end = time.monotonic() + 10
    while time.monotonic() < end and gantt.n_bars < n_before + 4:  # the rerun arrives live, via deltas
        time.sleep(0.05)
    assert gantt.n_bars >= n_before + 4
    # replacing keeps working; loading the same suite again is refused with a readable hint
    with pytest.raises(UsageError, match="--replace"):
        shell.run_cell_magic("suite", "--load", SUITE.format(home=home))
    shell.run_cell_magic("suite", "--replace", SUITE.format(home=home).replace("task b", "task bb"))
    client.get_server_defs()
    assert "task bb" in str(client.get_defs())
    proc = st.server
    shell.run_line_magic("ecflow", "stop")
    assert proc.poll() is not None and not tree._flusher and st.client is None


def test_syntax_error_points_at_the_cell_line(shell):
    cell = "suite s\n  task t\n    meter m x y\nendsuite\n"
    with pytest.raises(UsageError, match=r"cell line 3, column 13") as exc:
        shell.run_cell_magic("suite", "--name broken", cell)
    assert "meter m x y" in str(exc.value) and "expected integers" in str(exc.value)
    assert "broken" not in shell.user_ns
    res = shell.run_cell("%%suite\nsuite s\n  task\nendsuite\n")
    assert isinstance(res.error_in_exec, UsageError) and "cell line 2" in str(res.error_in_exec)


def test_readable_usage_errors(shell):
    with pytest.raises(UsageError, match="no server"):
        shell.run_line_magic("ecflow", "status")
    with pytest.raises(UsageError, match="HOST:PORT"):
        shell.run_line_magic("ecflow", "connect nonsense")
    with pytest.raises(UsageError, match="no ecflow_lab server answers"):
        shell.run_line_magic("ecflow", f"connect 127.0.0.1:{magics._free_port()}")
    with pytest.raises(UsageError, match="no cascade cluster"):
        shell.run_line_magic("cascade", "run g")
    with pytest.raises(UsageError):
        shell.run_line_magic("ecflow", "explode")
    shell.run_cell_magic("suite", "", "suite ok\nendsuite\n")  # parse only: no server needed
    assert shell.user_ns["defs"].suites[0].name == "ok"


def _double(x):
    return 2 * x


def test_cascade_magics_run_a_graph_with_a_live_gantt(shell):
    from ecflow_lab.cascade import Graph

    g = Graph()
    hs = [g.add_task(_double, i) for i in range(5)]
    g.set_outputs(hs)
    shell.user_ns["g"] = g
    shell.run_line_magic("cascade", "start --workers 2")
    try:
        with pytest.raises(UsageError, match="already running"):
            shell.run_line_magic("cascade", "start --workers 1")
        res = shell.run_line_magic("cascade", "run g")
        assert sorted(res[h] for h in hs) == [0, 2, 4, 6, 8]
        assert shell.user_ns["cascade_gantt"].n_bars == 5
        with pytest.raises(UsageError, match="cannot evaluate"):
            shell.run_line_magic("cascade", "run not_defined_here")
    finally:
        shell.run_line_magic("cascade", "stop")
    assert magics.state().cluster is None


def test_ecpds_magics_push_status_waitfor(shell, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ECPDS_MASTER", raising=False)
    out = tmp_path / "out"
    out.mkdir()
    shell.run_line_magic("ecpds", f"start --movers 1 --home {tmp_path / 'ecpds'}")
    try:
        shell.run_line_magic("ecpds", f"destination arch file://{out}")
        files = []
        for i in range(3):
            f = tmp_path / f"field{i}.grib"
            f.write_bytes(os.urandom(10_000 + i))
            files.append(f)
            shell.run_line_magic("ecpds", f"push {f} -destination arch -groupby run1")
        final = shell.run_line_magic("ecpds", "waitfor run1 --timeout 60")
        assert final["done"] and final["counts"].get("Done") == 3
        for f in files:
            assert (out / f.name).read_bytes() == f.read_bytes()
        with pytest.raises(UsageError, match="Duplicate"):
            shell.run_line_magic("ecpds", f"push {files[0]} -destination arch")
        dfid = shell.run_line_magic("ecpds", f"push {files[0]} -destination arch -force")
        capsys.readouterr()
        st = shell.run_line_magic("ecpds", f"status {dfid}")
        assert st["transfers"][0]["destination"] == "arch"
        assert f"DataFileId={dfid}" in capsys.readouterr().out
        with pytest.raises(UsageError, match="no such file"):
            shell.run_line_magic("ecpds", f"push {tmp_path / 'missing'} -destination arch")
        with pytest.raises(UsageError, match="-destination"):
            shell.run_line_magic("ecpds", f"push {files[0]}")
        assert os.environ["ECPDS_MASTER"] == magics.state().transfer_master  # for `!ecpds ...` in cells
    finally:
        shell.run_line_magic("ecpds", "stop")
    assert "ECPDS_MASTER" not in os.environ


def test_unload_stops_what_the_magics_started(ip, tmp_path):
    ip.run_line_magic("load_ext", "ecflow_lab")
    ip.run_line_magic("ecflow", "start")
    st = magics.state()
    proc, home = st.server, st.server_home
    gantt = ip.run_line_magic("ecflow", "gantt")
    assert gantt._subscription is not None
    ip.run_line_magic("cascade", "start --workers 1")
    cluster = st.cluster
    ip.run_line_magic("unload_ext", "ecflow_lab")
    assert proc.poll() is not None  # the server process is gone
    assert not home.exists()  # and its temporary home
    assert gantt._subscription is None and st.cluster is None and cluster is not None


def test_server_stops_when_the_kernel_is_killed(tmp_path):
    """A kernel killed with SIGKILL (no atexit) does not leave its server running."""
    import signal
    import subprocess
    import sys

    import psutil

    code = ("from IPython.testing.globalipapp import start_ipython\n"
            "ip = start_ipython()\n"
            "ip.run_line_magic('load_ext', 'ecflow_lab')\n"
            f"ip.run_line_magic('ecflow', 'start --home {tmp_path}')\n"
            "import ecflow_lab.jupyter.magics as m, sys, time\n"
            "print('PID', m.state().server.pid, flush=True)\n"
            "time.sleep(120)\n")
    kernel = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        line = ""
        while not line.startswith("PID "):
            line = kernel.stdout.readline()
            assert line, "the kernel process ended early"
        server_pid = int(line.split()[1])
        server = psutil.Process(server_pid)
        assert server.is_running()
        kernel.send_signal(signal.SIGKILL)
        kernel.wait(10)
        server.wait(20)  # raises TimeoutExpired if the server outlives its kernel
    finally:
        if kernel.poll() is None:
            kernel.kill()
            kernel.wait(10)
        kernel.stdout.close()
