"""The scheduler: one object owning the definition, its traversal, jobs, child and user commands.

:class:`Scheduler` is socket-free so the simulator (issue 4) and tests can drive it directly with a fake clock:
``Scheduler(defs, clock=FakeClock(...))``, ``sch.begin("s")``, ``sch.traverse()``, ``sch.child(...)``.
:class:`Engine` adds what a server process needs on top: the request dispatch table, checkpoints, client
handles and the delta feed. Only the server's owner thread calls either.

Semantics follow ecFlow (``reference/ecflow.md`` section 2): complete expression before trigger, limits and
inlimits, defstatus, suspend/resume, status propagation with ecFlow's priority, repeats incremented when a
container completes, ECF_TRIES retries, job passwords and zombies.
"""

from __future__ import annotations

import datetime as _dt
import hmac
import os
import random
import string
import time
from collections.abc import Callable, Iterator
from typing import Any

from ecflow_lab.defs.state import NState, computed_state
from ecflow_lab.server import calendar as cal
from ecflow_lab.server import model as M
from ecflow_lab.server.jobs import (
    JobProcesses,
    PreprocessError,
    locate_script,
    preprocess,
    substitute,
    write_job,
)

Q, C, A, S, R, U = NState.queued, NState.complete, NState.aborted, NState.submitted, NState.active, NState.unknown

SERVER_DEFAULTS = {
    "ECF_JOB_CMD": "%ECF_JOB% 1> %ECF_JOBOUT% 2>&1",
    "ECF_KILL_CMD": "kill -15 %ECF_RID%",
    "ECF_STATUS_CMD": "ps --pid %ECF_RID% -f > %ECF_JOB%.stat 2>&1",
    "ECF_TRIES": "2",
    "ECF_INTERVAL": "60",
    "ECF_CHECKINTERVAL": "120",
    "ECF_CHECKMODE": "CHECK_ON_TIME",
    "ECF_MICRO": "%",
    "ECF_EXTN": ".ecf",
    "ECF_LISTS": "ecf.lists",
}

# flags that stop an aborted task from being retried automatically (Task::resolveDependencies)
NO_RETRY_FLAGS = frozenset({"force_aborted", "killed", "edit_failed", "no_script", "ecfcmd_failed"})
DEFAULT_ZOMBIE_ACTION = {"init": "block", "complete": "block", "abort": "block", "wait": "block",
                         "event": "fob", "meter": "fob", "label": "fob", "queue": "fob"}
ZOMBIE_LIFETIME = {"user": 300, "ecf": 3600, "ecf_pid": 3600, "ecf_passwd": 3600, "ecf_pid_passwd": 3600,
                   "path": 900}


def _password() -> str:
    return "".join(random.choices(string.ascii_letters + string.digits, k=8))


class Zombie:
    """A child command from a job the server does not recognise as the task's current job."""

    __slots__ = ("path", "kind", "passwd", "pid", "tryno", "last_cmd", "calls", "created", "action", "reason")

    def __init__(self, path: str, kind: str, passwd: str, pid: str, tryno: int, cmd: str, reason: str) -> None:
        self.path, self.kind, self.passwd, self.pid, self.tryno = path, kind, passwd, pid, tryno
        self.last_cmd, self.calls, self.created, self.action, self.reason = cmd, 0, time.time(), "", reason

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "type": self.kind, "password": self.passwd, "pid": self.pid,
                "tryno": self.tryno, "last_child_cmd": self.last_cmd, "calls": self.calls,
                "action": self.action or "", "reason": self.reason,
                "duration": int(time.time() - self.created)}


class Scheduler:
    """The definition plus everything that changes it; socket-free and clock-injectable."""

    def __init__(self, defs: Any = None, clock: Callable[[], float] | None = None, home: str = ".",
                 log: Any = None, server_vars: dict[str, str] | None = None) -> None:
        self.defs = defs if defs is not None else M.new_defs()
        self.clock = clock or time.time
        self.home = str(home)
        self.log = log
        self.server_state = "RUNNING"
        self.server_vars: dict[str, str] = dict(SERVER_DEFAULTS)
        self.server_vars["ECF_HOME"] = self.home
        self.server_vars.update(server_vars or {})
        self.jobs = JobProcesses()
        self.zombies: dict[tuple[str, str, str], Zombie] = {}
        self.need_traversal = False
        self.traverse_now = False
        self.dirty_since_checkpoint = False
        self._calendars: dict[str, cal.SuiteCalendar] = {}
        self._last_day: _dt.date | None = None
        self._requeued_at: dict[str, _dt.datetime] = {}
        self._tstate = cal.TimeState()                 # day dates, relative starts, late bookkeeping
        self._cal_last: dict[str, _dt.datetime] = {}   # suite -> suite time of the last calendar update
        self._cmd_context = False                      # True while a user command (run/force) completes a node
        # change tracking for deltas
        self._chg: dict[str, dict[str, Any]] = {}
        self._added: list[str] = []
        self._removed: list[str] = []
        self._sstate_changed = False
        self._text_cache: str | None = None
        # per-suite caches of the state-form text: plain, gzip member, and the text it was loaded from
        self._suite_cache: dict[str, str] = {}
        self._suite_gz: dict[str, bytes] = {}
        self._suite_src: dict[str, bytes] = {}
        self.submitted_jobs = 0
        self.child_cmds = 0
        self.user_cmds = 0
        self.job_env: dict[str, str] = {}
        M.set_server_state(self.defs, self.server_state)

    # ================================================================== change tracking
    def _invalidate(self, p: str | None) -> None:
        """Drop cached text of the suite holding path ``p`` (all suites when None)."""
        self._text_cache = None
        self.dirty_since_checkpoint = True
        if p is None:
            self._suite_cache.clear()
            self._suite_src.clear()
            self._suite_gz.clear()
            return
        name = p.split("/", 2)[1] if p.startswith("/") else p
        self._suite_cache.pop(name, None)
        self._suite_src.pop(name, None)
        self._suite_gz.pop(name, None)

    def _touch(self, node: Any, key: str | None = None, value: Any = None, path: str | None = None) -> None:
        p = path or M.path(node)
        self._invalidate(p)
        rec = self._chg.setdefault(p, {})
        if key is not None:
            if key in ("events", "meters", "labels", "variables", "limits"):
                rec.setdefault(key, {}).update(value)
            else:
                rec[key] = value

    def _structure_changed(self, added: list[str] = (), removed: list[str] = ()) -> None:
        if not added and not removed:
            self._invalidate(None)
        for p in list(added) + list(removed):
            self._invalidate(p)
        self._added.extend(added)
        self._removed.extend(removed)
        self.need_traversal = True

    def has_changes(self) -> bool:
        return bool(self._chg or self._added or self._removed or self._sstate_changed)

    def take_delta(self) -> dict[str, Any] | None:
        """The pinned delta message of everything changed since the last call (without v/seq), or None."""
        if not (self._chg or self._added or self._removed or self._sstate_changed):
            return None
        msg: dict[str, Any] = {"changes": [dict(rec, path=p) for p, rec in self._chg.items()],
                               "added": self._added, "removed": self._removed}
        if self._sstate_changed:
            msg["server_state"] = self.server_state
        self._chg, self._added, self._removed, self._sstate_changed = {}, [], [], False
        return msg

    def set_server_state(self, state: str) -> None:
        state = state.upper()
        if state not in ("RUNNING", "SHUTDOWN", "HALTED"):
            raise RuntimeError(f"server state must be RUNNING, SHUTDOWN or HALTED, got {state!r}")
        if state != self.server_state:
            self.server_state = state
            self._sstate_changed = True
            self._text_cache = None
            self.dirty_since_checkpoint = True
            M.set_server_state(self.defs, state)
        if state == "RUNNING":
            self.need_traversal = True

    # ================================================================== logging
    def _msg(self, text: str) -> None:
        if self.log is not None:
            self.log.msg(text)

    def _logline(self, text: str) -> None:
        if self.log is not None:
            self.log.log(text)

    def _err(self, text: str) -> None:
        if self.log is not None:
            self.log.err(text)

    # ================================================================== state
    def set_state(self, node: Any, state: NState, propagate: bool = True) -> None:
        """Set a node's state, record the change, and recompute the ancestors' states."""
        if M.state(node) != state:
            M.set_state(node, state)
            self._touch(node, "state", state.name)
            self._note_state(node, state)
            if state == C and M.is_task(node):
                self._on_task_complete_flags(node)
                self._autorestore(node)
                if M.has_time(node) and self._time_requeue_due(node):
                    self._requeue_tree(node, reset_repeats=False, mode="time")
        if propagate:
            self._propagate(M.parent(node))

    def _on_task_complete_flags(self, node: Any) -> None:
        pass

    def _propagate(self, node: Any) -> None:
        """Recompute container states bottom-up (ecFlow's requeueOrSetMostSignificantStateUpNodeTree)."""
        while node is not None and not M.is_defs(node):
            kids = M.children(node)
            new = computed_state(M.state(k) for k in kids) if kids else M.state(node)
            if new == C and kids:
                if self._container_complete(node):
                    return   # requeued for a repeat / time slot: the requeue propagated already
            if M.state(node) != new:
                M.set_state(node, new)
                self._touch(node, "state", new.name)
                if new == C:
                    self._on_complete(node)
            node = M.parent(node)

    def _container_complete(self, node: Any, force: bool = False) -> bool:
        """All children complete: the container completes (counted by ``verify``), then steps its repeat and
        requeues its children, or requeues for its next time slot (ecFlow's requeueOrSetMostSignificant...)."""
        if M.state(node) == C and not force:
            return False
        if M.state(node) != C:
            M.set_state(node, C)
            self._touch(node, "state", C.name)
            self._note_state(node, C)
            self._on_complete(node)
        self._autorestore(node)
        rep = M.repeat(node)
        if rep is not None:
            if rep.increment():
                self._touch(node, "repeat", {"name": rep.name, "value": rep.value_as_string(), "index": rep.index})
                self._msg(f"--repeat {M.path(node)} {rep.name}={rep.value_as_string()}")
                self._requeue_tree(node, reset_repeats=True, mode="repeat")
                self._set_computed(node)
                self._propagate(M.parent(node))
                self.need_traversal = True
                return True
            # ran past the end: keep the last valid value visible
            rep.index = max(0, rep.index - 1) if hasattr(rep, "index") else 0
        if M.has_time(node) and self._time_requeue_due(node):
            self._requeue_tree(node, reset_repeats=False, mode="time")
            self._set_computed(node)
            self._propagate(M.parent(node))
            return True
        return False

    def _set_computed(self, node: Any) -> None:
        kids = M.children(node)
        if kids:
            st = computed_state(M.state(k) for k in kids)
            if M.state(node) != st:
                M.set_state(node, st)
                self._touch(node, "state", st.name)

    def _on_complete(self, node: Any) -> None:
        pass

    def _requeue_tree(self, node: Any, reset_repeats: bool, keep_time: bool = False, user: bool = False,
                      mode: str = "") -> None:
        """Requeue a node and its subtree: state queued, tries, events, meters, labels, time slots reset.

        ``mode`` says why, as ecFlow's Requeue_args: ``begin``, ``full`` (a user requeue), ``repeat`` (the
        parent repeat stepped) or ``time`` (the node's next time slot); it decides how time attributes move.
        """
        mode = mode or ("time" if keep_time else "full" if user else "repeat")
        now = self.suite_now(node)
        for n in M.walk(node):
            if M.is_task(n):
                if M.state(n) in (S, R) and not user:
                    pass
                M.set_tryno(n, 0)
                self._release_limits(n)
            no_reque = "no_reque" in M.flags(n)
            M.clear_flags(n, keep=("message",))
            for ev in M.events(n):
                if ev.value != ev.initial:
                    ev.value = ev.initial
                    self._touch(n, "events", {ev.ident: ev.value})
            for me in M.meters(n):
                if me.value != me.min:
                    me.value = me.min
                    self._touch(n, "meters", {me.name: me.value})
            for lb in M.labels(n):
                if lb.new_value:
                    lb.new_value = ""
                    self._touch(n, "labels", {lb.name: lb.value})
            self._requeue_time_attrs(n, now, mode, no_reque)
            rep = M.repeat(n)
            if rep is not None and n is not node and reset_repeats:
                rep.reset()
                self._touch(n, "repeat", {"name": rep.name, "value": rep.value_as_string(), "index": rep.index})
            self._requeued_at[M.path(n)] = now
            st = Q
            if mode in ("repeat", "time"):
                ds = M.defstatus(n)
                if ds not in (None, "queued", "suspended") and (M.is_task(n) or ds == "complete"):
                    st = NState[ds]
            if self._hybrid_done(n, now):
                st = C
            if M.state(n) != st:
                M.set_state(n, st)
                self._touch(n, "state", st.name)
        self.need_traversal = True

    def suite_now(self, node: Any) -> _dt.datetime:
        s = M.suite_of(node)
        c = self._calendars.get(M.name(s)) if s is not None else None
        if c is None and s is not None and M.begun(s):
            c = self.calendar(s)        # e.g. restored from a checkpoint: its saved calendar continues
        if c is None:
            return _dt.datetime.fromtimestamp(self.clock()).replace(second=0, microsecond=0)
        return c.now()

    def calendar(self, suite: Any) -> cal.SuiteCalendar:
        c = self._calendars.get(M.name(suite))
        if c is None:
            c = cal.SuiteCalendar(self.clock, M.clock_attr(suite))
            saved = getattr(suite, "calendar", None)
            if not (M.begun(suite) and saved and c.restore(saved)):   # a checkpoint's calendar continues
                c.begin()
            self._calendars[M.name(suite)] = c
            self._save_calendar(suite, c)
        return c

    def _save_calendar(self, suite: Any, c: cal.SuiteCalendar) -> None:
        st = c.state()
        if getattr(suite, "calendar", None) != st:
            try:
                suite.calendar = st          # written on the suite's 'calendar' line of checkpoints
            except AttributeError:
                return
            self.dirty_since_checkpoint = True
            self._text_cache = None

    # ================================================================== begin / requeue
    def begin(self, suite_names: list[str] | None = None, force: bool = False) -> None:
        """Begin suites (all when empty): requeue everything, apply defstatus, start the calendar."""
        suites = M.suites(self.defs)
        if suite_names:
            chosen = []
            for name in suite_names:
                s = M.find_suite(self.defs, name.lstrip("/"))
                if s is None:
                    raise RuntimeError(f"begin: suite {name} not found in the server definition")
                chosen.append(s)
        else:
            chosen = [s for s in suites if not M.begun(s)]
        for s in chosen:
            if M.begun(s) and not force:
                raise RuntimeError(f"begin: suite /{M.name(s)} has already begun; use force to begin again")
            if not force:
                running = [M.path(t) for t in M.walk(s) if M.is_task(t) and M.state(t) in (S, R)]
                if running:
                    raise RuntimeError(f"begin: suite /{M.name(s)} has submitted/active tasks "
                                       f"({', '.join(running[:5])}); use force")
            c = cal.SuiteCalendar(self.clock, M.clock_attr(s))
            c.begin()
            self._calendars[M.name(s)] = c
            self._save_calendar(s, c)
            M.set_begun(s, True)
            for n in M.walk(s):
                rep = M.repeat(n)
                if rep is not None:
                    rep.reset()
            self._cal_last.pop(M.name(s), None)
            self._requeue_tree(s, reset_repeats=True, user=True, mode="begin")
            self._apply_defstatus(s)
            self._touch(s, "begun", True)
            self._msg(f"--begin /{M.name(s)}")
        self.need_traversal = True

    def _apply_defstatus(self, top: Any) -> None:
        for n in M.walk(top):
            ds = M.defstatus(n)
            if ds is None or ds == "queued":
                continue
            if ds == "suspended":
                self._set_suspended(n, True)
            else:
                st = NState[ds]
                for k in M.walk(n):
                    if M.state(k) != st and (k is n or M.is_task(k) or st == C):
                        M.set_state(k, st)
                        self._touch(k, "state", st.name)
        self._recompute(top)

    def _recompute(self, top: Any) -> None:
        """Recompute every container state under ``top`` (post-order) and up to the root."""
        def rec(n: Any) -> None:
            kids = M.children(n)
            if not kids:
                return
            for k in kids:
                rec(k)
            st = computed_state(M.state(k) for k in kids)
            if M.defstatus(n) == "complete" and M.state(n) == C:
                return
            if M.state(n) != st:
                M.set_state(n, st)
                self._touch(n, "state", st.name)
        rec(top)
        p = M.parent(top)
        while p is not None and not M.is_defs(p):
            kids = M.children(p)
            st = computed_state(M.state(k) for k in kids)
            if M.state(p) != st:
                M.set_state(p, st)
                self._touch(p, "state", st.name)
            p = M.parent(p)

    def _set_suspended(self, node: Any, flag: bool) -> None:
        if M.suspended(node) != flag:
            M.set_suspended(node, flag)
            self._touch(node, "suspended", flag)

    # ================================================================== traversal
    def tick(self) -> None:
        """Called about once a second: time dependencies, zombies' lifetime, a new day."""
        if self.update_calendar() and self.server_state == "RUNNING":
            self.need_traversal = True
        now = time.time()
        for key, z in list(self.zombies.items()):
            life = ZOMBIE_LIFETIME.get(z.kind, 3600)
            if now - z.created > life:
                del self.zombies[key]

    def _has_time_deps(self) -> bool:
        flag = getattr(self, "_time_deps_cache", None)
        if flag is None or self._text_cache is None:
            flag = any(M.time_attrs(n) or M.dates(n) or M.days(n) or M.crons(n)
                       for s in M.suites(self.defs) if M.begun(s) for n in M.walk(s))
            self._time_deps_cache = flag
        return flag

    def traverse(self) -> int:
        """One job-generation pass over the begun suites; returns the number of jobs submitted."""
        self.need_traversal = False
        self.traverse_now = False
        if self.server_state != "RUNNING":
            return 0
        self._cmd_context = False
        self.update_calendar()
        before = self.submitted_jobs
        for s in list(M.suites(self.defs)):
            if M.begun(s):
                self._resolve(s)
        return self.submitted_jobs - before

    def _time_free(self, node: Any) -> bool:
        """ecFlow's Node::timeDependenciesFree: kinds are ANDed, attributes of one kind ORed."""
        tattrs = M.time_attrs(node)
        times = [a for a in tattrs if not M.is_today(a)]
        todays = [a for a in tattrs if M.is_today(a)]
        dates, days, crons = M.dates(node), M.days(node), M.crons(node)
        if not (times or todays or dates or days or crons):
            return True
        now = self.suite_now(node)
        d = now.date()
        T = self._tstate
        day_free = any(T.day_is_free(a, d) for a in days)
        date_free = any(a.free or cal.date_matches(a, d) for a in dates)
        if (days and not day_free) or (dates and not date_free):
            return False        # a holding day or date; and kinds are ANDed
        if times and not any(cal.time_is_free(a, T.cur(a, now)) for a in times):
            return False
        if crons and not any(cal.cron_is_free(a, T.cur(a, now), d) for a in crons):
            return False
        if todays:
            if len(todays) == 1:
                ok = cal.today_is_free(todays[0], T.cur(todays[0], now))
            else:
                ok = (any(a.free or cal.ts_matches(a, T.cur(a, now)) for a in todays)
                      or all(cal.today_is_free(a, T.cur(a, now)) for a in todays))
            if not ok:
                return False
        return True

    def _resolve(self, node: Any) -> None:
        st = M.state(node)
        if st == C or M.suspended(node):
            return
        if M.has_time(node) and not self._time_free(node):
            return
        cexpr = M.complete_expr(node)
        if cexpr is not None and st not in (S, R) and M.evaluate(cexpr, node):
            self._complete_by_rule(node)
            return
        texpr = M.trigger_expr(node)
        if texpr is not None and not M.evaluate(texpr, node):
            return
        kids = M.children(node)
        if kids or not M.is_task(node):
            if not self._inlimits_free(node, own_only=True):
                return
            for k in kids:
                self._resolve(k)
            return
        if st == Q or (st == A and self._may_retry(node)):
            if self._inlimits_free(node):
                self.submit(node)

    def _may_retry(self, task: Any) -> bool:
        if M.flags(task) & NO_RETRY_FLAGS:
            return False
        try:
            tries = int(self.lookup(task, "ECF_TRIES") or 2)
        except ValueError:
            tries = 2
        return M.tryno(task) < tries

    def _complete_by_rule(self, node: Any) -> None:
        for n in M.walk(node):
            if M.state(n) != C:
                M.set_state(n, C)
                self._touch(n, "state", "complete")
            if M.is_task(n):
                self._release_limits(n)
        M.add_flag(node, "by_rule")
        self._touch(node, "flags", sorted(M.flags(node)))
        self.need_traversal = True
        # as ecFlow: the completed node may step its repeat or requeue for its next time slot
        if M.children(node):
            if self._container_complete(node, force=True):
                return
        else:
            self._autorestore(node)
            if M.has_time(node) and self._time_requeue_due(node):
                self._requeue_tree(node, reset_repeats=False, mode="time")
        self._propagate(M.parent(node))

    # ------------------------------------------------------------------ limits
    def _limits_for(self, node: Any, own_only: bool = False) -> Iterator[tuple[Any, Any, Any]]:
        """``(inlimit, limit, owner_node)`` for the node's inlimits (and its ancestors' unless own_only)."""
        n = node
        while n is not None and not M.is_defs(n):
            for il in M.inlimits(n):
                lim = self.find_limit(n, il)
                if lim is not None:
                    yield il, lim, n
            if own_only:
                return
            n = M.parent(n)

    def find_limit(self, node: Any, il: Any) -> Any:
        if il.path:
            target = M.find_node(self.defs, node, il.path)
            return M.find_limit_on(target, il.name) if target is not None else None
        n = node
        while n is not None and not M.is_defs(n):
            lim = M.find_limit_on(n, il.name)
            if lim is not None:
                return lim
            n = M.parent(n)
        return None

    def _limit_owner(self, node: Any, il: Any) -> Any:
        if il.path:
            return M.find_node(self.defs, node, il.path)
        n = node
        while n is not None and not M.is_defs(n):
            if M.find_limit_on(n, il.name) is not None:
                return n
            n = M.parent(n)
        return None

    def _inlimits_free(self, node: Any, own_only: bool = False) -> bool:
        task_path = M.path(node)
        for il, lim, owner in self._limits_for(node, own_only):
            if own_only and M.is_task(node):
                continue
            key = M.path(owner) if il.limit_this_node_only else task_path
            if lim.paths and key in lim.paths:
                continue
            if own_only:
                # a family's inlimit: the family is held only when no token at all is left
                if lim.value >= lim.limit:
                    return False
                continue
            if lim.value + il.tokens > lim.limit:
                return False
        return True

    def _consume_limits(self, task: Any) -> None:
        tpath = M.path(task)
        for il, lim, owner in self._limits_for(task):
            key = M.path(owner) if il.limit_this_node_only else tpath
            if not lim.paths or key not in lim.paths:
                lim.increment(il.tokens, key)
                self._touch_limit(lim, self._limit_owner(task, il))
            il.incremented = True

    def _release_limits(self, task: Any, submission_only: bool = False) -> None:
        tpath = M.path(task)
        for il, lim, owner in self._limits_for(task):
            if submission_only and not il.limit_submission:
                continue
            if il.limit_this_node_only:
                # release the family token when none of its tasks is still running
                if any(M.state(t) in (S, R) and t is not task for t in M.walk(owner) if M.is_task(t)):
                    continue
                key = M.path(owner)
            else:
                key = tpath
            if lim.paths and key in lim.paths:
                lim.decrement(il.tokens, key)
                self._touch_limit(lim, self._limit_owner(task, il))
            il.incremented = False

    def _touch_limit(self, lim: Any, owner: Any = None) -> None:
        if owner is not None:
            self._touch(owner, "limits", {lim.name: {"value": lim.value, "paths": list(lim.paths or ())}})
        else:
            self._invalidate(None)
        self.dirty_since_checkpoint = True
        self.need_traversal = True

    # ================================================================== variables
    def generated(self, node: Any, name: str) -> str | None:
        """ecFlow's generated variables of one node (not its parents)."""
        if M.is_task(node):
            if name == "TASK":
                return M.name(node)
            if name == "ECF_NAME":
                return M.path(node)
            if name == "ECF_PASS":
                return M.password(node)
            if name == "ECF_TRYNO":
                return str(M.tryno(node))
            if name == "ECF_RID":
                return M.rid(node)
            if name in ("ECF_JOB", "ECF_JOBOUT", "ECF_SCRIPT"):
                home = self.lookup(node, "ECF_HOME") or self.home
                p = M.path(node)
                if name == "ECF_SCRIPT":
                    return home + p + (self.lookup(node, "ECF_EXTN") or ".ecf")
                if name == "ECF_JOB":
                    return f"{home}{p}.job{M.tryno(node)}"
                out = self.lookup(node, "ECF_OUT") or home
                return f"{out}{p}.{M.tryno(node)}"
            return None
        if M.is_suite(node):
            if name == "SUITE":
                return M.name(node)
            if name in ("YYYY", "MM", "DD", "DOW", "DOY", "DAY", "MONTH", "DATE", "ECF_DATE", "TIME",
                        "ECF_TIME", "ECF_JULIAN", "ECF_CLOCK"):
                return self.calendar(node).variables().get(name)
            return None
        if name == "FAMILY":
            return M.path(node).split("/", 2)[-1]
        if name == "FAMILY1":
            return M.name(node)
        return None

    ALWAYS_GENERATED = frozenset({"ECF_TRYNO", "ECF_NAME", "ECF_PASS"})

    def lookup(self, node: Any, name: str) -> str | None:
        """Variable lookup as ecFlow: user variables, repeat, generated, then the parents, then the server."""
        if name in self.ALWAYS_GENERATED:
            return self.generated(node, name)
        if name in ("ECF_HOST", "ECF_PORT", "ECF_HTTP_PORT"):
            return self.server_vars.get(name)
        n = node
        while n is not None and not M.is_defs(n):
            v = M.user_var(n, name)
            if v is not None:
                return v
            rep = M.repeat(n)
            if rep is not None and name.startswith(rep.name):
                gv = rep.generated_variables().get(name)
                if gv is not None:
                    return gv
            g = self.generated(n, name)
            if g is not None:
                return g
            n = M.parent(n)
        v = M.server_user_var(self.defs, name)
        if v is not None:
            return v
        return self.server_vars.get(name)

    def lookup_fn(self, node: Any, overrides: dict[str, str] | None = None) -> Callable[[str], str | None]:
        if overrides:
            return lambda name: overrides[name] if name in overrides else self.lookup(node, name)
        return lambda name: self.lookup(node, name)

    # ================================================================== jobs
    def submit(self, task: Any, user_edit: str | None = None, variables: dict[str, str] | None = None) -> bool:
        """Pre-process the task's script, write ECF_JOB, run ECF_JOB_CMD; the task becomes submitted.

        As ecFlow: a task under ``ECF_DUMMY_TASK`` is never submitted (it stays as it is, for triggers and
        manual use); under ``ECF_NO_SCRIPT`` there is no script, ECF_JOB_CMD alone is the job."""
        if user_edit is None and self.lookup(task, "ECF_DUMMY_TASK") is not None:
            return True
        tpath = M.path(task)
        M.set_tryno(task, M.tryno(task) + 1)
        M.set_password(task, _password())
        M.set_rid(task, "")
        for f in ("edit_failed", "no_script", "ecfcmd_failed", "killed", "force_aborted", "task_aborted",
                  "by_rule", "zombie"):
            M.discard_flag(task, f)
        self._touch(task, "tryno", M.tryno(task))
        lookup = self.lookup_fn(task, variables)
        job_path = lookup("ECF_JOB") or ""
        try:
            if user_edit is not None:
                from ecflow_lab.server.jobs import Preprocessed

                micro = lookup("ECF_MICRO") or "%"
                pp = Preprocessed("\n".join(substitute(line, lookup, micro, (tpath, i + 1))
                                            for i, line in enumerate(user_edit.split("\n"))), "")
            elif lookup("ECF_NO_SCRIPT") is not None:
                pp = None
            else:
                script = locate_script(tpath, lookup)
                pp = preprocess(script, lookup)
            if pp is not None:
                write_job(job_path, pp.job)
        except PreprocessError as exc:
            flag = "no_script" if exc.line == 0 and "no script" in exc.message else "edit_failed"
            self._abort(task, f"{flag}: {exc}", flag)
            self._err(f"{tpath} job creation failed: {exc}")
            return False
        except OSError as exc:
            self._abort(task, f"edit_failed: cannot write job {job_path}: {exc}", "edit_failed")
            return False
        try:
            cmd = substitute(lookup("ECF_JOB_CMD") or SERVER_DEFAULTS["ECF_JOB_CMD"], lookup,
                             lookup("ECF_MICRO") or "%", (tpath, 0))
        except PreprocessError as exc:
            self._abort(task, f"ecfcmd_failed: ECF_JOB_CMD: {exc}", "ecfcmd_failed")
            return False
        out = lookup("ECF_JOBOUT") or ""
        if out:
            try:
                os.makedirs(os.path.dirname(out), exist_ok=True)
            except OSError:
                pass
        env = dict(os.environ)
        env.update(self.job_env)
        env.update({"ECF_NAME": tpath, "ECF_PASS": M.password(task), "ECF_TRYNO": str(M.tryno(task)),
                    "ECF_HOST": self.server_vars.get("ECF_HOST", "localhost"),
                    "ECF_PORT": self.server_vars.get("ECF_PORT", ""),
                    "ECF_HTTP_PORT": self.server_vars.get("ECF_HTTP_PORT", "")})
        try:
            self.jobs.start(cmd, tpath, "submit", env=env, cwd=self.home)
        except OSError as exc:
            self._abort(task, f"ecfcmd_failed: {exc}", "ecfcmd_failed")
            return False
        self._consume_limits(task)
        if user_edit is not None:
            M.add_flag(task, "user_edit")
        M.set_abort_reason(task, "")
        self.set_state(task, S)
        self._touch(task, "flags", sorted(M.flags(task)))
        self.submitted_jobs += 1
        self._logline(f" submitted: {tpath} job_size:{len(pp.job) if pp is not None else 0}")
        return True

    def _abort(self, task: Any, reason: str, flag: str | None = None) -> None:
        if flag:
            M.add_flag(task, flag)
        M.set_abort_reason(task, reason)
        self._release_limits(task)
        self._touch(task, "flags", sorted(M.flags(task)))
        self._touch(task, "abort_reason", reason)
        self.set_state(task, A)
        self._msg(f" aborted: {M.path(task)} {reason}")
        self.need_traversal = True

    def reap_jobs(self) -> None:
        """Note job commands that failed (ECF_JOB_CMD exit status != 0 while the task is still submitted)."""
        if not len(self.jobs):
            return
        for path, kind, rc in self.jobs.reap():
            if kind != "submit" or rc == 0:
                continue
            t = M.find_abs(self.defs, path)
            if t is not None and M.state(t) == S:
                self._abort(t, f"ECF_JOB_CMD failed with exit code {rc}", "ecfcmd_failed")

    def _run_cmd(self, task: Any, var: str, kind: str) -> None:
        lookup = self.lookup_fn(task)
        try:
            cmd = substitute(lookup(var) or SERVER_DEFAULTS[var], lookup, lookup("ECF_MICRO") or "%",
                             (M.path(task), 0))
        except PreprocessError as exc:
            raise RuntimeError(f"{kind}: {var} of {M.path(task)}: {exc}") from None
        self.jobs.start(cmd, M.path(task), kind, cwd=self.home)

    # ================================================================== child commands
    def child(self, cmd: str, args: dict[str, Any]) -> Any:
        """Authenticate and apply one child command; returns the reply (None, a value, or block/fail)."""
        self.child_cmds += 1
        self._cmd_context = True     # as ecFlow's CmdContext: cleared by the next traversal
        path = str(args.get("path") or "")
        passwd = str(args.get("passwd") or "")
        rid = str(args.get("rid") or "")
        tryno = int(args.get("tryno") or 0)
        if self.server_state == "HALTED":
            return {"block": True, "denied": True, "retry": 2.0,
                    "reason": f"server is HALTED: {cmd} for {path} refused, retrying"}
        task = M.find_abs(self.defs, path) if path else None
        if task is None or not M.is_task(task):
            return self._zombie(None, path, "path", passwd, rid, tryno, cmd,
                                f"{cmd}: task {path or '(ECF_NAME not set)'} not found in the server")
        free = self.lookup(task, "ECF_PASS") == "FREE" or M.user_var(task, "ECF_PASS") == "FREE"
        if not free:
            expected = M.password(task)
            if not isinstance(expected, str) or not hmac.compare_digest(passwd.encode(), expected.encode()):
                return self._zombie(task, path, "ecf_passwd", passwd, rid, tryno, cmd,
                                    f"{cmd}: password mismatch for {path} (job password {passwd!r}); "
                                    f"the job is a zombie")
            known = M.rid(task)
            if cmd == "init":
                if M.state(task) == R and known and rid and rid != known:
                    return self._zombie(task, path, "ecf_pid", passwd, rid, tryno, cmd,
                                        f"init: {path} is already active with process id {known}")
            elif known and rid and rid != known:
                return self._zombie(task, path, "ecf_pid", passwd, rid, tryno, cmd,
                                    f"{cmd}: process id {rid} is not the task's ({known})")
            if M.state(task) == C and cmd not in ("complete",):
                return self._zombie(task, path, "ecf", passwd, rid, tryno, cmd,
                                    f"{cmd}: task {path} is already complete")
        return self._apply_child(task, cmd, args)

    def _zombie(self, task: Any, path: str, kind: str, passwd: str, rid: str, tryno: int, cmd: str,
                reason: str) -> Any:
        key = (path, passwd, rid)
        z = self.zombies.get(key)
        if z is None:
            z = self.zombies[key] = Zombie(path, kind, passwd, rid, tryno, cmd, reason)
            self._msg(f"--zombie {kind} {path} {reason}")
        z.calls += 1
        z.last_cmd = cmd
        if task is not None and "zombie" not in M.flags(task):
            M.add_flag(task, "zombie")
            self._touch(task, "flags", sorted(M.flags(task)))
        action = z.action or self._zombie_attr_action(task, kind, cmd) or DEFAULT_ZOMBIE_ACTION.get(cmd, "block")
        if action == "adopt" and task is not None:
            M.set_password(task, passwd)
            if rid:
                M.set_rid(task, rid)
            del self.zombies[key]
            M.discard_flag(task, "zombie")
            self._touch(task, "flags", sorted(M.flags(task)))
            return None if cmd in ("event", "meter", "label") else self._apply_child(task, cmd, {})
        if action == "fob":
            return None
        if action == "fail":
            return {"fail": True, "reason": reason}
        if action == "remove":
            del self.zombies[key]
            return None
        if action == "kill" and task is not None and rid:
            try:
                lookup = self.lookup_fn(task, {"ECF_RID": rid})
                cmdline = substitute(lookup("ECF_KILL_CMD") or SERVER_DEFAULTS["ECF_KILL_CMD"], lookup)
                self.jobs.start(cmdline, path, "kill", cwd=self.home)
            except (PreprocessError, OSError) as exc:
                self._err(f"zombie kill {path}: {exc}")
            return {"fail": True, "reason": reason + " (killed)"}
        return {"block": True, "denied": True, "retry": 5.0, "reason": reason}

    def _zombie_attr_action(self, task: Any, kind: str, cmd: str) -> str | None:
        n = task
        want = "ecf" if kind.startswith("ecf") else kind
        while n is not None and not M.is_defs(n):
            for za in M.zombie_attrs(n):
                if za.zombie_type in (kind, want) and (not za.child_cmds or cmd in za.child_cmds):
                    return za.action or None
            n = M.parent(n)
        return None

    def _apply_child(self, task: Any, cmd: str, args: dict[str, Any]) -> Any:
        path = M.path(task)
        if cmd == "init":
            rid = str(args.get("rid") or "")
            if rid:
                M.set_rid(task, rid)
            for k, v in (args.get("vars") or {}).items():
                M.set_user_var(task, str(k), str(v))
                self._touch(task, "variables", {str(k): str(v)})
            self._release_limits(task, submission_only=True)
            M.set_abort_reason(task, "")
            self.set_state(task, R)
            self._msg(f"chd:init {path}")
            self.need_traversal = True
            return None
        if cmd == "complete":
            for name in args.get("remove") or []:
                M.delete_user_var(task, str(name))
            if M.state(task) == C:
                return None
            self._release_limits(task)
            self.set_state(task, C)
            self._msg(f"chd:complete {path}")
            self.need_traversal = True
            return None
        if cmd == "abort":
            reason = str(args.get("reason") or "")
            M.add_flag(task, "task_aborted")
            self._abort(task, reason or "aborted by the job")
            self._msg(f"chd:abort {path} {reason}")
            return None
        if cmd == "event":
            name = str(args.get("name", ""))
            ev = M.find_event(task, name)
            if ev is None:
                raise RuntimeError(f"event: {path} has no event {name!r}")
            value = bool(args.get("value", True))
            if ev.value != value:
                ev.value = value
                self._touch(task, "events", {ev.ident: value}, path)
                self.need_traversal = True
            self._msg(f"chd:event {name} {path}")
            return None
        if cmd == "meter":
            name = str(args.get("name", ""))
            me = M.find_meter(task, name)
            if me is None:
                raise RuntimeError(f"meter: {path} has no meter {name!r}")
            value = int(args.get("value", 0))
            if not me.min <= value <= me.max:
                raise RuntimeError(f"meter: value {value} for {path}:{name} is outside [{me.min}, {me.max}]")
            if me.value != value:
                me.value = value
                self._touch(task, "meters", {name: value}, path)
                self.need_traversal = True
            return None
        if cmd == "label":
            name = str(args.get("name", ""))
            lb = M.find_label(task, name)
            if lb is None:
                raise RuntimeError(f"label: {path} has no label {name!r}")
            lb.new_value = str(args.get("value", ""))
            self._touch(task, "labels", {name: lb.new_value})
            return None
        if cmd == "wait":
            expr = str(args.get("expr", ""))
            try:
                ok = M.evaluate_text(expr, task)
            except Exception as exc:
                raise RuntimeError(f"wait: cannot evaluate {expr!r} for {path}: {exc}") from None
            if ok:
                M.discard_flag(task, "task_waiting")
                return None
            if "task_waiting" not in M.flags(task):
                M.add_flag(task, "task_waiting")
                self._touch(task, "flags", sorted(M.flags(task)))
            return {"block": True, "retry": 1.0, "reason": f"waiting for {expr}"}
        if cmd == "queue":
            return self._queue(task, args)
        raise RuntimeError(f"unknown child command {cmd!r}")

    def _queue(self, task: Any, args: dict[str, Any]) -> Any:
        name = str(args.get("name", ""))
        action = str(args.get("action", ""))
        qpath = str(args.get("queue_path") or "")
        n = M.find_node(self.defs, task, qpath) if qpath else task
        q = None
        while n is not None and not M.is_defs(n):
            q = M.find_queue(n, name)
            if q is not None:
                break
            n = None if qpath else M.parent(n)
        if q is None:
            raise RuntimeError(f"queue: no queue {name!r} on {qpath or M.path(task)} or its parents")
        if q.states is None:
            q.states = ["queued"] * len(q.values)
        step = str(args.get("step") or "")
        self._touch(n)
        if action == "active":
            for i, s in enumerate(q.states):
                if s == "queued":
                    q.states[i] = "active"
                    q.index = i
                    return q.values[i]
            return "<NULL>"
        if action in ("complete", "aborted"):
            if step not in q.values:
                raise RuntimeError(f"queue {name}: no step {step!r}")
            q.states[q.values.index(step)] = action
            self.need_traversal = True
            return None
        if action == "no_of_aborted":
            return str(q.states.count("aborted"))
        if action == "reset":
            q.states = ["queued"] * len(q.values)
            q.index = 0
            return None
        raise RuntimeError(f"queue: action {action!r}: expected active, complete, aborted, no_of_aborted or reset")

    # ================================================================== time (calendar update, requeue rules)
    def update_calendar(self) -> bool:
        """Bring every begun suite's calendar to the clock (ecFlow's calendar update, once a minute).

        At a new day the time series become valid again; time/today/cron slots that came due latch ``free``
        until requeue (also the ones in a minute the server missed); ``day``/``date`` hold children;
        late flags, autocancel and autoarchive are applied. Returns True when the suite time moved.
        """
        moved = False
        for s in list(M.suites(self.defs)):
            if not M.begun(s):
                continue
            c = self.calendar(s)
            if c.stop_with_server:          # clock -s: suite time stands still while the server is not running
                c.resume() if self.server_state == "RUNNING" else c.pause()
                self._save_calendar(s, c)
            now, raw = c.now(), c.raw_now()
            prev = self._cal_last.get(M.name(s))
            if prev is not None and raw <= prev:
                continue
            self._cal_last[M.name(s)] = raw
            moved = True
            day_changed = prev is not None and raw.date() != prev.date()   # also under a hybrid clock
            prev_min = cal.minutes_of(prev) if prev is not None and not day_changed else None
            holding: set[int] = set()
            for n, chain, lates in self._time_index(s):
                if lates and M.is_task(n):
                    self._check_late(n, lates, now)
                if any(id(a) in holding for a in chain):
                    continue          # a parent's day/date holds: its children's times are not freed
                if M.has_time(n) and self._cal_changed_attrs(n, now, prev_min, day_changed):
                    holding.add(id(n))
            self._auto_cancel_archive(s, now)
        return moved

    #: the time index may be reused while the tree keeps its shape (the simulator: nothing alters it)
    reuse_time_index = False

    def _time_index(self, suite: Any) -> list[tuple[Any, tuple[Any, ...], tuple[Any, ...]]]:
        """``(node, ancestors with day/date, late attributes from the top down)`` for the suite's nodes
        with time or auto attributes and the tasks under a ``late``, in tree order; rebuilt on every call in the server (``alter`` may add attributes), cached by the
        tree's structure version in the simulator."""
        from ecflow_lab.defs import nodes as _nodes

        key = _nodes.structure_version[0]
        caches = self.__dict__.setdefault("_tindex", {})
        cache = caches.get(id(suite))
        if self.reuse_time_index and cache is not None and cache[0] == key and cache[2] is suite:
            return cache[1]
        out: list[tuple[Any, tuple[Any, ...], tuple[Any, ...]]] = []

        def rec(n: Any, chain: tuple[Any, ...], lates: tuple[Any, ...]) -> None:
            own = getattr(n, "late", None)
            if own is not None:
                lates = lates + (own,)
            if M.has_time(n) or (lates and M.is_task(n)) or getattr(n, "autocancel", None) is not None \
                    or getattr(n, "autoarchive", None) is not None:
                out.append((n, chain, lates))
            if M.days(n) or M.dates(n):
                chain = chain + (n,)
            for k in M.children(n):
                rec(k, chain, lates)

        rec(suite, (), ())
        caches[id(suite)] = (key, out, suite)
        return out

    def _latch(self, node: Any, attr: Any, kind: str, now: _dt.datetime, prev_min: int | None,
               day_changed: bool) -> None:
        if day_changed:
            cal.ts_day_changed(attr)
        if attr.free:
            return
        T = self._tstate
        cur = T.cur(attr, now)
        window = None if cal.is_relative(attr) else prev_min
        if kind == "today" and not cal.has_incr(attr) and cur > cal.slot_list(attr)[0]:
            ok = True
        else:
            ok = cal.ts_matches(attr, cur, window)
            if ok and kind == "cron":
                ok = cal.cron_day_ok(attr, now)
        if ok:
            attr.free = True
            self._touch(node)

    def _cal_changed_attrs(self, node: Any, now: _dt.datetime, prev_min: int | None, day_changed: bool) -> bool:
        """One node's share of the calendar update (ecFlow's Node::calendar_changed_timeattrs).

        Returns True when a day/date of the node holds it, so its children's times are not freed."""
        T = self._tstate
        d = now.date()
        days, dates = M.days(node), M.dates(node)
        if not (days or dates or day_changed):
            tattrs, crons = M.time_attrs(node), M.crons(node)
            if all(a.free for a in tattrs) and all(a.free for a in crons):
                return False         # everything already latched: nothing to do until requeue
            for a in tattrs:
                self._latch(node, a, "today" if M.is_today(a) else "time", now, prev_min, day_changed)
            for a in crons:
                self._latch(node, a, "cron", now, prev_min, day_changed)
            return False
        if days or dates:
            clear_day = clear_date = True
            if day_changed and not M.is_task(node):
                free_date = any(a.free or cal.date_matches(a, d) for a in dates)
                free_day = any(T.day_is_free(a, d) for a in days)
                if free_date or free_day:
                    done = running = queued = 0
                    for t in M.walk(node):
                        if not M.is_task(t):
                            continue
                        st = M.state(t)
                        running += st in (S, R)
                        done += st == C
                        queued += st == Q
                        if running or (done and queued):
                            clear_date = clear_date and not free_date
                            clear_day = clear_day and not free_day
                            break
            any_free = False
            for a in days:
                if not a.expired:
                    if day_changed and clear_day:
                        a.free = False
                    if not a.free and T.day_is_free(a, d):
                        a.free = True
                any_free = any_free or T.day_is_free(a, d)
            for a in dates:
                if day_changed and clear_date:
                    a.free = False
                if not a.free and cal.date_matches(a, d):
                    a.free = True
                any_free = any_free or a.free
            if not any_free:
                return True
        for a in M.time_attrs(node):
            self._latch(node, a, "today" if M.is_today(a) else "time", now, prev_min, day_changed)
        for a in M.crons(node):
            self._latch(node, a, "cron", now, prev_min, day_changed)
        return False

    def _requeue_time_attrs(self, n: Any, now: _dt.datetime, mode: str, no_reque: bool = False) -> None:
        """Time attributes at begin / requeue (ecFlow's Node::begin and do_requeue_time_attrs)."""
        tattrs = M.time_attrs(n)
        crons, days, dates = M.crons(n), M.days(n), M.dates(n)
        late = getattr(n, "late", None)
        if late is not None:
            late.is_late = False
            self._tstate.state_since.pop(id(n), None)
        self._tstate.complete_since.pop(id(n), None)
        for q in getattr(n, "queues", None) or ():      # queues start again (ecFlow's MiscAttrs::requeue)
            if q.states is not None or q.index:
                q.states, q.index = None, 0
        if not (tattrs or crons or days or dates):
            return
        T = self._tstate
        d = now.date()
        if mode in ("begin", "full", "repeat"):
            for a in tattrs + crons:
                T.rel_start[id(a)] = now
        reset_next = not (no_reque and mode == "time")   # a repeat or user requeue always starts afresh
        for a in tattrs + crons:
            cur = T.cur(a, now)
            if mode == "begin":
                cal.ts_reset(a, cur)
            else:
                cal.ts_requeue(a, cur, reset_next)
            if cal.has_incr(a) and not cal.is_relative(a):
                # ECFLOW-130: remember when it was queued, so a run ending after midnight does not requeue
                if mode != "begin" and cal.ts_expired(a):
                    T.at_requeue.pop(id(a), None)
                else:
                    T.at_requeue[id(a)] = cal.minutes_of(now)
        for a in dates:
            a.free = False
        for a in days:
            if mode == "time":
                if not a.expired:
                    a.free = False
                continue
            a.free = False
            a.expired = False
            T.day_date[id(a)] = cal.day_matching_date(a.day, d, strictly_after=mode == "repeat")

    def _hybrid_done(self, n: Any, now: _dt.datetime) -> bool:
        """Under a hybrid clock the date never changes: a node held by a day/date/cron that does not match
        today could never run, so it is complete at once (ecFlow's markHybridTimeDependentsAsComplete)."""
        dates, days, crons = M.dates(n), M.days(n), M.crons(n)
        if not (dates or days or crons):
            return False
        s = M.suite_of(n)
        if s is None or not self.calendar(s).hybrid:
            return False
        d = now.date()
        ok_dates = any(a.day and a.month and a.year and cal.date_matches(a, d) for a in dates)
        ok_days = any(self._tstate.day_is_free(a, d) for a in days)
        ok_crons = any(self._cron_valid_for_hybrid(a, d) for a in crons)
        return not ((not dates or ok_dates) and (not days or ok_days) and (not crons or ok_crons))

    @staticmethod
    def _cron_valid_for_hybrid(a: Any, d: _dt.date) -> bool:
        if not cal.has_incr(a) or a.last_day_of_month or a.months or a.days_of_month or a.last_week_days:
            return False
        if a.week_days:
            return len(a.week_days) == 1 and a.week_days[0] == (d.weekday() + 1) % 7
        return True

    def _time_requeue_due(self, node: Any) -> bool:
        """Completed node: is a time dependency still due later (ecFlow's testTimeDependenciesForRequeue)?"""
        if M.crons(node):
            return True          # a cron never stays complete
        now = self.suite_now(node)
        T = self._tstate
        cmd = self._cmd_context
        tattrs = M.time_attrs(node)
        for group in ([a for a in tattrs if not M.is_today(a)], [a for a in tattrs if M.is_today(a)]):
            if group:
                lo, hi = cal.min_max(group)
                if any(self._same_day_since_requeue(a, now)
                       and cal.ts_check_for_requeue(a, T.cur(a, now), lo, hi, cmd) for a in group):
                    return True
        d = now.date()
        s = M.suite_of(node)
        hybrid = bool(s is not None and self.calendar(s).hybrid)
        if any(cal.date_check_for_requeue(a, d, hybrid) for a in M.dates(node)):
            return True
        days = M.days(node)
        for a in days:
            if cmd:
                a.expired = True
                continue
            dd = T.day_date.get(id(a)) or cal.day_matching_date(a.day, d)
            if a.day == (d.weekday() + 1) % 7 or dd <= d:
                a.expired = True
        return any(not a.expired and not hybrid and (T.day_date.get(id(a)) or d) > d for a in days)

    def _same_day_since_requeue(self, a: Any, now: _dt.datetime) -> bool:
        """False when a (non relative) series was queued before midnight and the run ended after it."""
        if not cal.has_incr(a) or cal.is_relative(a) or cal.ts_expired(a):
            return True
        at = self._tstate.at_requeue.get(id(a))
        if at is None:
            return True
        if cal.minutes_of(now) >= at:
            del self._tstate.at_requeue[id(a)]
            return True
        return False

    def miss_next_time_slot(self, node: Any) -> None:
        """A user ran or completed a node by hand: its next time slot is used up (ecFlow's
        Node::miss_next_time_slot); the next automatic requeue then keeps the later slots."""
        if not M.has_time(node) or "no_reque" in M.flags(node):
            return
        M.add_flag(node, "no_reque")
        for group in ([a for a in M.time_attrs(node) if not M.is_today(a)],
                      [a for a in M.time_attrs(node) if M.is_today(a)], M.crons(node)):
            for a in group:
                if not cal.ts_expired(a):
                    cal.ts_miss_next_slot(a)
                    break
        self._touch(node)

    def before_user_run(self, node: Any) -> None:
        """``run`` of a node by hand: it misses its next time slot, and so do its parents up to the first
        one with a repeat or cron, so a single time dependency does not run again (seed 001, Client.run).
        Call it before submitting; the job's completion is then a command (``_cmd_context``)."""
        n = node
        while n is not None and not M.is_defs(n):
            if n is not node and (M.repeat(n) is not None or M.crons(n)):
                break
            self.miss_next_time_slot(n)
            n = M.parent(n)
        self._cmd_context = True

    def free_time_deps(self, node: Any) -> None:
        """``free_time_dep``: free one holding attribute of each kind (time, today, day, cron); the next
        time slot is missed (seed 001: free_time_dep / free_all_dep)."""
        now = self.suite_now(node)
        T = self._tstate
        d = now.date()
        tattrs = M.time_attrs(node)
        for group, kind in (([a for a in tattrs if not M.is_today(a)], "time"),
                            ([a for a in tattrs if M.is_today(a)], "today"), (M.crons(node), "cron")):
            for a in group:
                cur = T.cur(a, now)
                free = (cal.time_is_free(a, cur) if kind == "time" else cal.today_is_free(a, cur)
                        if kind == "today" else cal.cron_is_free(a, cur, d))
                if not free:
                    a.free = True
                    cal.ts_miss_next_slot(a)
                    M.add_flag(node, "no_reque")
                    break
        for a in M.days(node):
            if not T.day_is_free(a, d):
                a.free = True
                a.expired = False
                break
        self._touch(node)
        self.need_traversal = True

    def free_date_deps(self, node: Any) -> None:
        """``free_date_dep``: free one holding ``date`` attribute."""
        d = self.suite_now(node).date()
        for a in M.dates(node):
            if not (a.free or cal.date_matches(a, d)):
                a.free = True
                break
        self._touch(node)
        self.need_traversal = True

    def next_time_delta(self) -> _dt.timedelta | None:
        """How far ahead the earliest time attribute of a begun suite can come due (a slot later today, a
        relative slot, a late limit, or the next midnight); the simulator jumps the clock straight there."""
        best: _dt.timedelta | None = None
        T = self._tstate
        for s in M.suites(self.defs):
            if not M.begun(s) or (M.state(s) == C and not self._has_crons(s)) or self.calendar(s).paused:
                continue
            now = self.calendar(s).now()
            cand = [_dt.datetime.combine(now.date() + _dt.timedelta(days=1), _dt.time())]
            m = cal.minutes_of(now)
            for n, _, lates in self._time_index(s):
                for a in M.time_attrs(n) + M.crons(n):
                    if cal.is_relative(a):
                        start = T.rel_start.get(id(a))
                        if start is not None:
                            for slot in cal.slot_list(a)[a.next_slot:]:
                                t = start + _dt.timedelta(minutes=slot)
                                if t > now:
                                    cand.append(t)
                                    break
                        continue
                    for slot in cal.slot_list(a):
                        if slot > m:
                            cand.append(now.replace(hour=slot // 60, minute=slot % 60))
                            break
                for late in lates if M.is_task(n) else ():
                    for ts in (late.active, late.complete):
                        if ts is not None and ts.minutes() > m:
                            cand.append(now.replace(hour=ts.hour, minute=ts.minute))
            delta = min(cand) - now
            if best is None or delta < best:
                best = delta
        return best

    def _has_crons(self, node: Any) -> bool:
        return any(M.crons(n) for n in M.walk(node))

    def _note_state(self, node: Any, state: NState) -> None:
        """Record when a task or a node with autocancel/autoarchive changed state (late and auto clocks)."""
        if M.is_task(node):
            now = self.suite_now(node)
            self._tstate.state_since[id(node)] = (state, now)
            if state == R:
                self._tstate.state_since[-id(node)] = (state, now)
        if state == C and (getattr(node, "autocancel", None) is not None
                           or getattr(node, "autoarchive", None) is not None):
            self._tstate.complete_since[id(node)] = self.suite_now(node)

    # ------------------------------------------------------------------ late
    def _check_late(self, node: Any, lates: tuple[Any, ...], now: _dt.datetime) -> None:
        """``late -s +HH:MM`` (submitted that long), ``-a HH:MM`` (queued/submitted at that time), ``-c
        [+]HH:MM`` (active at that time / that long) set the late flag (ecFlow's LateAttr). A task inherits
        its parents' late, its own options overriding; an inherited one only sets the flag."""
        T = self._tstate
        st = M.state(node)
        rec = T.state_since.get(id(node))
        if rec is None or rec[0] != st:
            T.state_since[id(node)] = rec = (st, now)
            if st == R:
                T.state_since[-id(node)] = (st, now)
        own = getattr(node, "late", None)
        if (own is not None and own.is_late) or (own is None and "late" in M.flags(node)):
            return
        sub = act = comp = None
        comp_rel = False
        for la in lates:
            sub = la.submitted if la.submitted is not None else sub
            act = la.active if la.active is not None else act
            if la.complete is not None:
                comp, comp_rel = la.complete, la.complete_relative
        late_now = False
        if st in (Q, S):
            if sub is not None and st == S:
                late_now = (now - rec[1]).total_seconds() // 60 >= sub.minutes()
            if not late_now and act is not None:
                late_now = cal.minutes_of(now) >= act.minutes()
        elif st == R and comp is not None:
            if comp_rel:
                began = T.state_since.get(-id(node))
                late_now = began is not None and (now - began[1]).total_seconds() // 60 >= comp.minutes()
            else:
                late_now = cal.minutes_of(now) >= comp.minutes()
        if late_now:
            if own is not None:
                own.is_late = True
            M.add_flag(node, "late")
            self._touch(node, "flags", sorted(M.flags(node)))
            self._msg(f"--late {M.path(node)}")

    # ------------------------------------------------------------------ autocancel / autoarchive / restore
    def _auto_due(self, attr: Any, since: _dt.datetime, now: _dt.datetime) -> bool:
        if attr.time is None:
            return now - since >= _dt.timedelta(days=attr.days or 0)
        if attr.relative:
            return now - since >= _dt.timedelta(minutes=attr.time.minutes())
        return now.date() > since.date() or cal.minutes_of(now) >= attr.time.minutes()

    def _auto_cancel_archive(self, suite: Any, now: _dt.datetime) -> None:
        T = self._tstate
        cancel: list[Any] = []
        archive: list[Any] = []
        for n, _, _ in self._time_index(suite):
            ac, aa = getattr(n, "autocancel", None), getattr(n, "autoarchive", None)
            if ac is None and aa is None:
                continue
            st = M.state(n)
            idle = aa is not None and aa.idle and st in (Q, A)
            if st != C and not idle:
                T.complete_since.pop(id(n), None)
                continue
            since = T.complete_since.setdefault(id(n), now)
            if ac is not None and self._auto_due(ac, since, now):
                cancel.append(n)
            elif aa is not None and not M.flags(n) & {"archived", "restored"} and M.children(n) \
                    and self._auto_due(aa, since, now):
                archive.append(n)
        for n in archive:
            self.archive_node(n)
        for n in cancel:
            if M.find_abs(self.defs, M.path(n)) is None:
                continue
            self._msg(f"--autocancel {M.path(n)}")
            p = M.path(n)
            par = M.parent(n)
            M.remove_node(self.defs, n)
            self._structure_changed(removed=[p])
            if par is not None and not M.is_defs(par):
                self._recompute(par)

    def archive_path(self, node: Any) -> str:
        """Where ``archive`` writes a node's children: ECF_HOME/<host>.<port>.<path with ':' for '/'>.check."""
        host = self.server_vars.get("ECF_HOST", "localhost") or "localhost"
        port = self.server_vars.get("ECF_PORT", "0") or "0"
        home = self.lookup(node, "ECF_HOME") or self.home
        return os.path.join(home, f"{host}.{port}.{M.path(node).replace('/', ':')}.check")

    def archive_node(self, node: Any) -> str:
        """Write a suite/family's subtree to its archive file, drop the children, flag it ``archived``."""
        if M.is_task(node):
            raise RuntimeError(f"archive: {M.path(node)} is a task; only suites and families can be archived")
        running = [M.path(t) for t in M.walk(node) if M.is_task(t) and M.state(t) in (S, R)]
        if running:
            raise RuntimeError(f"archive: {M.path(node)} has submitted/active tasks ({', '.join(running[:5])})")
        from ecflow_lab.defs.writer import write_node

        path = self.archive_path(node)
        kids = list(M.children(node))
        text = "".join(write_node(k, state=True) for k in kids)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w") as fh:
            fh.write(text)
        removed = [M.path(k) for k in kids]
        for k in kids:
            M.remove_node(self.defs, k)
        M.add_flag(node, "archived")
        self._touch(node, "flags", sorted(M.flags(node)))
        self._structure_changed(removed=removed)
        self._msg(f"--archive {M.path(node)} {path}")
        return path

    def restore_node(self, node: Any) -> None:
        """Read back the children written by :meth:`archive_node` and clear ``archived``."""
        if "archived" not in M.flags(node):
            raise RuntimeError(f"restore: {M.path(node)} is not archived")
        if M.children(node):
            raise RuntimeError(f"restore: {M.path(node)} has children; it can not be restored over them")
        path = self.archive_path(node)
        try:
            text = open(path).read()
        except OSError as exc:
            raise RuntimeError(f"restore: cannot read the archive of {M.path(node)}: {exc}") from None
        wrapper = M.parse_state(f"defs_state STATE\nsuite __restore__\n{text}\nendsuite\n", path)
        tmp = wrapper.suites[0]
        added = []
        for k in list(M.children(tmp)):
            tmp.remove_child(k)
            node.add_child(k)
            added.append(M.path(k))
        M.discard_flag(node, "archived")
        M.add_flag(node, "restored")
        self._touch(node, "flags", sorted(M.flags(node)))
        self._structure_changed(added=added)
        self._recompute(node)
        try:
            os.remove(path)
        except OSError:
            pass
        self._msg(f"--restore {M.path(node)}")

    def _autorestore(self, node: Any) -> None:
        """A node with ``autorestore`` (or an ancestor that is complete) restores the listed nodes."""
        n = node
        while n is not None and not M.is_defs(n):
            ar = getattr(n, "autorestore", None)
            if ar is not None and (n is node or M.state(n) == C):
                for p in ar.paths:
                    target = M.find_node(self.defs, n, p)
                    if target is not None and "archived" in M.flags(target):
                        self.restore_node(target)
            n = M.parent(n)

    # ================================================================== why
    def why_list(self, node: Any) -> list[str]:
        """Reasons, in words, why ``node`` is not running now (empty when nothing holds it)."""
        out: list[str] = []
        p = M.path(node)
        if self.server_state != "RUNNING":
            out.append(f"the server is {self.server_state}: no jobs are submitted")
        s = M.suite_of(node)
        if s is not None and not M.begun(s):
            out.append(f"suite /{M.name(s)} has not begun (begin_suite)")
        st = M.state(node)
        if st == C:
            out.append(f"{p} is complete")
        elif st in (S, R):
            out.append(f"{p} is {st.name} (try {M.tryno(node)})" if M.is_task(node) else f"{p} is {st.name}")
        elif st == A and M.is_task(node):
            reason = M.abort_reason(node)
            tries = self.lookup(node, "ECF_TRIES") or "2"
            if not self._may_retry(node):
                flags = sorted(M.flags(node) & {"force_aborted", "killed", "edit_failed", "no_script",
                                                 "ecfcmd_failed"})
                out.append(f"{p} is aborted (try {M.tryno(node)} of ECF_TRIES {tries}"
                           f"{', ' + ','.join(flags) if flags else ''}): requeue or run it"
                           + (f"; reason: {reason}" if reason else ""))
        if st == Q and M.is_task(node) and self.lookup(node, "ECF_DUMMY_TASK") is not None:
            out.append(f"{p} is a dummy task (ECF_DUMMY_TASK): it is never submitted")
        n = node
        while n is not None and not M.is_defs(n):
            if M.suspended(n):
                out.append(f"{M.path(n)} is suspended (resume it)")
            if M.state(n) == C or n is node:
                pass
            if M.has_time(n) and not self._time_free_peek(n):
                for d in M.describe_time(n):
                    out.append(f"{M.path(n)} is waiting for {d} (suite time {self.suite_now(n):%Y-%m-%d %H:%M})")
            tx = M.trigger_expr(n)
            if tx is not None and not M.evaluate(tx, n):
                out.append(f"{M.path(n)} trigger is false: {M.expr_text(tx)}" + self._explain(tx, n))
            for il, lim, owner in self._limits_for(n, own_only=True):
                key = M.path(owner) if il.limit_this_node_only else M.path(node)
                if (not lim.paths or key not in lim.paths) and lim.value + il.tokens > lim.limit:
                    out.append(f"limit {lim.name} is full ({lim.value}/{lim.limit}) for {M.path(n)} "
                               f"(held by {', '.join(lim.paths or [])})")
            n = M.parent(n)
        return out

    def _time_free_peek(self, node: Any) -> bool:
        saved = [(t, t.free) for t in M.time_attrs(node)] + [(c, c.free) for c in M.crons(node)]
        try:
            return self._time_free(node)
        finally:
            for t, f in saved:
                t.free = f

    def _explain(self, expr: Any, node: Any) -> str:
        parts = []
        for ref_path, ref_node, attr in M.expr_references(expr, node, self.defs):
            if ref_node is None:
                parts.append(f"{ref_path} not found")
            elif attr:
                parts.append(f"{M.path(ref_node)}:{attr} = {M.attr_value(ref_node, attr)}")
            else:
                parts.append(f"{M.path(ref_node)} is {M.state(ref_node).name}")
        return (" (" + "; ".join(parts) + ")") if parts else ""
