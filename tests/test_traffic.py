"""The traffic model: deterministic, parseable, and shaped like real usage (no broker needed)."""

import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from itertools import islice, pairwise

import orjson
import pytest

from consumer.events import DayResolver, Event, EventParser, Rejected
from traffic.model import BAD_KINDS, TrafficModel, bad_value, events, live_events

START = datetime(2025, 1, 1, tzinfo=UTC)
END = datetime(2026, 1, 1, tzinfo=UTC)
NOW_MS = int(datetime(2026, 6, 1, tzinfo=UTC).timestamp() * 1000)


def parser() -> EventParser:
    return EventParser(
        DayResolver("UTC"), max_future_ms=3_600_000, max_record_bytes=1 << 20, now_ms=lambda: NOW_MS
    )


def parse_all(records: list[tuple[str, bytes]]) -> list[Event]:
    p = parser()
    parsed = []
    for key, value in records:
        (event,) = p.parse(value, 0)
        assert event.service_account == key  # keyed by the account, `User:` stripped
        parsed.append(event)
    return parsed


@pytest.fixture(scope="module")
def year() -> list[tuple[str, bytes]]:
    return list(events(7, START, END, 60_000))


def test_same_seed_same_bytes() -> None:
    first = list(events(3, START, END, 5_000, late_fraction=0.1, bad_fraction=0.1))
    again = list(events(3, START, END, 5_000, late_fraction=0.1, bad_fraction=0.1))
    assert first == again


def test_different_seed_different_records() -> None:
    assert list(events(1, START, END, 1_000)) != list(events(2, START, END, 1_000))


@pytest.mark.parametrize("count", [0, 1, 7, 999, 12_345])
def test_count_is_exact(count: int) -> None:
    assert sum(1 for _ in events(5, START, START + timedelta(days=3), count)) == count


def test_every_record_parses_in_time_order_inside_the_range(year: list[tuple[str, bytes]]) -> None:
    parsed = parse_all(year)
    days = [e.day for e in parsed]
    assert days == sorted(days)
    assert days[0] >= START.date() and days[-1] < END.date()
    assert {e.cluster for e in parsed} == {"prod-eu", "prod-us", "staging"}
    assert len({e.service_account for e in parsed}) == 40
    stamps = Counter(type(orjson.loads(v)["timestamp"]) for _, v in year)
    assert stamps[int] > 0.1 * len(year) and stamps[str] > 0.1 * len(year)
    assert any(b'"User:' in v for _, v in year)
    sizes = sorted(len(v) for _, v in year)
    assert 120 <= sizes[len(sizes) // 2] <= 190


def test_heavy_tail(year: list[tuple[str, bytes]]) -> None:
    per_account: Counter[str] = Counter()
    for e in parse_all(year):
        per_account[e.service_account] += e.produced + e.consumed
    ranked = sorted(per_account.values(), reverse=True)
    top = ranked[: max(1, len(ranked) // 10)]
    assert sum(top) > 0.5 * sum(ranked)


def test_rhythm_growth_and_fan_out(year: list[tuple[str, bytes]]) -> None:
    parsed = parse_all(year)
    per_day: Counter[date] = Counter()
    for e in parsed:
        per_day[e.day] += e.produced + e.consumed
    weekend = [v for d, v in per_day.items() if d.weekday() >= 5]
    weekday = [v for d, v in per_day.items() if d.weekday() < 5]
    assert sum(weekend) / len(weekend) < 0.8 * sum(weekday) / len(weekday)
    first_quarter = sum(v for d, v in per_day.items() if d.month <= 3)
    last_quarter = sum(v for d, v in per_day.items() if d.month >= 10)
    assert last_quarter > first_quarter
    assert sum(e.consumed for e in parsed) > sum(e.produced for e in parsed)


def test_accounts_start_and_stop_within_the_year(year: list[tuple[str, bytes]]) -> None:
    first: dict[str, date] = {}
    last: dict[str, date] = {}
    for e in parse_all(year):
        first.setdefault(e.service_account, e.day)
        last[e.service_account] = e.day
    assert any(d > date(2025, 2, 1) for d in first.values())
    assert any(d < date(2025, 12, 1) for d in last.values())


def test_late_events_are_behind_the_stream() -> None:
    records = list(events(4, START, END, 20_000, late_fraction=0.05))
    days = [e.day for e in parse_all(records)]
    behind = sum(1 for before, day in pairwise(days) if day < before)
    assert 0.01 * len(days) < behind < 0.1 * len(days)


def test_bad_records_are_rejected() -> None:
    records = list(events(9, START, END, 20_000, bad_fraction=0.05))
    p = parser()
    kinds: Counter[str] = Counter()
    for _, value in records:
        try:
            p.parse(value, 0)
        except Rejected as rejected:
            kinds[rejected.kind] += 1
    assert 0.03 * len(records) < sum(kinds.values()) < 0.07 * len(records)
    assert len(kinds) >= 4


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_each_bad_kind_is_rejected(kind: str) -> None:
    fields: dict[str, object] = {
        "service_account": "svc-orders",
        "type": "produce",
        "timestamp": 1_700_000_000_000,
        "cluster": "prod-eu",
    }
    with pytest.raises(Rejected):
        parser().parse(bad_value(kind, fields, 1234), 0)


def test_live_events_follow_the_clock() -> None:
    now = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    seconds = list(islice(live_events(1, now, per_second=2.5), 4))
    assert [len(s) for s in seconds] == [2, 3, 2, 3]
    for i, batch in enumerate(seconds):
        for _, value in batch:
            stamp = orjson.loads(value)["timestamp"]
            ms = (
                stamp
                if isinstance(stamp, int)
                else datetime.fromisoformat(stamp).timestamp() * 1000
            )
            assert now.timestamp() * 1000 + i * 1000 <= ms < now.timestamp() * 1000 + (i + 1) * 1000


def test_more_accounts_for_benchmarks() -> None:
    model = TrafficModel(1, accounts=1_000)
    assert len(set(model.account_names)) == 1_000
    rng = random.Random(0)
    start_ms = int(START.timestamp() * 1000)
    records = list(model.records(rng, start_ms, start_ms + 86_400_000, 5_000))
    assert len(records) == 5_000
    parse_all(records)
