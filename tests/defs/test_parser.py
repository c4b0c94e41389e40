"""Parser details: syntax forms, error positions, state form, continuation lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecflow_lab.defs import (
    Alias,
    Defs,
    DefsSyntaxError,
    DState,
    NState,
    RepeatDate,
    RepeatInteger,
    RepeatString,
    SState,
)


def parse(text: str) -> Defs:
    return Defs.from_string(text, filename="t.def")


def test_error_names_file_line_column_expected_and_got() -> None:
    text = "suite s\n  family f\n    task t\n  endsuite\n"
    # ecFlow accepts 'endsuite' with families open; a second 'suite' inside is an error
    text = "suite s\n  family f\n    task t\n  suite x\n"
    with pytest.raises(DefsSyntaxError) as ei:
        parse(text)
    e = ei.value
    assert (e.file, e.line, e.column) == ("t.def", 4, 3)
    assert e.expected == "'endfamily'" and e.got == "suite"
    assert str(e).startswith("t.def:4:3: expected 'endfamily', got 'suite'")
    assert isinstance(e, RuntimeError)


def test_endfamily_without_family() -> None:
    with pytest.raises(DefsSyntaxError, match=r"t.def:3:1: expected 'endsuite', got 'endfamily'"):
        parse("suite s\ntask t\nendfamily\n")


def test_error_for_bad_attribute_points_at_value() -> None:
    with pytest.raises(DefsSyntaxError) as ei:
        parse("suite s\n  task t\n    meter m 0 x\n")
    assert ei.value.line == 3 and ei.value.got == "x"
    assert ei.value.column == len("    meter m 0 ") + 1


def test_missing_file_is_a_defs_error(tmp_path) -> None:
    with pytest.raises(DefsSyntaxError, match="can not read"):
        Defs(str(tmp_path / "nope.def"))


def test_multi_statement_lines_comments_and_quotes() -> None:
    d = parse("suite s; edit A 'x;y' # c\n task t; event 1 e set; label l \"a; b\"\nendsuite\n")
    t = d.find_abs_node("/s/t")
    assert d.find_abs_node("/s").find_variable("A").value == "x;y"
    assert t.find_label("l").value == "a; b"
    assert t.find_event("e").initial is True and t.find_event("1") is t.find_event("e")
    # as ecFlow reads it: after a quoted edit/label value only '; edit' / '; label' starts a new statement
    d = parse("suite s\n edit A 'a'; edit B 'b'\n edit C 'c' ; task x\n edit CPUS '$(lscpu | grep -v '#' | wc -l)'\n"
              " edit D 'p#q' # it's a comment\nendsuite\n")
    s = d.find_suite("s")
    assert [(v.name, v.value) for v in s.variables] == [
        ("A", "a"), ("B", "b"), ("C", "'c' ; task x"), ("CPUS", "$(lscpu | grep -v '#' | wc -l)"), ("D", "p#q")]
    assert s.find_child("x") is None


def test_trigger_continuation_and_parts() -> None:
    d = parse("suite s\n task a\n task b\n task t\n  trigger a == complete and \\\n     b == complete\n"
              "  trigger -o a == aborted\n  complete b == complete\nendsuite\n")
    t = d.find_abs_node("/s/t")
    assert t.trigger.text == "a == complete and b == complete"
    assert t.trigger.expression == "a == complete and b == complete or a == aborted"
    assert t.complete.expression == "b == complete"
    assert "trigger -o a == aborted" in str(d)
    assert parse(str(d)) == d
    with pytest.raises(DefsSyntaxError, match="needs a 'complete' before it"):
        parse("suite s\n task t\n  complete -a b == complete\nendsuite\n")


def test_backslash_only_continues_at_the_end_of_a_line() -> None:
    """ecFlow 5.9.2 rejects a '\\' followed by a comment ("Failed to parse trigger ... complete\\"); before,
    it was kept in the expression and written back at a line's end, where it joined the next line (fuzz)."""
    for bad in ("trigger -a t2 == complete\\    # a comment", "complete t2 == complete \\ # c", "trigger t2 \\ == complete"):
        with pytest.raises(DefsSyntaxError, match=r"may only end the line") as e:
            parse(f"suite s\n task t2\n task b\n  trigger t2 == complete\n  {bad}\nendsuite\n")
        assert e.value.line == 5


def test_edit_values_forms() -> None:
    d = parse("suite s\n edit A 'a b'\n edit B \"c d\"\n edit C plain # comment\n edit D ''\nendsuite\n")
    s = d.find_suite("s")
    assert [(v.name, v.value) for v in s.variables] == [("A", "a b"), ("B", "c d"), ("C", "plain"), ("D", "")]


def test_repeats_and_generated_variables() -> None:
    d = parse("suite s\n family f\n  repeat date YMD 20200228 20200302 1\n  task t\n   trigger ../f:YMD_DOW == 6\n"
              " endfamily\n family g\n  repeat string S a b c\n endfamily\n"
              " family h\n  repeat integer I 0 10 5\n endfamily\nendsuite\n")
    r = d.find_abs_node("/s/f").repeat
    assert isinstance(r, RepeatDate) and r.value() == 20200228 and r.size() == 4
    assert r.increment() and r.value() == 20200229
    assert r.generated_variables()["YMD_DOW"] == "6"  # 29 Feb 2020 was a Saturday
    assert isinstance(d.find_abs_node("/s/g").repeat, RepeatString)
    ri = d.find_abs_node("/s/h").repeat
    assert isinstance(ri, RepeatInteger) and ri.size() == 3


def test_state_form_round_trip_keeps_runtime_state() -> None:
    d = parse("suite s\n limit l 2\n family f\n  task t\n   event e\n   meter m 0 10\n   label info \"x\"\n"
              "   repeat integer I 1 5\n   time 10:00 12:00 01:00\n   inlimit /s:l\n endfamily\nendsuite\n")
    s = d.find_suite("s")
    t = d.find_abs_node("/s/f/t")
    s.begun = True
    s.state = t.state = NState.active
    t.suspended = True
    t.set_flag("late")
    t.try_no, t.password, t.rid, t.abort_reason = 2, "Xy12ab3Z", "4242", "killed by signal 9"
    t.find_event("e").value = True
    t.find_meter("m").value = 7
    t.find_label("info").new_value = "step 3\nof 5"
    t.repeat.index = 2
    t.times[0].free = True
    s.find_limit("l").increment(1, "/s/f/t")
    t.inlimits[0].incremented = True
    s.calendar = {"initTime": "2020-01-01T00:00:00", "duration": "3600"}
    d.server_state = SState.RUNNING
    d.server_variables = None
    text = d.to_string(state=True)
    assert "defs_state STATE" in text
    back = parse(text)
    assert back == d
    bt = back.find_abs_node("/s/f/t")
    assert bt.abort_reason == "killed by signal 9" and bt.find_label("info").new_value == "step 3\nof 5"
    assert back.find_suite("s").find_limit("l").paths == ["/s/f/t"]
    # the definition form drops the state
    plain = parse(str(d))
    assert plain.find_abs_node("/s/f/t").state is NState.unknown


def test_save_as_checkpt_and_restore(tmp_path) -> None:
    d = parse("suite s\n task t\nendsuite\n")
    d.find_abs_node("/s/t").state = NState.complete
    p = tmp_path / "x.check"
    d.save_as_checkpt(str(p))
    assert Defs(str(p)) == d
    d.save_as_defs(str(tmp_path / "x.def"))
    assert Defs(str(tmp_path / "x.def")).find_abs_node("/s/t").state is NState.unknown
    d.save_as_defs(str(tmp_path / "y.def"), "STATE")
    assert Defs(str(tmp_path / "y.def")) == d
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp_")] == []  # atomic writes clean up


def test_aliases_in_state_form_only() -> None:
    d = parse("defs_state MIGRATE\nsuite s\n task t\n  alias alias0\n   edit odd:name 'x'\n  endalias\nendsuite\n")
    t = d.find_abs_node("/s/t")
    assert isinstance(t.aliases[0], Alias)
    assert d.find_abs_node("/s/t/alias0") is t.aliases[0]
    assert "alias" not in str(d)
    assert "alias alias0" in d.to_string(state=True)


def test_defstatus_and_suite_restrictions() -> None:
    d = parse("suite s\n defstatus suspended\n task t\n  defstatus complete\nendsuite\n")
    assert d.find_suite("s").defstatus is DState.suspended
    for bad in ("suite s\n trigger 1 == 1\nendsuite\n", "suite s\n time 10:00\nendsuite\n",
                "suite s\n task t\n  autoarchive 1\nendsuite\n", "suite s\n family f\n  clock real\nendsuite\n"):
        with pytest.raises(DefsSyntaxError, match="not allowed|only allowed"):
            parse(bad)


def test_server_variables_in_checkpoint() -> None:
    d = parse("#5.9.2\ndefs_state STATE state:queued server_state:RUNNING\nedit ECF_HOME '/x' # server\n"
              "edit USER_V 'u'\nsuite s\nendsuite\n")
    assert d.server_state is SState.RUNNING and d.state is NState.queued
    assert d.server_variables[0].value == "/x" and d.find_variable("USER_V").value == "u"
    assert parse(d.to_string(state=True)) == d


def test_node_from_string_errors() -> None:
    from ecflow_lab.defs import Node, Task

    with pytest.raises(DefsSyntaxError, match="expected 'suite', 'family' or 'task'"):
        Node.from_string("edit A 1\n")
    with pytest.raises(DefsSyntaxError, match="one top-level node"):
        Node.from_string("task a\ntask b\n")
    with pytest.raises(TypeError):
        Task.from_string("family f\nendfamily\n")
    t = Task.from_string("task t # state:aborted try:2 abort<:bad exit code 3>abort\n  event e # set\n")
    assert t.state is NState.aborted and t.try_no == 2 and t.abort_reason == "bad exit code 3"
    assert t.find_event("e").value is True


def test_crlf_and_byte_order_mark() -> None:
    text = "\ufeffsuite s\r\n  edit A 'x y'\r\n  task t\r\n    trigger 1 == 1 and \\\r\n      2 == 2\r\n    label l \"v\"\r\nendsuite\r\n"
    d = parse(text)
    t = d.find_abs_node("/s/t")
    assert d.find_suite("s").find_variable("A").value == "x y"
    assert t.trigger.text == "1 == 1 and 2 == 2" and t.find_label("l").value == "v"
    assert parse(str(d)) == d


# Repeated statements are parsed once and then only attached (the parser's memo); every check that depends
# on where a statement stands must still hold for the repeats, with the repeat's own position in errors.
REPEATS = """suite s
  family f
    task a
      edit STEP 6
      event ev
      meter m 0 10 10
      label info ''
      trigger b == complete
    task b
      edit STEP 6
      event ev
      meter m 0 10 10
      label info ''
      trigger a == complete
"""


def test_repeated_statements_build_separate_equal_attributes() -> None:
    d = parse(REPEATS + "endsuite\n")
    assert Defs.from_string(str(d)) == d
    a, b = d.find_abs_node("/s/f/a"), d.find_abs_node("/s/f/b")
    assert a.events[0] is not b.events[0] and a.meters[0] is not b.meters[0]
    assert a.labels[0] is not b.labels[0] and a.variables[0] is not b.variables[0]
    b.meters[0].value = 5
    assert a.meters[0].value == 0  # nothing shared between the two tasks
    assert [v.value for v in (a.variables[0], b.variables[0])] == ["6", "6"]
    assert str(b.trigger) == "a == complete" and str(a.trigger) == "b == complete"


@pytest.mark.parametrize("extra, line, what", [
    ("      event ev\n", 15, "duplicate event"),
    ("      meter m 0 10 10\n", 15, "duplicate meter"),
    ("      label info ''\n", 15, "duplicate label"),
    ("      trigger a == complete\n", 15, "already has a trigger"),
    ("    task a\n", 15, "duplicate node"),
    ("endsuite\n      event ev\n", 16, "outside of a suite"),
    ("  endfamily\n  family g\n  endfamily\n  endfamily\n", 18, "'endsuite', got 'endfamily'"),
    ("  endfamily\n  family g\n  endfamily\n  family g\n", 18, "duplicate node 'g'"),
    ("      inlimit /s:l\n      inlimit /s:l\n", 16, "duplicate inlimit"),
])
def test_repeated_statement_errors_name_their_own_line(extra: str, line: int, what: str) -> None:
    with pytest.raises(DefsSyntaxError) as ei:
        parse(REPEATS + extra + "endsuite\n")
    assert ei.value.line == line and what in str(ei.value)
    assert ei.value.text == extra.splitlines()[-1]


def test_repeated_edit_at_the_top_level_is_a_definition_variable() -> None:
    d = parse(REPEATS + "endsuite\nedit STEP 6\n")
    assert d.find_variable("STEP") is not None and d.find_variable("STEP").value == "6"


def _big_text(tasks: int = 20_000) -> str:
    body = "".join(f"    task t{i}\n      event ev\n      meter m 0 10 10\n      label info 'x'\n" for i in range(tasks))
    return "suite s\n  family f\n" + body + "endsuite\n"


def test_big_parse_leaves_its_objects_in_the_old_gc_generation() -> None:
    """The young generations are not left holding the whole new model (two needless full walks later)."""
    import gc

    text = _big_text()
    assert len(text) >= 1 << 20
    gc.collect()
    d = parse(text)
    assert gc.get_count()[0] < 10_000  # not the ~100k containers the parse allocated
    assert len(d.get_all_tasks()) == 20_000
    del d
    assert gc.collect() > 100_000  # and they are still collectable once dropped (parent <-> child cycles)


def test_big_parse_keeps_an_applications_frozen_objects_frozen() -> None:
    import gc

    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        parse(_big_text())
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def test_get_all_nodes_lists_what_walk_yields_in_the_same_order() -> None:
    d = parse("suite s\n task t\n  alias a1\n  endalias\n family f\n  family g\n   task u\n  endfamily\n"
              " endfamily\n task v\nendsuite\nsuite z\n task w\nendsuite\n")
    names = [n.name for n in d.get_all_nodes()]
    assert names == [n.name for n in d.walk()] == ["s", "t", "a1", "f", "g", "u", "v", "z", "w"]
    f = d.find_abs_node("/s/f")
    assert [n.name for n in f.get_all_nodes()] == ["f", "g", "u"]
    assert [n.name for n in d.get_all_tasks()] == ["t", "u", "v", "w"]
    assert [n.name for n in d.get_all_families()] == ["f", "g"]


# -- task chunks (big texts): a repeated task's text is built again from its remembered steps ----------------

_CHUNKY_FAMILY = """  family f{k}
    edit FAM {k}
    inlimit /s:work
    task a
      edit STEP 1
      edit OTHER x
      trigger b == complete
      complete a:ev
      event ev
      event 3
      meter m 0 10 10
      label info 'hello'
    task b
      edit STEP 1
      edit STEP 2
      event ev
    task c
      trigger a == complete or \\
        task == complete
      trigger -a a:ev
    task task
      meter m 0 10 5
    task d # a comment
      label info "x"
    task e
      time 10:00
      late -c +01:00
  endfamily
"""


def _parse_both(text: str, monkeypatch) -> tuple[Defs, Defs]:
    from ecflow_lab.defs import parser as P

    monkeypatch.setattr(P, "CHUNK_MIN", 1 << 60)
    lines = P.parse_text(text)
    monkeypatch.setattr(P, "CHUNK_MIN", 0)
    return lines, P.parse_text(text)


def test_task_chunks_build_exactly_what_the_lines_build(monkeypatch) -> None:
    text = "suite s\n  limit work 2\n" + "".join(_CHUNKY_FAMILY.format(k=k) for k in range(6)) + "endsuite\n"
    by_lines, by_chunks = _parse_both(text, monkeypatch)
    assert by_chunks == by_lines and str(by_chunks) == str(by_lines)
    b = by_chunks.find_abs_node("/s/f5/b")
    assert [(v.name, v.value) for v in b.variables] == [("STEP", "2")]  # a repeated edit still replaces
    c = by_chunks.find_abs_node("/s/f5/c")
    assert "a == complete or task == complete" in str(c.trigger) and "a:ev" in str(c.trigger)
    a4, a5 = by_chunks.find_abs_node("/s/f4/a"), by_chunks.find_abs_node("/s/f5/a")
    assert a4.events[0] is not a5.events[0] and a4.variables is not a5.variables  # nothing shared
    a5.meters[0].value = 7
    assert a4.meters[0].value == 0
    assert by_chunks.find_abs_node("/s/f5/d").labels[0].value == "x"
    # the state form (what a server sends) too
    by_chunks.find_abs_node("/s/f3/a").state = NState.complete
    state = by_chunks.to_string(state=True)
    s_lines, s_chunks = _parse_both(state, monkeypatch)
    assert s_chunks.to_string(state=True) == s_lines.to_string(state=True) == state


@pytest.mark.parametrize("extra, what", [
    ("  family g\n    task a\n      edit STEP 1\n      edit OTHER x\n", "duplicate node 'a'"),
    ("endsuite\n", "outside of a suite"),
])
def test_a_replayed_chunk_names_its_own_line_in_errors(extra: str, what: str, monkeypatch) -> None:
    from ecflow_lab.defs import parser as P

    chunk = "    task a\n      edit STEP 1\n      edit OTHER x\n"
    text = "suite s\n" + "".join(f"  family f{k}\n{chunk}  endfamily\n" for k in range(3)) + extra + chunk
    monkeypatch.setattr(P, "CHUNK_MIN", 0)
    with pytest.raises(DefsSyntaxError) as ei:
        P.parse_text(text + "endsuite\n")
    assert what in str(ei.value)
    assert ei.value.line == text.count("\n") - 2 and ei.value.text == "    task a"


def test_whole_corpus_parses_the_same_in_task_chunks(monkeypatch) -> None:
    """Every conformance file, read in task chunks, gives the model (or the error) the lines give."""
    from ecflow_lab.defs import parser as P

    base = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "ecflow"
    subs = ("good_defs", "good_defs_state", "bad_defs")
    files = sorted(p for sub in subs if (base / sub).is_dir() for p in (base / sub).rglob("*") if p.is_file())
    if not files:
        pytest.skip("conformance corpus not present")
    for path in files:
        text = path.read_text(errors="surrogateescape")
        results = []
        for limit in (1 << 60, 0):
            monkeypatch.setattr(P, "CHUNK_MIN", limit)
            try:
                d = P.parse_text(text, str(path))
                results.append(d.to_string(state="defs_state" in text))
            except DefsSyntaxError as e:
                results.append(("error", e.line, e.column, str(e)))
        assert results[0] == results[1], path


def test_a_new_task_has_every_slot_set_as_a_new_node_does() -> None:
    """Task._init inlines Node._init (for speed): every slot of both is set, to the same defaults."""
    from ecflow_lab.defs.nodes import Family, Node, Task

    t, f = Task._make("t"), Family._make("f")
    for slot in Node.__slots__:
        assert hasattr(t, slot), slot
        if slot != "name":
            assert getattr(t, slot) == getattr(f, slot), slot
    for slot in Task.__slots__:
        assert hasattr(t, slot), slot


def test_a_replayed_chunk_with_family_steps_names_the_failing_line(monkeypatch) -> None:
    from ecflow_lab.defs import parser as P

    fam = "  family x{k}\n    family h\n      task a\n    endfamily\n    family g\n      task a\n    endfamily\n  endfamily\n"
    # the chunk "task a / endfamily / family g" is built again in x2 and x3, and in x3 a second time where
    # a family g already exists
    text = "suite s\n" + "".join(fam.format(k=k) for k in range(3))
    text += "  family x3\n    family h\n      task a\n    endfamily\n    family g\n      task a\n    endfamily\n"
    text += "    family g\n"
    monkeypatch.setattr(P, "CHUNK_MIN", 0)
    with pytest.raises(DefsSyntaxError) as ei:
        P.parse_text(text + "  endfamily\nendsuite\n")
    assert "duplicate node 'g'" in str(ei.value)
    assert ei.value.line == text.count("\n") and ei.value.text == "    family g"
    monkeypatch.setattr(P, "CHUNK_MIN", 1 << 60)
    with pytest.raises(DefsSyntaxError) as e2:
        P.parse_text(text + "  endfamily\nendsuite\n")
    assert (e2.value.line, str(e2.value)) == (ei.value.line, str(ei.value))


def test_text_in_pieces_parses_as_the_whole_text(monkeypatch) -> None:
    """parse_text over consecutive pieces (cut anywhere: inside words, lines, 'task', continuations) builds
    what the whole text builds, and an error names the same line."""
    import random

    from ecflow_lab.defs import parser as P

    text = "suite s\n  limit work 2\n" + "".join(_CHUNKY_FAMILY.format(k=k) for k in range(8)) + "endsuite\n"
    whole = P.parse_text(text)
    rnd = random.Random(7)
    for _ in range(20):
        cuts = sorted(rnd.sample(range(1, len(text)), rnd.randint(1, 40)))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
        assert P.parse_text(iter(pieces)) == whole
    assert P.parse_text(iter([text[:3], "", text[3:]])) == whole
    assert P.parse_text(iter(["", "\ufeff" + text[:5], text[5:]])) == whole  # a byte order mark is dropped
    assert P.parse_text(iter([])) == P.parse_text("")
    bad = text.replace("    task e\n", "    task e\n      meter m 0\n", 3)
    with pytest.raises(DefsSyntaxError) as e1:
        P.parse_text(bad)
    with pytest.raises(DefsSyntaxError) as e2:
        P.parse_text(iter([bad[:1000], bad[1000:1001], bad[1001:]]))
    assert (e1.value.line, str(e1.value)) == (e2.value.line, str(e2.value))


def test_invalid_variable_names_only_pass_on_aliases_even_in_state_form() -> None:
    """As ecFlow 5.9.2: `defs_state MIGRATE` does not make 'name:1' a valid variable name on a task (only an
    alias takes any name); found by the fuzz test (it then failed to read its own output back)."""
    head = "defs_state MIGRATE\nsuite s\n  task t\n"
    with pytest.raises(DefsSyntaxError, match="invalid variable name 'name:1'") as ei:
        Defs.from_string(head + "    edit name:1 '1'\nendsuite\n")
    assert ei.value.line == 4
    d = Defs.from_string(head + "    alias a0\n      edit name:1 '1'\n    endalias\nendsuite\n")
    assert d.find_abs_node("/s/t").aliases[0].variables[0].name == "name:1"
