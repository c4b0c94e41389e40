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
        self._offset = 0.0
        self._hybrid_date: _dt.date | None = None
        self.begun_at: float | None = None

    def begin(self) -> None:
        """Start the calendar (suite begin): fix the start date / hybrid date."""
        now = self._clock() + self.gain
        self.begun_at = now
        if self._start_date is not None:
            real = _dt.datetime.fromtimestamp(now)
            start = _dt.datetime.combine(self._start_date, real.time())
            self._offset = start.timestamp() - now
        if self.hybrid:
            self._hybrid_date = self.now().date()

    def now(self) -> _dt.datetime:
        """The suite's current date and time (seconds dropped: one-minute resolution)."""
        t = _dt.datetime.fromtimestamp(self._clock() + self.gain + self._offset)
        t = t.replace(second=0, microsecond=0)
        if self.hybrid and self._hybrid_date is not None:
            t = _dt.datetime.combine(self._hybrid_date, t.time())
        return t

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
    """The date part of a cron: weekdays (0=Sunday, ``L`` = last of month), days of month, months."""
    d = now.date()
    dow = (d.weekday() + 1) % 7
    wdays = list(getattr(attr, "days_of_week", ()) or ())
    last_wdays = list(getattr(attr, "last_week_days_of_month", ()) or ())
    mdays = list(getattr(attr, "days_of_month", ()) or ())
    last_day = bool(getattr(attr, "last_day_of_month", False))
    months = list(getattr(attr, "months", ()) or ())
    if months and d.month not in months:
        return False
    nxt = d + _dt.timedelta(days=1)
    is_last_day = nxt.month != d.month
    in_last_week = (d + _dt.timedelta(days=7)).month != d.month
    if wdays or last_wdays:
        if not (dow in wdays or (dow in last_wdays and in_last_week)):
            return False
    if mdays or last_day:
        if not (d.day in mdays or (last_day and is_last_day)):
            return False
    return True
