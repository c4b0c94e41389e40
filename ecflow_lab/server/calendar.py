"""Suite clocks and time-dependency checks, driven by an injectable clock.

A *clock* is any callable returning Unix seconds (``time.time`` in production, :class:`FakeClock` in tests
and in the simulator), so scheduling by time never needs a test to sleep.

:class:`SuiteCalendar` is one suite's calendar (ecFlow's ``Calendar``): ``clock real`` (default; the date
advances at midnight) or ``clock hybrid`` (the date is fixed at begin, the time of day follows the machine),
an optional start date and gain. Resolution is one minute, as in ecFlow.

The ``*_free`` functions answer "does this attribute hold the node now?" for time, today, date, day and
cron; the scheduler calls them during its traversal and for ``why``.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable
from typing import Any

Clock = Callable[[], float]

DAY_NAMES = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
MONTH_NAMES = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
               "october", "november", "december")


class FakeClock:
    """A clock that only moves when told to: ``clock.advance(seconds)`` / ``clock.set(datetime)``."""

    def __init__(self, start: float | _dt.datetime | None = None) -> None:
        if isinstance(start, _dt.datetime):
            start = start.timestamp()
        self.t = float(start if start is not None else time.time())

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def set(self, when: float | _dt.datetime) -> None:
        self.t = when.timestamp() if isinstance(when, _dt.datetime) else float(when)


class SuiteCalendar:
    """One suite's notion of date and time (real or hybrid clock, start date, gain)."""

    def __init__(self, clock: Clock, clock_attr: Any = None) -> None:
        self._clock = clock
        self.hybrid = bool(getattr(clock_attr, "hybrid", False))
        self.gain = int(getattr(clock_attr, "gain", 0) or 0)
        self._start_date: _dt.date | None = None
        day, month, year = (getattr(clock_attr, k, 0) or 0 for k in ("day", "month", "year"))
        if day and month and year:
            self._start_date = _dt.date(year, month, day)
        self.stop_with_server = bool(getattr(clock_attr, "start_stop_with_server", False))
        self._offset = float(self.gain)
        self._paused_at: float | None = None
        self._hybrid_date: _dt.date | None = None
        self.begun_at: float | None = None

    def begin(self) -> None:
        """Start the calendar (suite begin): with a clock date the suite starts at midnight of that date
        plus the gain (ecFlow's ClockAttr::ptime), else at the machine's time plus the gain."""
        now = self._clock()
        self.begun_at = now
        self._paused_at = None
        if self._start_date is not None:
            start = _dt.datetime.combine(self._start_date, _dt.time()) + _dt.timedelta(seconds=self.gain)
            self._offset = start.timestamp() - now
        else:
            self._offset = float(self.gain)
        if self.hybrid:
            self._hybrid_date = self.now().date()

    def pause(self) -> None:
        """``clock ... -s``: the server stopped; the suite time stands still until :meth:`resume`."""
        if self._paused_at is None:
            self._paused_at = self._clock()

    def state(self) -> dict[str, str]:
        """What a checkpoint keeps (the suite's ``calendar`` line): offset to the clock, hybrid date, pause."""
        st = {"offset": f"{self._offset:.3f}"}
        if self._hybrid_date is not None:
            st["hybridDate"] = self._hybrid_date.strftime("%Y%m%d")
        if self._paused_at is not None:
            st["pausedAt"] = f"{self._paused_at:.3f}"
        return st

    def restore(self, st: dict[str, str]) -> bool:
        """Continue a calendar saved by :meth:`state` (False when ``st`` is not one: begin afresh)."""
        try:
            self._offset = float(st["offset"])
            hd = st.get("hybridDate")
            self._hybrid_date = _dt.datetime.strptime(hd, "%Y%m%d").date() if hd else None
            pa = st.get("pausedAt")
            self._paused_at = float(pa) if pa else None
        except (KeyError, ValueError):
            return False
        if self.hybrid and self._hybrid_date is None:
            self._hybrid_date = self.now().date()
        self.begun_at = self._clock()
        return True

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    def resume(self) -> None:
        if self._paused_at is not None:
            self._offset -= self._clock() - self._paused_at
            self._paused_at = None

    def now(self) -> _dt.datetime:
        """The suite's current date and time (seconds dropped: one-minute resolution)."""
        key = (self._clock(), self._offset, self._paused_at, self._hybrid_date)
        memo = getattr(self, "_memo", None)
        if memo is not None and memo[0] == key:
            return memo[1]
        t = self.raw_now()
        if self.hybrid and self._hybrid_date is not None:
            t = _dt.datetime.combine(self._hybrid_date, t.time())
        self._memo = (key, t)
        return t

    def raw_now(self) -> _dt.datetime:
        """As :meth:`now` but with the date moving even under a hybrid clock (its days still change)."""
        base = self._paused_at if self._paused_at is not None else self._clock()
        t = _dt.datetime.fromtimestamp(base + self._offset)
        return t.replace(second=0, microsecond=0)

    def variables(self) -> dict[str, str]:
        """Suite generated variables: DATE, YYYY, MM, DD, DAY, DOW, DOY, MONTH, ECF_DATE, TIME, ECF_TIME ..."""
        t = self.now()
        dow = (t.weekday() + 1) % 7
        return {
            "YYYY": f"{t.year}", "MM": f"{t.month:02d}", "DD": f"{t.day:02d}", "DOW": str(dow),
            "DOY": str(t.timetuple().tm_yday), "DAY": DAY_NAMES[dow], "MONTH": MONTH_NAMES[t.month - 1],
            "DATE": t.strftime("%d.%m.%Y"), "ECF_DATE": t.strftime("%Y%m%d"), "TIME": t.strftime("%H%M"),
            "ECF_TIME": t.strftime("%H:%M"), "ECF_JULIAN": str(t.date().toordinal() + 1721425),
            "ECF_CLOCK": f"{DAY_NAMES[dow]}:{t.month}:{t.day}:{t.timetuple().tm_yday}",
        }


def _minutes(t: _dt.datetime) -> int:
    return t.hour * 60 + t.minute


def _slots(attr: Any) -> list[int]:
    series = getattr(attr, "series", None) or getattr(attr, "time_series", None)
    return [s.minutes() for s in series.slots()]


def _relative(attr: Any) -> bool:
    series = getattr(attr, "series", None) or getattr(attr, "time_series", None)
    return bool(getattr(series, "relative", False))


def arm_time(attr: Any, now: _dt.datetime, is_today: bool, since: _dt.datetime | None = None) -> None:
    """Reset a time/today attribute at begin or requeue: the next slot is the first not yet passed.

    ``time 10:00`` begun at 11:00 waits for tomorrow; ``today 10:00`` begun at 11:00 is free at once.
    """
    slots = _slots(attr)
    attr.free = False
    attr.expired = False
    if _relative(attr):
        attr.next_slot = 0
        return
    m = _minutes(now)
    idx = next((i for i, s in enumerate(slots) if s >= m), len(slots))
    if is_today and idx > 0 and len(slots) == 1:
        idx = 0
    elif is_today and idx >= len(slots):
        idx = len(slots) - 1
    attr.next_slot = idx
    if idx >= len(slots):
        attr.expired = True


def time_free(attr: Any, now: _dt.datetime, base: _dt.datetime | None = None) -> bool:
    """True when the time/today attribute lets the node run now (latches ``free`` until requeue)."""
    if attr.free:
        return True
    if attr.expired:
        return False
    slots = _slots(attr)
    if attr.next_slot >= len(slots):
        return False
    target = slots[attr.next_slot]
    if _relative(attr):
        ref = base or now
        elapsed = int((now - ref).total_seconds() // 60)
        ok = elapsed >= target
    else:
        ok = _minutes(now) >= target
    if ok:
        attr.free = True
    return ok


def advance_time(attr: Any) -> bool:
    """After the node completed: move to the next slot; True if another slot remains today."""
    attr.free = False
    attr.next_slot += 1
    if attr.next_slot >= len(_slots(attr)):
        attr.expired = True
        return False
    return True


def new_day(attr: Any) -> None:
    """Midnight: every slot is available again."""
    attr.free = False
    attr.expired = False
    attr.next_slot = 0


def date_free(attr: Any, now: _dt.datetime) -> bool:
    d = now.date()
    matches = getattr(attr, "matches", None)
    if matches is not None:
        return bool(matches(d))
    return ((not attr.day or attr.day == d.day) and (not attr.month or attr.month == d.month)
            and (not attr.year or attr.year == d.year))


def day_free(attr: Any, now: _dt.datetime) -> bool:
    want = getattr(attr, "day", attr)
    if isinstance(want, str):
        want = DAY_NAMES.index(want.lower())
    return (now.weekday() + 1) % 7 == int(want)


def cron_day_ok(attr: Any, now: _dt.datetime) -> bool:
    """The date part of a cron (ecFlow's CronAttr): ``-w`` week days (0=Sunday, ``NL`` = last N-day of the
    month), ``-d`` days of the month (``L`` = last day), ``-m`` months; the kinds given are ANDed."""
    d = now.date() if isinstance(now, _dt.datetime) else now
    dow = (d.weekday() + 1) % 7
    wdays = getattr(attr, "week_days", None) or getattr(attr, "days_of_week", None) or ()
    last_wdays = getattr(attr, "last_week_days", None) or getattr(attr, "last_week_days_of_month", None) or ()
    mdays = getattr(attr, "days_of_month", None) or ()
    last_day = bool(getattr(attr, "last_day_of_month", False))
    months = getattr(attr, "months", None) or ()
    week_ok = not wdays and not last_wdays
    if wdays:
        week_ok = dow in wdays
    if not week_ok and last_wdays:
        week_ok = dow in last_wdays and (d + _dt.timedelta(days=7)).month != d.month
    if not mdays and not last_day and not months:
        return week_ok
    mday_ok = not mdays and not last_day
    if mdays or last_day:
        mday_ok = d.day in mdays or (last_day and (d + _dt.timedelta(days=1)).month != d.month)
    month_ok = not months or d.month in months
    return week_ok and mday_ok and month_ok


# ============================================================================================ ecFlow semantics
# The functions below follow ecFlow's TimeSeries / TimeAttr / TodayAttr / CronAttr / DayAttr / DateAttr and
# Node time handling (reference/ecflow.md section 2). Runtime fields live on the attributes (``free``,
# ``expired`` = "time series no longer valid today", ``next_slot`` = index of the next slot of the series);
# what the attributes have no slot for (a day's matching date, the start of a relative duration) is kept
# by :class:`TimeState`, which the scheduler owns.

_SLOT_CACHE: dict[tuple[int, int, int, int, int, int], list[int]] = {}


_SLOTS_OF: dict[int, tuple[Any, list[int]]] = {}


def slot_list(attr: Any) -> list[int]:
    """Minutes of the day of every slot of a time/today/cron attribute's series (cached)."""
    ts = attr.series
    got = _SLOTS_OF.get(id(attr))
    if got is not None and got[0] is ts:
        return got[1]
    slots = _slot_list(ts)
    if len(_SLOTS_OF) > 200000:
        _SLOTS_OF.clear()
    _SLOTS_OF[id(attr)] = (ts, slots)
    return slots


def _slot_list(ts: Any) -> list[int]:
    fin, inc = ts.finish, ts.incr
    key = (ts.start[0], ts.start[1], fin[0] if fin else -1, fin[1] if fin else -1,
           inc[0] if inc else -1, inc[1] if inc else -1)
    got = _SLOT_CACHE.get(key)
    if got is None:
        got = _SLOT_CACHE[key] = [s.minutes() for s in ts.slots()]
    return got


def ts_expired(attr: Any) -> bool:
    """No slot of the series is left today (ecFlow's ``!isValid``): ``next_slot`` is past the last one."""
    return attr.next_slot >= len(slot_list(attr))


def _set_expired(attr: Any, flag: bool) -> None:
    if flag:
        attr.next_slot = max(attr.next_slot, len(slot_list(attr)))
    if hasattr(attr, "expired"):
        attr.expired = flag


def has_incr(attr: Any) -> bool:
    return attr.series.finish is not None


def is_relative(attr: Any) -> bool:
    return bool(attr.series.relative)


def ts_reset(attr: Any, cur: int) -> None:
    """Begin: the series becomes valid; slots already passed (strictly) are skipped (TimeSeries::reset)."""
    attr.free = False
    attr.next_slot = 0
    _set_expired(attr, False)
    slots = slot_list(attr)
    if has_incr(attr):
        i = 0
        while i < len(slots) and cur > slots[i]:
            i += 1
        attr.next_slot = i
        _set_expired(attr, i >= len(slots))
    elif cur > slots[0]:
        _set_expired(attr, True)


def ts_requeue(attr: Any, cur: int, reset_next_slot: bool) -> None:
    """Requeue: move past the current time so one slot runs once (TimeSeries::requeue)."""
    attr.free = False
    if reset_next_slot:
        attr.next_slot = 0
        _set_expired(attr, False)
    slots = slot_list(attr)
    if not has_incr(attr):
        if cur >= slots[0]:
            _set_expired(attr, True)
        return
    i = attr.next_slot
    while i < len(slots) and cur >= slots[i]:
        i += 1
    attr.next_slot = i
    _set_expired(attr, i >= len(slots))


def ts_day_changed(attr: Any) -> None:
    """Midnight: a (non relative) series is valid again from its first slot."""
    if not is_relative(attr):
        attr.next_slot = 0
        _set_expired(attr, False)


def ts_matches(attr: Any, cur: int, prev: int | None = None) -> bool:
    """Is a slot of the series due at ``cur`` (or in ``(prev, cur]`` when the calendar jumped)?"""
    if ts_expired(attr):
        return False
    slots = slot_list(attr)
    lo = cur if prev is None or prev >= cur else prev + 1
    if not has_incr(attr):
        return lo <= slots[0] <= cur
    for s in slots[attr.next_slot:]:
        if s > cur:
            return False
        if s >= lo:
            return True
    return False


def ts_miss_next_slot(attr: Any) -> None:
    """A run/free-dep used up the next slot (TimeSeries::miss_next_time_slot)."""
    if not has_incr(attr):
        _set_expired(attr, True)
        return
    attr.next_slot += 1
    _set_expired(attr, attr.next_slot >= len(slot_list(attr)))


def ts_next_slot(attr: Any) -> int | None:
    """Minutes of the next slot still to come today, or None when expired."""
    if ts_expired(attr):
        return None
    slots = slot_list(attr)
    return slots[attr.next_slot] if attr.next_slot < len(slots) else None


def time_is_free(attr: Any, cur: int) -> bool:
    return bool(attr.free) or ts_matches(attr, cur)


def today_is_free(attr: Any, cur: int) -> bool:
    """``today``: a single slot is free once the time has passed (it does not wrap to tomorrow)."""
    if attr.free:
        return True
    if not has_incr(attr) and cur > slot_list(attr)[0]:
        return True
    return ts_matches(attr, cur)


def cron_is_free(attr: Any, cur: int, d: _dt.date) -> bool:
    return bool(attr.free) or (ts_matches(attr, cur) and cron_day_ok(attr, _dt.datetime.combine(d, _dt.time())))


def ts_check_for_requeue(attr: Any, cur: int, the_min: int, the_max: int, cmd: bool) -> bool:
    """After completion: is another slot of this series still due today? (TimeSeries::checkForRequeue)."""
    if ts_expired(attr):
        return False
    slots = slot_list(attr)
    if has_incr(attr):
        if attr.next_slot >= len(slots):
            return False
        last = slots[-1]
        return cur < last if cmd else slots[0] <= cur < last
    if the_min == the_max:
        return False
    return cur < the_max if cmd else the_min <= cur < the_max


def min_max(attrs: list[Any]) -> tuple[int, int]:
    lo, hi = 24 * 60, -1
    for a in attrs:
        s = slot_list(a)
        lo, hi = min(lo, s[0], s[-1]), max(hi, s[0], s[-1])
    return lo, hi


def date_matches(attr: Any, d: _dt.date) -> bool:
    return ((not attr.day or attr.day == d.day) and (not attr.month or attr.month == d.month)
            and (not attr.year or attr.year == d.year))


def date_check_for_requeue(attr: Any, d: _dt.date, hybrid: bool) -> bool:
    """Is this date (or some date of a wildcard) still in the future?"""
    if hybrid:
        return False
    if attr.day and attr.month and attr.year:
        return _dt.date(attr.year, attr.month, attr.day) > d
    return ((attr.day > d.day if attr.day else True) or (attr.month > d.month if attr.month else True)
            or (attr.year > d.year if attr.year else True))


def next_matching_date(attr: Any, d: _dt.date) -> _dt.date:
    """The first date after ``d`` that a date attribute matches (within a year), else ``d``."""
    for i in range(1, 367):
        n = d + _dt.timedelta(days=i)
        if date_matches(attr, n):
            return n
    return d


def day_matching_date(weekday: int, d: _dt.date, strictly_after: bool = False) -> _dt.date:
    """The first date on or after (or strictly after) ``d`` falling on ``weekday`` (0 = Sunday)."""
    for i in range(1 if strictly_after else 0, 8):
        n = d + _dt.timedelta(days=i)
        if (n.weekday() + 1) % 7 == weekday:
            return n
    return d


def cron_next_date(attr: Any, d: _dt.date, strictly_after: bool = True) -> _dt.date:
    for i in range(1 if strictly_after else 0, 800):
        n = d + _dt.timedelta(days=i)
        if cron_day_ok(attr, _dt.datetime.combine(n, _dt.time())):
            return n
    return d


def minutes_of(t: _dt.datetime) -> int:
    return t.hour * 60 + t.minute


class TimeState:
    """Runtime time state the attributes have no field for, keyed by attribute identity.

    ``day_date``: the date a ``day`` attribute waits for (ecFlow's DayAttr::date_);
    ``rel_start``: the suite time a relative series counts from (begin / requeue).
    """

    def __init__(self) -> None:
        self.day_date: dict[int, _dt.date] = {}
        self.rel_start: dict[int, _dt.datetime] = {}
        self.state_since: dict[int, tuple[Any, _dt.datetime]] = {}
        self.complete_since: dict[int, _dt.datetime] = {}
        self.at_requeue: dict[int, int] = {}      # series: time of day it was last (re)queued

    def rel_minutes(self, attr: Any, now: _dt.datetime) -> int:
        start = self.rel_start.get(id(attr))
        if start is None:
            self.rel_start[id(attr)] = start = now
        return int((now - start).total_seconds() // 60)

    def cur(self, attr: Any, now: _dt.datetime) -> int:
        """The time the series is compared with: suite time of day, or minutes since (re)queue if relative."""
        return self.rel_minutes(attr, now) if is_relative(attr) else minutes_of(now)

    def day_is_free(self, attr: Any, d: _dt.date) -> bool:
        if attr.expired:
            return False
        if attr.free:
            return True
        dd = self.day_date.get(id(attr))
        if dd is None:
            dd = self.day_date[id(attr)] = day_matching_date(attr.day, d)
        return d == dd
