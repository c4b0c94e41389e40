"""The simulator: run a definition in virtual time, with the server's own Scheduler and no real jobs.

``ecflow-lab simulate FILE.def [--days N]`` and ``Defs.simulate()`` check a suite before it is loaded:

* the same :class:`~ecflow_lab.server.scheduler.Scheduler` as the server drives every dependency (triggers,
  complete expressions, limits, repeats, time/today/date/day/cron, late ...) - there is no second
  implementation; only job submission is replaced: a submitted task becomes active, sets its events, runs
  its meters to their maximum and completes at once, or after ``SIM_DURATION`` (``HH:MM`` or minutes,
  looked up like any variable);
* time is a :class:`~ecflow_lab.server.calendar.FakeClock` that jumps straight to the next minute at which
  something can change (a time slot, a relative slot, midnight, a job ending), never stepping through idle
  minutes;
* as ecFlow's simulator: every suite is begun; the period is 24 hours, a week with ``day``, 31 weeks with
  ``date``, a year with ``cron`` or ``repeat`` (or ``endclock`` - ``clock``, or ``--days``); a task runs at
  most once per calendar step, the step being an hour unless a time attribute needs minutes;
* the result is ``''`` when every suite completed (suites with crons or autocancel excepted) and every
  ``verify`` holds, otherwise a report: suites that did not complete, what never ran and why (the words of
  ``why``), and failed verifies.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from ecflow_lab.defs.state import NState
from ecflow_lab.server import calendar as cal
from ecflow_lab.server import model as M
from ecflow_lab.server.scheduler import Scheduler

Q, C, A, S, R = NState.queued, NState.complete, NState.aborted, NState.submitted, NState.active

DAY = 24 * 60
DURATION_VAR = "SIM_DURATION"


@dataclass
class SimulationResult:
    """What a simulation found; ``report`` is '' when everything completed and every verify held."""

    report: str
    start: _dt.datetime
    end: _dt.datetime
    steps: int
    jobs: int
    seconds: float
    states: dict[str, int] = field(default_factory=dict)
    verifies: list[tuple[str, str, int, int]] = field(default_factory=list)
    never_ran: list[tuple[str, list[str]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.report == ""

    def summary(self) -> str:
        """A few lines for people: period, jobs, final states, verifies, wall time."""
        states = ", ".join(f"{k} {v}" for k, v in sorted(self.states.items()))
        ver_bad = sum(1 for _, _, e, a in self.verifies if e != a)
        lines = [f"simulated {self.start:%Y-%m-%d %H:%M} .. {self.end:%Y-%m-%d %H:%M} in {self.steps} steps, "
                 f"{self.jobs} jobs run, {self.seconds:.2f}s",
                 f"final task states: {states or 'no tasks'}",
                 f"verify: {len(self.verifies) - ver_bad} of {len(self.verifies)} hold",
                 f"tasks that never ran: {len(self.never_ran)}"]
        for path, why in self.never_ran[:20]:
            lines.append(f"  {path}: " + ("; ".join(why) if why else "nothing holds it"))
        if len(self.never_ran) > 20:
            lines.append(f"  ... and {len(self.never_ran) - 20} more")
        lines.append("result: OK" if self.ok else "result: FAILED")
        return "\n".join(lines)


class SimScheduler(Scheduler):
    """The server's Scheduler with job submission replaced by virtual jobs (no scripts, no processes)."""

    reuse_time_index = True

    def __init__(self, defs: Any, clock: cal.FakeClock, home: str) -> None:
        super().__init__(defs, clock=clock, home=home)
        self.clock_obj = clock
        self.sim_submitted: list[Any] = []
        self.ran_this_step: set[int] = set()
        self.ever_ran: set[int] = set()
        self.deferred = False

    def _touch(self, node: Any, key: str | None = None, value: Any = None) -> None:
        # no delta feed in a simulation; state changes are counted for ``verify`` (ecFlow's setStateOnly)
        self._text_cache = None
        if key == "state":
            for v in getattr(node, "verifies", None) or ():
                if v.state_name == value:
                    v.actual += 1

    def _structure_changed(self, added: Any = (), removed: Any = ()) -> None:
        self._text_cache = None
        self.need_traversal = True

    def _complete_by_rule(self, node: Any) -> None:
        # once per node and calendar step, like a job: a complete expression that stays true on a node with
        # a repeat would otherwise step the repeat without end within one instant
        if id(node) in self.ran_this_step:
            self.deferred = True
            return
        self.ran_this_step.add(id(node))
        super()._complete_by_rule(node)

    def submit(self, task: Any, user_edit: str | None = None, variables: dict[str, str] | None = None) -> bool:
        """A virtual job: the task is submitted; the simulator plays its child commands."""
        if id(task) in self.ran_this_step:
            self.deferred = True        # at most one run per calendar step, as ecFlow's simulator
            return False
        self.ran_this_step.add(id(task))
        self.ever_ran.add(id(task))
        M.set_tryno(task, M.tryno(task) + 1)
        M.set_password(task, "simulate")
        for f in ("edit_failed", "no_script", "ecfcmd_failed", "killed", "force_aborted", "task_aborted",
                  "by_rule", "zombie"):
            M.discard_flag(task, f)
        self._consume_limits(task)
        M.set_abort_reason(task, "")
        self.set_state(task, S)
        self.submitted_jobs += 1
        self.sim_submitted.append(task)
        return True


def _used_in_expressions(defs: Any) -> tuple[set[tuple[int, str]], set[int]]:
    """(node id, attribute) pairs and node ids that some trigger/complete expression refers to."""
    attrs: set[tuple[int, str]] = set()
    nodes: set[int] = set()
    for s in M.suites(defs):
        for n in M.walk(s):
            for expr in (M.trigger_expr(n), M.complete_expr(n)):
                if expr is None:
                    continue
                try:
                    refs = expr.references()
                except Exception:       # a bad expression is reported by check, not here
                    continue
                for r in refs:
                    if r.kind == "var":
                        continue
                    target = n.find_referenced_node(r.path)
                    if target is None:
                        continue
                    nodes.add(id(target))
                    if r.attr:
                        attrs.add((id(target), r.attr))
    return attrs, nodes


def _duration_minutes(sch: Scheduler, task: Any) -> int:
    v = sch.lookup(task, DURATION_VAR)
    if not v:
        return 0
    v = v.strip()
    try:
        if ":" in v:
            h, m = v.split(":", 1)
            return int(h) * 60 + int(m)
        return int(v)
    except ValueError:
        raise ValueError(f"{M.path(task)}: {DURATION_VAR} {v!r} is not HH:MM or minutes") from None


def _period(defs: Any, days: float | None) -> tuple[_dt.timedelta, dict[str, _dt.timedelta], bool]:
    """ecFlow's simulation length (SimulatorVisitor): the whole period, each suite's own (its calendar
    stops there), and whether a minute resolution is needed.

    Suites are visited in order and the running maximum carries over (24 h; a week with ``day``, 31 weeks
    with ``date``, a year with ``cron`` or ``repeat``); ``clock`` + ``endclock`` dates fix it instead.
    """
    per_suite: dict[str, _dt.timedelta] = {}
    running = _dt.timedelta(hours=24)
    has_end = False
    for s in M.suites(defs):
        ck, end = M.clock_attr(s), getattr(s, "endclock", None)
        if ck is not None and end is not None and ck.day and end.day:
            running = (_dt.datetime(end.year, end.month, end.day) + _dt.timedelta(seconds=end.gain)
                       - _dt.datetime(ck.year, ck.month, ck.day) - _dt.timedelta(seconds=ck.gain))
            has_end = True
        elif not has_end:
            for n in M.walk(s):
                if M.time_attrs(n):
                    running = max(running, _dt.timedelta(hours=24))
                if M.days(n):
                    running = max(running, _dt.timedelta(hours=168))
                if M.dates(n):
                    running = max(running, _dt.timedelta(hours=24 * 7 * 31))
                if M.crons(n) or M.repeat(n) is not None:
                    running = max(running, _dt.timedelta(hours=8760))
        per_suite[M.name(s)] = running
    period = max([_dt.timedelta(hours=24), *per_suite.values()])
    if days is not None:
        period = _dt.timedelta(days=days)
        per_suite = {k: period for k in per_suite}
    minutes = False
    for s in M.suites(defs):
        for n in M.walk(s):
            for a in M.time_attrs(n) + M.crons(n):
                ts = a.series
                if ts.start.minute or (ts.finish is not None and (ts.finish.minute or ts.incr.minute)):
                    minutes = True
    return period, per_suite, minutes


def _start_time(defs: Any) -> _dt.datetime:
    """The shared clock starts at midnight of the first clock date (else today); suites with their own
    clock date are offset by their calendar, as in the server."""
    for s in M.suites(defs):
        ck = M.clock_attr(s)
        if ck is not None and ck.day:
            return _dt.datetime(ck.year, ck.month, ck.day)
    return _dt.datetime.combine(_dt.date.today(), _dt.time())


def _copy(defs: Any) -> Any:
    from ecflow_lab.defs import Defs
    from ecflow_lab.defs.writer import write_defs

    return Defs.from_string(write_defs(defs), "<simulate>")


def run(defs: Any, days: float | None = None, start: _dt.datetime | None = None,
        max_seconds: float | None = None, copy: bool = True) -> SimulationResult:
    """Simulate ``defs`` (a copy unless ``copy=False``) and return what happened."""
    t0 = time.perf_counter()
    d = _copy(defs) if copy else defs
    period, suite_period, minute_res = _period(d, days)
    t_start = start or _start_time(d)
    clock = cal.FakeClock(t_start)
    with tempfile.TemporaryDirectory(prefix="ecflow_lab_sim_") as home:
        return _run(d, clock, home, t0, t_start, period, suite_period, minute_res, max_seconds)


def _run(d: Any, clock: cal.FakeClock, home: str, t0: float, t_start: _dt.datetime, period: _dt.timedelta,
         suite_period: dict[str, _dt.timedelta], minute_res: bool, max_seconds: float | None) -> SimulationResult:
    sch = SimScheduler(d, clock, home)
    used_attrs, _ = _used_in_expressions(d)
    suites = list(M.suites(d))
    if not suites:
        raise ValueError("simulate: the definition has no suites")
    for s in suites:
        for n in M.walk(s):
            for v in getattr(n, "verifies", None) or ():
                v.actual = 0        # counted from begin on (ecFlow resets them at begin, then counts)
    sch.begin()
    for s in suites:
        if not any(M.is_task(n) for n in M.walk(s)):
            M.set_state(s, C)       # nothing to run: complete, as ecFlow's simulator
    has_crons = any(M.crons(n) for s in suites for n in M.walk(s))
    has_autocancel = any(getattr(n, "autocancel", None) is not None for s in suites for n in M.walk(s))
    ci = _dt.timedelta(minutes=1) if (minute_res or t_start.minute) else _dt.timedelta(hours=1)
    end_t = t_start + period
    suite_end = {name: t_start + p for name, p in suite_period.items()}
    running: dict[int, tuple[Any, _dt.datetime]] = {}
    steps = 0
    while True:
        steps += 1
        now = _dt.datetime.fromtimestamp(clock())
        sch.ran_this_step.clear()
        sch.deferred = False
        # jobs whose duration is over complete first
        for key, (task, until) in list(running.items()):
            if until <= now:
                del running[key]
                if M.state(task) == R:
                    sch._apply_child(task, "complete", {})
        for _ in range(100000):
            sch.traverse()
            if not sch.sim_submitted:
                if sch.need_traversal:      # a complete expression / repeat changed the tree: look again
                    continue
                break
            batch, sch.sim_submitted = sch.sim_submitted, []
            for task in batch:
                _play_job(sch, task, used_attrs, now, running)
        if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
            break
        if not has_crons and all(M.state(s) == C for s in M.suites(d)) and not running:
            break
        for s in M.suites(d):
            e = suite_end.get(M.name(s))
            if e is not None and now >= e:
                sch.calendar(s).pause()          # this suite's period is over: its calendar stops
        nxt = sch.next_time_delta()
        cands = [nxt] if nxt is not None else []
        cands += [e - now for e in suite_end.values() if e > now]
        if sch.deferred:
            cands.append(ci)
        cands += [until - now for _, until in running.values()]
        cands = [c for c in cands if c > _dt.timedelta(0)]
        if not cands:
            break
        step = min(cands)
        step = max(step, _dt.timedelta(minutes=1))
        if now + step > end_t:
            break
        clock.advance(step.total_seconds())
    end_now = _dt.datetime.fromtimestamp(clock())
    report = _report(sch, d, has_crons or has_autocancel)
    states: dict[str, int] = {}
    verifies: list[tuple[str, str, int, int]] = []
    never: list[tuple[str, list[str]]] = []
    for s in M.suites(d):
        for n in M.walk(s):
            if M.is_task(n):
                states[M.state(n).name] = states.get(M.state(n).name, 0) + 1
                if id(n) not in sch.ever_ran and M.state(n) != C:
                    never.append((M.path(n), sch.why_list(n)))
            for v in getattr(n, "verifies", None) or ():
                verifies.append((M.path(n), v.state_name, v.expected, v.actual))
    return SimulationResult(report, t_start, end_now, steps, sch.submitted_jobs, time.perf_counter() - t0,
                            states, verifies, never)


def _play_job(sch: SimScheduler, task: Any, used_attrs: set[tuple[int, str]], now: _dt.datetime,
              running: dict[int, tuple[Any, _dt.datetime]]) -> None:
    """The child commands of a virtual job: init, events, meters (step by step when a trigger reads them),
    then complete - at once, or after SIM_DURATION."""
    if M.state(task) != S:
        return
    sch._apply_child(task, "init", {})
    tid = id(task)
    for ev in M.events(task):
        ev.value = not ev.initial
        if (tid, ev.ident) in used_attrs or (tid, ev.name_or_number) in used_attrs:
            sch.traverse()
    for me in M.meters(task):
        if (tid, me.name) in used_attrs:
            while me.value < me.max:
                me.value += 1
                sch.traverse()
        else:
            me.value = me.max
    # queues on the task and its parents: each step is taken and completed (ecFlow's update_for_queues)
    n = task
    while n is not None and not M.is_defs(n):
        for q in getattr(n, "queues", None) or ():
            if q.states is None:
                q.states = ["queued"] * len(q.values)
            used = (id(n), q.name) in used_attrs
            for i, st in enumerate(q.states):
                if st == "queued":
                    q.states[i] = "complete"
                    q.index = i
                    if used:
                        sch.traverse()
        n = M.parent(n)
    dur = _duration_minutes(sch, task)
    if dur > 0:
        running[tid] = (task, now + _dt.timedelta(minutes=dur))
        return
    if M.state(task) == R:
        sch._apply_child(task, "complete", {})


def _report(sch: Scheduler, d: Any, skip_complete_check: bool) -> str:
    out: list[str] = []
    if not skip_complete_check:
        bad = [s for s in M.suites(d) if M.state(s) != C]
        for s in bad:
            out.append(f"suite '/{M.name(s)}' has not completed ({M.state(s).name})")
        for s in bad:
            for n in M.walk(s):
                if M.is_task(n) and M.state(n) != C:
                    reasons = sch.why_list(n)
                    out.append(f"  {M.path(n)} is {M.state(n).name}"
                               + (": " + "; ".join(reasons) if reasons else ""))
    for s in M.suites(d):
        for n in M.walk(s):
            for v in getattr(n, "verifies", None) or ():
                if v.expected != v.actual:
                    out.append(f"verify failed: {M.path(n)} verify {v.state_name}:{v.expected} "
                               f"but it was {v.state_name} {v.actual} times")
    return "\n".join(out) + ("\n" if out else "")


def simulate(defs: Any, days: float | None = None) -> str:
    """ecFlow's ``Defs.simulate()``: '' when the definition completes and every verify holds, else why
    (a definition that fails ``check()`` is not simulated: the check's errors are returned)."""
    errors = defs.check() if hasattr(defs, "check") else ""
    if errors:
        return errors if errors.endswith("\n") else errors + "\n"
    return run(defs, days=days).report


def main(argv: list[str]) -> int:
    """``ecflow-lab simulate FILE.def [--days N]``: prints a summary (and the report); 0 when all is well."""
    ap = argparse.ArgumentParser(prog="ecflow-lab simulate",
                                 description="Run a definition in virtual time with no real jobs.")
    ap.add_argument("file", help="the .def file")
    ap.add_argument("--days", type=float, default=None,
                    help="simulated period in days (default: as ecFlow, from the suite's attributes)")
    ap.add_argument("--start", default=None, help="start date YYYY-MM-DD[THH:MM] (default: clock date or today)")
    ns = ap.parse_args(argv)
    from ecflow_lab.defs import Defs

    try:
        with open(ns.file) as fh:
            text = fh.read()
    except OSError as exc:
        print(f"simulate: cannot read {ns.file}: {exc}", file=sys.stderr)
        return 2
    try:
        defs = Defs.from_string(text, ns.file)
    except Exception as exc:        # DefsSyntaxError names file, line and what was expected
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    start = None
    if ns.start:
        try:
            start = _dt.datetime.fromisoformat(ns.start)
        except ValueError:
            print(f"simulate: --start {ns.start!r}: expected YYYY-MM-DD[THH:MM]", file=sys.stderr)
            return 2
    res = run(defs, days=ns.days, start=start, copy=False)
    print(f"{ns.file}:")
    print(res.summary())
    if res.report:
        print(res.report, end="")
    return 0 if res.ok else 1
