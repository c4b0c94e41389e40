"""Node attributes: variables, events, meters, labels, limits, repeats, time dependencies, ...

Every class keeps two kinds of fields:

* **definition** fields, set from the ``.def`` text or the builder (``name``, ``min``, ``start``...);
* **runtime** fields (``value``, ``index``, ``free``...), mutated in place by the suite server and
  written in the checkpoint (state) form as a trailing comment.

``__slots__`` everywhere: a suite of 200k tasks must fit in memory.  ``__eq__`` compares all
slots, so a model written and parsed back (definition or state form) compares equal.
:meth:`write` gives the definition text, :meth:`state` the trailing state comment ('' if default).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Sequence
from enum import IntEnum
from typing import Any

__all__ = [
    "Variable", "Edit", "Event", "Meter", "Label", "Limit", "InLimit",
    "Repeat", "RepeatDate", "RepeatDateList", "RepeatInteger", "RepeatEnumerated", "RepeatString",
    "RepeatDay", "RepeatDateTime",
    "TimeSlot", "TimeSeries", "Time", "Today", "Date", "Day", "Cron", "Late", "Clock", "EndClock",
    "Autocancel", "Autoarchive", "Autorestore", "Verify", "ZombieAttr", "Queue", "Generic",
    "Aviso", "Mirror", "Extern", "Days", "quote_value", "date_to_julian", "julian_to_date",
]


class _Attr:
    """Common behaviour: equality over all slots, a readable repr."""

    __slots__ = ()
    keyword = ""

    def _all_slots(self) -> Iterable[str]:
        for cls in type(self).__mro__:
            yield from getattr(cls, "__slots__", ())

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, s, None) == getattr(other, s, None) for s in self._all_slots())

    __hash__ = None  # type: ignore[assignment]  # mutable

    def write(self) -> str:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def state(self) -> str:
        """Runtime state as the text after ``#`` in the checkpoint form ('' when default)."""
        return ""

    def __str__(self) -> str:
        return self.write()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.write()}>"


def quote_value(value: str) -> str:
    """Quote a variable value the way ecFlow prints it (single quotes)."""
    return "'" + value + "'"


def quote_word(value: str) -> str:
    """Quote one word of a list (repeat enumerated/string/datelist values): double quotes as ecFlow
    prints them, single quotes when the value itself holds a double quote."""
    return f"'{value}'" if '"' in value and "'" not in value else f'"{value}"'



# --------------------------------------------------------------------------------------------- variables


class Variable(_Attr):
    """``edit NAME value``: a user variable.  ``value`` is always a string."""

    __slots__ = ("name", "value")
    keyword = "edit"

    def __init__(self, name: str, value: Any = "") -> None:
        self.name = name
        self.value = value if isinstance(value, str) else str(value)

    def write(self) -> str:
        return f"edit {self.name} {quote_value(self.value)}"

    def name_(self) -> str:
        return self.name

    def value_(self) -> str:
        return self.value


class Edit:
    """Builder for several variables: ``Edit(A=1, B="x")``, ``Edit({"A": 1})`` or ``Edit("A", 1)``."""

    __slots__ = ("variables",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        items: list[tuple[str, Any]] = []
        if len(args) == 2 and isinstance(args[0], str):
            items.append((args[0], args[1]))
        else:
            for a in args:
                if isinstance(a, dict):
                    items.extend(a.items())
                elif isinstance(a, Variable):
                    items.append((a.name, a.value))
                else:
                    raise TypeError(f"Edit() takes a dict, (name, value) or keywords, not {a!r}")
        items.extend(kwargs.items())
        self.variables = [Variable(k, v) for k, v in items]

    def __repr__(self) -> str:
        return "Edit(" + ", ".join(f"{v.name}={v.value!r}" for v in self.variables) + ")"


# --------------------------------------------------------------------------------------------- event/meter/label


class Event(_Attr):
    """``event [number] [name] [set]``.  Runtime: ``value`` (bool)."""

    __slots__ = ("number", "name", "initial", "value")
    keyword = "event"

    def __init__(self, number: int | str | None = None, name: str = "", initial: bool = False) -> None:
        if isinstance(number, str):
            if number.isdecimal():
                number = int(number)
            else:
                number, name = None, number
        if number is None and not name:
            raise ValueError("Event needs a number or a name")
        self.number: int | None = number
        self.name: str = name
        self.initial: bool = bool(initial)
        self.value: bool = bool(initial)

    @property
    def ident(self) -> str:
        """The name if there is one, else the number: how triggers refer to it."""
        return self.name if self.name else str(self.number)

    def name_or_number(self) -> str:
        return self.ident

    def matches(self, ref: str) -> bool:
        return ref == self.name or (self.number is not None and ref == str(self.number))

    def write(self) -> str:
        parts = ["event"]
        if self.number is not None:
            parts.append(str(self.number))
        if self.name:
            parts.append(self.name)
        if self.initial:
            parts.append("set")
        return " ".join(parts)

    def state(self) -> str:
        if self.value != self.initial:
            return "set" if self.value else "clear"
        return ""


class Meter(_Attr):
    """``meter name min max [colour_change]``.  Runtime: ``value`` (int, starts at ``min``)."""

    __slots__ = ("name", "min", "max", "color_change", "value")
    keyword = "meter"

    def __init__(self, name: str, min: int, max: int, color_change: int | None = None) -> None:  # noqa: A002
        self.name = name
        self.min = int(min)
        self.max = int(max)
        if self.min > self.max:
            raise ValueError(f"meter {name}: min {self.min} > max {self.max}")
        self.color_change = self.max if color_change is None else int(color_change)
        self.value = self.min

    def write(self) -> str:
        return f"meter {self.name} {self.min} {self.max} {self.color_change}"

    def state(self) -> str:
        return str(self.value) if self.value != self.min else ""


class Label(_Attr):
    """``label name "value"``.  Runtime: ``new_value`` (set by child commands; '' until then)."""

    __slots__ = ("name", "value", "new_value")
    keyword = "label"

    def __init__(self, name: str, value: str = "", new_value: str = "") -> None:
        self.name = name
        self.value = value
        self.new_value = new_value

    @property
    def current(self) -> str:
        """What a user sees: the new value once a task has set one, else the default."""
        return self.new_value or self.value

    def write(self) -> str:
        return f'label {self.name} "{_escape_label(self.value)}"'  # noqa: B907

    def state(self) -> str:
        return f'"{_escape_label(self.new_value)}"' if self.new_value else ""


def _escape_label(text: str) -> str:
    return text.replace("\n", "\\n")


def unescape_label(text: str) -> str:
    """Inverse of the writer's escaping: the two characters backslash-n become a newline."""
    return text.replace("\\n", "\n")


# --------------------------------------------------------------------------------------------- limits


class Limit(_Attr):
    """``limit name N``.  Runtime: ``value`` (tokens in use) and ``paths`` (consumers' absolute paths)."""

    __slots__ = ("name", "limit", "value", "paths")
    keyword = "limit"

    def __init__(self, name: str, limit: int, value: int = 0, paths: Iterable[str] | None = None) -> None:
        self.name = name
        self.limit = int(limit)
        self.value = int(value)
        self.paths: list[str] | None = list(paths) if paths else None

    def write(self) -> str:
        return f"limit {self.name} {self.limit}"

    def state(self) -> str:
        if not self.value and not self.paths:
            return ""
        return " ".join([str(self.value), *(self.paths or ())])

    def increment(self, tokens: int, path: str) -> None:
        if self.paths is None:
            self.paths = []
        if path not in self.paths:
            self.paths.append(path)
            self.value += tokens

    def decrement(self, tokens: int, path: str) -> None:
        if self.paths and path in self.paths:
            self.paths.remove(path)
            self.value = max(0, self.value - tokens)
            if not self.paths:
                self.paths = None


class InLimit(_Attr):
    """``inlimit [-n] [-s] [/path:]name [tokens]``.  Runtime: ``incremented`` (tokens are held)."""

    __slots__ = ("name", "path", "tokens", "limit_this_node_only", "limit_submission", "incremented")
    keyword = "inlimit"

    def __init__(self, name: str, path: str = "", tokens: int = 1, limit_this_node_only: bool = False,
                 limit_submission: bool = False) -> None:
        if ":" in name and not path:
            path, name = name.rsplit(":", 1)
        self.name = name
        self.path = path
        self.tokens = int(tokens)
        self.limit_this_node_only = bool(limit_this_node_only)
        self.limit_submission = bool(limit_submission)
        self.incremented = False
        if self.limit_this_node_only and self.limit_submission:
            raise ValueError("inlimit: -n and -s can not be combined")

    def write(self) -> str:
        parts = ["inlimit"]
        if self.limit_this_node_only:
            parts.append("-n")
        if self.limit_submission:
            parts.append("-s")
        parts.append(f"{self.path}:{self.name}" if self.path else self.name)
        if self.tokens != 1:
            parts.append(str(self.tokens))
        return " ".join(parts)

    def state(self) -> str:
        return "incremented:1" if self.incremented else ""


# --------------------------------------------------------------------------------------------- dates

def _check_yyyymmdd(value: int, what: str) -> _dt.date:
    try:
        return _dt.date(value // 10000, value // 100 % 100, value % 100)
    except ValueError:
        raise ValueError(f"{what}: {value} is not a valid yyyymmdd date") from None


def date_to_julian(yyyymmdd: int) -> int:
    """ecFlow's ``cal::date_to_julian``: yyyymmdd -> julian day number."""
    d = _check_yyyymmdd(int(yyyymmdd), "date_to_julian")
    return d.toordinal() + 1721425


def julian_to_date(julian: int) -> int:
    """ecFlow's ``cal::julian_to_date``: julian day number -> yyyymmdd."""
    d = _dt.date.fromordinal(int(julian) - 1721425)
    return d.year * 10000 + d.month * 100 + d.day


def _date_vars(name: str, ymd: int) -> dict[str, str]:
    d = _dt.date(ymd // 10000, ymd // 100 % 100, ymd % 100)
    return {
        name + "_YYYY": str(d.year),
        name + "_MM": str(d.month),
        name + "_DD": str(d.day),
        name + "_DOW": str((d.weekday() + 1) % 7),
        name + "_JULIAN": str(d.toordinal() + 1721425),
    }


# --------------------------------------------------------------------------------------------- repeats


class Repeat(_Attr):
    """Base of all repeats.  Runtime: ``index`` (position, 0-based) — ``value()`` derives from it."""

    __slots__ = ("name", "index")
    keyword = "repeat"
    kind = ""

    def value(self) -> int:
        """The value triggers see (``node:NAME``)."""
        raise NotImplementedError

    def value_as_string(self) -> str:
        return str(self.value())

    def size(self) -> int:
        raise NotImplementedError

    def valid(self) -> bool:
        """False once the repeat has run past its last value."""
        return 0 <= self.index < self.size()

    def increment(self) -> bool:
        """Step forward; returns whether the new position is still valid."""
        self.index += 1
        return self.valid()

    def reset(self) -> None:
        self.index = 0

    def generated_variables(self) -> dict[str, str]:
        """``NAME`` plus the kind's extra generated variables (``NAME_YYYY`` ...)."""
        return {self.name: self.value_as_string()} if self.valid() or self.size() else {}

    def state(self) -> str:
        return str(self.value_as_string()) if self.index else ""

    def set_value_from_state(self, text: str) -> None:
        """Inverse of :meth:`state` (used by the checkpoint parser)."""
        self.index = int(text)


class RepeatInteger(Repeat):
    """``repeat integer NAME start end [step]``."""

    __slots__ = ("start", "end", "step")
    kind = "integer"

    def __init__(self, name: str, start: int, end: int, step: int = 1) -> None:
        self.name, self.start, self.end, self.step = name, int(start), int(end), int(step)
        if self.step == 0:
            raise ValueError(f"repeat integer {name}: step must not be 0")
        self.index = 0

    def size(self) -> int:
        return max(0, (self.end - self.start) // self.step + 1)

    def value(self) -> int:
        return self.start + self.index * self.step

    def write(self) -> str:
        s = f"repeat integer {self.name} {self.start} {self.end}"
        return s + (f" {self.step}" if self.step != 1 else "")

    def state(self) -> str:
        return str(self.value()) if self.index else ""

    def set_value_from_state(self, text: str) -> None:
        self.index = (int(text) - self.start) // self.step


class RepeatDate(Repeat):
    """``repeat date NAME yyyymmdd yyyymmdd [delta_days]``; generates NAME_YYYY/_MM/_DD/_DOW/_JULIAN."""

    __slots__ = ("start", "end", "delta")
    kind = "date"

    def __init__(self, name: str, start: int, end: int, delta: int = 1) -> None:
        self.name, self.start, self.end, self.delta = name, int(start), int(end), int(delta)
        _check_yyyymmdd(self.start, f"repeat date {name} start")
        _check_yyyymmdd(self.end, f"repeat date {name} end")
        if self.delta == 0:
            raise ValueError(f"repeat date {name}: delta must not be 0")
        if (self.delta > 0 and self.start > self.end) or (self.delta < 0 and self.start < self.end):
            raise ValueError(f"repeat date {name}: start {self.start} and end {self.end} do not agree "
                             f"with delta {self.delta}")
        self.index = 0

    def size(self) -> int:
        j0, j1 = date_to_julian(self.start), date_to_julian(self.end)
        return max(0, (j1 - j0) // self.delta + 1)

    def value(self) -> int:
        return julian_to_date(date_to_julian(self.start) + self.index * self.delta)

    def write(self) -> str:
        return f"repeat date {self.name} {self.start} {self.end} {self.delta}"

    def generated_variables(self) -> dict[str, str]:
        v = self.value()
        out = {self.name: str(v)}
        out.update(_date_vars(self.name, v))
        return out

    def set_value_from_state(self, text: str) -> None:
        self.index = (date_to_julian(int(text)) - date_to_julian(self.start)) // self.delta


class _ListRepeat(Repeat):
    __slots__ = ("values",)

    def __init__(self, name: str, values: Sequence[Any]) -> None:
        if not values:
            raise ValueError(f"repeat {self.kind} {name}: needs at least one value")
        self.name = name
        self.values = [str(v) for v in values]
        self.index = 0

    def size(self) -> int:
        return len(self.values)

    def current(self) -> str:
        i = min(max(self.index, 0), len(self.values) - 1)
        return self.values[i]

    def value_as_string(self) -> str:
        return self.current()

    def state(self) -> str:
        return str(self.index) if self.index else ""

    def set_value_from_state(self, text: str) -> None:
        self.index = int(text)


class RepeatDateList(_ListRepeat):
    """``repeat datelist NAME d1 d2 ...`` (yyyymmdd values)."""

    __slots__ = ()
    kind = "datelist"

    def __init__(self, name: str, values: Sequence[Any]) -> None:
        super().__init__(name, values)
        for v in self.values:
            if not v.isdecimal():
                raise ValueError(f"repeat datelist {name}: {v!r} is not a yyyymmdd date")
            _check_yyyymmdd(int(v), f"repeat datelist {name}")

    def value(self) -> int:
        return int(self.current())

    def write(self) -> str:
        return f"repeat datelist {self.name} " + " ".join(quote_word(v) for v in self.values)

    def generated_variables(self) -> dict[str, str]:
        v = self.value()
        out = {self.name: str(v)}
        out.update(_date_vars(self.name, v))
        return out


class RepeatEnumerated(_ListRepeat):
    """``repeat enumerated NAME a b c``: triggers see the value if it is an integer, else the index."""

    __slots__ = ()
    kind = "enumerated"

    def value(self) -> int:
        cur = self.current()
        try:
            return int(cur)
        except ValueError:
            return min(max(self.index, 0), len(self.values) - 1)

    def write(self) -> str:
        return f"repeat enumerated {self.name} " + " ".join(quote_word(v) for v in self.values)


class RepeatString(_ListRepeat):
    """``repeat string NAME a b c``: triggers see the index."""

    __slots__ = ()
    kind = "string"

    def value(self) -> int:
        return min(max(self.index, 0), len(self.values) - 1)

    def write(self) -> str:
        return f"repeat string {self.name} " + " ".join(quote_word(v) for v in self.values)


class RepeatDay(Repeat):
    """``repeat day [step]``: repeats forever (name ``day``)."""

    __slots__ = ("step",)
    kind = "day"

    def __init__(self, step: int = 1) -> None:
        self.name = "day"
        self.step = int(step)
        self.index = 0

    def size(self) -> int:
        return 1 << 62

    def value(self) -> int:
        return self.index * self.step

    def generated_variables(self) -> dict[str, str]:
        return {}

    def write(self) -> str:
        return f"repeat day {self.step}"


def _parse_datetime(text: str) -> _dt.datetime:
    try:
        return _dt.datetime.strptime(text, "%Y%m%dT%H%M%S")
    except ValueError:
        raise ValueError(f"{text!r} is not a datetime (expected yyyymmddTHHMMSS)") from None


def _parse_duration(text: str) -> int:
    """``HH[:MM[:SS]]`` or seconds -> seconds."""
    neg = text.startswith("-")
    t = text.lstrip("+-")
    parts = t.split(":")
    if not all(p.isdecimal() for p in parts) or len(parts) > 3:
        raise ValueError(f"{text!r} is not a duration (expected HH[:MM[:SS]])")
    if len(parts) == 1 and ":" not in t:
        secs = int(parts[0]) * 3600
    else:
        nums = [int(p) for p in parts] + [0] * (3 - len(parts))
        secs = nums[0] * 3600 + nums[1] * 60 + nums[2]
    return -secs if neg else secs


def _fmt_duration(secs: int) -> str:
    sign = "-" if secs < 0 else ""
    secs = abs(secs)
    return f"{sign}{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"


class RepeatDateTime(Repeat):
    """``repeat datetime NAME yyyymmddTHHMMSS yyyymmddTHHMMSS [HH[:MM[:SS]]]`` (not in ecFlow 5.9.2)."""

    __slots__ = ("start", "end", "delta")
    kind = "datetime"

    def __init__(self, name: str, start: str, end: str, delta: str | int = "24:00:00") -> None:
        self.name = name
        _parse_datetime(start)
        _parse_datetime(end)
        self.start, self.end = start, end
        self.delta = delta if isinstance(delta, int) else _parse_duration(delta)
        if self.delta == 0:
            raise ValueError(f"repeat datetime {name}: delta must not be 0")
        self.index = 0

    def _at(self, i: int) -> _dt.datetime:
        return _parse_datetime(self.start) + _dt.timedelta(seconds=i * self.delta)

    def size(self) -> int:
        span = (_parse_datetime(self.end) - _parse_datetime(self.start)).total_seconds()
        return max(0, int(span // self.delta) + 1)

    def value(self) -> int:
        """Seconds since the epoch (as ecFlow compares datetimes)."""
        return int(self._at(self.index).replace(tzinfo=_dt.timezone.utc).timestamp())

    def value_as_string(self) -> str:
        return self._at(self.index).strftime("%Y%m%dT%H%M%S")

    def generated_variables(self) -> dict[str, str]:
        t = self._at(self.index)
        n = self.name
        ymd = t.year * 10000 + t.month * 100 + t.day
        out = {n: t.strftime("%Y%m%dT%H%M%S"), n + "_DATE": str(ymd), n + "_TIME": t.strftime("%H%M%S"),
               n + "_HOURS": f"{t.hour:02d}", n + "_MINUTES": f"{t.minute:02d}", n + "_SECONDS": f"{t.second:02d}"}
        out.update(_date_vars(n, ymd))
        return out

    def write(self) -> str:
        return f"repeat datetime {self.name} {self.start} {self.end} {_fmt_duration(self.delta)}"

    def state(self) -> str:
        return str(self.index) if self.index else ""


# --------------------------------------------------------------------------------------------- time


class TimeSlot(tuple):
    """(hour, minute) — ``TimeSlot(10, 30)`` or ``TimeSlot.parse("10:30")``."""

    __slots__ = ()

    def __new__(cls, hour: int, minute: int = 0) -> TimeSlot:
        if not 0 <= hour <= 23 or not 0 <= minute <= 59:
            raise ValueError(f"invalid time {hour:02d}:{minute:02d}")
        return tuple.__new__(cls, (int(hour), int(minute)))

    @property
    def hour(self) -> int:
        return self[0]

    @property
    def minute(self) -> int:
        return self[1]

    @classmethod
    def parse(cls, text: str) -> TimeSlot:
        h, sep, m = text.partition(":")
        if not sep or not h.isdecimal() or not m.isdecimal() or len(m) != 2:
            raise ValueError(f"{text!r} is not a time (expected HH:MM)")
        return cls(int(h), int(m))

    def minutes(self) -> int:
        return self[0] * 60 + self[1]

    def __str__(self) -> str:
        return f"{self[0]:02d}:{self[1]:02d}"

    def __repr__(self) -> str:
        return f"TimeSlot({self[0]}, {self[1]})"


class TimeSeries(_Attr):
    """``[+]HH:MM [HH:MM HH:MM]`` — a single time or start/finish/increment, optionally relative."""

    __slots__ = ("start", "finish", "incr", "relative")

    def __init__(self, start: TimeSlot | str | int, finish: TimeSlot | str | None = None,
                 incr: TimeSlot | str | None = None, relative: bool = False, minute: int | None = None) -> None:
        if isinstance(start, int):
            start = TimeSlot(start, minute or 0)
        elif isinstance(start, str):
            s = start.strip()
            if s.startswith("+"):
                relative, s = True, s[1:]
            parts = s.split()
            if len(parts) == 3 and finish is None:
                start, finish, incr = parts
            elif len(parts) == 1:
                start = parts[0]
            else:
                raise ValueError(f"{start!r}: expected HH:MM or 'HH:MM HH:MM HH:MM'")
            start = TimeSlot.parse(start)
        self.start: TimeSlot = start
        self.finish: TimeSlot | None = TimeSlot.parse(finish) if isinstance(finish, str) else finish
        self.incr: TimeSlot | None = TimeSlot.parse(incr) if isinstance(incr, str) else incr
        if (self.finish is None) != (self.incr is None):
            raise ValueError("a time series needs both finish and increment")
        if self.finish is not None:
            if self.finish.minutes() < self.start.minutes():
                raise ValueError(f"time series: finish {self.finish} is before start {self.start}")
            if self.incr.minutes() == 0:
                raise ValueError("time series: increment must not be 00:00")
            if self.incr.minutes() > self.finish.minutes() - self.start.minutes():
                raise ValueError(f"time series: increment {self.incr} is longer than {self.start}..{self.finish}")
        self.relative = bool(relative)

    def slots(self) -> list[TimeSlot]:
        """Every time in the series."""
        if self.finish is None:
            return [self.start]
        out, m, step = [], self.start.minutes(), self.incr.minutes()
        while m <= self.finish.minutes():
            out.append(TimeSlot(m // 60, m % 60))
            m += step
        return out

    def write(self) -> str:
        s = ("+" if self.relative else "") + str(self.start)
        if self.finish is not None:
            s += f" {self.finish} {self.incr}"
        return s


class _TimeAttr(_Attr):
    """Shared by ``time`` and ``today``.  Runtime: ``free`` (the dependency is satisfied now),
    ``expired`` (no more slots today) and ``next_slot`` (index of the next time slot to match)."""

    __slots__ = ("series", "free", "expired", "next_slot")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) == 1 and isinstance(args[0], TimeSeries):
            self.series = args[0]
        elif len(args) >= 2 and isinstance(args[0], int) and isinstance(args[1], int):
            # ecflow style: Time(10, 30) / Time(10, 30, True) (relative)
            rel = bool(args[2]) if len(args) > 2 else bool(kwargs.get("relative", False))
            self.series = TimeSeries(TimeSlot(args[0], args[1]), relative=rel)
        elif len(args) == 1 and isinstance(args[0], TimeSlot):
            self.series = TimeSeries(args[0], **kwargs)
        else:
            self.series = TimeSeries(*args, **kwargs)
        self.free = False
        self.expired = False
        self.next_slot = 0

    @property
    def time_series(self) -> TimeSeries:
        return self.series

    def write(self) -> str:
        return f"{self.keyword} {self.series.write()}"

    def state(self) -> str:
        parts = []
        if self.free:
            parts.append("free")
        if self.expired:
            parts.append("expired")
        if self.next_slot:
            parts.append(f"next:{self.next_slot}")
        return " ".join(parts)


class Time(_TimeAttr):
    """``time [+]HH:MM [HH:MM HH:MM]``."""

    __slots__ = ()
    keyword = "time"


class Today(_TimeAttr):
    """``today [+]HH:MM [HH:MM HH:MM]`` (does not wrap to tomorrow)."""

    __slots__ = ()
    keyword = "today"


class Date(_Attr):
    """``date DD.MM.YYYY`` with ``*`` (stored as 0) for any.  Runtime: ``free``, ``expired``."""

    __slots__ = ("day", "month", "year", "free", "expired")
    keyword = "date"

    def __init__(self, day: int | str = 0, month: int = 0, year: int = 0) -> None:
        if isinstance(day, str):
            text = day
            bits = text.split(".")
            if len(bits) != 3:
                raise ValueError(f"{text!r} is not a date (expected DD.MM.YYYY, * for any)")
            vals = []
            for b, lo, hi, what in zip(bits, (1, 1, 1000), (31, 12, 9999), ("day", "month", "year")):
                if b == "*":
                    vals.append(0)
                    continue
                if not b.isdecimal() or not lo <= int(b) <= hi or (what == "year" and len(b) != 4):
                    raise ValueError(f"date {text!r}: {what} {b!r} is not in {lo}..{hi} (or *)")
                vals.append(int(b))
            day, month, year = vals
        self.day, self.month, self.year = int(day), int(month), int(year)
        if not 0 <= self.day <= 31 or not 0 <= self.month <= 12 or self.year < 0:
            raise ValueError(f"invalid date {self.write()[5:]}")
        if self.day and self.month:
            try:
                _dt.date(self.year or 2000, self.month, self.day)
            except ValueError:
                raise ValueError(f"invalid date {self.write()[5:]}") from None
        self.free = False
        self.expired = False

    def write(self) -> str:
        def f(v: int) -> str:
            return str(v) if v else "*"
        return f"date {f(self.day)}.{f(self.month)}.{f(self.year)}"

    def matches(self, d: _dt.date) -> bool:
        return ((not self.day or self.day == d.day) and (not self.month or self.month == d.month)
                and (not self.year or self.year == d.year))

    def state(self) -> str:
        return " ".join(p for p, on in (("free", self.free), ("expired", self.expired)) if on)


DAY_NAMES = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")


class Days(IntEnum):
    """ecflow's ``Days`` enum: ``Day(Days.monday)``."""

    sunday = 0
    monday = 1
    tuesday = 2
    wednesday = 3
    thursday = 4
    friday = 5
    saturday = 6


class Day(_Attr):
    """``day monday`` (0=sunday .. 6=saturday).  Runtime: ``free``, ``expired``."""

    __slots__ = ("day", "free", "expired")
    keyword = "day"

    def __init__(self, day: int | str) -> None:
        if isinstance(day, str):
            d = day.lower()
            if d not in DAY_NAMES:
                raise ValueError(f"{day!r} is not a day (expected one of {', '.join(DAY_NAMES)})")
            day = DAY_NAMES.index(d)
        if not 0 <= int(day) <= 6:
            raise ValueError(f"day {day} out of range 0..6")
        self.day = int(day)
        self.free = False
        self.expired = False

    def write(self) -> str:
        return f"day {DAY_NAMES[self.day]}"

    def state(self) -> str:
        return " ".join(p for p, on in (("free", self.free), ("expired", self.expired)) if on)


def _int_list(text: str, what: str, lo: int, hi: int, allow_last: bool = False) -> tuple[list[int], list[int], bool]:
    """'0,1,2L' -> ([0,1], [2], False); 'L' alone -> last=True (days of month)."""
    plain: list[int] = []
    last: list[int] = []
    last_flag = False
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if allow_last and item == "L":
            last_flag = True
            continue
        is_last = item.endswith("L") and allow_last
        num = item[:-1] if is_last else item
        if not num.isdecimal() or not lo <= int(num) <= hi:
            raise ValueError(f"{what}: {item!r} is not in {lo}..{hi}")
        (last if is_last else plain).append(int(num))
    return plain, last, last_flag


class Cron(_Attr):
    """``cron [-w days] [-d days] [-m months] [+]HH:MM [HH:MM HH:MM]``.

    ``week_days`` 0=sunday; ``last_week_days`` are the ``NL`` entries (last N-day of the month);
    ``last_day_of_month`` is ``-d ...,L``.  Runtime: ``free``, ``next_slot``.
    """

    __slots__ = ("series", "week_days", "last_week_days", "days_of_month", "last_day_of_month", "months",
                 "free", "next_slot")
    keyword = "cron"

    def __init__(self, time: TimeSeries | str | None = None, days_of_week: Iterable[int] = (),
                 days_of_month: Iterable[int] = (), months: Iterable[int] = (),
                 last_week_days_of_month: Iterable[int] = (), last_day_of_month: bool = False) -> None:
        if isinstance(time, str) and time.strip().startswith("-"):
            other = Cron.parse(time.split())
            for s in self.__slots__:
                setattr(self, s, getattr(other, s))
            return
        self.series = time if isinstance(time, TimeSeries) else TimeSeries(time if time is not None else "00:00")
        self.week_days = tuple(days_of_week)
        self.last_week_days = tuple(last_week_days_of_month)
        self.days_of_month = tuple(days_of_month)
        self.last_day_of_month = bool(last_day_of_month)
        self.months = tuple(months)
        self.free = False
        self.next_slot = 0

    @classmethod
    def parse(cls, tokens: Sequence[str]) -> Cron:
        """Parse the words after ``cron``; raises ValueError with what was expected."""
        toks = list(tokens)
        opts: dict[str, str] = {}
        rest: list[str] = []
        i = 0
        while i < len(toks):
            t = toks[i]
            if t in ("-w", "-d", "-m"):
                i += 1
                buf: list[str] = []
                # lists may contain spaces: '-w 0 , 1, 2'
                while i < len(toks) and (not buf or buf[-1].endswith(",") or toks[i].startswith(",")) \
                        and toks[i] not in ("-w", "-d", "-m") and ":" not in toks[i]:
                    buf.append(toks[i])
                    i += 1
                opts[t] = "".join(buf)  # ecFlow accepts an empty list
                continue
            if ":" in t or rest:
                rest.append(t)
                if len(rest) == 3:
                    break  # ecFlow ignores what follows a complete start/finish/increment series
            i += 1  # ecFlow ignores other words before the time
        if len(rest) == 2:
            raise ValueError(f"cron: expected [+]HH:MM or [+]HH:MM HH:MM HH:MM, got {' '.join(rest)!r}")
        if len(rest) not in (1, 3):
            raise ValueError(f"cron: expected [+]HH:MM or [+]HH:MM HH:MM HH:MM, got {' '.join(rest)!r}")
        w, wl, _ = _int_list(opts.get("-w", ""), "cron -w", 0, 6, allow_last=True)
        d, _, dlast = _int_list(opts.get("-d", ""), "cron -d", 1, 31, allow_last=True)
        m, _, _ = _int_list(opts.get("-m", ""), "cron -m", 1, 12)
        if "L" in opts.get("-w", "").split(","):
            raise ValueError("cron -w: L needs a day number")
        return cls(TimeSeries(" ".join(rest)), w, d, m, wl, dlast)

    @property
    def time_series(self) -> TimeSeries:
        return self.series

    def write(self) -> str:
        parts = ["cron"]
        if self.week_days or self.last_week_days:
            parts += ["-w", ",".join([str(x) for x in self.week_days] + [f"{x}L" for x in self.last_week_days])]
        if self.days_of_month or self.last_day_of_month:
            parts += ["-d", ",".join([str(x) for x in self.days_of_month] + (["L"] if self.last_day_of_month else []))]
        if self.months:
            parts += ["-m", ",".join(str(x) for x in self.months)]
        parts.append(self.series.write())
        return " ".join(parts)

    def state(self) -> str:
        parts = ["free"] if self.free else []
        if self.next_slot:
            parts.append(f"next:{self.next_slot}")
        return " ".join(parts)


class Late(_Attr):
    """``late -s +HH:MM -a HH:MM -c [+]HH:MM``: when is a task late.  Runtime: ``is_late``."""

    __slots__ = ("submitted", "active", "complete", "complete_relative", "is_late")
    keyword = "late"

    def __init__(self, submitted: TimeSlot | str | None = None, active: TimeSlot | str | None = None,
                 complete: TimeSlot | str | None = None, complete_relative: bool = False) -> None:
        def conv(v: TimeSlot | str | None) -> TimeSlot | None:
            if isinstance(v, str):
                return TimeSlot.parse(v.lstrip("+"))
            return v
        if isinstance(complete, str) and complete.startswith("+"):
            complete_relative = True
        self.submitted = conv(submitted)
        self.active = conv(active)
        self.complete = conv(complete)
        self.complete_relative = bool(complete_relative)
        self.is_late = False
        if self.submitted is None and self.active is None and self.complete is None:
            raise ValueError("late needs at least one of -s, -a, -c")

    def write(self) -> str:
        parts = ["late"]
        if self.submitted is not None:
            parts.append(f"-s +{self.submitted}")
        if self.active is not None:
            parts.append(f"-a {self.active}")
        if self.complete is not None:
            parts.append(f"-c {'+' if self.complete_relative else ''}{self.complete}")
        return " ".join(parts)

    def state(self) -> str:
        return "late" if self.is_late else ""


class Clock(_Attr):
    """``clock real|hybrid [DD.MM.YYYY] [+]gain [-s]`` (gain: seconds or HH:MM; ``+`` = positive)."""

    __slots__ = ("hybrid", "day", "month", "year", "gain", "positive_gain", "start_stop_with_server")
    keyword = "clock"

    def __init__(self, hybrid: bool = False, day: int = 0, month: int = 0, year: int = 0, gain: int = 0,
                 positive_gain: bool = False, start_stop_with_server: bool = False) -> None:
        if not isinstance(hybrid, bool) and isinstance(hybrid, int) and isinstance(day, int) and month > 12:
            # ecflow's order Clock(day, month, year[, hybrid]) lands here as (hybrid, day, month[, year])
            hybrid, day, month, year = (year if isinstance(year, bool) else False), hybrid, day, month
        self.hybrid = bool(hybrid)
        self.day, self.month, self.year = int(day), int(month), int(year)
        if self.day:
            _dt.date(self.year, self.month, self.day)
        self.gain = int(gain)
        self.positive_gain = bool(positive_gain)
        self.start_stop_with_server = bool(start_stop_with_server)

    @classmethod
    def parse(cls, tokens: Sequence[str], end: bool = False) -> Clock:
        """Parse the words after ``clock`` (or ``endclock`` with ``end=True``)."""
        toks = list(tokens)
        kw = "endclock" if end else "clock"
        hybrid = False
        if not end:
            if not toks or toks[0] not in ("real", "hybrid", "virtual"):
                raise ValueError(f"{kw}: expected 'real' or 'hybrid'")
            hybrid = toks.pop(0) == "hybrid"
        day = month = year = 0
        gain, positive, stop = 0, False, False
        for t in toks:
            if t == "-s":
                stop = True
            elif t.count(".") == 2:
                try:
                    day, month, year = (int(x) for x in t.split("."))
                    _dt.date(year, month, day)
                except ValueError:
                    raise ValueError(f"{kw}: {t!r} is not a date DD.MM.YYYY") from None
            else:
                positive = t.startswith("+")
                g = t.lstrip("+")
                if ":" in g:
                    ts = TimeSlot.parse(g)
                    gain = ts.hour * 3600 + ts.minute * 60
                elif g.lstrip("-").isdecimal():
                    gain = int(g)
                else:
                    raise ValueError(f"{kw}: expected DD.MM.YYYY, [+]HH:MM, seconds or -s, got {t!r}")
        return cls(hybrid, day, month, year, gain, positive, stop)

    def _body(self) -> str:
        parts = []
        if self.day:
            parts.append(f"{self.day}.{self.month}.{self.year}")
        if self.gain:
            parts.append(("+" if self.positive_gain else "") + str(self.gain))
        if self.start_stop_with_server:
            parts.append("-s")
        return " ".join(parts)

    def write(self) -> str:
        body = self._body()
        return f"clock {'hybrid' if self.hybrid else 'real'}" + (f" {body}" if body else "")


class EndClock(Clock):
    """``endclock DD.MM.YYYY [+]gain``: the simulator's end date."""

    __slots__ = ()
    keyword = "endclock"

    def write(self) -> str:
        body = self._body()
        return "endclock" + (f" {body}" if body else "")


class _AutoTime(_Attr):
    __slots__ = ("days", "time", "relative")

    def __init__(self, value: int | str | TimeSlot = 0, relative: bool | int = True, days: bool | None = None) -> None:
        if isinstance(value, int) and not isinstance(relative, bool) and isinstance(relative, int):
            # ecflow's order: Autocancel(hour, minute, relative)
            value, relative = TimeSlot(value, relative), True if days is None else bool(days)
        if isinstance(value, str):
            v = value.strip()
            if v.startswith("+"):
                relative, v = True, v[1:]
            elif ":" in v:
                relative = False
            if ":" in v:
                self.time: TimeSlot | None = TimeSlot.parse(v)
                self.days: int | None = None
            else:
                if not v.isdecimal():
                    raise ValueError(f"{self.keyword}: expected days or [+]HH:MM, got {value!r}")
                self.days, self.time = int(v), None
        elif isinstance(value, TimeSlot):
            self.time, self.days = value, None
        else:
            self.days, self.time = int(value), None
        self.relative = bool(relative) if self.time is not None else True

    def _body(self) -> str:
        if self.time is None:
            return str(self.days)
        return ("+" if self.relative else "") + str(self.time)


class Autocancel(_AutoTime):
    """``autocancel [+]HH:MM | days``: remove the node from the server once complete."""

    __slots__ = ()
    keyword = "autocancel"

    def write(self) -> str:
        return f"autocancel {self._body()}"


class Autoarchive(_AutoTime):
    """``autoarchive [+]HH:MM | days [-i]``: archive (free memory of) a complete suite/family."""

    __slots__ = ("idle",)
    keyword = "autoarchive"

    def __init__(self, value: int | str | TimeSlot = 0, relative: bool | int = True, idle: bool = False) -> None:
        if isinstance(value, str) and value.split()[-1:] == ["-i"]:
            idle, value = True, value.rsplit(None, 1)[0]
        if isinstance(value, int) and not isinstance(relative, bool) and isinstance(relative, int):
            super().__init__(value, relative, idle)  # ecflow's order: Autoarchive(hour, minute, relative[, idle])
            self.idle = False
            return
        super().__init__(value, relative)
        self.idle = bool(idle)

    def write(self) -> str:
        return f"autoarchive {self._body()}" + (" -i" if self.idle else "")


class Autorestore(_Attr):
    """``autorestore path ...``: restore archived nodes when this node completes."""

    __slots__ = ("paths",)
    keyword = "autorestore"

    def __init__(self, paths: Iterable[str] | str) -> None:
        self.paths = [paths] if isinstance(paths, str) else list(paths)
        if not self.paths:
            raise ValueError("autorestore needs at least one path")

    def write(self) -> str:
        return "autorestore " + " ".join(self.paths)


class Verify(_Attr):
    """``verify state:N``: simulator check.  Runtime: ``actual`` (count seen)."""

    __slots__ = ("state_name", "expected", "actual")
    keyword = "verify"

    def __init__(self, state: str, expected: int = 1, actual: int = 0) -> None:
        if ":" in state:
            state, n = state.split(":", 1)
            expected = int(n)
        if state not in ("unknown", "complete", "queued", "aborted", "submitted", "active"):
            raise ValueError(f"verify: {state!r} is not a state")
        self.state_name, self.expected, self.actual = state, int(expected), int(actual)

    def write(self) -> str:
        return f"verify {self.state_name}:{self.expected}"

    def state(self) -> str:
        return str(self.actual) if self.actual else ""


ZOMBIE_TYPES = ("user", "ecf", "ecf_pid", "ecf_passwd", "ecf_pid_passwd", "path")
ZOMBIE_ACTIONS = ("fob", "fail", "block", "remove", "adopt", "kill")
CHILD_CMDS = ("init", "event", "meter", "label", "wait", "queue", "abort", "complete")


class ZombieAttr(_Attr):
    """``zombie type:action:child_cmds:lifetime`` — how the server treats zombies of this node."""

    __slots__ = ("zombie_type", "action", "child_cmds", "lifetime")
    keyword = "zombie"

    def __init__(self, zombie_type: str, child_cmds: Iterable[str] | str = (), action: str = "",
                 lifetime: int | None = None) -> None:
        if ":" in zombie_type and not action:
            bits = zombie_type.split(":")
            if len(bits) != 4:
                raise ValueError(f"zombie {zombie_type!r}: expected type:action:child_cmds:lifetime")
            zombie_type, action, cmds, life = bits
            child_cmds = cmds
            lifetime = int(life) if life else None
            if life and not life.isdecimal():
                raise ValueError(f"zombie lifetime {life!r} is not a number")
        if zombie_type not in ZOMBIE_TYPES:
            raise ValueError(f"zombie type {zombie_type!r}: expected one of {', '.join(ZOMBIE_TYPES)}")
        if action and action not in ZOMBIE_ACTIONS:
            raise ValueError(f"zombie action {action!r}: expected one of {', '.join(ZOMBIE_ACTIONS)}")
        if isinstance(child_cmds, str):
            child_cmds = [c for c in child_cmds.split(",") if c]
        cmds = list(child_cmds)
        for c in cmds:
            if c not in CHILD_CMDS:
                raise ValueError(f"zombie child command {c!r}: expected one of {', '.join(CHILD_CMDS)}")
        # ecFlow's defaults: action 'block'; lifetime 300 s (user), 900 s (path), 3600 s (ecf*)
        self.zombie_type, self.action, self.child_cmds = zombie_type, action or "block", cmds
        if not lifetime:
            lifetime = {"user": 300, "path": 900}.get(zombie_type, 3600)
        self.lifetime = int(lifetime)

    def write(self) -> str:
        return f"zombie {self.zombie_type}:{self.action}:{','.join(self.child_cmds)}:{self.lifetime}"


class Queue(_Attr):
    """``queue name v1 v2 ...``.  Runtime: ``index`` and per-step ``states`` (queued/active/complete/aborted)."""

    __slots__ = ("name", "values", "index", "states")
    keyword = "queue"

    def __init__(self, name: str, values: Sequence[Any]) -> None:
        if not values:
            raise ValueError(f"queue {name}: needs at least one value")
        self.name = name
        self.values = [str(v) for v in values]
        self.index = 0
        self.states: list[str] | None = None

    def write(self) -> str:
        return f"queue {self.name} " + " ".join(self.values)

    def state(self) -> str:
        if not self.index and not self.states:
            return ""
        return " ".join([str(self.index), *(self.states or ())])


class Generic(_Attr):
    """``generic name v1 v2``: user data the server keeps and ignores."""

    __slots__ = ("name", "values")
    keyword = "generic"

    def __init__(self, name: str, values: Sequence[Any] = ()) -> None:
        self.name = name
        self.values = [str(v) for v in values]

    def write(self) -> str:
        return " ".join(["generic", self.name, *self.values])


class _Options(_Attr):
    """``aviso``/``mirror``: kept as the option words (not supported by ecFlow 5.9.2)."""

    __slots__ = ("name", "options")

    def __init__(self, name: str, options: Sequence[str] = ()) -> None:
        self.name = name
        self.options = list(options)

    def write(self) -> str:
        return " ".join([self.keyword, "--name", self.name, *self.options])


class Aviso(_Options):
    """``aviso --name N --listener '{json}' ...``: a node held until an Aviso notification arrives."""

    __slots__ = ()
    keyword = "aviso"


class Mirror(_Options):
    """``mirror --name N --remote_path /s/f/t ...``: a node mirroring one on a remote server."""

    __slots__ = ()
    keyword = "mirror"


class Extern(_Attr):
    """``extern /path[:attr]``: a reference the checker must not complain about."""

    __slots__ = ("path",)
    keyword = "extern"

    def __init__(self, path: str) -> None:
        self.path = path

    def write(self) -> str:
        return f"extern {self.path}"
