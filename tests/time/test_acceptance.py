"""Issue 4 acceptance: time series, cron week days and date repeats on a fake clock (no sleeping)."""

from __future__ import annotations

import datetime as dt

from ecflow_lab.defs import NState

C, Q = NState.complete, NState.queued


def test_time_series_runs_four_times_in_a_day(driver):
    d = driver("""suite s
  task t
    time 10:00 13:00 01:00
endsuite
""", dt.datetime(2024, 5, 6, 0, 0))
    d.begin()
    d.advance(24 * 60 - 1)
    assert [w.strftime("%H:%M") for _, w in d.runs] == ["10:00", "11:00", "12:00", "13:00"]
    t = d.node("/s/t")
    assert t.state == C           # after the last slot it stays complete until tomorrow's requeue


def test_cron_runs_on_mondays_and_wednesdays_only_over_a_fortnight(driver):
    start = dt.datetime(2024, 5, 5, 0, 0)        # a Sunday
    d = driver("""suite s
  task c
    cron -w 1,3 08:00
endsuite
""", start)
    d.begin()
    for _ in range(14 * 24):
        d.jump(60)
    days = [w for _, w in d.runs]
    assert [w.strftime("%a %H:%M") for w in days] == ["Mon 08:00", "Wed 08:00"] * 2
    assert {w.date() for w in days} == {dt.date(2024, 5, 6), dt.date(2024, 5, 8), dt.date(2024, 5, 13),
                                        dt.date(2024, 5, 15)}
    assert d.node("/s/c").state == Q      # a cron never stays complete


def test_repeat_date_family_runs_ten_cycles_with_the_right_ymd_in_each_job(driver):
    d = driver("""suite s
  family f
    repeat date YMD 20200101 20200110
    task t
  endfamily
endsuite
""", dt.datetime(2024, 5, 6, 9, 0),
               script="ymd=%YMD% y=%YMD_YYYY% m=%YMD_MM% d=%YMD_DD% dow=%YMD_DOW% jul=%YMD_JULIAN%\n")
    d.begin()
    jobs = [text.split() for path, text in d.jobs if path == "/s/f/t"]
    assert len(jobs) == 10
    want = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(10)]
    for words, day in zip(jobs, want):
        assert words == [f"ymd={day:%Y%m%d}", f"y={day.year}", f"m={day.month}", f"d={day.day}",
                         f"dow={(day.weekday() + 1) % 7}", f"jul={day.toordinal() + 1721425}"]
    f = d.node("/s/f")
    assert f.state == C and d.node("/s").state == C
    assert f.repeat.value() == 20200110
