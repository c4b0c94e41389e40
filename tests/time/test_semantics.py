"""ecFlow's time rules on the server's Scheduler, driven by a fake clock with real (instant) jobs."""

from __future__ import annotations

import datetime as dt

from ecflow_lab.defs import NState

C, Q, S = NState.complete, NState.queued, NState.submitted
MON = dt.datetime(2024, 5, 6)      # a Monday


def hm(d):
    return [w.strftime("%H:%M") for _, w in d.runs]


def test_time_begun_after_its_slot_waits_for_tomorrow(driver):
    d = driver("suite s\n  task t\n    time 10:00\nendsuite\n", MON.replace(hour=11))
    d.begin()
    d.advance(24 * 60)
    assert [w for _, w in d.runs] == [dt.datetime(2024, 5, 7, 10, 0)]


def test_today_begun_after_its_slot_runs_at_once_and_does_not_wrap(driver):
    d = driver("suite s\n  task t\n    today 10:00\nendsuite\n", MON.replace(hour=11))
    d.begin()
    assert hm(d) == ["11:00"]
    d.advance(60)
    assert d.node("/s/t").state == C and len(d.runs) == 1


def test_today_series_only_matches_its_slots(driver):
    d = driver("suite s\n  task t\n    today 10:00 12:00 01:00\nendsuite\n", MON.replace(hour=10, minute=30))
    d.begin()
    d.advance(3 * 60)
    assert hm(d) == ["11:00", "12:00"]


def test_several_single_times_requeue_after_each(driver):
    d = driver("suite s\n  task t\n    time 10:00\n    time 14:00\nendsuite\n", MON)
    d.begin()
    d.advance(20 * 60)
    assert hm(d) == ["10:00", "14:00"]
    assert d.node("/s/t").state == C


def test_relative_time_counts_from_begin(driver):
    d = driver("suite s\n  task t\n    time +00:30\nendsuite\n", MON.replace(hour=9, minute=10))
    d.begin()
    d.advance(120)
    assert hm(d) == ["09:40"]


def test_a_missed_poll_still_frees_the_slot(driver):
    d = driver("suite s\n  task t\n    time 10:00\nendsuite\n", MON.replace(hour=9, minute=58))
    d.begin()
    d.jump(5)
    assert hm(d) == ["10:03"]


def test_date_waits_for_its_day(driver):
    d = driver("suite s\n  task t\n    date 7.5.2024\nendsuite\n", MON.replace(hour=12))
    d.begin()
    d.advance(11 * 60)
    assert d.runs == []
    d.advance(60)
    assert [w for _, w in d.runs] == [dt.datetime(2024, 5, 7, 0, 0)]


def test_day_on_a_family_guards_the_time_of_its_task(driver):
    d = driver("""suite s
  family f
    day tuesday
    task t
      time 10:00
  endfamily
endsuite
""", MON.replace(hour=9))
    d.begin()
    d.advance(30 * 60)
    assert [w for _, w in d.runs] == [dt.datetime(2024, 5, 7, 10, 0)]


def test_hybrid_clock_completes_a_day_that_is_not_today_at_begin(driver):
    d = driver("""suite s
  clock hybrid
  task other
    day tuesday
  task today
    day monday
    time 23:00
endsuite
""", MON.replace(hour=9))
    d.begin()
    assert d.node("/s/other").state == C
    assert d.node("/s/today").state == Q
    d.advance(14 * 60)
    assert [p for p, _ in d.runs] == ["/s/today"]
    assert d.node("/s").state == C


def test_cron_series_requeues_and_never_stays_complete(driver):
    d = driver("suite s\n  task t\n    cron 10:00 11:00 00:30\nendsuite\n", MON)
    d.begin()
    d.advance(24 * 60 + 11 * 60)
    assert hm(d) == ["10:00", "10:30", "11:00"] * 2
    assert d.node("/s/t").state == Q


def test_cron_last_day_of_month(driver):
    d = driver("suite s\n  task t\n    cron -d L 06:00\nendsuite\n", dt.datetime(2024, 1, 30))
    d.begin()
    for _ in range(24 * 35):
        d.jump(60)
    assert [w.date() for _, w in d.runs] == [dt.date(2024, 1, 31), dt.date(2024, 2, 29)]


def test_cron_last_weekday_of_month(driver):
    d = driver("suite s\n  task t\n    cron -w 5L 06:00\nendsuite\n", dt.datetime(2024, 5, 1))
    d.begin()
    for _ in range(24 * 60):
        d.jump(60)
    assert [w.date() for _, w in d.runs] == [dt.date(2024, 5, 31), dt.date(2024, 6, 28)]


def test_late_submitted_flag(driver):
    d = driver("suite s\n  task t\n    late -s +00:15\nendsuite\n", MON.replace(hour=9))
    d.auto_complete = False
    d.begin()
    t = d.node("/s/t")
    assert t.state == S
    d.advance(14)
    assert "late" not in (t.flags or set())
    d.advance(1)
    assert "late" in t.flags and t.late.is_late


def test_late_active_by_time_of_day(driver):
    d = driver("suite s\n  task t\n    time 10:00\n    late -a 09:30\nendsuite\n", MON.replace(hour=9))
    d.begin()
    d.advance(29)
    assert "late" not in (d.node("/s/t").flags or set())
    d.advance(1)
    assert "late" in d.node("/s/t").flags


def test_free_time_dep_runs_now_and_misses_the_next_slot(driver):
    d = driver("suite s\n  task t\n    time 10:00 12:00 01:00\nendsuite\n", MON.replace(hour=9))
    d.begin()
    d.sch.free_time_deps(d.node("/s/t"))
    d.settle()
    assert hm(d) == ["09:00"]           # freed: runs now, and the 10:00 slot is missed
    d.advance(4 * 60)
    assert hm(d) == ["09:00", "11:00", "12:00"]


def test_run_by_hand_misses_the_next_single_slot(driver):
    d = driver("suite s\n  task t\n    time 10:00\n    time 14:00\nendsuite\n", MON.replace(hour=9))
    d.begin()
    t = d.node("/s/t")
    d.sch.before_user_run(t)
    d.sch.submit(t)
    d.settle()
    d.advance(8 * 60)
    assert hm(d) == ["09:00", "14:00"]


def test_run_by_hand_with_a_single_time_stays_complete(driver):
    d = driver("suite s\n  family f\n    task t\n      time 10:00\n  endfamily\nendsuite\n",
               MON.replace(hour=9))
    d.begin()
    t = d.node("/s/f/t")
    d.sch.before_user_run(t)
    d.sch.submit(t)
    d.settle()
    d.advance(3 * 60)
    assert hm(d) == ["09:00"] and t.state == C and d.node("/s").state == C


def test_run_inside_a_repeat_lets_the_repeat_step(driver):
    d = driver("""suite s
  family f
    repeat integer N 1 3
    task t
      time 10:00
  endfamily
endsuite
""", MON.replace(hour=9))
    d.begin()
    t = d.node("/s/f/t")
    d.sch.before_user_run(t)
    d.sch.submit(t)
    d.settle()
    assert d.node("/s/f").repeat.value() == 2        # the family completed and stepped its repeat
    d.advance(2 * 60)
    assert hm(d) == ["09:00", "10:00"] and d.node("/s/f").repeat.value() == 3


def test_autocancel_removes_a_completed_suite(driver):
    d = driver("suite s\n  autocancel +00:10\n  task t\nendsuite\n", MON.replace(hour=9))
    d.begin()
    assert d.node("/s").state == C
    d.advance(9)
    assert d.defs.find_abs_node("/s") is not None
    d.advance(1)
    assert d.defs.find_abs_node("/s") is None


def test_autoarchive_then_restore(driver, tmp_path):
    d = driver("""suite s
  family f
    autoarchive +00:05
    task t
  endfamily
  task later
    trigger f == complete
    autorestore /s/f
    time 12:00
endsuite
""", MON.replace(hour=9))
    d.begin()
    d.advance(5)
    f = d.node("/s/f")
    assert "archived" in f.flags and list(f.children) == []
    archive = d.sch.archive_path(f)
    assert "task t" in open(archive).read()
    d.advance(3 * 60)        # 'later' completes at 12:00 and restores /s/f
    assert [c.name for c in f.children] == ["t"] and "archived" not in f.flags
    assert d.node("/s/f/t").state == C


def test_trigger_on_a_repeat_date_and_date_arithmetic(driver):
    d = driver("""suite s
  family f
    repeat date YMD 20200101 20200105
    task t
      trigger t2 == complete
    task t2
      defstatus complete
  endfamily
  task after3
    trigger f:YMD ge 20200103
  task yesterday
    trigger f:YMD - 1 == 20191231
endsuite
""", MON)
    d.auto_complete = False
    d.begin()
    assert {p for p, _ in d.runs} == {"/s/f/t", "/s/yesterday"}
    assert d.node("/s/after3").state == Q


def test_alter_change_repeat(driver):
    from ecflow_lab.server import model as M

    d = driver("""suite s
  family f
    repeat integer N 1 10
    task t
  endfamily
endsuite
""", MON)
    d.auto_complete = False
    d.begin()
    f = d.node("/s/f")
    M.alter(f, "change", "repeat", "", "7", d.sch)
    assert d.sch.lookup(d.node("/s/f/t"), "N") == "7"


def test_clock_date_starts_at_midnight_plus_gain(driver):
    d = driver("suite s\n  clock real 1.1.2020 +02:30\n  task t\n    time 03:00\nendsuite\n",
               dt.datetime(2024, 5, 6, 15, 47))
    d.begin()
    assert d.sch.suite_now(d.node("/s")) == dt.datetime(2020, 1, 1, 2, 30)
    assert d.sch.lookup(d.node("/s/t"), "ECF_DATE") == "20200101"
    d.advance(30)
    assert [w for _, w in d.runs] == [dt.datetime(2024, 5, 6, 16, 17)]   # wall clock: suite time 03:00


def test_clock_stop_with_server_freezes_suite_time(driver):
    d = driver("suite s\n  clock real 6.5.2024 -s\n  task t\n    time 01:00\nendsuite\n", MON)
    d.begin()
    d.sch.set_server_state("HALTED")
    d.advance(120)                         # two hours pass while the server is halted
    assert d.sch.suite_now(d.node("/s")) <= MON + dt.timedelta(minutes=1)   # frozen at the next poll
    d.sch.set_server_state("RUNNING")
    d.advance(59)
    assert d.runs == []
    d.advance(1)
    assert [w for _, w in d.runs] == [MON + dt.timedelta(hours=3)]   # suite 01:00 = wall 03:00


def test_without_stop_flag_suite_time_runs_on(driver):
    d = driver("suite s\n  clock real 6.5.2024\n  task t\n    today 01:00\nendsuite\n", MON)
    d.begin()
    d.sch.set_server_state("HALTED")
    d.advance(120)
    assert d.sch.suite_now(d.node("/s")) == MON + dt.timedelta(hours=2)
    d.sch.set_server_state("RUNNING")
    d.advance(1)
    assert len(d.runs) == 1


def test_a_series_run_that_ends_after_midnight_does_not_requeue(driver):
    d = driver("suite s\n  task t\n    time 22:00 23:30 00:30\nendsuite\n", MON.replace(hour=21))
    d.auto_complete = False
    d.begin()
    d.advance(60 * 3)                  # runs at 22:00 and is still running at midnight
    t = d.node("/s/t")
    assert d.runs[0][1] == MON.replace(hour=22) and t.state == S and t.try_no == 1
    d.child(t, "init", rid="1")
    d.child(t, "complete", rid="1")    # 00:00 next day: ECFLOW-130, no requeue for 22:30
    assert t.state == C


def test_autoarchive_idle_archives_a_queued_family(driver):
    d = driver("""suite s
  family f
    autoarchive +00:10 -i
    task t
      time 23:00
  endfamily
  family g
    autoarchive +00:10
    task t
      time 23:00
  endfamily
endsuite
""", MON.replace(hour=9))
    d.begin()
    d.advance(11)
    assert "archived" in d.node("/s/f").flags and d.defs.find_abs_node("/s/f/t") is None
    assert d.defs.find_abs_node("/s/g/t") is not None      # without -i only a complete family is archived
    d.sch.restore_node(d.node("/s/f"))
    assert d.node("/s/f/t").state == Q


def test_a_checkpointed_calendar_continues_after_restart(driver, tmp_path):
    from ecflow_lab.server import model as M
    from ecflow_lab.server.scheduler import Scheduler

    d = driver("suite s\n  clock real 1.1.2020\n  task t\n    time 05:00\nendsuite\n", MON.replace(hour=9))
    d.begin()
    d.advance(3 * 60)                                   # suite time 03:00 on 1.1.2020
    text = M.write_state(d.defs)
    assert "calendar offset:" in text
    restored = M.parse_state(text, "checkpoint")
    sch2 = Scheduler(restored, clock=d.clock, home=str(tmp_path), server_vars={"ECF_JOB_CMD": "true"})
    s2 = restored.find_abs_node("/s")
    assert sch2.suite_now(s2) == dt.datetime(2020, 1, 1, 3, 0)     # not back to midnight of 1.1.2020
    d.clock.advance(2 * 3600)
    sch2.traverse()
    assert restored.find_abs_node("/s/t").state == S
    sch2.jobs.wait_all()


def test_late_is_inherited_from_a_family(driver):
    d = driver("""suite s
  family f
    late -c +00:30
    task t
    task u
      late -c +02:00
endsuite
""".replace("endsuite", "  endfamily\nendsuite"), MON.replace(hour=9))
    d.auto_complete = False
    d.begin()
    for p in ("/s/f/t", "/s/f/u"):
        n = d.node(p)
        d.child(n, "init", rid="1")
    d.advance(30)
    assert "late" in d.node("/s/f/t").flags                 # inherited -c +00:30
    assert "late" not in (d.node("/s/f/u").flags or set())  # its own -c +02:00 overrides
    d.advance(90)
    assert "late" in d.node("/s/f/u").flags and d.node("/s/f/u").late.is_late
