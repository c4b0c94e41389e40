"""The server's only door into :mod:`ecflow_lab.defs`: small functions over the model's nodes.

The scheduler never touches model attributes directly, so the model can evolve (or grow faster paths)
without touching scheduling code. Everything here is pure data access — no sockets, no processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ecflow_lab import defs as D
from ecflow_lab.defs.state import NState

# ------------------------------------------------------------------------------------------ structure


def new_defs() -> Any:
    return D.Defs()


def is_defs(n: Any) -> bool:
    return isinstance(n, D.Defs)


def is_task(n: Any) -> bool:
    return isinstance(n, D.Task)


def is_suite(n: Any) -> bool:
    return isinstance(n, D.Suite)


def name(n: Any) -> str:
    return n.name


def parent(n: Any) -> Any:
    return n.parent


def children(n: Any) -> list[Any]:
    return n.children if isinstance(n, D.NodeContainer) else _EMPTY


_EMPTY: list[Any] = []


def suites(defs: Any) -> list[Any]:
    return defs.suites


_path_cache: dict[int, str] = {}
_path_ver = [-1]


def path(n: Any) -> str:
    """Absolute path, memoised until the tree's structure changes (child commands hit it per call)."""
    from ecflow_lab.defs import nodes as _nodes

    v = _nodes.structure_version[0]
    if v != _path_ver[0] or len(_path_cache) > 100000:
        _path_cache.clear()
        _path_ver[0] = v
    p = _path_cache.get(id(n))
    if p is None:
        p = _path_cache[id(n)] = n.get_abs_node_path()
    return p


def walk(n: Any) -> Iterator[Any]:
    """``n`` and every node below it, depth first, in definition order."""
    stack = [n]
    while stack:
        x = stack.pop()
        yield x
        kids = x.children if isinstance(x, D.NodeContainer) else None
        if kids:
            stack.extend(reversed(kids))


def suite_of(n: Any) -> Any:
    while n is not None and not isinstance(n, D.Suite):
        n = n.parent
    return n


def find_abs(defs: Any, p: str) -> Any:
    return defs.find_abs_node(p)


def find_suite(defs: Any, nm: str) -> Any:
    return defs.find_suite(nm)


def find_node(defs: Any, rel_to: Any, p: str) -> Any:
    """Resolve an absolute or relative (``../f``, ``./t``, ``f/t``) path from ``rel_to``."""
    if p.startswith("/"):
        return defs.find_abs_node(p)
    return rel_to.find_node(p) if hasattr(rel_to, "find_node") else None


def add_suite(defs: Any, s: Any) -> None:
    defs.add_suite(s)


def remove_node(defs: Any, n: Any) -> None:
    if isinstance(n.parent, D.Defs):
        n.parent.remove_suite(n)
    else:
        n.parent.remove_child(n)


def _insert(par: Any, n: Any, i: int) -> None:
    if isinstance(par, D.Defs):
        par.add_suite(n)
        par.suites.insert(i, par.suites.pop())
    else:
        par.add_child(n, i)


def replace_node(defs: Any, old: Any, new: Any) -> None:
    par = old.parent
    kids = par.suites if isinstance(par, D.Defs) else par.children
    i = kids.index(old)
    remove_node(defs, old)
    new_parent_detach(new)
    _insert(par, new, i)


def new_parent_detach(n: Any) -> None:
    if n.parent is not None:
        remove_node(None, n)


def add_node_path(defs: Any, src_defs: Any, p: str) -> None:
    """Copy ``p`` from ``src_defs`` into ``defs``, creating missing parents (replace with parent=True)."""
    parts = [x for x in p.split("/") if x]
    src = src_defs.find_abs_node(p)
    cur: Any = defs
    for i in range(len(parts) - 1):
        nxt = defs.find_abs_node("/" + "/".join(parts[: i + 1]))
        if nxt is None:
            tmpl = src_defs.find_abs_node("/" + "/".join(parts[: i + 1]))
            nxt = type(tmpl)(tmpl.name)
            if isinstance(cur, D.Defs):
                cur.add_suite(nxt)
            else:
                cur.add_child(nxt)
        cur = nxt
    new_parent_detach(src)
    if isinstance(cur, D.Defs):
        cur.add_suite(src)
    else:
        cur.add_child(src)


def order(n: Any, how: str) -> None:
    par = n.parent
    kids = par.suites if isinstance(par, D.Defs) else par.children
    i = kids.index(n)
    if how == "top":
        kids.insert(0, kids.pop(i))
    elif how == "bottom":
        kids.append(kids.pop(i))
    elif how == "up":
        if i > 0:
            kids[i - 1], kids[i] = kids[i], kids[i - 1]
    elif how == "down":
        if i < len(kids) - 1:
            kids[i + 1], kids[i] = kids[i], kids[i + 1]
    elif how == "alpha":
        kids.sort(key=lambda k: k.name)
    elif how == "order":
        kids.sort(key=lambda k: k.name, reverse=True)
    else:
        raise RuntimeError(f"order: {how!r}: expected top, bottom, alpha, order, up or down")


# ------------------------------------------------------------------------------------------ runtime state


def state(n: Any) -> NState:
    return n.state


def set_state(n: Any, st: NState) -> None:
    n.state = st


def defstatus(n: Any) -> str | None:
    return n.defstatus.name


def suspended(n: Any) -> bool:
    return bool(n.suspended)


def set_suspended(n: Any, flag: bool) -> None:
    n.suspended = flag


def flags(n: Any) -> set[str]:
    f = n.flags
    return f if f is not None else set()


def add_flag(n: Any, f: str) -> None:
    if n.flags is None:
        n.flags = set()
    n.flags.add(f)


def discard_flag(n: Any, f: str) -> None:
    if n.flags:
        n.flags.discard(f)


def clear_flags(n: Any, keep: tuple[str, ...] = ()) -> None:
    if n.flags:
        n.flags = {f for f in n.flags if f in keep} or None


def set_flags(n: Any, fl: list[str]) -> None:
    n.flags = set(fl) or None


def begun(s: Any) -> bool:
    return bool(getattr(s, "begun", False))


def set_begun(s: Any, flag: bool) -> None:
    s.begun = flag


def tryno(t: Any) -> int:
    return t.try_no


def set_tryno(t: Any, v: int) -> None:
    t.try_no = v


def password(t: Any) -> str:
    return t.password or ""


def set_password(t: Any, v: str) -> None:
    t.password = v


def rid(t: Any) -> str:
    return t.rid or ""


def set_rid(t: Any, v: str) -> None:
    t.rid = v


def abort_reason(t: Any) -> str:
    return getattr(t, "abort_reason", "") or ""


def set_abort_reason(t: Any, v: str) -> None:
    t.abort_reason = v


def update_defs_state(defs: Any) -> None:
    """The Defs' own state: the most significant of its suites' states."""
    from ecflow_lab.defs.state import computed_state

    defs.state = computed_state(s.state for s in defs.suites)


def set_server_state(defs: Any, st: str) -> None:
    defs.server_state = D.SState[st]


# ------------------------------------------------------------------------------------------ attributes


def _lst(n: Any, attr: str) -> list[Any]:
    return getattr(n, attr, None) or []


def events(n: Any) -> list[Any]:
    return _lst(n, "events")


def meters(n: Any) -> list[Any]:
    return _lst(n, "meters")


def labels(n: Any) -> list[Any]:
    return _lst(n, "labels")


def inlimits(n: Any) -> list[Any]:
    return _lst(n, "inlimits")


def zombie_attrs(n: Any) -> list[Any]:
    return _lst(n, "zombies")


def repeat(n: Any) -> Any:
    return getattr(n, "repeat", None)


def set_repeat_value(rep: Any, value: str, index: int | None = None) -> None:
    if index is not None:
        rep.index = int(index)


def find_event(n: Any, ref: str) -> Any:
    for ev in _lst(n, "events"):
        if ev.matches(ref):
            return ev
    return None


def find_meter(n: Any, nm: str) -> Any:
    for m in _lst(n, "meters"):
        if m.name == nm:
            return m
    return None


def find_label(n: Any, nm: str) -> Any:
    for lb in _lst(n, "labels"):
        if lb.name == nm:
            return lb
    return None


def find_queue(n: Any, nm: str) -> Any:
    for q in _lst(n, "queues"):
        if q.name == nm:
            return q
    return None


def find_limit_on(n: Any, nm: str) -> Any:
    for lim in _lst(n, "limits"):
        if lim.name == nm:
            return lim
    return None


def user_var(n: Any, nm: str) -> str | None:
    vs = n.variables
    if vs:
        for v in vs:
            if v.name == nm:
                return v.value
    return None


def set_user_var(n: Any, nm: str, value: str) -> None:
    n.add_variable(nm, value)


def delete_user_var(n: Any, nm: str) -> None:
    n.delete_variable(nm)


def server_user_var(defs: Any, nm: str) -> str | None:
    for v in defs.variables or ():
        if v.name == nm:
            return v.value
    for v in defs.server_variables or ():
        if v.name == nm:
            return v.value
    return None


def server_user_vars(defs: Any) -> dict[str, str]:
    return {v.name: v.value for v in _lst(defs, "variables")}


def set_server_user_var(defs: Any, nm: str, value: str) -> None:
    set_user_var(defs, nm, value)


def clock_attr(s: Any) -> Any:
    return getattr(s, "clock", None)


# time dependencies
def time_attrs(n: Any) -> list[Any]:
    t = getattr(n, "times", None)
    td = getattr(n, "todays", None)
    if not t and not td:
        return []
    return list(t or ()) + list(td or ())


def is_today(attr: Any) -> bool:
    return isinstance(attr, D.Today)


def dates(n: Any) -> list[Any]:
    return _lst(n, "dates")


def days(n: Any) -> list[Any]:
    return _lst(n, "days")


def crons(n: Any) -> list[Any]:
    return _lst(n, "crons")


def has_time(n: Any) -> bool:
    return bool(getattr(n, "times", None) or getattr(n, "todays", None) or getattr(n, "dates", None)
                or getattr(n, "days", None) or getattr(n, "crons", None))


def describe_time(n: Any) -> list[str]:
    out = []
    for a in time_attrs(n) + dates(n) + days(n) + crons(n):
        out.append(a.write())
    return out


def free_dates(n: Any) -> None:
    for a in dates(n) + days(n):
        if hasattr(a, "free"):
            a.free = True


# ------------------------------------------------------------------------------------------ expressions


def trigger_expr(n: Any) -> Any:
    return getattr(n, "trigger", None)


def complete_expr(n: Any) -> Any:
    return getattr(n, "complete", None)


def evaluate(expr: Any, n: Any) -> bool:
    return expr.free or bool(expr.evaluate(n))


def evaluate_text(text: str, n: Any) -> bool:
    return bool(D.Expression(text).evaluate(n))


def expr_text(expr: Any) -> str:
    return getattr(expr, "text", None) or str(expr)


def expr_references(expr: Any, n: Any, defs: Any) -> list[tuple[str, Any, str]]:
    """``(path_text, node_or_None, attribute)`` for each node reference of the expression."""
    out = []
    seen = set()
    for ref in expr.references():
        if ref.kind == "var" or (ref.path, ref.attr) in seen:
            continue
        seen.add((ref.path, ref.attr))
        target = n.find_referenced_node(ref.path)
        out.append((ref.path, target, ref.attr or ""))
    return out


def attr_value(n: Any, attr: str) -> str:
    ev = find_event(n, attr)
    if ev is not None:
        return "set" if ev.value else "clear"
    me = find_meter(n, attr)
    if me is not None:
        return str(me.value)
    rep = repeat(n)
    if rep is not None and rep.name == attr:
        return rep.value_as_string()
    v = user_var(n, attr)
    return v if v is not None else "?"


def free_trigger(n: Any) -> None:
    if getattr(n, "trigger", None) is not None:
        n.trigger.free = True


# ------------------------------------------------------------------------------------------ text


def parse_defs(text: str, fname: str) -> Any:
    """Definition text -> Defs (DefsSyntaxError, a RuntimeError, names file and line)."""
    return D.Defs.from_string(text, fname)


def parse_state(text: str, fname: str = "<checkpoint>") -> Any:
    """Checkpoint (state form) text -> Defs with every runtime field."""
    return D.Defs.from_string(text, fname)


def write_state(defs: Any, suites: set[str] | None = None) -> str:
    """The checkpoint form; with ``suites`` only those suites (client handles)."""
    from ecflow_lab.defs.writer import write_defs

    if suites is None:
        return write_defs(defs, state=True)
    sub = D.Defs()
    sub.server_state = defs.server_state
    sub.variables = defs.variables
    sub.suites = [s for s in defs.suites if s.name in suites]   # shallow view: nodes keep their parents
    return write_defs(sub, state=True)


def state_header(defs: Any) -> str:
    """The checkpoint header (version, defs_state, server and user variables, externs), no suites."""
    from ecflow_lab.defs.writer import write_defs

    sub = D.Defs()
    sub.variables, sub.server_variables, sub.externs = defs.variables, defs.server_variables, defs.externs
    sub.state, sub.server_state, sub.flags = defs.state, defs.server_state, defs.flags
    text = write_defs(sub, state=True)
    return text[: -len(STATE_FOOTER)] if text.endswith(STATE_FOOTER) else text


STATE_FOOTER = "# enddef\n"


def write_suite_state(s: Any) -> str:
    from ecflow_lab.defs.writer import write_node

    return write_node(s, state=True)


def split_suites(text: str) -> list[tuple[str, str]] | None:
    """``[(suite name, its text)]`` of a definition, in order, or None when the text is not simple enough
    to split by lines (the caller then uses the writer)."""
    out: list[tuple[str, str]] = []
    lines = text.split("\n")
    start = -1
    name = ""
    for i, line in enumerate(lines):
        s = line.strip()
        if not s or s[0] == "#":
            continue
        word = s.split(None, 1)[0].rstrip(";")
        if word == "suite":
            if start >= 0 or ";" in s:
                return None
            parts = s.split()
            if len(parts) < 2:
                return None
            start, name = i, parts[1].split("#")[0]
        elif word == "endsuite":
            if start < 0 or s.split("#")[0].strip() != "endsuite":
                return None
            out.append((name, "\n".join(lines[start:i + 1]) + "\n"))
            start = -1
    return out if start < 0 else None


def split_suites_bytes(data: bytes) -> list[tuple[str, memoryview]] | None:
    """:func:`split_suites` on the raw bytes: finds the ``suite``/``endsuite`` lines with ``bytes.find``
    (C speed: 60 MB in a few ms), or None when the layout is not simple enough."""
    out: list[tuple[str, bytes]] = []
    start = -1
    name = ""
    i = 0
    while True:
        i = data.find(b"suite", i)
        if i < 0:
            break
        ls = data.rfind(b"\n", 0, i) + 1
        le = data.find(b"\n", i)
        le = len(data) if le < 0 else le
        head = data[ls:i].strip(b" \t")
        nxt = data[i + 5:i + 6]
        i = le
        if head not in (b"", b"end") or nxt not in (b"", b" ", b"\t", b"\n", b"\r", b"#"):
            continue                        # 'suite' inside some other word or statement
        line = data[ls:le]
        if b";" in line:
            return None
        words = line.split(b"#")[0].split()
        if head == b"":
            if start >= 0 or len(words) != 2 or words[0] != b"suite":
                return None
            start, name = ls, words[1].decode(errors="replace")
        else:
            if start < 0 or words != [b"endsuite"]:
                return None
            out.append((name, memoryview(data)[start:le]))   # no copy; the caller adds the newline
            start = -1
    return out if start < 0 else None


def check(defs: Any) -> str:
    return defs.check() if hasattr(defs, "check") else ""


def _set_repeat(rep: Any, value: str) -> None:
    """``alter change repeat VALUE``: a value of the repeat (or, for list repeats, also its index)."""
    for i in range(rep.size()):
        rep_i = rep.index
        rep.index = i
        if rep.value_as_string() == value or str(rep.value()) == value:
            return
        rep.index = rep_i
    if value.lstrip("-").isdigit() and hasattr(rep, "values") and 0 <= int(value) < rep.size():
        rep.index = int(value)
        return
    raise RuntimeError(f"alter change repeat: {value!r} is not a value of {rep.write()}")


def alter(n: Any, alter_type: str, attr_type: str, nm: str, value: str, sch: Any) -> dict[str, Any]:
    """ecflow's ``alter``: add / change / delete attributes, set_flag / clear_flag. Returns delta keys."""
    t = attr_type.replace("_", "-")
    out: dict[str, Any] = {}
    try:
        if alter_type == "add":
            if t == "variable":
                n.add_variable(nm, value)
                out["variables"] = {nm: value}
            elif t in ("time", "today"):
                (n.add_time if t == "time" else n.add_today)(nm or value)
            elif t == "date":
                n.add_date(*(nm or value).split(".")) if "." in (nm or value) else n.add_date(nm or value)
            elif t == "day":
                n.add_day(nm or value)
            elif t == "label":
                n.add_label(nm, value)
            elif t == "event":
                n.add_event(nm) if nm else n.add_event(value)
            elif t == "meter":
                lo, _, hi = (value or "0,100").partition(",")
                n.add_meter(nm, int(lo), int(hi or 100))
            elif t == "limit":
                n.add_limit(nm, int(value or 1))
            elif t == "inlimit":
                n.add_inlimit(nm, "", int(value or 1))
            elif t == "zombie":
                n.add_zombie(D.ZombieAttr(nm or value))
            elif t == "late":
                n.add_late(D.Late(nm or value)) if isinstance(nm or value, str) else None
            elif t == "cron":
                n.add_cron(nm or value)
            else:
                raise RuntimeError(f"alter add: unsupported attribute {attr_type!r}; expected variable, time, "
                                   f"today, date, day, label, event, meter, limit, inlimit, zombie, late, cron")
        elif alter_type == "delete":
            if t == "variable":
                if nm:
                    if n.find_variable(nm) is None:
                        raise RuntimeError(f"alter delete variable: {path(n)} has no variable {nm!r}")
                    n.delete_variable(nm)
                else:
                    n.variables = None
            elif t in ("time", "today", "date", "day", "cron", "label", "event", "meter", "limit", "inlimit",
                       "zombie"):
                slot = {"time": "times", "today": "todays", "date": "dates", "day": "days", "cron": "crons",
                        "label": "labels", "event": "events", "meter": "meters", "limit": "limits",
                        "inlimit": "inlimits", "zombie": "zombies"}[t]
                items = getattr(n, slot) or []
                if nm:
                    keep = [a for a in items if not _attr_matches(a, t, nm)]
                    if len(keep) == len(items):
                        raise RuntimeError(f"alter delete {t}: {path(n)} has no {t} {nm!r}")
                else:
                    keep = []
                setattr(n, slot, keep or None)
            elif t in ("trigger", "complete", "repeat", "late"):
                setattr(n, t, None)
            elif t == "limit-path":
                lim = n.find_limit(nm)
                if lim is None:
                    raise RuntimeError(f"alter delete limit_path: {path(n)} has no limit {nm!r}")
                if lim.paths and value in lim.paths:
                    lim.decrement(1, value)
            else:
                raise RuntimeError(f"alter delete: unsupported attribute {attr_type!r}")
        elif alter_type == "change":
            if t == "variable":
                if n.find_variable(nm) is None and not isinstance(n, D.Defs):
                    raise RuntimeError(f"alter change variable: {path(n)} has no variable {nm!r} (use add)")
                n.add_variable(nm, value)
                out["variables"] = {nm: value}
            elif t == "event":
                ev = find_event(n, nm)
                if ev is None:
                    raise RuntimeError(f"alter change event: {path(n)} has no event {nm!r}")
                ev.value = value in ("", "set", "1", "true")
                out["events"] = {ev.ident: ev.value}
            elif t == "meter":
                me = find_meter(n, nm)
                if me is None:
                    raise RuntimeError(f"alter change meter: {path(n)} has no meter {nm!r}")
                v = int(value)
                if not me.min <= v <= me.max:
                    raise RuntimeError(f"alter change meter: {v} outside [{me.min}, {me.max}]")
                me.value = v
                out["meters"] = {nm: v}
            elif t == "label":
                lb = find_label(n, nm)
                if lb is None:
                    raise RuntimeError(f"alter change label: {path(n)} has no label {nm!r}")
                lb.new_value = value
                out["labels"] = {nm: value}
            elif t in ("trigger", "complete"):
                expr = (D.Trigger if t == "trigger" else D.Complete)(nm or value)
                expr.ast()     # parse now: a bad expression is refused, the old one kept
                setattr(n, t, expr)
            elif t == "repeat":
                rep = n.repeat
                if rep is None:
                    raise RuntimeError(f"alter change repeat: {path(n)} has no repeat")
                _set_repeat(rep, nm or value)
                out["repeat"] = {"name": rep.name, "value": rep.value_as_string(), "index": rep.index}
            elif t in ("limit-max", "limit-value"):
                lim = n.find_limit(nm)
                if lim is None:
                    raise RuntimeError(f"alter change {t}: {path(n)} has no limit {nm!r}")
                if t == "limit-max":
                    lim.limit = int(value)
                else:
                    lim.value = int(value)
            elif t == "defstatus":
                n.defstatus = D.DState[nm or value]
            elif t in ("clock-type", "clock-gain", "clock-date"):
                if not isinstance(n, D.Suite):
                    raise RuntimeError(f"alter change {t}: only a suite has a clock")
                clk = n.clock or D.Clock()
                if t == "clock-type":
                    clk.hybrid = (nm or value) == "hybrid"
                elif t == "clock-gain":
                    clk.gain = int(nm or value)
                else:
                    d, m, y = (int(x) for x in (nm or value).split("."))
                    clk.day, clk.month, clk.year = d, m, y
                n.clock = clk
            elif t == "late":
                n.late = D.Late(nm or value)
            elif t in ("time", "today"):
                slot = "times" if t == "time" else "todays"
                items = getattr(n, slot) or []
                cls = D.Time if t == "time" else D.Today
                for i, a in enumerate(items):
                    if a.series.write() == nm:
                        items[i] = cls(value)
                        break
                else:
                    raise RuntimeError(f"alter change {t}: {path(n)} has no {t} {nm!r}")
            else:
                raise RuntimeError(f"alter change: unsupported attribute {attr_type!r}")
        elif alter_type in ("set_flag", "clear_flag"):
            flag = attr_type.replace("-", "_")
            if flag == "byrule":
                flag = "by_rule"
            if alter_type == "set_flag":
                n.set_flag(flag)
            else:
                n.clear_flag(flag)
            out["flags"] = sorted(n.flags or ())
        else:
            raise RuntimeError(f"alter: {alter_type!r}: expected add, change, delete, set_flag or clear_flag")
    except (ValueError, TypeError, KeyError, D.DefsSyntaxError) as exc:
        raise RuntimeError(f"alter {alter_type} {attr_type} {nm} {value} on {path(n)}: {exc}") from None
    from ecflow_lab.defs import nodes as _nodes

    _nodes.structure_version[0] += 1
    return out


def _attr_matches(a: Any, kind: str, nm: str) -> bool:
    if kind == "event":
        return a.matches(nm)
    if hasattr(a, "name") and not isinstance(a, (D.Time, D.Today)):
        return a.name == nm
    text = a.write()
    return text == nm or text.split(None, 1)[-1] == nm


def sort_attributes(n: Any, attr: str, recursive: bool) -> None:
    """Sort attributes by name (``event``, ``meter``, ``label``, ``variable``, ``limit`` or ``all``)."""
    kinds = ["events", "meters", "labels", "variables", "limits"] if attr in ("all", "") else [attr + "s"]
    for x in (walk(n) if recursive else [n]):
        for slot in kinds:
            items = getattr(x, slot, None)
            if items:
                items.sort(key=lambda a: getattr(a, "name", "") or str(getattr(a, "number", "")))
