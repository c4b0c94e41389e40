"""The Python builder: ecflow's own API, the nested-constructor style, += and with-blocks."""

from __future__ import annotations

import pytest

from ecflow_lab.defs import (
    Autocancel,
    Clock,
    Complete,
    Cron,
    Date,
    Day,
    Defs,
    Defstatus,
    DState,
    Edit,
    Event,
    Extern,
    Family,
    InLimit,
    Label,
    Late,
    Limit,
    Meter,
    NState,
    Queue,
    RepeatDate,
    RepeatEnumerated,
    Suite,
    Task,
    Time,
    Today,
    Trigger,
    ZombieAttr,
)

EXPECTED = """suite s
  edit SUITE_VAR 'x'
  limit lim 2
  family f
    task a
      edit X '1'
      meter m 0 100 100
      event ev
    task t
      trigger a == complete
      inlimit /s:lim
  endfamily
endsuite"""


def _ecflow_style() -> Defs:
    defs = Defs()
    s = defs.add_suite("s")
    s.add_variable("SUITE_VAR", "x")
    s.add_limit("lim", 2)
    f = s.add_family("f")
    a = f.add_task("a")
    a.add_variable("X", 1)
    a.add_meter("m", 0, 100)
    a.add_event("ev")
    t = f.add_task("t")
    t.add_trigger("a == complete")
    t.add_inlimit("lim", "/s")
    return defs


def test_ecflow_api_builds_the_expected_text() -> None:
    defs = _ecflow_style()
    assert EXPECTED in str(defs)
    assert defs.check() == ""
    assert Defs.from_string(str(defs)) == defs


def test_nested_constructors_build_the_same_model() -> None:
    defs = Defs(Suite("s", Edit(SUITE_VAR="x"), Limit("lim", 2),
                      Family("f",
                             Task("a", Edit(X=1), Meter("m", 0, 100), Event("ev")),
                             Task("t", Trigger("a == complete"), InLimit("lim", "/s")))))
    assert defs == _ecflow_style()


def test_iadd_and_add_chains() -> None:
    s = Suite("s")
    s += Edit({"SUITE_VAR": "x"})
    s.add(Limit("lim", 2))
    f = Family("f")
    s += f
    f.add(Task("a").add(Edit("X", 1), Meter("m", 0, 100), Event("ev")), Task("t").add(Trigger("a == complete")))
    f.find_task("t").add_inlimit(InLimit("lim", "/s"))
    assert Defs(s) == _ecflow_style()


def test_with_blocks_build_the_same_model() -> None:
    with Defs() as defs:
        with Suite("s") as s:
            Edit(SUITE_VAR="x")
            Limit("lim", 2)
            with Family("f"):
                Task("a", Edit(X=1), Meter("m", 0, 100), Event("ev"))
                with Task("t"):
                    Trigger("a == complete")
                    InLimit("lim", "/s")
    assert s.parent is defs
    assert defs == _ecflow_style()


def test_every_attribute_kind_through_the_builder_round_trips() -> None:
    defs = Defs(
        Extern("/other/suite:ev"),
        Suite("s", Clock(hybrid=True, day=1, month=1, year=2024), Defstatus("suspended"),
              Family("f", RepeatDate("YMD", 20240101, 20240131), Autocancel("+01:00"),
                     Task("t", Time(10, 30), Time("+00:10"), Today("10:00 12:00 00:30"), Date(1, 0, 0),
                          Day("monday"), Label("info", "multi\nline"), Late(submitted="00:15", complete="+02:00"),
                          Complete("/other/suite:ev"), ZombieAttr("ecf:fob::"), Queue("q", ["a", "b"]),
                          Event(3, "three", True)),
                     Task("c", Cron("-w 1,5L -d 1,L -m 1,2 10:00 20:00 01:00")),
                     Task("e", RepeatEnumerated("E", ["red", "green"])))))
    text = str(defs)
    for line in ("clock hybrid 1.1.2024", "defstatus suspended", "repeat date YMD 20240101 20240131 1",
                 "autocancel +01:00", "time 10:30", "time +00:10", "today 10:00 12:00 00:30", "date 1.*.*",
                 "day monday", 'label info "multi\\nline"', "late -s +00:15 -c +02:00", "zombie ecf:fob::3600",
                 "queue q a b", "event 3 three set", "cron -w 1,5L -d 1,L -m 1,2 10:00 20:00 01:00",
                 'repeat enumerated E "red" "green"', "extern /other/suite:ev"):
        assert line in text, line
    back = Defs.from_string(text)
    assert back == defs
    assert back.find_abs_node("/s/f/t").find_label("info").value == "multi\nline"
    assert defs.check() == ""


def test_queries() -> None:
    defs = _ecflow_style()
    assert [n.get_abs_node_path() for n in defs.get_all_nodes()] == ["/s", "/s/f", "/s/f/a", "/s/f/t"]
    assert [t.name for t in defs.get_all_tasks()] == ["a", "t"]
    t = defs.find_abs_node("/s/f/t")
    assert defs.find_abs_node("/s/nope") is None and defs.find_abs_node("/s/f/t/x") is None
    assert t.find_node("../a") is defs.find_abs_node("/s/f/a")
    assert t.get_state() is NState.unknown and t.get_defstatus() is DState.queued
    assert t.find_parent_variable("SUITE_VAR").value == "x"
    assert t.lookup_variable("TASK") == "t" and t.lookup_variable("SUITE") == "s"
    assert t.find_gen_variable("ECF_NAME") == "/s/f/t"
    assert defs.find_abs_node("/s/f").computed_state() is NState.unknown
    defs.find_abs_node("/s/f/a").state = NState.aborted
    assert defs.find_abs_node("/s/f").computed_state() is NState.aborted


def test_builder_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="invalid task name"):
        Task("bad name")
    f = Family("f", Task("t"))
    with pytest.raises(ValueError, match="already exists"):
        f.add_task("t")
    with pytest.raises(ValueError, match="not allowed on a suite"):
        Suite("s").add_trigger("1 == 1")
    with pytest.raises(ValueError, match="already has a trigger"):
        Task("t", Trigger("1 == 1"), Trigger("2 == 2"))
    with pytest.raises(ValueError, match="autocancel and autoarchive"):
        Family("f").add_autoarchive(1).add_autocancel(2)
    with pytest.raises(TypeError):
        Task("t").add(object())


def test_ecflow_positional_forms() -> None:
    from ecflow_lab.defs import Autoarchive, Days, PartExpression

    assert Clock(1, 2, 2024).write() == "clock real 1.2.2024"
    assert Clock(1, 2, 2024, True).write() == "clock hybrid 1.2.2024"
    assert Autocancel(1, 30, True).write() == "autocancel +01:30"
    assert Autoarchive(2, 0, False).write() == "autoarchive 02:00"
    assert Day(Days.friday).write() == "day friday"
    assert Time(10, 30, True).write() == "time +10:30"
    assert Date(24, 12, 2024).write() == "date 24.12.2024"
    t = Task("t")
    t.add_part_trigger("a == complete")
    t.add_part_trigger(PartExpression("b == complete", "or"))
    t.add_part_trigger("c == complete", True)
    assert t.trigger.expression == "a == complete or b == complete and c == complete"
    assert "trigger -o b == complete" in str(t)


def test_auto_add_externs_makes_check_pass() -> None:
    d = Defs.from_string("suite s\n task t\n  trigger /x/y == complete and ../z:ev\n  inlimit /l:lim\nendsuite\n")
    assert d.check().count("Error:") == 3
    d.auto_add_externs()
    assert d.externs == ["/x/y", "/z:ev", "/l:lim"]
    assert d.check() == ""
    assert "extern /z:ev" in str(d)
