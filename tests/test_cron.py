"""The cron schedule of the export job: hand-worked next run times, DST, and bad expressions.

Calendar used below: 2026-01-01 is a Thursday, 2026-01-31 a Saturday, 2026-02-01 a Sunday.
Europe/Berlin: CET (UTC+1), CEST (UTC+2) from 2026-03-29 02:00 (to 03:00) until 2026-10-25 03:00
(back to 02:00). America/New_York: EST (UTC-5), EDT (UTC-4) from 2026-03-08 02:00 (to 03:00)
until 2026-11-01 02:00 (back to 01:00).
"""

import time
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargeback.errors import UsageError
from export.cron import CronSchedule

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def at(text: str) -> datetime:
    """A naive wall-clock moment, e.g. at("2026-01-31 07:00")."""
    return datetime.fromisoformat(text)


def next_after(expression: str, moment: datetime) -> datetime:
    return CronSchedule.parse(expression).next_after(moment)


# --- naive wall-clock times ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "moment", "expected"),
    [
        ("0 6 1 * *", "2026-01-31 07:00", "2026-02-01 06:00"),
        ("0 6 1 * *", "2026-02-01 05:59:59.999999", "2026-02-01 06:00"),
        ("0 6 1 * *", "2026-02-01 06:00", "2026-03-01 06:00"),  # strictly after
        ("0 6 1 * *", "2026-02-01 06:00:30", "2026-03-01 06:00"),
        ("0 6 1 * *", "2026-12-01 06:01", "2027-01-01 06:00"),
        ("*/15 * * * *", "2026-01-01 10:00", "2026-01-01 10:15"),
        ("*/15 * * * *", "2026-01-01 10:07:30", "2026-01-01 10:15"),
        ("*/15 * * * *", "2026-01-01 10:45", "2026-01-01 11:00"),
        ("*/15 * * * *", "2026-12-31 23:50", "2027-01-01 00:00"),
        ("* * * * *", "2026-01-01 10:00:59", "2026-01-01 10:01"),
        ("0 0 * * mon-fri", "2026-01-29 00:00", "2026-01-30 00:00"),  # Thu -> Fri
        ("0 0 * * mon-fri", "2026-01-30 00:00", "2026-02-02 00:00"),  # Fri -> Mon
        ("0 0 * * mon-fri", "2026-01-31 12:00", "2026-02-02 00:00"),  # Sat -> Mon
        ("0 0 * * 1-5", "2026-01-30 00:00", "2026-02-02 00:00"),
        ("0 9-17/4 * * *", "2026-01-01 13:00", "2026-01-01 17:00"),
        ("0 9-17/4 * * *", "2026-01-01 17:00", "2026-01-02 09:00"),
        ("5,35 */6 * * *", "2026-01-01 06:35", "2026-01-01 12:05"),
        ("0 0 1 jan,jul *", "2026-01-01 00:00", "2026-07-01 00:00"),
        ("0 0 1 JAN,Jul *", "2026-01-01 00:00", "2026-07-01 00:00"),
        ("0 0 1 */3 *", "2026-01-01 00:00", "2026-04-01 00:00"),
        ("0 0 31 * *", "2026-01-31 00:00", "2026-03-31 00:00"),  # Feb has none
        ("0 0 29 2 *", "2026-03-01 00:00", "2028-02-29 00:00"),
        ("0 0 29 2 *", "2096-03-01 00:00", "2104-02-29 00:00"),  # 2100 is not a leap year
    ],
)
def test_next_after_naive(expression: str, moment: str, expected: str) -> None:
    assert next_after(expression, at(moment)) == at(expected)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("@hourly", "2026-01-01 11:00"),
        ("@daily", "2026-01-02 00:00"),
        ("@midnight", "2026-01-02 00:00"),
        ("@weekly", "2026-01-04 00:00"),  # the Sunday after Thursday 1 January
        ("@monthly", "2026-02-01 00:00"),
        ("@yearly", "2027-01-01 00:00"),
        ("@annually", "2027-01-01 00:00"),
        (" @Daily ", "2026-01-02 00:00"),
    ],
)
def test_macros(expression: str, expected: str) -> None:
    assert next_after(expression, at("2026-01-01 10:30")) == at(expected)


@pytest.mark.parametrize("sunday", ["0", "7", "sun", "SUN"])
def test_sunday_is_0_and_7(sunday: str) -> None:
    schedule = CronSchedule.parse(f"0 0 * * {sunday}")
    assert schedule.weekdays == frozenset({0})
    assert schedule.next_after(at("2026-01-01 00:00")) == at("2026-01-04 00:00")


@pytest.mark.parametrize("weekend", ["fri-sun", "5-7", "5-0", "fri,sat,sun", "0,5,6"])
def test_a_weekday_range_may_end_on_sunday(weekend: str) -> None:
    schedule = CronSchedule.parse(f"0 0 * * {weekend}")
    assert schedule.weekdays == frozenset({5, 6, 0})
    assert schedule.next_after(at("2026-01-04 00:00")) == at("2026-01-09 00:00")  # Sun -> Fri


def test_both_day_fields_restricted_means_either() -> None:
    # The 13th or any Friday: Fri 2 Jan, Fri 9 Jan, Tue 13 Jan, Fri 16 Jan.
    schedule = CronSchedule.parse("0 0 13 * fri")
    runs = [at("2026-01-01 00:00")]
    for _ in range(4):
        runs.append(schedule.next_after(runs[-1]))
    assert runs[1:] == [at(f"2026-01-{d} 00:00") for d in ("02", "09", "13", "16")]


def test_a_stepped_day_of_month_counts_as_restricted() -> None:
    # Days 1, 11, 21, 31 or Mondays: after Mon 5 Jan comes Sun 11 Jan, before Mon 12 Jan.
    assert next_after("0 0 */10 * mon", at("2026-01-05 00:00")) == at("2026-01-11 00:00")


def test_one_unrestricted_day_field_means_both() -> None:
    assert next_after("0 0 * * fri", at("2026-01-09 00:00")) == at("2026-01-16 00:00")
    assert next_after("0 0 13 * *", at("2026-01-02 00:00")) == at("2026-01-13 00:00")
    assert next_after("0 0 13 1 *", at("2026-01-13 00:00")) == at("2027-01-13 00:00")


def test_day_31_with_a_weekday_is_possible_even_in_february() -> None:
    # Both restricted: 31 February never happens, but Mondays do (2 February 2026).
    assert next_after("0 0 31 2 mon", at("2026-01-01 00:00")) == at("2026-02-02 00:00")


def test_matches_day() -> None:
    schedule = CronSchedule.parse("0 0 13 * fri")
    assert schedule.matches_day(at("2026-01-13 00:00").date())  # a Tuesday, the 13th
    assert schedule.matches_day(at("2026-01-16 00:00").date())  # a Friday
    assert not schedule.matches_day(at("2026-01-14 00:00").date())


# --- time zones ----------------------------------------------------------------------------


def test_a_fixed_offset_keeps_its_tzinfo() -> None:
    plus_two = timezone(timedelta(hours=2))
    result = next_after("0 6 1 * *", datetime(2026, 1, 31, 7, 0, tzinfo=plus_two))
    assert result == datetime(2026, 2, 1, 6, 0, tzinfo=plus_two)
    assert result.tzinfo is plus_two


def test_utc() -> None:
    result = next_after("*/15 * * * *", datetime(2026, 1, 1, 10, 7, tzinfo=UTC))
    assert result == datetime(2026, 1, 1, 10, 15, tzinfo=UTC)


def test_fields_are_local_wall_clock_time() -> None:
    # 06:00 in Berlin in winter is 05:00Z, in summer 04:00Z.
    winter = next_after("0 6 * * *", datetime(2026, 1, 10, 7, 0, tzinfo=BERLIN))
    summer = next_after("0 6 * * *", datetime(2026, 7, 10, 7, 0, tzinfo=BERLIN))
    assert winter.tzinfo is BERLIN
    assert winter.astimezone(UTC) == datetime(2026, 1, 11, 5, 0, tzinfo=UTC)
    assert summer.astimezone(UTC) == datetime(2026, 7, 11, 4, 0, tzinfo=UTC)


def test_a_moment_in_another_zone_is_converted_by_the_caller() -> None:
    # The same instant as 2026-01-31T23:30 in Berlin, asked in UTC: fields match UTC wall time.
    moment = datetime(2026, 1, 31, 22, 30, tzinfo=UTC)
    assert next_after("0 0 1 * *", moment) == datetime(2026, 2, 1, 0, 0, tzinfo=UTC)
    in_berlin = next_after("0 0 1 * *", moment.astimezone(BERLIN))
    assert in_berlin.astimezone(UTC) == datetime(2026, 1, 31, 23, 0, tzinfo=UTC)


def test_spring_forward_gap_is_skipped_berlin() -> None:
    # 02:00 does not exist in Berlin on 2026-03-29: the daily 02:00 run is skipped that day.
    result = next_after("0 2 * * *", datetime(2026, 3, 28, 2, 0, tzinfo=BERLIN))
    assert result.replace(tzinfo=None) == at("2026-03-30 02:00")
    assert result.utcoffset() == timedelta(hours=2)
    assert result.astimezone(UTC) == datetime(2026, 3, 30, 0, 0, tzinfo=UTC)
    just_before = datetime(2026, 3, 29, 1, 59, tzinfo=BERLIN)
    assert next_after("0 2 * * *", just_before).astimezone(UTC) == datetime(
        2026, 3, 30, 0, 0, tzinfo=UTC
    )


def test_spring_forward_gap_every_half_hour_berlin() -> None:
    # 01:30 CET (00:30Z); 02:00 and 02:30 do not exist; 03:00 CEST is 01:00Z.
    result = next_after("*/30 * * * *", datetime(2026, 3, 29, 1, 30, tzinfo=BERLIN))
    assert result.astimezone(UTC) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert result.replace(tzinfo=None) == at("2026-03-29 03:00")


def test_spring_forward_gap_is_skipped_new_york() -> None:
    result = next_after("30 2 * * *", datetime(2026, 3, 7, 12, 0, tzinfo=NEW_YORK))
    assert result.replace(tzinfo=None) == at("2026-03-07 02:30") + timedelta(days=2)
    assert result.astimezone(UTC) == datetime(2026, 3, 9, 6, 30, tzinfo=UTC)  # EDT, UTC-4


def test_fall_back_hour_runs_once_new_york() -> None:
    # 01:30 happens at 05:30Z (EDT) and again at 06:30Z (EST): the run is at the first.
    schedule = CronSchedule.parse("30 1 * * *")
    first = schedule.next_after(datetime(2026, 11, 1, 0, 0, tzinfo=NEW_YORK))
    assert first.astimezone(UTC) == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    second = schedule.next_after(first)
    assert second.astimezone(UTC) == datetime(2026, 11, 2, 6, 30, tzinfo=UTC)  # EST, UTC-5


def test_fall_back_hour_does_not_repeat_minutes_new_york() -> None:
    schedule = CronSchedule.parse("*/20 * * * *")
    last_edt = datetime(2026, 11, 1, 1, 40, tzinfo=NEW_YORK)  # fold=0: 05:40Z
    assert schedule.next_after(last_edt).astimezone(UTC) == datetime(2026, 11, 1, 7, 0, tzinfo=UTC)
    # From inside the repeated hour (01:10 EST = 06:10Z): 01:20 and 01:40 already ran at EDT.
    inside = datetime(2026, 11, 1, 1, 10, tzinfo=NEW_YORK, fold=1)
    assert schedule.next_after(inside).astimezone(UTC) == datetime(2026, 11, 1, 7, 0, tzinfo=UTC)


def test_fall_back_hour_runs_once_berlin() -> None:
    # 02:30 on 2026-10-25 is 00:30Z (CEST) and 01:30Z (CET); the next is 2026-10-26 01:30Z.
    schedule = CronSchedule.parse("30 2 * * *")
    first = schedule.next_after(datetime(2026, 10, 25, 0, 0, tzinfo=BERLIN))
    assert first.astimezone(UTC) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert schedule.next_after(first).astimezone(UTC) == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)
    # The hour after the repeated one is there once: 03:00 CET is 02:00Z.
    assert next_after("0 3 * * *", first).astimezone(UTC) == datetime(
        2026, 10, 25, 2, 0, tzinfo=UTC
    )


# --- impossible and out-of-range -----------------------------------------------------------


@pytest.mark.parametrize("expression", ["0 0 30 2 *", "0 0 31 2 *", "0 0 31 4,6,9,11 *"])
def test_a_day_that_never_happens_is_refused(expression: str) -> None:
    with pytest.raises(UsageError, match="never runs"):
        CronSchedule.parse(expression)


def test_nothing_left_before_year_10000_is_an_error() -> None:
    with pytest.raises(UsageError, match="matches no time"):
        next_after("0 0 1 1 *", at("9999-06-01 00:00"))
    with pytest.raises(UsageError, match="matches no time"):
        next_after("* * * * *", at("9999-12-31 23:59"))
    assert next_after("* * * * *", at("9999-12-31 23:58")) == at("9999-12-31 23:59")


def test_a_rare_schedule_is_found_quickly() -> None:
    started = time.perf_counter()
    assert next_after("59 23 29 2 *", at("2096-03-01 00:00")) == at("2104-02-29 23:59")
    assert time.perf_counter() - started < 0.5


# --- bad expressions -----------------------------------------------------------------------


@pytest.mark.parametrize("expression", ["", "   ", "0 0 * *", "0 0 * * * *", "every day"])
def test_the_number_of_fields_is_checked(expression: str) -> None:
    with pytest.raises(UsageError, match="needs 5 fields"):
        CronSchedule.parse(expression)


@pytest.mark.parametrize(
    ("expression", "field"),
    [
        ("60 * * * *", "minute"),
        ("-1 * * * *", "minute"),
        ("*/0 * * * *", "minute"),
        ("*/ * * * *", "minute"),
        ("*/x * * * *", "minute"),
        ("5/15 * * * *", "minute"),
        ("10-5 * * * *", "minute"),
        ("1,,2 * * * *", "minute"),
        ("1, * * * *", "minute"),
        ("1-2-3 * * * *", "minute"),
        ("** * * * *", "minute"),
        ("\u0661 * * * *", "minute"),  # an Arabic-Indic digit one
        ("* 24 * * *", "hour"),
        ("* 1.5 * * *", "hour"),
        ("* * 0 * *", "day-of-month"),
        ("* * 32 * *", "day-of-month"),
        ("* * mon * *", "day-of-month"),
        ("* * * 0 *", "month"),
        ("* * * 13 *", "month"),
        ("* * * mon *", "month"),
        ("* * * january *", "month"),
        ("* * * dec-jan *", "month"),
        ("* * * * 8", "day-of-week"),
        ("* * * * jan", "day-of-week"),
        ("* * * * funday", "day-of-week"),
        ("* * * * mon-", "day-of-week"),
        ("* * * * sat-mon", "day-of-week"),
    ],
)
def test_a_bad_field_is_named(expression: str, field: str) -> None:
    with pytest.raises(UsageError) as caught:
        CronSchedule.parse(expression)
    message = str(caught.value)
    assert f": {field} field " in message
    assert "\n" not in message


@pytest.mark.parametrize("expression", ["@reboot", "@every 5m", "@"])
def test_an_unknown_macro_is_refused(expression: str) -> None:
    with pytest.raises(UsageError, match="unknown cron macro"):
        CronSchedule.parse(expression)


# --- against a minute-by-minute oracle -----------------------------------------------------

MINUTES = st.sets(st.integers(0, 59), min_size=1, max_size=4)
HOURS = st.sets(st.integers(0, 23), min_size=1, max_size=3)
WEEKDAYS = st.sets(st.integers(0, 6), min_size=1, max_size=3)
MOMENTS = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31))


def _expression(minutes: set[int], hours: set[int], weekdays: set[int]) -> str:
    return (
        " ".join(",".join(map(str, sorted(v))) for v in (minutes, hours))
        + " * * "
        + ",".join(map(str, sorted(weekdays)))
    )


def _matches(wall: datetime, minutes: set[int], hours: set[int], weekdays: set[int]) -> bool:
    return wall.minute in minutes and wall.hour in hours and wall.isoweekday() % 7 in weekdays


@settings(max_examples=60, deadline=None)
@given(MINUTES, HOURS, WEEKDAYS, MOMENTS)
def test_naive_agrees_with_scanning_every_minute(
    minutes: set[int], hours: set[int], weekdays: set[int], moment: datetime
) -> None:
    expected = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while not _matches(expected, minutes, hours, weekdays):
        expected += timedelta(minutes=1)
    schedule = CronSchedule.parse(_expression(minutes, hours, weekdays))
    assert schedule.next_after(moment) == expected


# Moments in the 4 hours around each 2026 change in New York (07:00Z in March, 06:00Z in
# November, both Sundays), and early hours, so the gap and the repeated hour are hit often.
DST_MOMENTS = st.sampled_from(
    [datetime(2026, 3, 8, 5, 0, tzinfo=UTC), datetime(2026, 11, 1, 4, 0, tzinfo=UTC)]
).flatmap(lambda start: st.integers(0, 4 * 60).map(lambda m: start + timedelta(minutes=m)))
EARLY_HOURS = st.sets(st.integers(0, 3), min_size=1, max_size=2)
WITH_SUNDAY = WEEKDAYS.map(lambda days: days | {0})


@settings(max_examples=200, deadline=None)
@given(MINUTES, EARLY_HOURS, WITH_SUNDAY, DST_MOMENTS)
def test_new_york_agrees_with_scanning_every_real_minute(
    minutes: set[int], hours: set[int], weekdays: set[int], moment_utc: datetime
) -> None:
    # Walk real time in UTC: a skipped local time is never seen, and a repeated one is seen
    # twice, the second time with fold=1, which must not run again.
    instant = moment_utc + timedelta(minutes=1)
    while True:
        local = instant.astimezone(NEW_YORK)
        if local.fold == 0 and _matches(local.replace(tzinfo=None), minutes, hours, weekdays):
            break
        instant += timedelta(minutes=1)
    schedule = CronSchedule.parse(_expression(minutes, hours, weekdays))
    result = schedule.next_after(moment_utc.astimezone(NEW_YORK))
    assert result.astimezone(UTC) == instant
    assert result.tzinfo is NEW_YORK
