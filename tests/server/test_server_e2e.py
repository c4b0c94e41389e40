"""Acceptance: a real server process running real .ecf jobs that send child commands.

* a suite of families with triggers, events, meters, labels, a limit and a repeat runs to completion, jobs
  talking through ``ecflow-lab client`` and through ``curl`` on the HTTP endpoint;
* kill -9 of the server in the middle, restart from the checkpoint: nothing re-run, nothing lost, the
  running job's child commands wait and get through;
* a wrong job password is refused, recorded as a zombie, and the suite is not corrupted.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from _support import CLIENT

from ecflow_lab.defs import Defs


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, 0o644)

pytestmark = pytest.mark.slow

HEAD = """#!/bin/bash
set -e
%ECF_CLIENT% --init=$$
trap '%ECF_CLIENT% --abort="trapped error"' ERR
"""
TAIL = "%ECF_CLIENT% --complete\n"
CURL_HEAD = """#!/bin/bash
set -e
URL=http://127.0.0.1:%ECF_HTTP_PORT%/v1/child
AUTH="-d ECF_NAME=%ECF_NAME% -d ECF_PASS=%ECF_PASS% -d ECF_TRYNO=%ECF_TRYNO%"
curl -fsS $URL/init $AUTH -d rid=$$
"""


def wait_state(ci, path: str, states: tuple[str, ...], timeout: float = 90.0) -> str:
    end = time.monotonic() + timeout
    st = ""
    while time.monotonic() < end:
        st = ci.query("state", path)
        if st in states:
            return st
        time.sleep(0.2)
    raise AssertionError(f"{path} is {st} after {timeout} s; log:\n{ci.get_log(60)}")


def e2e_suite(home) -> Defs:
    text = f"""
suite e2e
  edit ECF_HOME '{home}'
  edit ECF_INCLUDE '{home}/include'
  edit ECF_CLIENT '{CLIENT}'
  limit work 1
  family prep
    inlimit work
    task a
      event ev
      meter m 0 10
      label info ""
    task b
      trigger a:ev
      event ev
      meter m 0 10
      label info ""
  endfamily
  family loop
    trigger prep == complete
    repeat integer I 1 3
    task c
      inlimit /e2e:work
      meter m 0 10
  endfamily
  task last
    trigger loop == complete and prep/b:m ge 5
endsuite
"""
    write(home / "include" / "head.h", HEAD)
    write(home / "include" / "tail.h", TAIL)
    write(home / "e2e" / "prep" / "a.ecf", """%include <head.h>
%ECF_CLIENT% --event=ev
%ECF_CLIENT% --meter=m 7
%ECF_CLIENT% --label=info "a done"
echo "job %ECF_NAME% try %ECF_TRYNO%"
%include <tail.h>
""")
    write(home / "e2e" / "prep" / "b.ecf", CURL_HEAD + """curl -fsS $URL/event $AUTH -d name=ev
curl -fsS $URL/meter $AUTH -d name=m -d value=5
curl -fsS $URL/label $AUTH -d name=info --data-urlencode "value=b via curl"
echo "job %ECF_NAME% try %ECF_TRYNO%"
curl -fsS $URL/complete $AUTH
""")
    write(home / "e2e" / "loop" / "c.ecf", """%include <head.h>
%ECF_CLIENT% --meter=m %I%
echo "job %ECF_NAME% I=%I%"
%include <tail.h>
""")
    # an unchanged ecFlow-style script: plain ecflow_client finds the server's shim first on PATH
    write(home / "e2e" / "last.ecf", """#!/bin/bash
set -e
ecflow_client --init=$$
echo "job %ECF_NAME% last"
%ECF_CLIENT_EXE_PATH:ecflow_client% --complete
""")
    return Defs.from_string(text, "e2e.def")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_suite_runs_to_completion_with_real_jobs(start_server, server_home):
    srv = start_server()
    ci = srv.client()
    ci.load(e2e_suite(server_home))
    ci.begin_suite("e2e")
    wait_state(ci, "/e2e", ("complete", "aborted"))
    ci.sync_local()
    d = ci.get_defs()
    states = {n.get_abs_node_path(): n.state.name for n in d.get_all_nodes()}
    assert set(states.values()) == {"complete"}, states
    a, b = d.find_abs_node("/e2e/prep/a"), d.find_abs_node("/e2e/prep/b")
    assert a.find_event("ev").value and a.find_meter("m").value == 7 and a.find_label("info").new_value == "a done"
    assert b.find_meter("m").value == 5 and b.find_label("info").new_value == "b via curl"
    assert d.find_abs_node("/e2e/loop").repeat.value() == 3
    assert d.find_abs_node("/e2e").find_limit("work").value == 0
    out = {p: (server_home / p).read_text() for p in ("e2e/prep/a.1", "e2e/prep/b.1", "e2e/last.1")}
    assert "job /e2e/prep/a try 1" in out["e2e/prep/a.1"]
    assert "job /e2e/prep/b try 1" in out["e2e/prep/b.1"]
    assert "job /e2e/last last" in out["e2e/last.1"]
    # the repeat ran c three times; each run overwrote c.1 (same try number) with its own I
    assert "I=3" in (server_home / "e2e" / "loop" / "c.1").read_text()
    log = ci.get_log(500)
    assert log.count("submitted: /e2e/loop/c") == 3
    assert "chd:complete /e2e/last" in log
    assert ci.get_file("/e2e/prep/a", "jobout").count("job /e2e/prep/a") == 1
    ci.close()


def test_kill9_and_restart_from_checkpoint(start_server, server_home):
    runs = server_home / "runs.txt"
    text = f"""
suite k
  edit ECF_HOME '{server_home}'
  edit ECF_CLIENT '{CLIENT}'
  edit ECF_TIMEOUT 120
  family f
    task t1
    task t2
      trigger t1 == complete
      meter m 0 10
    task t3
      trigger t2 == complete
  endfamily
endsuite
"""
    for name in ("t1", "t3"):
        write(server_home / "k" / "f" / f"{name}.ecf", f"""#!/bin/bash
set -e
%ECF_CLIENT% --init=$$
echo "%ECF_NAME% %ECF_TRYNO%" >> {runs}
%ECF_CLIENT% --complete
""")
    # t2 keeps running across the crash: it waits for a file the test creates after the kill
    write(server_home / "k" / "f" / "t2.ecf", f"""#!/bin/bash
set -e
export ECF_TIMEOUT=120
%ECF_CLIENT% --init=$$
echo "%ECF_NAME% %ECF_TRYNO%" >> {runs}
%ECF_CLIENT% --meter=m 1
while [ ! -f {server_home}/go ]; do sleep 0.2; done
%ECF_CLIENT% --meter=m 9
%ECF_CLIENT% --complete
""")
    srv = start_server("--checkpoint-mode", "ALWAYS")
    ci = srv.client()
    http_port = ci._user_cmd("info")["http_port"]
    ci.load(Defs.from_string(text, "k.def"))
    ci.begin_suite("k")
    wait_state(ci, "/k/f/t1", ("complete",))
    end = time.monotonic() + 60
    while ci.query("meter", "/k/f/t2", "m") != "1":
        assert time.monotonic() < end, ci.get_log(50)
        time.sleep(0.2)
    ci.close()
    srv.kill9()                                   # t2 is active, its job is still running
    (server_home / "go").write_text("")           # t2 now sends meter + complete to a dead server: they retry
    time.sleep(1.0)
    srv.start()                                    # same home and port: restores the checkpoint
    ci = srv.client()
    assert ci._user_cmd("info")["http_port"] == http_port      # running curl jobs keep their URL
    assert ci.query("state", "/k/f/t1") == "complete"
    wait_state(ci, "/k", ("complete", "aborted"))
    assert ci.query("state", "/k") == "complete"
    assert ci.query("meter", "/k/f/t2", "m") == "9"          # the delayed child commands got through
    lines = runs.read_text().split("\n")
    assert sorted(x for x in lines if x) == ["/k/f/t1 1", "/k/f/t2 1", "/k/f/t3 1"]   # each ran exactly once
    assert not (server_home / "k" / "f" / "t1.job2").exists()
    assert ci.zombie_get() == []
    ci.close()


def test_wrong_password_is_refused_and_recorded(start_server, server_home):
    text = f"""
suite z
  edit ECF_HOME '{server_home}'
  edit ECF_CLIENT '{CLIENT}'
  task t
    event e
    meter m 0 100
endsuite
"""
    marker = server_home / "refused"
    write(server_home / "z" / "t.ecf", f"""#!/bin/bash
set -e
%ECF_CLIENT% --init=$$
if ECF_PASS=notmine ECF_DENIED=1 %ECF_CLIENT% --complete; then echo accepted > {marker}; else echo refused > {marker}; fi
while [ ! -f {server_home}/go ]; do sleep 0.2; done
%ECF_CLIENT% --meter=m 42
%ECF_CLIENT% --complete
""")
    srv = start_server()
    ci = srv.client()
    ci.load(Defs.from_string(text, "z.def"))
    ci.begin_suite("z")
    end = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < end, ci.get_log(50)
        time.sleep(0.2)
    assert marker.read_text().strip() == "refused"
    assert ci.query("state", "/z/t") == "active"                  # the bogus --complete changed nothing
    zombies = ci.zombie_get()
    assert len(zombies) == 1 and zombies[0]["path"] == "/z/t" and zombies[0]["type"] == "ecf_passwd"
    assert zombies[0]["password"] == "notmine"
    # the Python API gets the same refusal as RuntimeError with the server's reason
    bad = srv.client()
    bad.set_child_path("/z/t")
    bad.set_child_password("alsowrong")
    bad.set_child_timeout(3)
    bad._denied_fails = True
    with pytest.raises(RuntimeError, match="password"):
        bad.child_complete()
    bad.close()
    (server_home / "go").write_text("")
    wait_state(ci, "/z", ("complete", "aborted"))
    assert ci.query("state", "/z/t") == "complete" and ci.query("meter", "/z/t", "m") == "42"
    ci.sync_local()
    assert "zombie" in (ci.get_defs().find_abs_node("/z/t").flags or set())
    ci.close()
