"""The node tree: Defs > Suite > Family > Task (+ Alias), with ecFlow's builder API.

Each node carries its **definition** (name, attributes, children) and its **runtime state**, which the
suite server mutates in place from its single thread and writes to checkpoints (state form):

=================  =================================================================================
``state``          :class:`NState` of the node (``queued`` after load/begin, ``unknown`` when new)
``defstatus``      :class:`DState` given by ``defstatus`` (default ``queued``)
``suspended``      True while suspended (a flag, not a state)
``flags``          ``None`` or a set of flag names (``late``, ``zombie``, ``by_rule``, ``killed``, ...)
``state_change``   server time (seconds) of the last state change, 0 if never (for the server's use)
Task ``try_no``    try number (0 before the first submission, incremented before each one)
Task ``password``  the job password (``ECF_PASS``) of the current try, '' when none
Task ``rid``       the remote id / pid of the job (``ECF_RID``), '' when none
Task ``abort_reason``  text given by ``--abort``, '' when none
Suite ``begun``    True once ``begin`` was called
Suite ``calendar`` ``None`` or a dict of calendar fields the server keeps (written as ``calendar k:v``)
=================  =================================================================================

Attributes keep their own runtime fields (event values, meter values, label new values, repeat
position, limit tokens and consumer paths, time-attribute free/expired marks) — see ``attributes.py``.

Attribute lists stay ``None`` until the first attribute of that kind is added: a task costs ~1 kB.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .attributes import (
    Autoarchive,
    Autocancel,
    Autorestore,
    Aviso,
    Clock,
    Cron,
    Date,
    Day,
    Edit,
    EndClock,
    Event,
    Extern,
    Generic,
    InLimit,
    Label,
    Late,
    Limit,
    Meter,
    Mirror,
    Queue,
    Repeat,
    RepeatDate,
    RepeatDateList,
    RepeatDateTime,
    RepeatDay,
    RepeatEnumerated,
    RepeatInteger,
    RepeatString,
    Time,
    Today,
    Variable,
    Verify,
    ZombieAttr,
)
from .errors import DefsSyntaxError
from .expression import Complete, Expression, PartExpression, Trigger
from .state import DState, NState, SState, computed_state

__all__ = ["Node", "NodeContainer", "Suite", "Family", "Task", "Alias", "Defs", "Defstatus",
           "structure_version", "valid_name"]

#: Bumped on every structural change (add/remove of a node) anywhere; expression caches compare it.
structure_version = [0]

_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.]*\Z")
_intern = sys.intern

# with-blocks of the pythonic builder: [container, [created objects]]
_BLOCKS: list[list[Any]] = []
_DEPTH = [0]


class NodeName(str):
    """A node's name: a plain ``str`` that can also be called, because in ecFlow's Python API ``name()`` is a
    method; scripts written for ecFlow (``t.name()``) and for us (``t.name``) both work."""

    __slots__ = ()

    def __call__(self) -> str:
        return str.__str__(self)


_NODE_NAMES: dict[str, NodeName] = {}


def _node_name(name: str) -> NodeName:
    """One shared NodeName per distinct name (as interning would give for plain strings)."""
    n = _NODE_NAMES.get(name)
    if n is None:
        n = _NODE_NAMES[name] = NodeName(name)
    return n


def _named(items: list[Any] | None, name: str) -> Any:
    """The first of ``items`` (an attribute list that may still be None) called ``name``, or None."""
    for it in items or ():
        if it.name == name:
            return it
    return None


def valid_name(name: str) -> bool:
    """ecFlow node names: ``[A-Za-z0-9_][A-Za-z0-9_.]*``."""
    return bool(_NAME_RE.match(name))


def _record(obj: Any) -> None:
    if _BLOCKS:
        _BLOCKS[-1][1].append(obj)


class Defstatus:
    """``Defstatus("complete")``: builder item for ``defstatus``."""

    __slots__ = ("state",)

    def __init__(self, state: str | DState) -> None:
        self.state = state if isinstance(state, DState) else DState[str(state)]
        _record(self)

    def __repr__(self) -> str:
        return f"Defstatus({self.state.name!r})"


def _record_attr_init(cls: type) -> None:
    """Make builder attributes created inside a ``with`` block join that block's container."""
    orig = cls.__init__

    def __init__(self: Any, *a: Any, **k: Any) -> None:
        if not _BLOCKS:
            orig(self, *a, **k)
            return
        _DEPTH[0] += 1  # objects built inside another constructor (Edit's variables) are not recorded
        try:
            orig(self, *a, **k)
        finally:
            _DEPTH[0] -= 1
        if _DEPTH[0] == 0 and type(self) is cls:
            _BLOCKS[-1][1].append(self)

    __init__.__doc__ = orig.__doc__
    __init__.__wrapped__ = orig  # type: ignore[attr-defined]
    cls.__init__ = __init__  # type: ignore[misc]


for _c in (Variable, Edit, Event, Meter, Label, Limit, InLimit, RepeatDate, RepeatDateList, RepeatInteger,
           RepeatEnumerated, RepeatString, RepeatDay, RepeatDateTime, Time, Today, Date, Day, Cron, Late, Clock,
           EndClock, Autocancel, Autoarchive, Autorestore, Verify, ZombieAttr, Queue, Generic, Aviso, Mirror,
           Trigger, Complete, Extern):
    _record_attr_init(_c)


def _part_args(text: Any, join: str | bool) -> tuple[str, str]:
    if isinstance(text, PartExpression):
        return text.text, text.join or "and"
    if isinstance(join, bool):
        join = "and" if join else "or"
    return str(text), join


def _to_int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


class Node:
    """Common base of Suite, Family, Task and Alias: attributes, paths, variables, state."""

    __slots__ = (
        "name", "parent",
        "variables", "trigger", "complete", "repeat", "events", "meters", "labels", "limits", "inlimits",
        "times", "todays", "dates", "days", "crons", "late", "defstatus", "autocancel", "autoarchive",
        "autorestore", "zombies", "verifies", "queues", "generics", "avisos", "mirrors",
        "state", "suspended", "flags", "state_change",
    )
    kind = "node"
    _child_types: tuple[type, ...] = ()

    def __init__(self, name: str = "", *items: Any, **variables: Any) -> None:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ValueError(f"invalid {self.kind} name {name!r}: expected [A-Za-z0-9_][A-Za-z0-9_.]*")
        self._init(name)
        if items or variables:
            self.add(*items, **variables)
        _record(self)

    def _init(self, name: str) -> None:
        self.name = _node_name(name)
        self.parent: NodeContainer | None = None
        self.variables: list[Variable] | None = None
        self.trigger: Trigger | None = None
        self.complete: Complete | None = None
        self.repeat: Repeat | None = None
        self.events: list[Event] | None = None
        self.meters: list[Meter] | None = None
        self.labels: list[Label] | None = None
        self.limits: list[Limit] | None = None
        self.inlimits: list[InLimit] | None = None
        self.times: list[Time] | None = None
        self.todays: list[Today] | None = None
        self.dates: list[Date] | None = None
        self.days: list[Day] | None = None
        self.crons: list[Cron] | None = None
        self.late: Late | None = None
        self.defstatus: DState = DState.queued
        self.autocancel: Autocancel | None = None
        self.autoarchive: Autoarchive | None = None
        self.autorestore: Autorestore | None = None
        self.zombies: list[ZombieAttr] | None = None
        self.verifies: list[Verify] | None = None
        self.queues: list[Queue] | None = None
        self.generics: list[Generic] | None = None
        self.avisos: list[Aviso] | None = None
        self.mirrors: list[Mirror] | None = None
        self.state: NState = NState.unknown
        self.suspended: bool = False
        self.flags: set[str] | None = None
        self.state_change: int = 0

    @classmethod
    def _make(cls, name: str) -> Node:
        """Fast constructor for the parser (no validation, no with-block bookkeeping)."""
        obj = cls.__new__(cls)
        obj._init(name)
        return obj

    # ------------------------------------------------------------------ pythonic builder
    def __enter__(self) -> Node:
        _BLOCKS.append([self, []])
        return self

    def __exit__(self, *exc: Any) -> None:
        block = _BLOCKS.pop()
        if exc[0] is not None:
            return
        for obj in block[1]:
            if isinstance(obj, Node):
                if obj.parent is None and obj is not self:
                    self.add(obj)
            elif id(obj) not in _consumed_ids:
                self.add(obj)
        if not _BLOCKS:
            _consumed_ids.clear()

    def add(self, *items: Any, **variables: Any) -> Node:
        """Add nodes and attributes of any kind (ecflow's ``add``); returns self for chaining."""
        for it in items:
            self._add_item(it)
        for k, v in variables.items():
            self.add_variable(k, v)
        return self

    def __iadd__(self, item: Any) -> Node:
        if isinstance(item, (list, tuple)):
            self.add(*item)
        else:
            self.add(item)
        return self

    def __add__(self, item: Any) -> Node:
        return self.__iadd__(item)

    def _add_item(self, it: Any) -> None:
        if _BLOCKS:
            _consumed_ids[id(it)] = it  # keeps it alive so its id is not reused
        if isinstance(it, Node):
            self.add_child(it)  # type: ignore[attr-defined]
        elif isinstance(it, Variable):
            self.add_variable(it)
        elif isinstance(it, Edit):
            for v in it.variables:
                self.add_variable(v)
        elif isinstance(it, dict):
            for k, v in it.items():
                self.add_variable(k, v)
        elif isinstance(it, (list, tuple)):
            for x in it:
                self._add_item(x)
        elif isinstance(it, Complete):
            self.add_complete(it)
        elif isinstance(it, Trigger):
            self.add_trigger(it)
        elif isinstance(it, Defstatus):
            self.add_defstatus(it.state)
        elif isinstance(it, (DState, NState)):
            self.add_defstatus(it)
        else:
            adder = _ADDERS.get(type(it))
            if adder is None:
                raise TypeError(f"can not add {type(it).__name__} {it!r} to {self.kind} {self.name}")
            getattr(self, adder)(it)

    # ------------------------------------------------------------------ attributes (ecflow names)
    def _allowed(self, keyword: str) -> None:
        if keyword in self._not_allowed:
            raise ValueError(f"{keyword} is not allowed on a {self.kind} ({self.get_abs_node_path()})")

    _not_allowed: frozenset[str] = frozenset()

    def add_variable(self, name: str | Variable | dict, value: Any = None) -> Node:
        """``edit NAME value``; an existing variable of that name is replaced."""
        if isinstance(name, dict):
            for k, v in name.items():
                self.add_variable(k, v)
            return self
        var = name if isinstance(name, Variable) else Variable(name, "" if value is None else value)
        if not var.name or not _NAME_RE.match(var.name):
            raise ValueError(f"invalid variable name {var.name!r}")
        vs = self.variables
        if vs is None:
            self.variables = [var]
            return self
        for i, v in enumerate(vs):
            if v.name == var.name:
                vs[i] = var
                return self
        vs.append(var)
        return self

    def delete_variable(self, name: str) -> None:
        if self.variables:
            self.variables = [v for v in self.variables if v.name != name] or None

    def add_trigger(self, expr: str | Expression) -> Node:
        self._allowed("trigger")
        if self.trigger is not None:
            raise ValueError(f"{self.get_abs_node_path()} already has a trigger (use -a/-o parts)")
        self.trigger = expr if isinstance(expr, Trigger) else Trigger(expr)
        return self

    def add_complete(self, expr: str | Expression) -> Node:
        self._allowed("complete")
        if self.complete is not None:
            raise ValueError(f"{self.get_abs_node_path()} already has a complete expression")
        self.complete = expr if isinstance(expr, Complete) else Complete(expr)
        return self

    def add_part_trigger(self, text: str | Any, join: str | bool = "and") -> Node:
        """``trigger -a/-o``: append a part (creates the trigger if there is none yet).  Accepts
        ecflow's forms too: ``add_part_trigger(PartExpression(...))`` / ``(text, and_expr: bool)``."""
        text, join = _part_args(text, join)
        self._allowed("trigger")
        if self.trigger is None:
            self.trigger = Trigger(text)
        else:
            self.trigger.add_part(text, join)
        return self

    def add_part_complete(self, text: str | Any, join: str | bool = "and") -> Node:
        text, join = _part_args(text, join)
        self._allowed("complete")
        if self.complete is None:
            self.complete = Complete(text)
        else:
            self.complete.add_part(text, join)
        return self

    def _append(self, slot: str, item: Any) -> Node:
        lst = getattr(self, slot)
        if lst is None:
            setattr(self, slot, [item])
        else:
            lst.append(item)
        return self

    def add_event(self, number: int | str | Event, name: str = "", initial: bool = False) -> Node:
        ev = number if isinstance(number, Event) else Event(number, name, initial)
        for e in self.events or ():
            if (ev.name and e.name == ev.name) or (ev.number is not None and e.number == ev.number
                                                     and not (ev.name and e.name and ev.name != e.name)):
                if ev.name or not e.name or e.number == ev.number:
                    raise ValueError(f"duplicate event {ev.ident!r} on {self.get_abs_node_path()}")
        return self._append("events", ev)

    def add_meter(self, name: str | Meter, min: int = 0, max: int = 100, color_change: int | None = None) -> Node:  # noqa: A002
        m = name if isinstance(name, Meter) else Meter(name, min, max, color_change)
        if any(x.name == m.name for x in self.meters or ()):
            raise ValueError(f"duplicate meter {m.name!r} on {self.get_abs_node_path()}")
        return self._append("meters", m)

    def add_label(self, name: str | Label, value: str = "") -> Node:
        lb = name if isinstance(name, Label) else Label(name, value)
        if any(x.name == lb.name for x in self.labels or ()):
            raise ValueError(f"duplicate label {lb.name!r} on {self.get_abs_node_path()}")
        return self._append("labels", lb)

    def add_limit(self, name: str | Limit, limit: int = 1) -> Node:
        lm = name if isinstance(name, Limit) else Limit(name, limit)
        if any(x.name == lm.name for x in self.limits or ()):
            raise ValueError(f"duplicate limit {lm.name!r} on {self.get_abs_node_path()}")
        return self._append("limits", lm)

    def add_inlimit(self, name: str | InLimit, path: str = "", tokens: int = 1, limit_this_node_only: bool = False,
                    limit_submission: bool = False) -> Node:
        il = name if isinstance(name, InLimit) else InLimit(name, path, tokens, limit_this_node_only,
                                                            limit_submission)
        if any(x.name == il.name and x.path == il.path for x in self.inlimits or ()):
            raise ValueError(f"duplicate inlimit {il.write()!r} on {self.get_abs_node_path()}")
        return self._append("inlimits", il)

    def add_repeat(self, repeat: Repeat) -> Node:
        if self.repeat is not None:
            raise ValueError(f"{self.get_abs_node_path()} already has a repeat")
        if self.crons:
            raise ValueError(f"{self.get_abs_node_path()} has a cron: a repeat would be a second loop")
        self.repeat = repeat
        return self

    def delete_repeat(self) -> None:
        self.repeat = None

    def add_time(self, *args: Any, **kw: Any) -> Node:
        self._allowed("time")
        t = args[0] if len(args) == 1 and isinstance(args[0], Time) else Time(*args, **kw)
        return self._append("times", t)

    def add_today(self, *args: Any, **kw: Any) -> Node:
        self._allowed("today")
        t = args[0] if len(args) == 1 and isinstance(args[0], Today) else Today(*args, **kw)
        return self._append("todays", t)

    def add_date(self, *args: Any) -> Node:
        self._allowed("date")
        d = args[0] if len(args) == 1 and isinstance(args[0], Date) else Date(*args)
        return self._append("dates", d)

    def add_day(self, day: int | str | Day) -> Node:
        self._allowed("day")
        return self._append("days", day if isinstance(day, Day) else Day(day))

    def add_cron(self, cron: Cron | str, **kw: Any) -> Node:
        c = cron if isinstance(cron, Cron) else Cron(cron, **kw)
        if self.repeat is not None:
            raise ValueError(f"{self.get_abs_node_path()} has a repeat: a cron would be a second loop")
        return self._append("crons", c)

    def add_late(self, late: Late) -> Node:
        if self.late is not None:
            raise ValueError(f"{self.get_abs_node_path()} already has a late attribute")
        self.late = late
        return self

    def add_defstatus(self, state: str | DState | NState | Defstatus) -> Node:
        if isinstance(state, Defstatus):
            state = state.state
        self.defstatus = DState[state] if isinstance(state, str) else DState(int(state))
        return self

    def add_autocancel(self, ac: Autocancel | int | str) -> Node:
        if self.autoarchive is not None:
            raise ValueError(f"{self.get_abs_node_path()}: can not have both autocancel and autoarchive")
        self.autocancel = ac if isinstance(ac, Autocancel) else Autocancel(ac)
        return self

    def add_autoarchive(self, aa: Autoarchive | int | str) -> Node:
        self._allowed("autoarchive")
        if self.autocancel is not None:
            raise ValueError(f"{self.get_abs_node_path()}: can not have both autocancel and autoarchive")
        self.autoarchive = aa if isinstance(aa, Autoarchive) else Autoarchive(aa)
        return self

    def add_autorestore(self, ar: Autorestore | Iterable[str]) -> Node:
        self.autorestore = ar if isinstance(ar, Autorestore) else Autorestore(ar)
        return self

    def add_verify(self, v: Verify) -> Node:
        return self._append("verifies", v)

    def add_zombie(self, z: ZombieAttr) -> Node:
        if any(x.zombie_type == z.zombie_type for x in self.zombies or ()):
            raise ValueError(f"duplicate zombie type {z.zombie_type!r} on {self.get_abs_node_path()}")
        return self._append("zombies", z)

    def add_queue(self, q: Queue) -> Node:
        if any(x.name == q.name for x in self.queues or ()):
            raise ValueError(f"duplicate queue {q.name!r} on {self.get_abs_node_path()}")
        return self._append("queues", q)

    def add_generic(self, g: Generic) -> Node:
        return self._append("generics", g)

    def add_aviso(self, a: Aviso) -> Node:
        return self._append("avisos", a)

    def add_mirror(self, m: Mirror) -> Node:
        return self._append("mirrors", m)

    # ------------------------------------------------------------------ ecflow getters
    def get_trigger(self) -> Trigger | None:
        return self.trigger

    def get_complete(self) -> Complete | None:
        return self.complete

    def get_repeat(self) -> Repeat | None:
        return self.repeat

    def get_late(self) -> Late | None:
        return self.late

    def get_defstatus(self) -> DState:
        return self.defstatus

    def get_state(self) -> NState:
        return self.state

    def get_dstate(self) -> DState:
        return DState.suspended if self.suspended else DState(int(self.state))

    def is_suspended(self) -> bool:
        return self.suspended

    def get_parent(self) -> NodeContainer | None:
        return self.parent

    def find_variable(self, name: str) -> Variable | None:
        """The node's own user variable ``name`` (None if absent)."""
        return _named(self.variables, name)

    def find_event(self, name: str) -> Event | None:
        for e in self.events or ():
            if e.matches(name):
                return e
        return None

    def find_meter(self, name: str) -> Meter | None:
        return _named(self.meters, name)

    def find_label(self, name: str) -> Label | None:
        return _named(self.labels, name)

    def find_limit(self, name: str) -> Limit | None:
        return _named(self.limits, name)

    def find_queue(self, name: str) -> Queue | None:
        return _named(self.queues, name)

    def find_generic(self, name: str) -> Generic | None:
        return _named(self.generics, name)

    # ------------------------------------------------------------------ flags
    def set_flag(self, flag: str) -> None:
        if self.flags is None:
            self.flags = {flag}
        else:
            self.flags.add(flag)

    def clear_flag(self, flag: str) -> None:
        if self.flags:
            self.flags.discard(flag)
            if not self.flags:
                self.flags = None

    def has_flag(self, flag: str) -> bool:
        return bool(self.flags) and flag in self.flags  # type: ignore[operator]

    # ------------------------------------------------------------------ paths and tree
    def get_abs_node_path(self) -> str:
        parts = []
        n: Node | None = self
        while n is not None and not isinstance(n, Defs):
            parts.append(n.name)
            n = n.parent
        return "/" + "/".join(reversed(parts))

    @property
    def abs_node_path(self) -> str:
        return self.get_abs_node_path()

    def get_defs(self) -> Defs | None:
        n: Any = self
        while n is not None and not isinstance(n, Defs):
            n = n.parent
        return n

    def get_suite(self) -> Suite | None:
        n: Any = self
        while n is not None and not isinstance(n, Suite):
            n = n.parent
        return n

    def walk(self) -> Iterator[Node]:
        """This node and all its descendants, depth first, in definition order."""
        yield self

    def _collect(self, out: list[Node]) -> None:
        """Append this node and its descendants in :meth:`walk` order (a list, no generator per node)."""
        out.append(self)

    def get_all_nodes(self) -> list[Node]:
        out: list[Node] = []
        self._collect(out)
        return out

    def get_all_tasks(self) -> list[Task]:
        return [n for n in self.get_all_nodes() if type(n) is Task]

    def get_all_families(self) -> list[Family]:
        return [n for n in self.get_all_nodes() if isinstance(n, Family)]

    def find_referenced_node(self, path: str) -> Node | None:
        """Resolve a path as trigger expressions do: absolute, or relative to this node's parent
        (``t`` and ``./t`` are siblings, ``f/t`` below a sibling — or below this family itself —,
        ``../t`` a sibling of the parent)."""
        if path.startswith("/"):
            defs = self.get_defs()
            if path == "/":
                return defs  # type: ignore[return-value]  # '/<flag>late' refers to the server
            return defs.find_abs_node(path) if defs is not None else None
        start: Any = self.parent
        if start is None:
            return None
        found = _walk_relative(start, path)
        if found is None and "/" in path and not path.startswith(".") and isinstance(self, NodeContainer):
            found = _walk_relative(self, path)  # ecFlow: 'f2/t' also reaches down from a family itself
        return found

    def find_node(self, path: str) -> Node | None:
        """Resolve an absolute path, or a path relative to this node (``t``, ``../f``)."""
        if path.startswith("/"):
            defs = self.get_defs()
            return defs.find_abs_node(path) if defs is not None else None
        return _walk_relative(self, path)

    def normalise_path(self, path: str) -> str:
        """The absolute form of a relative reference (as written, when it can not be resolved)."""
        if path.startswith("/"):
            return path
        base = self.parent.get_abs_node_path().split("/") if self.parent and not isinstance(self.parent, Defs) \
            else [""]
        parts = [p for p in base if p] if base != [""] else []
        for p in path.split("/"):
            if p in (".", ""):
                continue
            if p == "..":
                if parts:
                    parts.pop()
            else:
                parts.append(p)
        return "/" + "/".join(parts)

    # ------------------------------------------------------------------ variables
    def generated_variables(self) -> dict[str, str]:
        """Variables the node generates (TASK/FAMILY/SUITE, ECF_NAME, repeat variables ...)."""
        out: dict[str, str] = {}
        if self.repeat is not None:
            out.update(self.repeat.generated_variables())
        return out

    def find_gen_variable(self, name: str) -> str | None:
        """A generated variable of this node (None if it generates no such variable)."""
        return self.generated_variables().get(name)

    def find_parent_variable(self, name: str) -> Variable | None:
        """The user variable ``name`` on this node or the nearest ancestor (None if none)."""
        n: Any = self
        while n is not None:
            if isinstance(n, Defs):
                return n.find_variable(name)
            v = n.find_variable(name)
            if v is not None:
                return v
            n = n.parent
        return None

    def find_parent_variable_sub_value(self, name: str) -> str:
        """Value of ``name`` looked up the tree as jobs see it: user variable, repeat, generated, then
        parents, then server variables ('' if undefined)."""
        v = self.lookup_variable(name)
        return "" if v is None else v

    def lookup_variable(self, name: str) -> str | None:
        """ecFlow's lookup order, up the tree: user variables, repeat, generated; then the server's."""
        n: Any = self
        while n is not None and not isinstance(n, Defs):
            v = n.find_variable(name)
            if v is not None:
                return v.value
            g = n.generated_variables()
            if name in g:
                return g[name]
            n = n.parent
        if isinstance(n, Defs):
            v = n.find_variable(name)
            if v is not None:
                return v.value
            for sv in n.server_variables or ():
                if sv.name == name:
                    return sv.value
        return None

    # ------------------------------------------------------------------ expression values
    def expr_value(self, name: str) -> Any:
        """``node:name`` in an expression: event (0/1), meter, variable (int, else 0), repeat value,
        generated variable, limit, queue index — else 0 (ecFlow's findExprVariableValue)."""
        for e in self.events or ():
            if e.matches(name):
                return 1 if e.value else 0
        for m in self.meters or ():
            if m.name == name:
                return m.value
        for v in self.variables or ():
            if v.name == name:
                return _to_int(v.value)
        r = self.repeat
        if r is not None:
            if r.name == name:
                return r.value()
            if name.startswith(r.name + "_"):
                g = r.generated_variables()
                if name in g:
                    return _to_int(g[name])
        g = self.generated_variables()
        if name in g:
            return _to_int(g[name])
        for lm in self.limits or ():
            if lm.name == name:
                return lm.value
        for q in self.queues or ():
            if q.name == name:
                return q.index
        return 0

    def has_expr_value(self, name: str) -> bool:
        """Whether ``node:name`` refers to something that exists (for ``check``)."""
        if any(e.matches(name) for e in self.events or ()) or self.find_meter(name) or self.find_variable(name):
            return True
        r = self.repeat
        if r is not None and (r.name == name or name in r.generated_variables()):
            return True
        return (name in self.generated_variables() or self.find_limit(name) is not None
                or self.find_queue(name) is not None)

    def expr_value_up(self, name: str) -> Any:
        """``:NAME``: the first node up the tree (self first) that defines it."""
        n: Any = self
        while n is not None and not isinstance(n, Defs):
            if n.has_expr_value(name):
                return n.expr_value(name)
            n = n.parent
        if isinstance(n, Defs):
            v = n.find_variable(name)
            if v is not None:
                return _to_int(v.value)
        return 0

    def has_expr_value_up(self, name: str) -> bool:
        n: Any = self
        while n is not None and not isinstance(n, Defs):
            if n.has_expr_value(name):
                return True
            n = n.parent
        if isinstance(n, Defs):
            return n.find_variable(name) is not None or any(v.name == name for v in n.server_variables or ())
        return False

    # ------------------------------------------------------------------ comparison / printing
    def _attr_tuple(self) -> tuple:
        return tuple(getattr(self, s) for s in Node.__slots__[2:])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Node):
            return NotImplemented
        return type(self) is type(other) and self.name == other.name and self._attr_tuple() == other._attr_tuple() \
            and self._extra_eq(other)

    def _extra_eq(self, other: Any) -> bool:
        return True

    __hash__ = object.__hash__

    def __str__(self) -> str:
        from .writer import write_node

        return write_node(self)

    def state_text(self) -> str:
        """This node and its subtree in the checkpoint (state) form."""
        from .writer import write_node

        return write_node(self, state=True)

    @classmethod
    def from_string(cls, text: str, filename: str = "<string>") -> Node:
        """Parse one node (``suite``/``family``/``task`` ... text, definition or state form)."""
        from .parser import parse_node_text

        node = parse_node_text(text, filename)
        if not isinstance(node, cls):
            raise TypeError(f"{filename}: expected a {cls.kind}, got a {node.kind}")
        return node

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.get_abs_node_path()} {self.state.name}>"


def _walk_relative(start: Any, path: str) -> Node | None:
    n = start
    for part in path.split("/"):
        if part == "." or part == "":
            continue
        if part == "..":
            n = n.parent
            if n is None:
                return None
            continue
        if isinstance(n, (NodeContainer, Defs)):
            n = n.find_child(part)
        elif isinstance(n, Task):
            n = n.find_alias(part)
        else:
            return None
        if n is None:
            return None
    return None if isinstance(n, Defs) else n


class NodeContainer(Node):
    """A node with children (Suite, Family)."""

    __slots__ = ("children", "_index")

    def _init(self, name: str) -> None:
        Node._init(self, name)
        self.children: list[Node] = []
        self._index: dict[str, Node] | None = None

    @property
    def nodes(self) -> list[Node]:
        return self.children

    def __iter__(self) -> Iterator[Node]:
        return iter(self.children)

    def __len__(self) -> int:
        return len(self.children)

    def find_child(self, name: str) -> Node | None:
        idx = self._index
        if idx is None:
            if len(self.children) < 8:
                for c in self.children:
                    if c.name == name:
                        return c
                return None
            idx = self._index = {c.name: c for c in self.children}
        return idx.get(name)

    def add_child(self, child: Node, position: int | None = None) -> Node:
        """Add a family or task (ecFlow refuses duplicate names)."""
        if not isinstance(child, self._child_types):
            raise TypeError(f"a {self.kind} can not contain a {child.kind}")
        if child.parent is not None:
            raise ValueError(f"{child.kind} {child.name} already belongs to {child.parent.get_abs_node_path()}")
        if self.find_child(child.name) is not None:
            raise ValueError(f"Add {child.kind} failed: a node named {child.name!r} already exists in "
                             f"{self.get_abs_node_path()}")
        child.parent = self
        if position is None:
            self.children.append(child)
        else:
            self.children.insert(position, child)
        if self._index is not None:
            self._index[child.name] = child
        structure_version[0] += 1
        return child

    def remove_child(self, child: Node) -> None:
        self.children.remove(child)
        child.parent = None
        self._index = None
        structure_version[0] += 1

    def add_family(self, family: str | Family, *items: Any, **variables: Any) -> Family:
        f = family if isinstance(family, Family) else Family(family, *items, **variables)
        self.add_child(f)
        return f

    def add_task(self, task: str | Task, *items: Any, **variables: Any) -> Task:
        t = task if isinstance(task, Task) else Task(task, *items, **variables)
        self.add_child(t)
        return t

    def find_task(self, name: str) -> Task | None:
        c = self.find_child(name)
        return c if isinstance(c, Task) else None

    def find_family(self, name: str) -> Family | None:
        c = self.find_child(name)
        return c if isinstance(c, Family) else None

    def find_node_up_the_tree(self, name: str) -> Node | None:
        n: Any = self
        while n is not None and not isinstance(n, Defs):
            c = n.find_child(name)
            if c is not None:
                return c
            n = n.parent
        return None

    def walk(self) -> Iterator[Node]:
        yield self
        stack = [iter(self.children)]
        while stack:
            for c in stack[-1]:
                yield c
                if isinstance(c, NodeContainer):
                    stack.append(iter(c.children))
                    break
                if isinstance(c, Task) and c.aliases:
                    yield from c.aliases
            else:
                stack.pop()

    def _collect(self, out: list[Node]) -> None:
        out.append(self)
        for c in self.children:
            c._collect(out)

    def _extra_eq(self, other: Any) -> bool:
        return self.children == other.children

    def computed_state(self) -> NState:
        return computed_state(c.state for c in self.children)


class Family(NodeContainer):
    """``family NAME ... endfamily``."""

    __slots__ = ()
    kind = "family"

    def generated_variables(self) -> dict[str, str]:
        out = {"FAMILY": self.get_abs_node_path()[1:].split("/", 1)[-1], "FAMILY1": self.name}
        out.update(Node.generated_variables(self))
        return out


class Suite(NodeContainer):
    """``suite NAME ... endsuite``.  Runtime: ``begun``, ``calendar`` (server-owned fields written to
    checkpoints) and ``calendar_variables``: ``None`` or a callable the server sets, returning the
    suite's generated date/time variables (DATE, DOW, TIME, ECF_JULIAN ...) so that triggers such as
    ``/s:TIME > 1330`` see the suite's clock.  Not written, not compared."""

    __slots__ = ("clock", "endclock", "begun", "calendar", "calendar_variables")
    kind = "suite"
    _not_allowed = frozenset({"trigger", "complete", "time", "today", "date", "day"})

    def _init(self, name: str) -> None:
        NodeContainer._init(self, name)
        self.clock: Clock | None = None
        self.endclock: EndClock | None = None
        self.begun = False
        self.calendar: dict[str, str] | None = None
        self.calendar_variables: Callable[[], dict[str, str]] | None = None

    def add_clock(self, clock: Clock) -> Suite:
        if isinstance(clock, EndClock):
            return self.add_end_clock(clock)
        if self.clock is not None:
            raise ValueError(f"suite {self.name} already has a clock")
        self.clock = clock
        return self

    def add_end_clock(self, clock: Clock) -> Suite:
        if not isinstance(clock, EndClock):
            clock = EndClock(False, clock.day, clock.month, clock.year, clock.gain, clock.positive_gain)
        self.endclock = clock
        return self

    def get_clock(self) -> Clock | None:
        return self.clock

    def generated_variables(self) -> dict[str, str]:
        out = {"SUITE": self.name}
        if self.calendar_variables is not None:
            out.update(self.calendar_variables())
        elif self.calendar:
            for k in ("DATE", "DAY", "DD", "DOW", "DOY", "ECF_CLOCK", "ECF_DATE", "ECF_JULIAN", "MM", "MONTH",
                      "TIME", "YYYY", "ECF_TIME"):
                if k in self.calendar:
                    out[k] = self.calendar[k]
        out.update(Node.generated_variables(self))
        return out

    def has_expr_value(self, name: str) -> bool:
        if name in ("DATE", "DAY", "DD", "DOW", "DOY", "ECF_DATE", "ECF_JULIAN", "MM", "MONTH", "TIME",
                    "YYYY", "ECF_TIME", "ECF_CLOCK"):
            return True
        return Node.has_expr_value(self, name)

    def _extra_eq(self, other: Any) -> bool:
        return (self.children == other.children and self.clock == other.clock and self.endclock == other.endclock
                and self.begun == other.begun and self.calendar == other.calendar)


class Task(Node):
    """``task NAME [... endtask]``.  Runtime: ``try_no``, ``password``, ``rid``, ``abort_reason``,
    ``aliases`` (None or list of Alias) and ``alias_no`` (next alias number)."""

    __slots__ = ("try_no", "password", "rid", "abort_reason", "aliases", "alias_no")
    kind = "task"
    _not_allowed = frozenset({"autoarchive"})

    def _init(self, name: str) -> None:
        # Node._init's body, inlined (a big suite makes hundreds of thousands of tasks; a test checks that
        # every slot is set, so a slot added to Node and forgotten here shows)
        n = _NODE_NAMES.get(name)
        self.name = n if n is not None else _node_name(name)
        self.parent = None
        self.variables = None
        self.trigger = None
        self.complete = None
        self.repeat = None
        self.events = None
        self.meters = None
        self.labels = None
        self.limits = None
        self.inlimits = None
        self.times = None
        self.todays = None
        self.dates = None
        self.days = None
        self.crons = None
        self.late = None
        self.defstatus = DState.queued
        self.autocancel = None
        self.autoarchive = None
        self.autorestore = None
        self.zombies = None
        self.verifies = None
        self.queues = None
        self.generics = None
        self.avisos = None
        self.mirrors = None
        self.state = NState.unknown
        self.suspended = False
        self.flags = None
        self.state_change = 0
        self.try_no = 0
        self.password = ""
        self.rid = ""
        self.abort_reason = ""
        self.aliases: list[Alias] | None = None
        self.alias_no = 0

    def add_alias(self, alias: Alias) -> Alias:
        if self.aliases is None:
            self.aliases = []
        alias.parent = self  # type: ignore[assignment]
        self.aliases.append(alias)
        structure_version[0] += 1
        return alias

    def find_alias(self, name: str) -> Alias | None:
        for a in self.aliases or ():
            if a.name == name:
                return a
        return None

    def walk(self) -> Iterator[Node]:
        yield self
        if self.aliases:
            yield from self.aliases

    def _collect(self, out: list[Node]) -> None:
        out.append(self)
        if self.aliases:
            out.extend(self.aliases)

    def generated_variables(self) -> dict[str, str]:
        out = {"TASK": self.name, "ECF_NAME": self.get_abs_node_path(), "ECF_TRYNO": str(self.try_no),
               "ECF_PASS": self.password, "ECF_RID": self.rid}
        out.update(Node.generated_variables(self))
        return out

    def _extra_eq(self, other: Any) -> bool:
        return (self.try_no, self.password, self.rid, self.abort_reason, self.aliases, self.alias_no) == \
            (other.try_no, other.password, other.rid, other.abort_reason, other.aliases, other.alias_no)


class Alias(Task):
    """``alias NAME`` (state files): a copy of a task run with edited variables."""

    __slots__ = ()
    kind = "alias"


Suite._child_types = (Family, Task)
Family._child_types = (Family, Task)


class Defs:
    """The whole definition: suites, externs, server variables and the server's runtime state.

    ``Defs()`` is empty; ``Defs(path)`` parses a file; ``Defs(Suite(...), ...)`` builds one.
    Runtime fields: ``state`` (computed from suites), ``server_state`` (:class:`SState`),
    ``flags``, ``variables`` (user variables at server level), ``server_variables``.
    """

    __slots__ = ("suites", "externs", "variables", "server_variables", "state", "server_state", "flags",
                 "state_change", "modify_change", "_index", "parent", "__weakref__")
    kind = "defs"
    name = ""

    def __init__(self, *items: Any, **variables: Any) -> None:
        self.suites: list[Suite] = []
        self.externs: list[str] = []
        self.variables: list[Variable] | None = None
        self.server_variables: list[Variable] | None = None
        self.state = NState.unknown
        self.server_state = SState.HALTED
        self.flags: set[str] | None = None
        self.state_change = 0
        self.modify_change = 0
        self._index: dict[str, Suite] = {}
        self.parent = None
        if len(items) == 1 and isinstance(items[0], (str, os.PathLike)) and not variables:
            from .parser import parse_file

            parse_file(os.fspath(items[0]), into=self)
            return
        self.add(*items, **variables)

    @classmethod
    def from_string(cls, text: str, filename: str = "<string>") -> Defs:
        """Parse definition (or checkpoint) text."""
        from .parser import parse_text

        return parse_text(text, filename)

    def restore_from_string(self, text: str) -> None:
        """ecflow's in-place parse of text into this (empty) Defs."""
        from .parser import parse_text

        parse_text(text, "<string>", into=self)

    def restore(self, path: str) -> None:
        from .parser import parse_file

        parse_file(path, into=self)

    # ------------------------------------------------------------------ building
    def __enter__(self) -> Defs:
        _BLOCKS.append([self, []])
        return self

    def __exit__(self, *exc: Any) -> None:
        block = _BLOCKS.pop()
        if exc[0] is not None:
            return
        for obj in block[1]:
            if isinstance(obj, Suite) and obj.parent is None:
                self.add_suite(obj)
            elif isinstance(obj, (Variable, Edit, Extern)) and id(obj) not in _consumed_ids:
                self.add(obj)
        if not _BLOCKS:
            _consumed_ids.clear()

    def add(self, *items: Any, **variables: Any) -> Defs:
        for it in items:
            if _BLOCKS:
                _consumed_ids[id(it)] = it  # keeps it alive so its id is not reused
            if isinstance(it, Suite):
                self.add_suite(it)
            elif isinstance(it, Extern):
                self.add_extern(it.path)
            elif isinstance(it, Variable):
                self.add_variable(it.name, it.value)
            elif isinstance(it, Edit):
                for v in it.variables:
                    self.add_variable(v.name, v.value)
            elif isinstance(it, dict):
                for k, v in it.items():
                    self.add_variable(k, v)
            elif isinstance(it, (list, tuple)):
                self.add(*it)
            else:
                raise TypeError(f"can not add {type(it).__name__} to Defs (expected Suite, Extern or Edit)")
        for k, v in variables.items():
            self.add_variable(k, v)
        return self

    def __iadd__(self, item: Any) -> Defs:
        return self.add(*(item if isinstance(item, (list, tuple)) else (item,)))

    def add_suite(self, suite: str | Suite, *items: Any, **variables: Any) -> Suite:
        s = suite if isinstance(suite, Suite) else Suite(suite, *items, **variables)
        if s.parent is not None:
            raise ValueError(f"suite {s.name} already belongs to a Defs")
        if s.name in self._index:
            raise ValueError(f"Add Suite failed: A Suite of name '{s.name}' already exists")
        s.parent = self  # type: ignore[assignment]
        self.suites.append(s)
        self._index[s.name] = s
        structure_version[0] += 1
        return s

    def remove_suite(self, suite: Suite | str) -> None:
        s = self._index.pop(suite if isinstance(suite, str) else suite.name)
        self.suites.remove(s)
        s.parent = None
        structure_version[0] += 1

    def auto_add_externs(self, remove_existing: bool = False) -> None:
        """ecflow's helper: add an ``extern`` for every trigger/complete/inlimit reference that does not
        resolve, so that ``check()`` passes for suites that depend on other servers."""
        if remove_existing:
            self.externs = []
        for n in self.walk():
            for expr in (n.trigger, n.complete):
                if expr is None:
                    continue
                try:
                    refs = expr.references()
                except DefsSyntaxError:
                    continue
                for r in refs:
                    if r.kind != "var" and n.find_referenced_node(r.path) is None:
                        p = n.normalise_path(r.path)
                        self.add_extern(f"{p}:{r.attr}" if r.kind == "attr" else p)
            for il in n.inlimits or ():
                if il.path and n.find_referenced_node(il.path) is None:
                    self.add_extern(f"{n.normalise_path(il.path)}:{il.name}")

    def add_extern(self, path: str) -> Defs:
        if path not in self.externs:
            self.externs.append(path)
        return self

    def add_variable(self, name: str, value: Any = "") -> Defs:
        var = Variable(name, value)
        if self.variables is None:
            self.variables = []
        for i, v in enumerate(self.variables):
            if v.name == name:
                self.variables[i] = var
                return self
        self.variables.append(var)
        return self

    def find_variable(self, name: str) -> Variable | None:
        return _named(self.variables, name)

    def find_suite(self, name: str) -> Suite | None:
        return self._index.get(name)

    def find_child(self, name: str) -> Suite | None:
        return self._index.get(name)

    def find_abs_node(self, path: str) -> Node | None:
        """``/s/f/t`` -> the node (None if there is none)."""
        if not path.startswith("/"):
            return None
        parts = path.split("/")
        if len(parts) < 2 or not parts[1]:
            return None
        n: Any = self._index.get(parts[1])
        for p in parts[2:]:
            if n is None:
                return None
            if not p:
                continue
            if isinstance(n, NodeContainer):
                n = n.find_child(p)
            elif isinstance(n, Task):
                n = n.find_alias(p)
            else:
                return None
        return n

    def find_node(self, path: str) -> Node | None:
        return self.find_abs_node(path)

    def find_node_path(self, type_: str, name: str) -> str:
        """Absolute path of the first node of kind ``type_`` ('suite', 'family', 'task') called ``name``."""
        for n in self.walk():
            if n.kind == type_.lower() and n.name == name:
                return n.get_abs_node_path()
        return ""

    def get_abs_node_path(self) -> str:
        return "/"

    def get_defs(self) -> Defs:
        return self

    def walk(self) -> Iterator[Node]:
        """Every node, depth first, in definition order (the Defs itself excluded)."""
        for s in self.suites:
            yield from s.walk()

    def get_all_nodes(self) -> list[Node]:
        out: list[Node] = []
        for s in self.suites:
            s._collect(out)
        return out

    get_all_tasks = Node.get_all_tasks
    get_all_families = Node.get_all_families

    def __iter__(self) -> Iterator[Suite]:
        return iter(self.suites)

    def __len__(self) -> int:
        return len(self.suites)

    def __contains__(self, name: str) -> bool:
        return name in self._index

    def get_state(self) -> NState:
        return self.state

    def get_server_state(self) -> SState:
        return self.server_state

    def computed_state(self) -> NState:
        return computed_state(s.state for s in self.suites)

    def has_flag(self, flag: str) -> bool:
        return bool(self.flags) and flag in self.flags  # type: ignore[operator]

    # ------------------------------------------------------------------ check / save
    def check(self) -> str:
        """'' when the definition is consistent, else the error text (like ecflow's ``Defs.check``)."""
        from .check import check_defs

        return check_defs(self)

    def simulate(self, days: float | None = None) -> str:
        """Run the definition in virtual time with no real jobs (ecflow's ``Defs.simulate``): '' when every
        suite completes and every ``verify`` holds, else a report of what never ran and why."""
        from ecflow_lab.server.simulate import simulate  # lazy: defs never imports server code at load

        return simulate(self, days=days)

    def check_job_creation(self, *args: Any, **kwargs: Any) -> str:  # pragma: no cover - server territory
        raise NotImplementedError("job creation checks need the server's job generator (ecflow_lab.server)")

    def save_as_defs(self, path: str, style: Any = None) -> None:
        """Write the definition form (what ``str(defs)`` gives); ``style`` 'STATE'/'MIGRATE' (or ecflow's
        ``Style.STATE``) writes the state form instead."""
        from .writer import write_defs

        name = str(getattr(style, "name", style or "DEFS")).upper()
        _atomic_write(path, write_defs(self, state=name in ("STATE", "MIGRATE")))

    def save_as_checkpt(self, path: str) -> None:
        """Write the checkpoint form: definition plus state in trailing comments (atomically)."""
        from .writer import write_defs

        _atomic_write(path, write_defs(self, state=True))

    def to_string(self, state: bool = False) -> str:
        from .writer import write_defs

        return write_defs(self, state=state)

    def __str__(self) -> str:
        from .writer import write_defs

        return write_defs(self)

    def __repr__(self) -> str:
        return f"<Defs {len(self.suites)} suites>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Defs):
            return NotImplemented
        return (self.suites == other.suites and sorted(self.externs) == sorted(other.externs)
                and (self.variables or None) == (other.variables or None)
                and self.state == other.state and self.server_state == other.server_state
                and (self.flags or None) == (other.flags or None))

    __hash__ = object.__hash__


def _atomic_write(path: str, text: str) -> None:
    import tempfile

    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp_", suffix=".def")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


_consumed_ids: dict[int, Any] = {}

_ADDERS: dict[type, str] = {
    Event: "add_event", Meter: "add_meter", Label: "add_label", Limit: "add_limit", InLimit: "add_inlimit",
    RepeatDate: "add_repeat", RepeatDateList: "add_repeat", RepeatInteger: "add_repeat",
    RepeatEnumerated: "add_repeat", RepeatString: "add_repeat", RepeatDay: "add_repeat",
    RepeatDateTime: "add_repeat", Time: "add_time", Today: "add_today", Date: "add_date", Day: "add_day",
    Cron: "add_cron", Late: "add_late", Clock: "add_clock", EndClock: "add_end_clock",
    Autocancel: "add_autocancel", Autoarchive: "add_autoarchive", Autorestore: "add_autorestore",
    Verify: "add_verify", ZombieAttr: "add_zombie", Queue: "add_queue", Generic: "add_generic",
    Aviso: "add_aviso", Mirror: "add_mirror",
}
