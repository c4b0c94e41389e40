"""ecFlow's conformance corpus: good files parse, check clean and round-trip; bad files are rejected."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecflow_lab.defs import Defs, DefsSyntaxError

CONFORMANCE = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "ecflow"


def _files(sub: str) -> list[str]:
    base = CONFORMANCE / sub
    if not base.is_dir():
        return []
    return sorted(str(p.relative_to(CONFORMANCE)) for p in base.rglob("*") if p.is_file())


GOOD = _files("good_defs") + _files("good_defs_state")
BAD = _files("bad_defs")


def test_corpus_is_there() -> None:
    if not CONFORMANCE.is_dir():
        pytest.skip(f"{CONFORMANCE} is not present")
    assert len(GOOD) > 100 and len(BAD) > 100


@pytest.mark.parametrize("rel", GOOD)
def test_good_file_parses_checks_and_round_trips(rel: str) -> None:
    path = CONFORMANCE / rel
    defs = Defs(str(path))
    assert defs.check() == ""
    state_form = "defs_state" in path.read_text(errors="replace")
    text = defs.to_string(state=state_form)
    again = Defs.from_string(text, filename=f"{rel}(written)")
    assert again == defs
    # writing is stable: the re-parsed model prints the same text
    assert again.to_string(state=state_form) == text


@pytest.mark.parametrize("rel", BAD)
def test_bad_file_is_rejected(rel: str) -> None:
    path = CONFORMANCE / rel
    try:
        defs = Defs(str(path))
    except DefsSyntaxError as e:
        assert e.file == str(path)
        assert e.line >= 1 and e.column >= 1
        assert str(e).startswith(f"{path}:{e.line}:{e.column}: ")
        return
    errors = defs.check()
    assert errors.startswith("Error:"), f"{rel} was accepted by both parser and check()"


def test_metabuilder_real_suite_round_trips() -> None:
    path = CONFORMANCE.parents[1] / "bench" / "metabuilder.def"
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    defs = Defs(str(path))
    assert len(defs.get_all_tasks()) > 4000
    assert defs.check() == ""
    cpus = defs.suites[0].find_variable("CPUS")
    assert cpus.value == "$(lscpu -p | grep -v '#' | wc -l)"
    assert Defs.from_string(str(defs)) == defs


@pytest.mark.parametrize("rel", _files("good_node_defs"))
def test_node_text_parses_with_state_and_round_trips(rel: str) -> None:
    from ecflow_lab.defs import Node, NState

    node = Node.from_string((CONFORMANCE / rel).read_text(), filename=rel)
    assert node.parent is None and node.state is NState.queued
    assert Node.from_string(node.state_text()) == node
