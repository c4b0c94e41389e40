"""The simulator: verify-bearing definitions for each time attribute, reports, the CLI."""

from __future__ import annotations

import pytest

from ecflow_lab.defs import Defs
from ecflow_lab.server import simulate


def sim(text: str, **kw) -> str:
    return Defs.from_string(text, "sim.def").simulate(**kw)


@pytest.mark.parametrize("text", [
    # time series: 4 slots in a day
    """suite s
  clock real 6.5.2024
  task t
    time 10:00 13:00 01:00
    verify complete:4
endsuite
""",
    # several single times, relative time, today
    """suite s
  clock real 6.5.2024
  task two
    time 08:00
    time 20:30
    verify complete:2
  task rel
    time +01:30
    verify complete:1
  task tod
    today 00:00 02:00 00:30
    verify complete:5
endsuite
""",
    # date and day over their period (a week with day, months with date)
    """suite s
  clock real 6.5.2024
  task d
    date 9.5.2024
    verify complete:1
  task w
    day friday
    verify complete:1
  family f
    day sunday
    task t
      time 10:00
      verify complete:1
  endfamily
endsuite
""",
    # every repeat kind: the family completes once per value, its task runs once per value
    """suite s
  clock real 1.1.2020
  family i
    repeat integer N 0 8 2
    verify complete:5
    task t
      verify complete:5
  endfamily
  family e
    repeat enumerated E a b c
    verify complete:3
    task t
  endfamily
  family st
    repeat string S x y
    task t
      verify complete:2
  endfamily
  family dl
    repeat datelist D 20200101 20200301 20200401
    task t
      verify complete:3
  endfamily
  family dt
    repeat date YMD 20200101 20200131 7
    task t
      verify complete:5
  endfamily
endsuite
""",
    # triggers on events, meters, repeat values; limits; complete expressions
    """suite s
  clock real 1.1.2020
  limit one 1
  family f
    inlimit one
    task a
      event go
      meter m 0 10
      verify complete:1
    task b
      trigger a:go
      verify complete:1
    task c
      trigger a:m ge 7
      verify complete:1
  endfamily
  family r
    repeat date YMD 20200101 20200105
    task t
  endfamily
  task after
    trigger r:YMD ge 20200104
    verify complete:1
  task skipped
    complete after == complete
    trigger 1 == 0
    verify complete:1
    verify submitted:0
endsuite
""",
    # crons never complete: a fortnight of Mondays/Wednesdays, last day of month
    """suite s
  clock real 5.5.2024
  endclock 19.5.2024
  task c
    cron -w 1,3 08:00
    verify complete:4
  task last
    cron -d 10,L 23:00
    verify complete:1
endsuite
""",
    # hybrid: a day that is not today completes at begin without running
    """suite s
  clock hybrid 6.5.2024
  task notnow
    day tuesday
    verify submitted:0
  task now
    day monday
    time 12:00
    verify complete:1
endsuite
""",
])
def test_verify_bearing_definitions_simulate_clean(text):
    assert sim(text) == ""


def test_failed_verify_is_reported():
    out = sim("""suite s
  clock real 6.5.2024
  task t
    time 10:00 13:00 01:00
    verify complete:3
endsuite
""")
    assert "verify failed: /s/t verify complete:3 but it was complete 4 times" in out


def test_what_never_ran_is_reported_with_why():
    out = sim("""suite s
  clock real 6.5.2024
  task a
  task b
    trigger a == aborted
endsuite
""")
    assert "suite '/s' has not completed" in out
    assert "/s/b is queued: /s/b trigger is false: a == aborted (/s/a is complete)" in out


def test_duration_variable_keeps_a_task_active(tmp_path):
    d = Defs.from_string("""suite s
  clock real 6.5.2024
  task long
    edit SIM_DURATION 02:30
    time 10:00
    late -c +01:00
  task next
    trigger long == complete
    time 12:00
    verify complete:1
  task later
    trigger long == complete
    today 12:30
    verify complete:1
endsuite
""", "dur.def")
    res = simulate.run(d, copy=False)
    assert res.ok, res.report
    assert "late" in d.find_abs_node("/s/long").flags     # active for 2h30 > 1h: late
    # 12:00 came while 'long' was still active: the time stays free (latched) until requeue, so 'next'
    # runs when 'long' completes at 12:30, as in ecFlow
    assert d.find_abs_node("/s/next").state.name == "complete"


def test_simulation_does_not_change_the_callers_defs():
    d = Defs.from_string("suite s\n  task t\nendsuite\n", "x.def")
    assert d.simulate() == ""
    assert d.find_abs_node("/s/t").state.name == "unknown"


def test_cli_prints_a_summary(tmp_path, capsys):
    f = tmp_path / "ok.def"
    f.write_text("suite s\n  clock real 6.5.2024\n  task t\n    time 10:00 13:00 01:00\n    verify complete:4\n"
                 "endsuite\n")
    assert simulate.main([str(f)]) == 0
    out = capsys.readouterr().out
    assert "4 jobs run" in out and "verify: 1 of 1 hold" in out and "result: OK" in out
    bad = tmp_path / "bad.def"
    bad.write_text("suite s\n  task t\n    time 25:00\nendsuite\n")
    assert simulate.main([str(bad)]) == 2
    assert "bad.def" in capsys.readouterr().err


def test_cli_on_metabuilder_finishes(shared_dir, capsys):
    """The 4,559-task bench suite: one simulated day here (the full year is in benchmarks/simulate_bench.py)."""
    assert simulate.main([str(shared_dir / "bench" / "metabuilder.def"), "--days", "1"]) == 0
    out = capsys.readouterr().out
    assert "final task states:" in out and "tasks that never ran:" in out
    assert "is suspended (resume it)" in out


def test_cli_on_metabuilder_full_period(shared_dir, capsys):
    """Acceptance: the whole simulated year (crons) finishes in seconds and prints its summary."""
    assert simulate.main([str(shared_dir / "bench" / "metabuilder.def")]) == 0
    assert "result: OK" in capsys.readouterr().out


def test_a_definition_that_fails_check_is_not_simulated():
    out = sim("suite s\n  task t\n    trigger nosuch == complete\nendsuite\n")
    assert "nosuch" in out
