"""Job control through the Client on a live server: kill (ECF_KILL_CMD), status (ECF_STATUS_CMD), run,
edit_script submit, free dependencies, replace, zombie actions and begin/requeue refusals."""

from __future__ import annotations

import time

import pytest
from _support import CLIENT, wait_for

from ecflow_lab.client import Client
from ecflow_lab.defs import Defs
from ecflow_lab.server.app import SuiteServer


@pytest.fixture
def live(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "sleeper.ecf").write_text(f"""#!/bin/bash
{CLIENT} --init=$$
sleep 60 &
SLEEP=$!
trap 'kill $SLEEP; {CLIENT} --abort=killed; exit 1' TERM
wait
""")
    (tmp_path / "s" / "quick.ecf").write_text(f"""#!/bin/bash
{CLIENT} --init=$$
echo "quick %ECF_TRYNO% %GREETING:none%"
{CLIENT} --complete
""")
    (tmp_path / "s" / "gated.ecf").write_text("echo never\n")
    text = """
suite s
  task sleeper
  task quick
  task gated
    trigger quick == aborted
endsuite
"""
    with SuiteServer(tmp_path, checkpoint_mode="NEVER") as srv:
        ci = Client("127.0.0.1", srv.port)
        ci.load(Defs.from_string(text, "s.def"))
        yield srv, ci, tmp_path
        if ci.query("state", "/s/sleeper") in ("submitted", "active"):   # a failed test: stop its job
            wait_for(lambda: ci.query("state", "/s/sleeper") == "active", 20)
            ci.kill("/s/sleeper")
        ci.close()
        srv.engine.jobs.wait_all(20)


def test_kill_status_run_and_edit_script(live):
    srv, ci, home = live
    ci.suspend("/s/quick")
    ci.begin_suite("s")
    assert wait_for(lambda: ci.query("state", "/s/sleeper") == "active")
    with pytest.raises(RuntimeError, match="already begun"):
        ci.begin_suite("s")
    with pytest.raises(RuntimeError, match="submitted/active"):
        ci.requeue("/s")
    ci.status("/s/sleeper")
    stat = home / "s" / "sleeper.job1.stat"
    assert wait_for(lambda: stat.exists() and "PID" in stat.read_text())      # ps -f header and the job line
    assert "sleeper" in ci.get_file("/s/sleeper", "stat") or "bash" in ci.get_file("/s/sleeper", "stat")
    ci.kill("/s/sleeper")
    assert wait_for(lambda: ci.query("state", "/s/sleeper") == "aborted")
    ci.sync_local()
    flags = ci.get_defs().find_abs_node("/s/sleeper").flags or set()
    assert "killed" in flags
    assert "killed" in ci.why("/s/sleeper")                  # not retried: killed tasks need a user
    # run ignores the suspension/dependencies; edit_script submit runs an edited script with new variables
    ci.run("/s/quick")
    assert wait_for(lambda: ci.query("state", "/s/quick") == "complete")
    assert "quick 1 none" in ci.get_file("/s/quick", "jobout")
    lines = ci.edit_script_edit("/s/quick").split("\n")
    ci.edit_script_submit("/s/quick", ["GREETING=hello"], lines)
    assert wait_for(lambda: ci.query("state", "/s/quick") == "complete" and
                    "quick 2 hello" in ci.get_file("/s/quick", "jobout"))


def test_free_dep_replace_and_zombie_actions(live):
    srv, ci, home = live
    ci.suspend("/s/sleeper")
    ci.suspend("/s/quick")
    ci.begin_suite("s")
    time.sleep(0.3)
    assert ci.query("state", "/s/gated") == "queued"
    assert "trigger is false" in ci.why("/s/gated")
    ci.suspend("/s/gated")
    ci.free_trigger_dep("/s/gated")
    assert "trigger" not in ci.why("/s/gated")
    # replace a node with a new definition of it
    new = Defs.from_string("suite s\n  task gated\n    event ready\nendsuite\n", "r.def")
    ci.replace("/s/gated", new)
    ci.sync_local()
    g = ci.get_defs().find_abs_node("/s/gated")
    assert g.find_event("ready") is not None and g.trigger is None
    # a zombie: wrong password, then the user tells the server to fail it
    cc = Client("127.0.0.1", srv.port)
    cc.set_child_path("/s/gated")
    cc.set_child_password("badpass1")
    cc.set_child_timeout(20)
    import threading

    err: list[Exception] = []

    def init():
        try:
            cc.child_init()
        except RuntimeError as exc:
            err.append(exc)

    th = threading.Thread(target=init)
    th.start()
    assert wait_for(lambda: ci.zombie_get() != [])
    ci.zombie_fail("/s/gated")
    th.join(30)
    assert err and "password" in str(err[0])                 # the blocked job is released with a failure
    ci.zombie_remove("/s/gated")
    assert ci.zombie_get() == []
    cc.close()
