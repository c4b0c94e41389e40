"""Trigger/complete expressions: grammar, evaluation against a tree, references, check."""

from __future__ import annotations

import pytest

from ecflow_lab.defs import Defs, DefsSyntaxError, NState, Reference, Trigger
from ecflow_lab.defs.expression import parse_expression

TREE = """
suite s
  edit SV 7
  limit lim 10
  family f
    repeat date YMD 20200101 20200110
    edit FV 3
    task a
      event ev
      event 2 second
      meter m 0 100
      edit NUM 42
      edit WORD hello
    task b
    task 0z
    family g
      task c
    endfamily
  endfamily
  family h
    task d
  endfamily
endsuite
"""


@pytest.fixture()
def defs() -> Defs:
    return Defs.from_string(TREE)


def ev(defs: Defs, owner: str, text: str) -> bool:
    return Trigger(text).evaluate(defs.find_abs_node(owner))


def test_states_in_all_spellings(defs: Defs) -> None:
    a = defs.find_abs_node("/s/f/a")
    a.state = NState.complete
    for t in ("a == complete", "a eq complete", "./a == complete", "../f/a == complete", "/s/f/a == complete",
              "a != aborted", "a ne queued", "not a == aborted", "! a == aborted", "~ a == aborted",
              "a < queued", "a lt queued", "a <= complete", "a le complete", "a >= unknown", "a gt unknown"):
        assert ev(defs, "/s/f/b", t), t
    assert not ev(defs, "/s/f/b", "a == queued")


def test_and_or_precedence_and_spellings(defs: Defs) -> None:
    defs.find_abs_node("/s/f/a").state = NState.complete
    assert ev(defs, "/s/f/b", "a == complete or b == complete and b == active")  # and binds tighter
    assert not ev(defs, "/s/f/b", "(a == complete or b == complete) and b == active")
    for t in ("a == complete AND 1 == 1", "a == complete && 1 == 1", "b == complete OR a == complete",
              "b == complete || a == complete"):
        assert ev(defs, "/s/f/b", t), t


def test_events_meters_variables_repeats_limits(defs: Defs) -> None:
    a = defs.find_abs_node("/s/f/a")
    assert not ev(defs, "/s/f/b", "a:ev")
    a.find_event("ev").value = True
    a.find_meter("m").value = 30
    assert ev(defs, "/s/f/b", "a:ev == set and a:ev and a:2 == clear")
    assert ev(defs, "/s/f/b", "a:m ge 30 and a:m + 10 == 40 and a:m * 2 / 3 == 20 and a:m % 7 == 2")
    assert ev(defs, "/s/f/b", "a:NUM == 42 and a:WORD == 0")  # non-integer variable reads as 0
    assert ev(defs, "/s/f/b", "/s/f:YMD == 20200101 and /s/f:YMD_MM == 1 and /s:lim == 0")
    assert ev(defs, "/s/f/b", "/s/f:YMD - 1 == 20191231")  # date arithmetic on a repeat date
    assert ev(defs, "/s/f/b", "/s/f:YMD + 31 == 20200201")
    assert ev(defs, "/s/f/b", "cal::date_to_julian(/s/f:YMD) - cal::date_to_julian(20191231) == 1")
    assert ev(defs, "/s/f/b", "cal::julian_to_date(cal::date_to_julian(20200301) - 1) == 20200229")


def test_colon_var_searches_up_the_tree(defs: Defs) -> None:
    assert ev(defs, "/s/f/g/c", ":FV == 3 and :SV == 7 and :YMD == 20200101 and :NUM == 0")


def test_flags_numeric_names_and_datetime(defs: Defs) -> None:
    a = defs.find_abs_node("/s/f/a")
    assert not ev(defs, "/s/f/b", "a<flag>late")
    a.set_flag("late")
    assert ev(defs, "/s/f/b", "a<flag>late and /s/f/a<flag>late")
    defs.find_abs_node("/s/f/0z").state = NState.active
    assert ev(defs, "/s/f/b", "./0z == active")
    assert parse_expression("20240101T000000 > 1")[0] == "cmp"


def test_relative_climb_through_families(defs: Defs) -> None:
    defs.find_abs_node("/s/h/d").state = NState.complete
    assert ev(defs, "/s/f/g/c", "../../h/d == complete")
    assert ev(defs, "/s/f", "h/d == complete and ./h/d == complete and ../s/h/d == complete")


def test_evaluation_follows_structure_changes(defs: Defs) -> None:
    t = Trigger("new == complete")
    b = defs.find_abs_node("/s/f/b")
    assert not t.evaluate(b)
    new = defs.find_abs_node("/s/f").add_task("new")
    new.state = NState.complete
    assert t.evaluate(b)  # the cached resolution was invalidated


def test_references_and_check(defs: Defs) -> None:
    t = Trigger("a == complete and /s/f/a:m > 1 or ../h/d<flag>late and :SV == 1")
    assert t.references() == [Reference("a", None, "node"), Reference("/s/f/a", "m", "attr"),
                              Reference("../h/d", "late", "flag"), Reference("", "SV", "var")]
    b = defs.find_abs_node("/s/f/b")
    assert t.check(b) == []
    errs = Trigger("zz == complete and a:nothing == 1 and :NOPE == 1").check(b)
    assert len(errs) == 3 and "could not find node 'zz'" in errs[0]


def test_check_respects_externs() -> None:
    text = "extern /x/y\nextern /p/q:ev\nsuite s\n task t\n  trigger /x/y == complete and /p/q:ev\nendsuite\n"
    assert Defs.from_string(text).check() == ""
    assert "could not find" in Defs.from_string(text.split("\n", 2)[2]).check()


@pytest.mark.parametrize("bad", ["a ==", "(a == complete", "a == complete)", "a = complete", "a == complete b",
                                 "cal::nope(1)", "a:m == complete", "a", "a<flag>nosuch", "1 < 2 < 3", "",
                                 "a == complete and", "/s/ == complete", "x \\ y"])
def test_syntax_errors_are_defs_errors(bad: str) -> None:
    with pytest.raises(DefsSyntaxError):
        parse_expression(bad)


def test_bad_expression_reported_by_check_with_position() -> None:
    d = Defs.from_string("suite s\n task a\n task t\n  trigger a == complete and (a == aborted\nendsuite\n")
    msg = d.check()
    assert msg.startswith("Error: trigger on /s/t") and "expected ')'" in msg


def test_lazy_parse() -> None:
    d = Defs.from_string("suite s\n task t\n  trigger this is not ( parsed yet\nendsuite\n")
    t = d.find_abs_node("/s/t")
    assert t.trigger._ast is None  # loading does not parse expressions
    with pytest.raises(DefsSyntaxError):
        t.trigger.evaluate(t)


def test_suite_calendar_variables_hook(defs: Defs) -> None:
    s = defs.find_suite("s")
    assert not ev(defs, "/s/f/b", "/s:TIME > 1330")
    s.calendar_variables = lambda: {"TIME": "1400", "DOW": "1", "ECF_DATE": "20240101"}
    assert ev(defs, "/s/f/b", "/s:TIME > 1330 and /s:DOW == 1 and :ECF_DATE == 20240101")
    assert defs.check() == ""


def test_long_and_deep_expressions(defs: Defs) -> None:
    b = defs.find_abs_node("/s/f/b")
    defs.find_abs_node("/s/f/a").state = NState.complete
    long = " and ".join(["a == complete"] * 5000)
    assert Trigger(long).evaluate(b)
    assert Trigger(" or ".join(["a == aborted"] * 5000 + ["a == complete"])).evaluate(b)
    assert Trigger(long).references()[0] == Reference("a", None, "node")
    deep = "(" * 5000 + "a == complete" + ")" * 5000
    with pytest.raises(DefsSyntaxError, match="nested too deeply"):
        Trigger(deep).evaluate(b)
    d = Defs.from_string(f"suite s\n task a\n task t\n  trigger {deep}\nendsuite\n")
    assert "nested too deeply" in d.check()


def test_repeat_datetime_compares_with_datetime_literals() -> None:
    d = Defs.from_string("suite s\n family f\n  repeat datetime T 20240101T000000 20240103T000000 12\n"
                         "  task t\n endfamily\nendsuite\n")
    f = d.find_abs_node("/s/f")
    t = d.find_abs_node("/s/f/t")
    assert Trigger("../f:T == 20240101T000000 and ../f:T < 20240101T120000").evaluate(t)
    f.repeat.increment()
    assert Trigger("../f:T == 20240101T120000").evaluate(t)
    assert f.repeat.generated_variables()["T_TIME"] == "120000"
    with pytest.raises(DefsSyntaxError):
        parse_expression("x:T > 20241399T000000")


def test_family_references_like_ecflow() -> None:
    # a plain name is a sibling only; a path 'g/t' may also start below the family itself (ecFlow 5.9.2)
    bad = Defs.from_string("suite s\n family f\n  trigger t == complete\n  task t\n endfamily\nendsuite\n")
    assert "could not find node 't'" in bad.check()
    good = Defs.from_string("suite s\n family f\n  trigger g/t == complete\n  family g\n   task t\n  endfamily\n"
                            " endfamily\nendsuite\n")
    assert good.check() == ""
