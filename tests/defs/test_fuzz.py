"""Hypothesis fuzzing: mutated definition text may only ever raise DefsSyntaxError; what parses is
checked, written and parsed back to an equal model."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecflow_lab.defs import Defs, DefsSyntaxError

CONFORMANCE = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "ecflow"
_SEED_FILES = sorted(p for p in (CONFORMANCE / "good_defs").rglob("*") if p.is_file()) if CONFORMANCE.is_dir() else []
SEEDS = [p.read_text(errors="replace") for p in _SEED_FILES] or [
    "suite s\n family f\n  task t\n   trigger a == complete\n   event e\n endfamily\nendsuite\n"]

TOKENS = ["suite", "family", "task", "endfamily", "endsuite", "endtask", "edit", "trigger", "complete", "-a", "-o",
          "event", "meter", "label", "limit", "inlimit", "repeat", "date", "integer", "string", "enumerated",
          "datelist", "day", "time", "today", "cron", "-w", "-d", "-m", "late", "-s", "-c", "defstatus", "clock",
          "endclock", "autocancel", "autoarchive", "autorestore", "verify", "zombie", "queue", "generic", "extern",
          "alias", "endalias", "defs_state", "calendar", "state:", "flag:", "#", ";", "\\", "'", '"', ":", "/",
          "..", "<flag>", "==", "and", "or", "not", "(", ")", "10:00", "+01:00", "20200101", "-1", "0", "99999999999",
          "complete", "set", "1.*.*", "\n", " ", "\t", "é", "\x00", "cal::date_to_julian(", "L", "real", "hybrid"]


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.integers(0, 3))
        pos = draw(st.integers(0, len(text)))
        if op == 0:  # insert a token
            text = text[:pos] + draw(st.sampled_from(TOKENS)) + text[pos:]
        elif op == 1:  # delete a span
            text = text[:pos] + text[pos + draw(st.integers(1, 12)):]
        elif op == 2:  # duplicate a line
            lines = text.split("\n")
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(draw(st.integers(0, len(lines))), lines[i])
            text = "\n".join(lines)
        else:  # random printable junk
            text = text[:pos] + draw(st.text(min_size=1, max_size=8)) + text[pos:]
    return text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_only_defs_syntax_error_escapes(text: str) -> None:
    try:
        defs = Defs.from_string(text, filename="fuzz.def")
    except DefsSyntaxError as e:
        assert e.file == "fuzz.def"
        str(e)
        return
    errors = defs.check()  # must not raise either
    assert isinstance(errors, str)
    for node in defs.walk():  # nor may evaluating any expression against the tree
        for expr in (node.trigger, node.complete):
            if expr is not None:
                try:
                    assert isinstance(expr.evaluate(node), bool)
                except DefsSyntaxError:
                    pass
    for form in (False, True):
        written = defs.to_string(state=form)
        back = Defs.from_string(written, filename="written.def")
        assert back.to_string(state=form) == written


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text(text: str) -> None:
    try:
        Defs.from_string(text)
    except DefsSyntaxError:
        pass
