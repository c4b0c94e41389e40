"""The socket-free Scheduler: traversal, dependencies, limits, repeats, tries, passwords, zombies, why.

Jobs here run ECF_JOB_CMD ``true`` (a real, instant process); child commands are applied directly, as the
server's owner thread does. The end-to-end tests with real job scripts are in test_server_e2e.py.
"""

from __future__ import annotations

import datetime as dt

import pytest

from ecflow_lab.defs import Defs, Limit, NState, RepeatInteger
from ecflow_lab.server.calendar import FakeClock
from ecflow_lab.server.scheduler import Scheduler

C, Q, A, S, R = NState.complete, NState.queued, NState.aborted, NState.submitted, NState.active


@pytest.fixture
def home(tmp_path):
    return tmp_path


def _scripts(home, defs):
    for t in defs.get_all_tasks():
        p = home / t.get_abs_node_path().lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.with_suffix(".ecf").write_text("echo %ECF_NAME% try %ECF_TRYNO%\n")


def _sch(home, defs, **kw):
    _scripts(home, defs)
    s = Scheduler(defs, home=str(home), **kw)
    return s


@pytest.fixture
def cleanup():
    made = []
    yield made.append
    for s in made:
        s.jobs.wait_all()


def child(sch, task, cmd, **args):
    args.setdefault("path", task.get_abs_node_path())
    args.setdefault("passwd", task.password)
    args.setdefault("tryno", task.try_no)
    return sch.child(cmd, args)


def run_task(sch, task):
    assert task.state == S, f"{task.get_abs_node_path()} is {task.state.name}"
    child(sch, task, "init", rid="42")
    child(sch, task, "complete", rid="42")


def suite_defs():
    d = Defs()
    s = d.add_suite("s")
    s.add_variable("ECF_JOB_CMD", "true")
    s.add_limit("lim", 1)
    f = s.add_family("f")
    a = f.add_task("a")
    a.add_event("go")
    a.add_meter("m", 0, 10)
    b = f.add_task("b")
    b.add_trigger("a:go or a:m >= 5")
    c = f.add_task("c")
    c.add_trigger("a == complete and b == complete")
    g = s.add_family("g")
    g.add_inlimit("lim")
    g.add_task("x")
    g.add_task("y")
    return d


def test_triggers_events_meters_and_propagation(home, cleanup):
    d = suite_defs()
    sch = _sch(home, d)
    cleanup(sch)
    sch.begin(["s"])
    sch.traverse()
    a, b, c = (d.find_abs_node(f"/s/f/{n}") for n in "abc")
    assert a.state == S and b.state == Q and c.state == Q
    assert d.find_abs_node("/s").state == S                     # most significant child state
    child(sch, a, "init", rid="1")
    assert a.state == R and d.find_abs_node("/s/f").state == R
    child(sch, a, "meter", name="m", value=5)
    sch.traverse()
    assert b.state == S                                         # a:m >= 5
    child(sch, a, "complete", rid="1")
    run_task(sch, b)
    sch.traverse()
    run_task(sch, c)
    assert d.find_abs_node("/s/f").state == C


def test_limit_allows_one_task_at_a_time(home, cleanup):
    d = suite_defs()
    sch = _sch(home, d)
    cleanup(sch)
    sch.begin(["s"])
    sch.traverse()
    x, y = d.find_abs_node("/s/g/x"), d.find_abs_node("/s/g/y")
    assert [x.state, y.state] == [S, Q]
    lim = d.find_abs_node("/s").find_limit("lim")
    assert lim.value == 1 and lim.paths == ["/s/g/x"]
    assert any("limit lim is full" in w for w in sch.why_list(y))
    run_task(sch, x)
    assert lim.value == 0
    sch.traverse()
    assert y.state == S


def test_repeat_increments_when_family_completes(home, cleanup):
    d = Defs()
    s = d.add_suite("s")
    s.add_variable("ECF_JOB_CMD", "true")
    f = s.add_family("f")
    f.add_repeat(RepeatInteger("I", 1, 3))
    t = f.add_task("t")
    sch = _sch(home, d)
    cleanup(sch)
    sch.begin(["s"])
    seen = []
    for _ in range(3):
        sch.traverse()
        seen.append(sch.lookup(t, "I"))
        run_task(sch, t)
    assert seen == ["1", "2", "3"]
    assert f.state == C and s.state == C
    assert t.try_no == 1      # requeued by the repeat: tries start again


def test_ecf_tries_resubmits_then_stops(home, cleanup):
    d = Defs()
    s = d.add_suite("s")
    s.add_variable("ECF_JOB_CMD", "true")
    s.add_variable("ECF_TRIES", "2")
    t = s.add_task("t")
    sch = _sch(home, d)
    cleanup(sch)
    sch.begin(["s"])
    sch.traverse()
    child(sch, t, "init", rid="9")
    child(sch, t, "abort", rid="9", reason="disk full")
    assert t.state == A and t.abort_reason == "disk full"
    sch.traverse()
    assert t.state == S and t.try_no == 2                    # second try
    child(sch, t, "init", rid="10")
    child(sch, t, "abort", rid="10", reason="again")
    sch.traverse()
    assert t.state == A                                      # ECF_TRIES reached
    assert "ECF_TRIES 2" in "\n".join(sch.why_list(t))


def test_complete_expression_before_trigger_and_defstatus(home, cleanup):
    d = Defs()
    s = d.add_suite("s")
    s.add_variable("ECF_JOB_CMD", "true")
    a = s.add_task("a")
    a.add_defstatus("complete")
    b = s.add_task("b")
    b.add_trigger("a == aborted")          # never true ...
    b.add_complete("a == complete")        # ... but complete is checked first
    c = s.add_task("c")
    c.add_defstatus("suspended")
    sch = _sch(home, d)
    cleanup(sch)
    sch.begin(["s"])
    sch.traverse()
    assert a.state == C
    assert b.state == C and b.has_flag("by_rule")
    assert c.state == Q and c.suspended
    assert any("suspended" in w for w in sch.why_list(c))


def test_wrong_password_is_a_zombie_and_changes_nothing(home, cleanup):
    d = suite_defs()
    sch = _sch(home, d)
    cleanup(sch)
    sch.begin(["s"])
    sch.traverse()
    a = d.find_abs_node("/s/f/a")
    child(sch, a, "init", rid="1")
    before = d.to_string(state=True)
    r = child(sch, a, "complete", passwd="WRONGPWD", rid="1")
    assert r["block"] and "password" in r["reason"]
    r = child(sch, a, "event", passwd="WRONGPWD", rid="1", name="go")
    assert r is None                                          # events are fobbed by default
    assert a.state == R and not a.find_event("go").value
    (z,) = sch.zombies.values()
    assert z.kind == "ecf_passwd" and z.calls == 2
    assert a.has_flag("zombie")
    after = d.to_string(state=True)
    assert before.replace(" flag:zombie", "") == after.replace(" flag:zombie", "").replace("flag:zombie ", "")


def test_zombie_attribute_fail_and_adopt(home, cleanup):
    from ecflow_lab.defs import ZombieAttr

    d = Defs()
    s = d.add_suite("s")
    s.add_variable("ECF_JOB_CMD", "true")
    t = s.add_task("t")
    t.add_zombie(ZombieAttr("ecf_passwd:fail:init,complete:60"))
    u = s.add_task("u")
    u.add_zombie(ZombieAttr("ecf_passwd:adopt::60"))
    sch = _sch(home, d)
    cleanup(sch)
    sch.begin(["s"])
    sch.traverse()
    assert child(sch, t, "init", passwd="bad", rid="5")["fail"]
    assert t.state == S
    assert child(sch, u, "init", passwd="other", rid="6") is None      # adopted
    assert u.state == R and u.password == "other"


def test_path_zombie_and_halted_server(home, cleanup):
    d = suite_defs()
    sch = _sch(home, d)
    cleanup(sch)
    r = sch.child("init", {"path": "/s/none", "passwd": "x", "rid": "1"})
    assert r["block"] and "not found" in r["reason"]
    sch.set_server_state("HALTED")
    r = sch.child("meter", {"path": "/s/f/a", "passwd": "x", "name": "m", "value": 1})
    assert r["block"] and "HALTED" in r["reason"]


def test_undefined_variable_aborts_with_reason(home, cleanup):
    d = Defs()
    s = d.add_suite("s")
    s.add_variable("ECF_JOB_CMD", "true")
    t = s.add_task("t")
    sch = _sch(home, d)
    cleanup(sch)
    (home / "s" / "t.ecf").write_text("echo %NOPE%\n")
    sch.begin(["s"])
    sch.traverse()
    assert t.state == A and t.has_flag("edit_failed")
    assert "NOPE" in t.abort_reason and "t.ecf:1" in t.abort_reason
    sch.traverse()
    assert t.state == A                                        # edit_failed is not retried


def test_job_file_and_generated_variables(home, cleanup):
    d = Defs()
    s = d.add_suite("s")
    s.add_variable("ECF_JOB_CMD", "true")
    f = s.add_family("f")
    t = f.add_task("t")
    sch = _sch(home, d)
    cleanup(sch)
    (home / "s" / "f" / "t.ecf").write_text("%SUITE% %FAMILY% %TASK% %ECF_NAME% %ECF_TRYNO% %ECF_PASS% %ECF_JOB%\n")
    sch.begin(["s"])
    sch.traverse()
    job = (home / "s" / "f" / "t.job1").read_text()
    assert job.split() == ["s", "f", "t", "/s/f/t", "1", t.password, str(home / "s" / "f" / "t.job1")]
    assert len(t.password) == 8


def test_time_dependency_with_fake_clock(home, cleanup):
    clock = FakeClock(dt.datetime(2024, 5, 6, 9, 0))
    d = Defs()
    s = d.add_suite("s")
    s.add_variable("ECF_JOB_CMD", "true")
    t = s.add_task("t")
    t.add_time("10:00")
    sch = _sch(home, d, clock=clock)
    cleanup(sch)
    sch.begin(["s"])
    sch.traverse()
    assert t.state == Q
    assert any("time 10:00" in w for w in sch.why_list(t))
    clock.advance(3600)
    sch.traverse()
    assert t.state == S


def test_deltas_follow_the_pinned_shape(home, cleanup):
    d = suite_defs()
    sch = _sch(home, d)
    cleanup(sch)
    sch.take_delta()
    sch.begin(["s"])
    sch.traverse()
    a = d.find_abs_node("/s/f/a")
    sch.take_delta()
    child(sch, a, "init", rid="1")
    child(sch, a, "event", rid="1", name="go")
    child(sch, a, "label", rid="1", name="x", value="y") if a.find_label("x") else None
    msg = sch.take_delta()
    recs = {r["path"]: r for r in msg["changes"]}
    assert recs["/s/f/a"]["state"] == "active" and recs["/s/f/a"]["events"] == {"go": True}
    assert recs["/s/f"]["state"] == "active"
    assert msg["added"] == [] and msg["removed"] == []
    assert sch.take_delta() is None


def test_limit_model_is_shared(home):
    lim = Limit("l", 2)
    lim.increment(1, "/a")
    lim.increment(1, "/a")
    assert lim.value == 1
