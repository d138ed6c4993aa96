"""Periods and buckets (PRODUCT.md §4): every expected date below is worked out by hand."""

from datetime import UTC, date, datetime, timedelta
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargeback.errors import UsageError
from export.periods import (
    Bucket,
    Period,
    custom_period,
    parse_date,
    resolve_period,
    today_in,
)


def months(*labels: str) -> list[date]:
    """'2025-10' -> date(2025, 10, 1): expected monthly buckets, written as the CSV shows them."""
    return [date(int(label[:4]), int(label[5:]), 1) for label in labels]


def days(first: date, count: int) -> list[date]:
    return [first + timedelta(days=n) for n in range(count)]


# --- named periods -------------------------------------------------------------------------


def test_7d_is_as_of_and_the_six_days_before() -> None:
    period = resolve_period("7D", date(2026, 3, 10))
    assert period == Period(date(2026, 3, 4), date(2026, 3, 10), "day", "7D")
    assert period.buckets() == [date(2026, 3, d) for d in range(4, 11)]


def test_30d_crosses_a_short_february() -> None:
    # 2026-03-10 minus 29 days: 9 days back is 1 March, 20 more (February has 28) is 9 February.
    period = resolve_period("30D", date(2026, 3, 10))
    assert (period.first, period.last, period.bucket) == (
        date(2026, 2, 9),
        date(2026, 3, 10),
        "day",
    )
    assert len(period.buckets()) == 30
    assert period.buckets()[0] == date(2026, 2, 9)
    assert period.buckets()[20] == date(2026, 3, 1)
    assert period.buckets()[-1] == date(2026, 3, 10)


def test_30d_crosses_a_year_boundary() -> None:
    # 2026-01-10 minus 29 days: 9 back is 1 January, 20 more is 12 December 2025.
    period = resolve_period("30D", date(2026, 1, 10))
    assert period.first == date(2025, 12, 12)
    assert period.buckets()[19] == date(2025, 12, 31)
    assert period.buckets()[20] == date(2026, 1, 1)


def test_6m_at_a_month_end() -> None:
    period = resolve_period("6M", date(2026, 3, 31))
    assert period == Period(date(2025, 10, 1), date(2026, 3, 31), "month", "6M")
    assert period.buckets() == months(
        "2025-10", "2025-11", "2025-12", "2026-01", "2026-02", "2026-03"
    )


def test_6m_across_a_year_boundary() -> None:
    period = resolve_period("6M", date(2026, 2, 10))
    assert (period.first, period.last) == (date(2025, 9, 1), date(2026, 2, 10))
    labels = [period.bucket_label(b) for b in period.buckets()]
    assert labels == ["2025-09", "2025-10", "2025-11", "2025-12", "2026-01", "2026-02"]


def test_12m_across_a_year_boundary() -> None:
    period = resolve_period("12M", date(2026, 2, 10))
    assert (period.first, period.last, period.bucket) == (
        date(2025, 3, 1),
        date(2026, 2, 10),
        "month",
    )
    assert period.buckets() == months(
        "2025-03", "2025-04", "2025-05", "2025-06", "2025-07", "2025-08",
        "2025-09", "2025-10", "2025-11", "2025-12", "2026-01", "2026-02",
    )  # fmt: skip


def test_12m_in_december_is_the_calendar_year() -> None:
    period = resolve_period("12M", date(2026, 12, 31))
    assert (period.first, period.last) == (date(2026, 1, 1), date(2026, 12, 31))
    assert len(period.buckets()) == 12


def test_ytd_on_1_january_is_one_day_in_one_bucket() -> None:
    period = resolve_period("YTD", date(2026, 1, 1))
    assert period == Period(date(2026, 1, 1), date(2026, 1, 1), "month", "YTD")
    assert period.buckets() == [date(2026, 1, 1)]
    assert period.bucket_label(date(2026, 1, 1)) == "2026-01"


def test_ytd_in_december_has_twelve_buckets() -> None:
    period = resolve_period("YTD", date(2026, 12, 15))
    assert (period.first, period.last) == (date(2026, 1, 1), date(2026, 12, 15))
    assert period.buckets() == [date(2026, m, 1) for m in range(1, 13)]


def test_ytd_mid_year() -> None:
    period = resolve_period("YTD", date(2026, 5, 20))
    assert period.buckets() == months("2026-01", "2026-02", "2026-03", "2026-04", "2026-05")


def test_on_29_february() -> None:
    as_of = date(2028, 2, 29)  # 2028 is a leap year
    seven = resolve_period("7D", as_of)
    assert (seven.first, seven.last) == (date(2028, 2, 23), date(2028, 2, 29))
    # 28 days back is 1 February, one more is 31 January.
    thirty = resolve_period("30D", as_of)
    assert (thirty.first, thirty.last) == (date(2028, 1, 31), date(2028, 2, 29))
    assert thirty.buckets()[:2] == [date(2028, 1, 31), date(2028, 2, 1)]
    last_month = resolve_period("LM", as_of)
    assert (last_month.first, last_month.last) == (date(2028, 1, 1), date(2028, 1, 31))
    assert len(last_month.buckets()) == 31


def test_lm_on_1_march_of_a_leap_year_is_february_with_29_days() -> None:
    period = resolve_period("LM", date(2028, 3, 1))
    assert period == Period(date(2028, 2, 1), date(2028, 2, 29), "day", "LM")
    assert period.buckets() == [date(2028, 2, d) for d in range(1, 30)]
    assert period.bucket_label(period.buckets()[-1]) == "2028-02-29"


def test_lm_on_1_march_of_a_common_year_is_february_with_28_days() -> None:
    period = resolve_period("LM", date(2026, 3, 1))
    assert (period.first, period.last) == (date(2026, 2, 1), date(2026, 2, 28))
    assert len(period.buckets()) == 28


def test_lm_in_january_is_december_of_the_year_before() -> None:
    period = resolve_period("LM", date(2026, 1, 15))
    assert (period.first, period.last) == (date(2025, 12, 1), date(2025, 12, 31))
    assert period.buckets() == days(date(2025, 12, 1), 31)


@pytest.mark.parametrize("day", [1, 2, 15, 30, 31])
def test_lm_does_not_depend_on_the_day_of_the_month(day: int) -> None:
    period = resolve_period("LM", date(2026, 5, day))
    assert (period.first, period.last) == (date(2026, 4, 1), date(2026, 4, 30))


@pytest.mark.parametrize(
    ("text", "name"), [("7d", "7D"), ("30d", "30D"), ("6m", "6M"), ("Ytd", "YTD"), (" lm ", "LM")]
)
def test_names_are_case_insensitive(text: str, name: str) -> None:
    assert resolve_period(text, date(2026, 6, 15)).name == name


@pytest.mark.parametrize("name", ["", "1W", "7", "D7", "custom", "7 D", "LMM", "24M"])
def test_an_unknown_name_lists_the_allowed_ones(name: str) -> None:
    with pytest.raises(UsageError) as caught:
        resolve_period(name, date(2026, 6, 15))
    message = str(caught.value)
    assert repr(name) in message
    for allowed in ("7D", "30D", "6M", "12M", "YTD", "LM"):
        assert allowed in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("name", "as_of"), [("7D", date(1, 1, 3)), ("6M", date(1, 3, 1)), ("LM", date(1, 1, 15))]
)
def test_a_period_before_year_1_is_a_usage_error(name: str, as_of: date) -> None:
    with pytest.raises(UsageError, match="before year 1"):
        resolve_period(name, as_of)


# --- buckets -------------------------------------------------------------------------------


def test_bucket_of_and_labels() -> None:
    monthly = Period(date(2026, 1, 1), date(2026, 3, 31), "month", "custom")
    daily = Period(date(2026, 1, 1), date(2026, 3, 31), "day", "custom")
    assert monthly.bucket_of(date(2026, 2, 17)) == date(2026, 2, 1)
    assert monthly.bucket_of(date(2026, 3, 1)) == date(2026, 3, 1)
    assert monthly.bucket_of(date(2026, 3, 31)) == date(2026, 3, 1)
    assert daily.bucket_of(date(2026, 2, 17)) == date(2026, 2, 17)
    assert monthly.bucket_label(date(2026, 2, 1)) == "2026-02"
    assert daily.bucket_label(date(2026, 2, 1)) == "2026-02-01"
    assert daily.bucket_label(date(999, 2, 1)) == "0999-02-01"
    assert monthly.bucket_label(date(999, 2, 1)) == "0999-02"


def test_dst_change_days_are_ordinary_daily_buckets() -> None:
    # Europe/Berlin springs forward on 2026-03-29 (a 23-hour day): still one bucket.
    period = custom_period(date(2026, 3, 28), date(2026, 3, 30), "day")
    assert period.buckets() == [date(2026, 3, 28), date(2026, 3, 29), date(2026, 3, 30)]


def test_period_rejects_an_inverted_range() -> None:
    with pytest.raises(ValueError, match="after"):
        Period(date(2026, 2, 1), date(2026, 1, 31), "day", "custom")


# --- custom periods ------------------------------------------------------------------------


def test_custom_monthly_starts_at_the_first_days_month() -> None:
    period = custom_period(date(2026, 1, 15), date(2026, 3, 10), "month")
    assert period == Period(date(2026, 1, 15), date(2026, 3, 10), "month", "custom")
    assert period.buckets() == months("2026-01", "2026-02", "2026-03")


def test_custom_daily_across_a_month_end() -> None:
    period = custom_period(date(2026, 1, 30), date(2026, 2, 2), "day")
    assert period.buckets() == [
        date(2026, 1, 30),
        date(2026, 1, 31),
        date(2026, 2, 1),
        date(2026, 2, 2),
    ]


def test_custom_single_day() -> None:
    assert custom_period(date(2026, 4, 5), date(2026, 4, 5), "month").buckets() == [
        date(2026, 4, 1)
    ]
    assert custom_period(date(2026, 4, 5), date(2026, 4, 5), "day").buckets() == [date(2026, 4, 5)]


def test_custom_first_after_last_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="2026-02-01 is after its last day 2026-01-31"):
        custom_period(date(2026, 2, 1), date(2026, 1, 31), "day")


def test_custom_unknown_bucket_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="'week'"):
        custom_period(date(2026, 1, 1), date(2026, 1, 31), cast(Bucket, "week"))


def test_custom_daily_range_is_bounded() -> None:
    first = date(2016, 1, 1)
    assert len(custom_period(first, first + timedelta(days=3659), "day").buckets()) == 3660
    with pytest.raises(UsageError, match="3661 days"):
        custom_period(first, first + timedelta(days=3660), "day")


def test_custom_monthly_range_is_bounded() -> None:
    # January 1926 to December 2025 is 100 years, 1200 months; one more day is one more month.
    assert len(custom_period(date(1926, 1, 1), date(2025, 12, 31), "month").buckets()) == 1200
    with pytest.raises(UsageError, match="1201 months"):
        custom_period(date(1925, 12, 31), date(2025, 12, 31), "month")


# --- properties over many as_of dates ------------------------------------------------------

AS_OF = st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 12, 31))


def _days_in_month_before(as_of: date) -> int:
    first_of_month = as_of.replace(day=1)
    return (first_of_month - (first_of_month - timedelta(days=1)).replace(day=1)).days


@given(AS_OF)
def test_every_named_period_has_the_documented_bucket_count(as_of: date) -> None:
    expected = {"7D": 7, "30D": 30, "6M": 6, "12M": 12, "YTD": as_of.month}
    for name, count in expected.items():
        period = resolve_period(name, as_of)
        assert period.last == as_of
        assert len(period.buckets()) == count
    assert len(resolve_period("LM", as_of).buckets()) == _days_in_month_before(as_of)


@given(AS_OF, st.sampled_from(["7D", "30D", "6M", "12M", "YTD", "LM"]))
def test_every_day_of_a_period_falls_in_one_of_its_buckets(as_of: date, name: str) -> None:
    period = resolve_period(name, as_of)
    buckets = period.buckets()
    assert buckets == sorted(set(buckets))
    assert buckets[0] == period.bucket_of(period.first)
    assert buckets[-1] == period.bucket_of(period.last)
    day = period.first
    while day <= period.last:
        assert period.bucket_of(day) in buckets
        day += timedelta(days=1)
    labels = [period.bucket_label(b) for b in buckets]
    assert len(set(labels)) == len(labels)


# --- today in a zone -----------------------------------------------------------------------


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_zones_either_side_of_the_date_line_give_different_dates() -> None:
    now = utc("2026-06-15T11:30:00")
    assert today_in("Pacific/Kiritimati", now) == date(2026, 6, 16)  # UTC+14: 01:30 next day
    assert today_in("UTC", now) == date(2026, 6, 15)
    assert today_in("Pacific/Pago_Pago", now) == date(2026, 6, 15)  # UTC-11: 00:30
    assert today_in("Etc/GMT+12", now) == date(2026, 6, 14)  # UTC-12: 23:30 the day before


@pytest.mark.parametrize(
    ("zone", "instant", "expected"),
    [
        # Berlin, spring forward on 2026-03-29: the day starts at 00:00 CET (23:00Z the day
        # before) and, being 23 hours long, ends at 00:00 CEST (22:00Z).
        ("Europe/Berlin", "2026-03-28T22:59:59", date(2026, 3, 28)),
        ("Europe/Berlin", "2026-03-28T23:00:00", date(2026, 3, 29)),
        ("Europe/Berlin", "2026-03-29T21:59:59", date(2026, 3, 29)),
        ("Europe/Berlin", "2026-03-29T22:00:00", date(2026, 3, 30)),
        # Berlin on 2026-11-01 is already back on CET (UTC+1) since 2026-10-25.
        ("Europe/Berlin", "2026-10-31T22:59:59", date(2026, 10, 31)),
        ("Europe/Berlin", "2026-10-31T23:00:00", date(2026, 11, 1)),
        # Berlin, fall back on 2026-10-25: from 00:00 CEST (22:00Z) to 00:00 CET (23:00Z), 25 hours.
        ("Europe/Berlin", "2026-10-24T21:59:59", date(2026, 10, 24)),
        ("Europe/Berlin", "2026-10-24T22:00:00", date(2026, 10, 25)),
        ("Europe/Berlin", "2026-10-25T22:59:59", date(2026, 10, 25)),
        ("Europe/Berlin", "2026-10-25T23:00:00", date(2026, 10, 26)),
        # New York on 2026-03-29 is on EDT (UTC-4) since 2026-03-08.
        ("America/New_York", "2026-03-29T03:59:59", date(2026, 3, 28)),
        ("America/New_York", "2026-03-29T04:00:00", date(2026, 3, 29)),
        # New York, fall back on 2026-11-01: from 00:00 EDT (04:00Z) to 00:00 EST (05:00Z next day).
        ("America/New_York", "2026-11-01T03:59:59", date(2026, 10, 31)),
        ("America/New_York", "2026-11-01T04:00:00", date(2026, 11, 1)),
        ("America/New_York", "2026-11-02T04:59:59", date(2026, 11, 1)),
        ("America/New_York", "2026-11-02T05:00:00", date(2026, 11, 2)),
        # New York, spring forward on 2026-03-08: from 00:00 EST (05:00Z) to 00:00 EDT (04:00Z).
        ("America/New_York", "2026-03-08T04:59:59", date(2026, 3, 7)),
        ("America/New_York", "2026-03-08T05:00:00", date(2026, 3, 8)),
        ("America/New_York", "2026-03-09T03:59:59", date(2026, 3, 8)),
        ("America/New_York", "2026-03-09T04:00:00", date(2026, 3, 9)),
    ],
)
def test_today_around_local_midnight_on_dst_change_days(
    zone: str, instant: str, expected: date
) -> None:
    assert today_in(zone, utc(instant)) == expected


def test_now_in_another_zone_is_the_same_instant() -> None:
    # 2026-11-01T04:00Z given as 13:00 in Tokyo (UTC+9) is still 00:00 in New York.
    tokyo = datetime.fromisoformat("2026-11-01T13:00:00+09:00")
    assert today_in("America/New_York", tokyo) == date(2026, 11, 1)


def test_today_defaults_to_the_clock() -> None:
    before = datetime.now(UTC).date()
    today = today_in("UTC")
    after = datetime.now(UTC).date()
    assert today in {before, after}


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        today_in("UTC", datetime(2026, 1, 1, 12, 0))


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", "../etc/passwd", "/etc/localtime"])
def test_an_unknown_zone_is_a_usage_error(zone: str) -> None:
    with pytest.raises(UsageError, match="unknown time zone"):
        today_in(zone, utc("2026-01-01T00:00:00"))


# --- parsing dates -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-31", date(2026, 3, 31)),
        ("2028-02-29", date(2028, 2, 29)),
        ("0001-01-01", date(1, 1, 1)),
        ("9999-12-31", date(9999, 12, 31)),
    ],
)
def test_parse_date_accepts_yyyy_mm_dd(text: str, expected: date) -> None:
    assert parse_date(text, "--as-of") == expected


def test_parse_date_error_names_the_input() -> None:
    with pytest.raises(UsageError) as caught:
        parse_date("2026-13-01", "--as-of")
    assert str(caught.value) == "--as-of must be a date YYYY-MM-DD, got '2026-13-01'"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2026-02-29",  # not a leap year
        "2026-04-31",
        "2026-00-10",
        "2026-01-00",
        "0000-01-01",
        "2026-2-1",
        "26-02-01",
        "20260201",
        "2026-W05-1",
        "2026/02/01",
        " 2026-02-01",
        "2026-02-01 ",
        "2026-02-01\n",
        "2026-02-01T00:00",
        "+2026-02-01",
        "\u0662\u0660\u0662\u0666-\u0660\u0661-\u0660\u0661",  # Arabic-Indic digits
        "today",
    ],
)
def test_parse_date_rejects_anything_else(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_date(text, "--from")
    assert str(caught.value) == f"--from must be a date YYYY-MM-DD, got {text!r}"
