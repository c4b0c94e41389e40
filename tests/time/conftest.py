"""Helpers for time tests: a Scheduler on a FakeClock whose jobs are real (instant) processes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ecflow_lab.defs import Defs, NState
from ecflow_lab.server.calendar import FakeClock
from ecflow_lab.server.scheduler import Scheduler

C, Q, A, S, R = NState.complete, NState.queued, NState.aborted, NState.submitted, NState.active


class Driver:
    """Owns a Scheduler + FakeClock; plays each submitted job's init/complete at once and records runs."""

    def __init__(self, home: Path, text: str, start: dt.datetime, script: str = "echo %ECF_NAME%\n") -> None:
        self.home = home
        self.defs = Defs.from_string(text, "test.def")
        for t in self.defs.get_all_tasks():
            p = home / t.get_abs_node_path().lstrip("/")
            p.parent.mkdir(parents=True, exist_ok=True)
            p.with_suffix(".ecf").write_text(script)
        self.clock = FakeClock(start)
        self.sch = Scheduler(self.defs, clock=self.clock, home=str(home),
                             server_vars={"ECF_JOB_CMD": "true"})
        self.runs: list[tuple[str, dt.datetime]] = []
        self.jobs: list[tuple[str, str]] = []
        self.auto_complete = True

    def node(self, path: str) -> Any:
        n = self.defs.find_abs_node(path)
        assert n is not None, path
        return n

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock())

    def begin(self) -> None:
        self.sch.begin()
        self.settle()

    def child(self, task: Any, cmd: str, **args: Any) -> Any:
        args.setdefault("path", task.get_abs_node_path())
        args.setdefault("passwd", task.password)
        args.setdefault("tryno", task.try_no)
        return self.sch.child(cmd, args)

    def settle(self) -> None:
        """Traverse until nothing more is submitted; submitted jobs run and complete at once."""
        for _ in range(1000):
            self.sch.traverse()
            subs = [t for t in self.defs.get_all_tasks() if t.state == S]
            if not subs:
                return
            for t in subs:
                path = t.get_abs_node_path()
                self.runs.append((path, self.now()))
                job = self.home / (path.lstrip("/") + f".job{t.try_no}")
                self.jobs.append((path, job.read_text() if job.exists() else ""))
                if not self.auto_complete:
                    continue
                self.child(t, "init", rid="1")
                self.child(t, "complete", rid="1")
            if not self.auto_complete:
                return
        raise AssertionError("the suite never settled")

    def advance(self, minutes: int) -> None:
        """Move the clock minute by minute (as the server's poll) settling at each."""
        for _ in range(minutes):
            self.clock.advance(60)
            self.sch.tick()
            self.settle()

    def jump(self, minutes: int) -> None:
        """Move the clock in one go (a server that missed polls): the calendar catches up at once."""
        self.clock.advance(60 * minutes)
        self.sch.tick()
        self.settle()

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.runs if p == path)

    def close(self) -> None:
        self.sch.jobs.wait_all()


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Callable[..., Driver]]:
    made: list[Driver] = []

    def make(text: str, start: dt.datetime, **kw: Any) -> Driver:
        d = Driver(tmp_path, text, start, **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()
