"""Reporting periods and their buckets (PRODUCT.md §4).

A period is a range of calendar dates in the reporting time zone, cut into daily or monthly
buckets. Buckets are dates, not 24-hour spans, so a DST change day is just another day: the
only place a time zone matters is `today_in`, which turns "now" into the default `as_of`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chargeback.errors import UsageError

Bucket = Literal["day", "month"]

PERIOD_NAMES = ("7D", "30D", "6M", "12M", "YTD", "LM")
BUCKETS: tuple[Bucket, ...] = ("day", "month")

# A custom range wider than this makes a CSV nobody can open; ~10 years of days, 100 of months.
MAX_DAILY_BUCKETS = 3660
MAX_MONTHLY_BUCKETS = 1200

# date.fromisoformat also takes 20260101 and 2026-W01-1; the CLI promises YYYY-MM-DD only.
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True)
class Period:
    """The days first..last (both included), cut into buckets of one day or one month."""

    first: date
    last: date
    bucket: Bucket
    name: str

    def __post_init__(self) -> None:
        # Callers go through resolve_period/custom_period, which give users a clear error;
        # reaching this is a programming error.
        if self.first > self.last:
            raise ValueError(f"period starts {self.first} after it ends {self.last}")
        if self.bucket not in BUCKETS:
            raise ValueError(f"unknown bucket {self.bucket!r}")

    def buckets(self) -> list[date]:
        """The first day of each bucket, in order; a monthly period starts at first's month."""
        if self.bucket == "day":
            return [
                self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)
            ]
        count = _months_spanned(self.first, self.last)
        return [_add_months(_month_start(self.first), n) for n in range(count)]

    def bucket_of(self, day: date) -> date:
        """The first day of the bucket `day` falls in (the day itself, or the 1st of its month)."""
        return day if self.bucket == "day" else _month_start(day)

    def bucket_label(self, d: date) -> str:
        """The CSV column name of a bucket: YYYY-MM-DD daily, YYYY-MM monthly (§6)."""
        if self.bucket == "day":
            return d.isoformat()
        return f"{d.year:04d}-{d.month:02d}"


def resolve_period(name: str, as_of: date) -> Period:
    """The named period of §4 that includes `as_of` (LM: the full month before as_of's month)."""
    key = name.strip().upper()
    try:
        return _resolve_known(key, as_of)
    except KeyError:
        allowed = ", ".join(PERIOD_NAMES)
        raise UsageError(f"unknown period {name!r}: choose one of {allowed}") from None
    except (OverflowError, ValueError):
        # Only reachable for as_of in the first months of year 1.
        raise UsageError(f"period {key} before {as_of} starts before year 1") from None


def _resolve_known(key: str, as_of: date) -> Period:
    """The period for an upper-case name; KeyError for an unknown one."""
    if key == "7D":
        return Period(as_of - timedelta(days=6), as_of, "day", key)
    if key == "30D":
        return Period(as_of - timedelta(days=29), as_of, "day", key)
    if key == "6M":
        return Period(_add_months(_month_start(as_of), -5), as_of, "month", key)
    if key == "12M":
        return Period(_add_months(_month_start(as_of), -11), as_of, "month", key)
    if key == "YTD":
        return Period(date(as_of.year, 1, 1), as_of, "month", key)
    if key == "LM":
        last = _month_start(as_of) - timedelta(days=1)
        return Period(_month_start(last), last, "day", key)
    raise KeyError(key)


def custom_period(first: date, last: date, bucket: Bucket) -> Period:
    """The range first..last (both included) in buckets of `bucket`, named "custom"."""
    if bucket not in BUCKETS:
        raise UsageError(f"bucket must be 'day' or 'month', got {bucket!r}")
    if first > last:
        raise UsageError(f"the period's first day {first} is after its last day {last}")
    limit = MAX_DAILY_BUCKETS if bucket == "day" else MAX_MONTHLY_BUCKETS
    count = (last - first).days + 1 if bucket == "day" else _months_spanned(first, last)
    if count > limit:
        raise UsageError(
            f"the period {first}..{last} has {count} {bucket}s; at most {limit} are allowed"
        )
    return Period(first, last, bucket, "custom")


def today_in(zone: str, now: datetime | None = None) -> date:
    """Today's date in the IANA time zone `zone`; `now` (timezone-aware) is for tests."""
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            f"unknown time zone {zone!r}: use an IANA name like Europe/Berlin"
        ) from None
    instant = datetime.now(UTC) if now is None else now
    if instant.tzinfo is None:
        # A naive "now" would be read as the machine's local time, the bug this function prevents.
        raise ValueError("now must be timezone-aware")
    return instant.astimezone(tz).date()


def parse_date(text: str, what: str) -> date:
    """A strict YYYY-MM-DD date; `what` names the input in the error (e.g. "--as-of")."""
    if _DATE_RE.fullmatch(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise UsageError(f"{what} must be a date YYYY-MM-DD, got {text!r}")


def _month_start(day: date) -> date:
    return day.replace(day=1)


def _month_index(day: date) -> int:
    """Months since year 0, so month arithmetic is integer arithmetic."""
    return day.year * 12 + day.month - 1


def _months_spanned(first: date, last: date) -> int:
    """How many calendar months the days first..last touch."""
    return _month_index(last) - _month_index(first) + 1


def _add_months(month_start: date, months: int) -> date:
    """The 1st of the month `months` after (or before, if negative) a month's 1st."""
    year, month0 = divmod(_month_index(month_start) + months, 12)
    return date(year, month0 + 1, 1)
