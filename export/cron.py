"""A small 5-field cron schedule: when the next scheduled export is due.

Fields are minute, hour, day-of-month, month and day-of-week, matched against local wall-clock
time in the tzinfo of the moment asked about. Around DST changes, a wall-clock time that does
not exist (the spring-forward gap) is skipped, and one that happens twice (the fall-back hour)
fires once, at its first occurrence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from chargeback.errors import UsageError

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")

# The longest wait a possible expression can have: 29 February from 2096 skips 2100, so 8 years.
_HORIZON_DAYS = 9 * 366

# Most days in each month, so an expression that names only impossible dates fails at parse time.
_MONTH_MAX_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0  # the value of names[0]


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, _MONTH_NAMES, 1),
    _Field("day-of-week", 0, 7, _DAY_NAMES, 0),
)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed cron expression; day-of-week 0 is Sunday (7 is read as 0).

    A day field counts as restricted unless it is exactly `*`; when both are restricted, a day
    matches if either matches (so `0 0 1,15 * mon` runs on the 1st, the 15th and every Monday).
    """

    text: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    # The classic rule: with both day fields restricted, a day matches if either matches.
    either_day: bool

    @classmethod
    def parse(cls, text: str) -> CronSchedule:
        """Parse `minute hour day-of-month month day-of-week` or a macro like @daily."""
        parts = _expand_macro(text).split()
        if len(parts) != len(_FIELDS):
            raise UsageError(
                f"cron expression {text!r} needs 5 fields "
                f"(minute hour day-of-month month day-of-week) or a macro like @daily, "
                f"got {len(parts)}"
            )
        minutes, hours, days, months, weekdays = (
            _parse_field(part, field, text) for part, field in zip(parts, _FIELDS, strict=True)
        )
        schedule = cls(
            text=text.strip(),
            minutes=tuple(sorted(minutes)),
            hours=tuple(sorted(hours)),
            days=frozenset(days),
            months=frozenset(months),
            weekdays=frozenset(d % 7 for d in weekdays),
            either_day=parts[2] != "*" and parts[4] != "*",
        )
        schedule._check_possible()
        return schedule

    def next_after(self, moment: datetime) -> datetime:
        """The first matching minute strictly after `moment`, in `moment`'s tzinfo."""
        try:
            found = self._search(moment)
        except OverflowError:  # the search ran into year 9999
            found = None
        if found is None:
            raise UsageError(
                f"cron expression {self.text!r} matches no time in the years after {moment}"
            )
        return found

    def _search(self, moment: datetime) -> datetime | None:
        """next_after's search; None when nothing matches within the horizon."""
        zone = moment.tzinfo
        start = moment.replace(tzinfo=None, second=0, microsecond=0, fold=0)
        wall = start + timedelta(minutes=1)
        last_day = _add_days_capped(start.date(), _HORIZON_DAYS)
        while True:
            found = self._next_wall_time(wall, last_day)
            if found is None or zone is None:
                return found
            local = _existing(found, zone)
            # Compare in UTC: aware datetimes sharing a tzinfo compare by wall clock, ignoring fold,
            # so 01:45 (first) would look later than 01:30 (second) in a fall-back hour.
            if local is not None and local.astimezone(UTC) > moment.astimezone(UTC):
                return local
            wall = found + timedelta(minutes=1)

    def matches_day(self, day: date) -> bool:
        """Whether the day-of-month, month and day-of-week fields allow `day`."""
        if day.month not in self.months:
            return False
        by_day = day.day in self.days
        by_weekday = day.isoweekday() % 7 in self.weekdays
        return (by_day or by_weekday) if self.either_day else (by_day and by_weekday)

    def _next_wall_time(self, wall: datetime, last_day: date) -> datetime | None:
        """The first wall-clock minute at or after `wall` that matches, up to `last_day`."""
        day: date | None = wall.date()
        earliest: time | None = wall.time()
        while day is not None and day <= last_day:
            if day.month not in self.months:
                day = _next_month_start(day)
            else:
                if self.matches_day(day):
                    at = self._first_time(earliest)
                    if at is not None:
                        return datetime.combine(day, at)
                day = None if day == date.max else day + timedelta(days=1)
            earliest = None  # any day after the first may start at midnight
        return None

    def _first_time(self, earliest: time | None) -> time | None:
        """The first matching time of day at or after `earliest` (None: from midnight)."""
        if earliest is None:
            return time(self.hours[0], self.minutes[0])
        for hour in self.hours:
            if hour > earliest.hour:
                return time(hour, self.minutes[0])
            if hour == earliest.hour:
                minute = next((m for m in self.minutes if m >= earliest.minute), None)
                if minute is not None:
                    return time(hour, minute)
        return None

    def _check_possible(self) -> None:
        """Refuse day-of-month/month pairs that never happen, like 30 February."""
        if self.either_day or not self.days or min(self.days) <= 28:
            return
        if not any(min(self.days) <= _MONTH_MAX_DAYS[m - 1] for m in self.months):
            raise UsageError(
                f"cron expression {self.text!r} never runs: "
                f"its months have no day-of-month {min(self.days)}"
            )


def _expand_macro(text: str) -> str:
    """The 5 fields a macro stands for; any other text unchanged."""
    key = text.strip().lower()
    if not key.startswith("@"):
        return text
    if key not in MACROS:
        raise UsageError(f"unknown cron macro {text.strip()!r}: use one of {', '.join(MACROS)}")
    return MACROS[key]


def _parse_field(part: str, field: _Field, text: str) -> set[int]:
    """The values one field allows; a UsageError names the field and what is wrong."""
    values: set[int] = set()
    for item in part.split(","):
        try:
            values.update(_parse_item(item, field))
        except ValueError as error:
            raise UsageError(
                f"cron expression {text!r}: {field.name} field {part!r} is invalid: {error}"
            ) from None
    return values


def _parse_item(item: str, field: _Field) -> range:
    """One list item: `*`, `a`, `a-b`, `*/n` or `a-b/n`; ValueError says why not."""
    base, slash, step_text = item.partition("/")
    step = _parse_step(step_text) if slash else 1
    if base == "*":
        return range(field.low, field.high + 1, step)
    low_text, dash, high_text = base.partition("-")
    low = _parse_value(low_text, field)
    if not dash:
        if slash:
            # Vixie cron ignores the step here and Quartz reads it as low-max; refuse both guesses.
            raise ValueError(f"a step needs a range or '*', as in {low}-{field.high}/{step}")
        return range(low, low + 1)
    high = _parse_value(high_text, field)
    if field.name == "day-of-week" and high == 0:
        high = 7  # so `fri-sun` reads as Friday to Sunday; 7 is Sunday too
    if low > high:
        raise ValueError(f"the range {low}-{high} runs backwards")
    return range(low, high + 1, step)


def _parse_step(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) == 0:
        raise ValueError(f"the step {text!r} is not a whole number from 1")
    return int(text)


def _parse_value(text: str, field: _Field) -> int:
    lowered = text.lower()
    if lowered in field.names:
        return field.names.index(lowered) + field.name_base
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"{text!r} is not a number" + (" or a name" if field.names else ""))
    value = int(text)
    if not field.low <= value <= field.high:
        raise ValueError(f"{value} is outside {field.low}-{field.high}")
    return value


def _existing(wall: datetime, zone: tzinfo) -> datetime | None:
    """`wall` in `zone` at its first occurrence, or None if the zone skips that time."""
    local = wall.replace(tzinfo=zone, fold=0)
    round_trip = local.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    return local if round_trip == wall else None


def _next_month_start(day: date) -> date | None:
    """The 1st of the next month; None after December 9999."""
    if day.month < 12:
        return date(day.year, day.month + 1, 1)
    return date(day.year + 1, 1, 1) if day.year < date.max.year else None


def _add_days_capped(day: date, count: int) -> date:
    """day + count days, stopping at date.max rather than overflowing near year 9999."""
    return day + timedelta(days=min(count, (date.max - day).days))
