"""`chargeback export` end to end, against a second computation written independently of it.

A fixed data set (seeded, about fourteen months before AS_OF) goes through the real writer into a
real DuckDB file; rates are set with the real `chargeback rates set`; every export runs as a
subprocess, the way a user or a cron job runs it. The expected CSV is computed here with a plain
Python loop over the raw events: PRODUCT.md §4 periods, docs/rates.md prices and rounding (the
bytes of one (bucket, cluster, account) that one rate entry prices are summed and priced once,
truncated to 10^-9; cells and totals rounded half up from the exact sums), §6 rows, header and
sort.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import random
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from consumer.batch import Batch
from consumer.events import DayResolver, EventParser, Rejected
from consumer.writer import StoreWriter
from export.periods import custom_period, resolve_period
from export.table import Tab, cells_query, read_plan
from views.reader import open_reader
from views.store import open_store

ROOT = Path(__file__).resolve().parents[1]
AS_OF = date(2028, 3, 10)  # 30D and LM both hold 29 Feb 2028
TABS = {"cost": "OverallCost", "ingress": "Ingress", "egress": "Egress"}
PERIODS = ("7D", "30D", "6M", "12M", "YTD", "LM")
GB = 10**9
GIB = 2**30
NANO = 10**9
CENT = Decimal("0.01")

PARSER = EventParser(DayResolver("UTC"), 3_600_000, 1 << 20, lambda: 2_000_000_000_000)

Event = dict[str, Any]  # one usage event, exactly as sent (§1)


# --------------------------------------------------------------------------- the test's own model


@dataclass(frozen=True)
class Rate:
    valid_from: date
    cluster: str | None
    ingress: Decimal
    egress: Decimal


@dataclass
class Rates:
    unit_bytes: int
    entries: list[Rate] = field(default_factory=list)

    def price(self, cluster: str, day: date) -> Rate:
        """docs/rates.md "Which entry prices a day", rules 1 to 3."""
        own = [r for r in self.entries if r.cluster == cluster and r.valid_from <= day]
        if own:
            return max(own, key=lambda r: r.valid_from)
        glob = [r for r in self.entries if r.cluster is None]
        older = [r for r in glob if r.valid_from <= day]
        if older:
            return max(older, key=lambda r: r.valid_from)
        return min(glob, key=lambda r: r.valid_from)

    def cost_nanos(self, rate: Rate, produced: int, consumed: int) -> int:
        """Exact cost of bytes priced by one entry, in 10^-9 currency units, each way truncated."""
        ingress = produced * int(rate.ingress * NANO) // self.unit_bytes
        egress = consumed * int(rate.egress * NANO) // self.unit_bytes
        return ingress + egress


def event_day(event: Event) -> date:
    stamp = event["timestamp"]
    if isinstance(stamp, int):
        return datetime.fromtimestamp(stamp / 1000, UTC).date()
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC).date()


def daily_usage(events: list[Event]) -> dict[tuple[date, str, str], list[int]]:
    """(day, cluster, account) -> [produced, consumed]: what usage_daily should hold."""
    rows: dict[tuple[date, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for event in events:
        account = event["service_account"].removeprefix("User:")
        key = (event_day(event), event.get("cluster", "default"), account)
        rows[key][0 if event["type"] == "produce" else 1] += event["bytes"]
    return rows


def period_bounds(period: str, as_of: date) -> tuple[date, date, str]:
    """PRODUCT.md §4: (first day, last day, bucket size)."""
    if period in ("7D", "30D"):
        return as_of - timedelta(days=int(period[:-1]) - 1), as_of, "day"
    if period in ("6M", "12M"):
        index = as_of.year * 12 + as_of.month - 1 - (int(period[:-1]) - 1)
        return date(index // 12, index % 12 + 1, 1), as_of, "month"
    if period == "YTD":
        return date(as_of.year, 1, 1), as_of, "month"
    assert period == "LM"
    last = as_of.replace(day=1) - timedelta(days=1)
    return last.replace(day=1), last, "day"


def bucket_starts(first: date, last: date, size: str) -> list[date]:
    starts = []
    day = first
    while day <= last:
        if size == "day" or day.day == 1:
            starts.append(day)
        day += timedelta(days=1)
    return starts


def label(start: date, size: str) -> str:
    return start.isoformat() if size == "day" else start.strftime("%Y-%m")


def money(nanos: int) -> str:
    return str((Decimal(nanos) / NANO).quantize(CENT, rounding=ROUND_HALF_UP))


def file_name(tab: str, first: date, last: date) -> str:
    return f"Chargeback_{first.isoformat()}_{last.isoformat()}_{TABS[tab]}.csv"


def expected_table(
    events: list[Event],
    rates: Rates,
    tab: str,
    period: str,
    as_of: date = AS_OF,
    filter_text: str | None = None,
    cluster: str | None = None,
    sort: str = "Total:desc",
) -> tuple[str, list[list[str]]]:
    """The file name and the rows (header first) the export must write."""
    first, last, size = period_bounds(period, as_of)
    starts = bucket_starts(first, last, size)
    labels = [label(s, size) for s in starts]
    cells: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(labels, 0))
    # docs/rates.md: the bytes of one (bucket, cluster, account, rate entry) are priced as one sum.
    priced: dict[tuple[str, str, str, Rate], list[int]] = defaultdict(lambda: [0, 0])
    for (day, row_cluster, account), (produced, consumed) in daily_usage(events).items():
        if not first <= day <= last or (cluster is not None and row_cluster != cluster):
            continue
        if filter_text is not None and filter_text.lower() not in account.lower():
            continue
        if produced == 0 and consumed == 0:
            continue
        column = label(day if size == "day" else day.replace(day=1), size)
        if tab == "cost":
            sums = priced[(column, row_cluster, account, rates.price(row_cluster, day))]
            sums[0] += produced
            sums[1] += consumed
            cells[account].setdefault(column, 0)  # the row exists even if it costs nothing
        else:
            cells[account][column] += produced if tab == "ingress" else consumed
    for (column, _, account, rate), (produced, consumed) in priced.items():
        cells[account][column] += rates.cost_nanos(rate, produced, consumed)
    accounts = sorted(cells)
    column, _, direction = sort.rpartition(":")
    if column == "Service Account":
        accounts.sort(reverse=direction == "desc")
    else:

        def sort_value(account: str) -> Decimal:
            # By the value shown: costs rounded to cents, so equal cents tie (then by name).
            row = cells[account]
            value = sum(row.values()) if column == "Total" else row[column]
            return Decimal(money(value)) if tab == "cost" else Decimal(value)

        accounts.sort(key=sort_value, reverse=direction == "desc")  # stable: ties by name
    show = money if tab == "cost" else str
    table = [["Service Account", *labels, "Total"]]
    for account in accounts:
        row = cells[account]
        table.append([account, *(show(row[c]) for c in labels), show(sum(row.values()))])
    return file_name(tab, first, last), table


# --------------------------------------------------------------------------- the data set


def stamp(moment: datetime, rng: random.Random) -> str | int:
    """The same instant as Z, as an offset, or as epoch milliseconds."""
    style = rng.randrange(3)
    if style == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    if style == 1:
        offset = timezone(timedelta(hours=rng.choice([-5, 2, 9]), minutes=rng.choice([0, 30])))
        return moment.astimezone(offset).isoformat(timespec="milliseconds")
    return int(moment.timestamp() * 1000)


def event(account: str, kind: str, n: int, when: str | int, cluster: str | None) -> Event:
    value: Event = {"service_account": account, "type": kind, "bytes": n, "timestamp": when}
    if cluster is not None:
        value["cluster"] = cluster
    return value


def generated_events() -> list[Event]:
    """Seeded daily traffic from 2027-01-01 to two days after AS_OF, skipping some days."""
    rng = random.Random(20280310)
    specs: list[tuple[str, list[str | None], list[str], float]] = [
        ("svc-orders", ["prod-eu", "prod-us"], ["produce", "fetch"], 0.5),
        ("svc-payments", ["prod-eu"], ["produce", "fetch"], 0.3),
        ("bi-reader", ["prod-us", None], ["fetch"], 0.4),  # fetch only
        ("svc-audit", [None], ["produce"], 0.15),  # produce only, on the default cluster
        ("tie", ["prod-us"], ["produce", "fetch"], 0.2),  # sent as tie-a and tie-b
    ]
    events: list[Event] = []
    day = date(2027, 1, 1)
    while day <= AS_OF + timedelta(days=2):
        if day != date(2028, 3, 7):  # nobody uses Kafka on 7 March 2028
            for name, clusters, kinds, chance in specs:
                if rng.random() >= chance:
                    continue
                for _ in range(rng.randint(1, 2)):
                    moment = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
                        milliseconds=rng.randrange(86_400_000)
                    )
                    kind, where = rng.choice(kinds), rng.choice(clusters)
                    n, when = rng.randrange(1, 50 * GB), stamp(moment, rng)
                    if name == "tie":
                        events.append(event("tie-a", kind, n, when, where))
                        events.append(event("tie-b", kind, n, when, where))
                    else:
                        prefix = "User:" if name == "svc-orders" and rng.random() < 0.3 else ""
                        events.append(event(prefix + name, kind, n, when, where))
        day += timedelta(days=1)
    return events


def crafted_events() -> list[Event]:
    """Hand-made edge cases; the hand-written assertions below use these numbers."""
    return [
        # usage only outside the short periods: in 12M and 6M, not in 7D/30D/LM/YTD
        event("Archive-Batch", "produce", 7 * GB, "2027-05-03T12:00:00Z", "prod-eu"),
        event("Archive-Batch", "fetch", 3 * GB, "2027-11-30T23:59:59.999Z", None),
        event("Archive-Batch", "produce", 9 * GB, "2027-02-01T00:00:00Z", None),  # before 12M
        # a rate change on 2028-02-20: the 19th and the 20th are priced differently
        event("rate-probe", "produce", 10 * GB, "2028-02-19T10:00:00Z", None),
        event("rate-probe", "fetch", 10 * GB, "2028-02-19T11:00:00Z", None),
        event("rate-probe", "produce", 10 * GB, "2028-02-20T10:00:00Z", None),
        event("rate-probe", "fetch", 10 * GB, "2028-02-20T11:00:00Z", None),
        # the prod-eu entry from 2027-10-15 prices prod-eu only
        event("twin", "produce", 10 * GB, "2027-10-14T08:00:00Z", "prod-eu"),
        event("twin", "produce", 10 * GB, "2027-10-15T08:00:00Z", "prod-eu"),
        event("twin", "produce", 10 * GB, "2028-03-05T08:00:00Z", "prod-eu"),
        event("twin", "produce", 10 * GB, "2028-03-05T08:00:00Z", "prod-us"),
        # 0.004 + 0.004: cells show 0.00, the total 0.01 (rounded from the exact 0.008)
        event("tiny-user", "produce", 80_000_000, "2027-11-10T00:00:00Z", None),
        event("tiny-user", "produce", 80_000_000, "2027-12-10T00:00:00Z", None),
        # half up: 0.125 -> 0.13 (not 0.12), 0.025 -> 0.03 (not 0.02)
        event("half-up", "produce", 2_500_000_000, "2028-01-15T00:00:00Z", None),
        event("half-up", "produce", 500_000_000, "2028-02-10T00:00:00Z", None),
        # one bucket, cluster and entry: priced as one sum, 100,000,000 bytes -> exactly 0.005
        event("trunc-probe", "produce", 49_999_999, "2027-12-03T00:00:00Z", None),
        event("trunc-probe", "produce", 50_000_001, "2027-12-04T00:00:00Z", None),
        # one bucket (2028-02), two entries (the global change on 2028-02-20): two priced sums
        event("split-probe", "produce", 49_999_999, "2028-02-19T12:00:00Z", None),
        event("split-probe", "produce", 35_714_287, "2028-02-20T12:00:00Z", None),
        # leap day reached through an offset: 2028-03-01T01:30+02:00 is 2028-02-29T23:30Z
        event("late-writer", "produce", 1_234_567_891, "2028-03-01T01:30:00+02:00", "prod-us"),
        event("late-writer", "produce", 5 * GB, "2028-03-05T09:00:00Z", "prod-us"),
        # events of zero bytes only: never a row
        event("zero-user", "produce", 0, "2028-03-09T09:00:00Z", None),
        event("zero-user", "fetch", 0, "2028-03-09T09:00:00Z", "prod-eu"),
        # after as_of: never counted
        event("svc-orders", "produce", 40 * GB, "2028-03-11T00:00:00Z", "prod-eu"),
        event("after-user", "fetch", 40 * GB, "2028-03-10T23:30:00-01:00", None),
    ]


def late_events() -> list[Event]:
    """Applied in a later batch: they add to the days they belong to."""
    return [
        event("late-writer", "produce", 7 * GB, "2028-03-05T22:00:00Z", "prod-us"),
        event("late-writer", "fetch", 2 * GB, "2028-02-29T00:00:00Z", "prod-us"),
        event("User:late-writer", "fetch", 3 * GB, "2027-06-30T23:59:59.999Z", "prod-eu"),
        event("svc-audit", "produce", 123_456_789, "2028-03-08T12:00:00Z", None),
    ]


RATES_SET = [  # `chargeback rates set` arguments, in the order they are run
    ["--ingress", "0.05", "--egress", "0.0875", "--from", "2027-01-01"],
    ["--ingress", "0.07", "--egress", "0.1125", "--from", "2028-02-20"],
    ["--ingress", "0.04", "--egress", "0.08", "--from", "2027-10-15", "--cluster", "prod-eu"],
]
RATES = Rates(
    GB,
    [
        Rate(date(2027, 1, 1), None, Decimal("0.05"), Decimal("0.0875")),
        Rate(date(2028, 2, 20), None, Decimal("0.07"), Decimal("0.1125")),
        Rate(date(2027, 10, 15), "prod-eu", Decimal("0.04"), Decimal("0.08")),
    ],
)


# --------------------------------------------------------------------------- store and CLI


def add(batch: Batch, offset: int, value: bytes) -> None:
    try:
        batch.add_events(PARSER, value, 0)
    except Rejected as rejected:  # pragma: no cover - the data set has no bad record
        raise AssertionError(f"record {offset} rejected: {rejected}") from None
    batch.advance("usage", 0, offset)


def write_store(db: Path, batches: list[list[Event]]) -> None:
    """Each inner list is applied as its own batch, records of one to three events."""
    con = open_store(db)
    writer = StoreWriter(con)
    offset = 0
    rng = random.Random(7)
    for events in batches:
        batch = Batch()
        i = 0
        while i < len(events):
            size = rng.choice([1, 1, 1, 2, 3])
            chunk = events[i : i + size]
            value = chunk[0] if len(chunk) == 1 else chunk
            add(batch, offset, json.dumps(value).encode())
            offset += 1
            i += size
        writer.apply(batch)
    con.close()


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARGEBACK_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "chargeback", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def set_rates(cwd: Path, db: Path, runs: list[list[str]]) -> None:
    for args in runs:
        done = cli(cwd, "rates", "set", *args, "--db", str(db))
        assert done.returncode == 0, done.stderr


@dataclass
class World:
    dir: Path
    db: Path
    events: list[Event]

    def export(self, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return cli(self.dir, "export", "--db", str(self.db), "--out", str(out), *args)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    folder = tmp_path_factory.mktemp("export")
    db = folder / "chargeback.duckdb"
    first = generated_events() + crafted_events()
    random.Random(3).shuffle(first)
    write_store(db, [first[: len(first) // 2], first[len(first) // 2 :], late_events()])
    set_rates(folder, db, RATES_SET)
    return World(folder, db, first + late_events())


def exported(world: World, out: Path, *args: str) -> tuple[Path, list[list[str]]]:
    """Run an export that must succeed; its file and its rows."""
    done = world.export(out, *args)
    assert done.returncode == 0, f"export {args} failed: {done.stderr}"
    assert "Traceback" not in done.stderr
    path = Path(done.stdout.strip().splitlines()[-1])
    path = path if path.is_absolute() else world.dir / path
    assert path.parent.resolve() == out.resolve(), done.stdout
    with path.open(encoding="utf-8", newline="") as f:
        return path, list(csv.reader(f))


def assert_same(path: Path, actual: list[list[str]], expected: list[list[str]]) -> None:
    """Cell by cell, naming the file, the row and the column of the first difference."""
    assert actual[:1] == expected[:1], f"{path.name}: header {actual[:1]} != {expected[:1]}"
    header = expected[0]
    got_names = [row[0] for row in actual[1:]]
    want_names = [row[0] for row in expected[1:]]
    assert got_names == want_names, f"{path.name}: rows {got_names} != expected {want_names}"
    for got, want in zip(actual[1:], expected[1:], strict=True):
        assert len(got) == len(want), f"{path.name}: row {want[0]} has {len(got)} cells"
        for column, g, w in zip(header, got, want, strict=True):
            assert g == w, f"{path.name}: row {want[0]!r}, column {column!r}: {g!r} != {w!r}"


def row_of(table: list[list[str]], account: str) -> dict[str, str]:
    rows = [dict(zip(table[0], row, strict=True)) for row in table[1:] if row[0] == account]
    assert len(rows) == 1, f"{account!r} in {[r[0] for r in table]}"
    return rows[0]


# --------------------------------------------------------------------------- 0. the model itself


def test_the_model_knows_the_calendar() -> None:
    """Hand-worked §4 bounds, so the expected files rest on checked dates."""
    assert period_bounds("7D", AS_OF) == (date(2028, 3, 4), AS_OF, "day")
    assert period_bounds("30D", AS_OF) == (date(2028, 2, 10), AS_OF, "day")
    assert period_bounds("6M", AS_OF) == (date(2027, 10, 1), AS_OF, "month")
    assert period_bounds("12M", AS_OF) == (date(2027, 4, 1), AS_OF, "month")
    assert period_bounds("YTD", AS_OF) == (date(2028, 1, 1), AS_OF, "month")
    assert period_bounds("LM", AS_OF) == (date(2028, 2, 1), date(2028, 2, 29), "day")
    assert period_bounds("12M", date(2028, 1, 31))[0] == date(2027, 2, 1)
    assert period_bounds("LM", date(2028, 1, 1))[:2] == (date(2027, 12, 1), date(2027, 12, 31))
    assert len(bucket_starts(date(2028, 2, 1), date(2028, 2, 29), "day")) == 29
    assert len(bucket_starts(date(2027, 4, 1), AS_OF, "month")) == 12
    assert event_day({"timestamp": "2028-03-01T01:30:00+02:00"}) == date(2028, 2, 29)
    assert money(125_000_000) == "0.13" and money(4_999_999) == "0.00"


def test_the_store_holds_the_data_set(world: World) -> None:
    """The writer is not under test here, but the comparisons below rest on it."""
    con = open_store(world.db)
    try:
        rows = con.execute(
            "SELECT day, cluster, service_account, produced_bytes, consumed_bytes FROM usage_daily"
        ).fetchall()
        assert con.execute("SELECT count(*) FROM rejected_events").fetchone() == (0,)
    finally:
        con.close()
    stored = {(d, c, a): [int(p), int(q)] for d, c, a, p, q in rows}
    assert stored == dict(daily_usage(world.events))


# --------------------------------------------------------------------------- 1. golden files


@pytest.fixture(scope="module")
def golden_out(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("golden-out")


@pytest.mark.parametrize("period", PERIODS)
@pytest.mark.parametrize("tab", list(TABS))
def test_every_tab_and_period_matches_the_independent_computation(
    world: World, golden_out: Path, tab: str, period: str
) -> None:
    path, actual = exported(
        world, golden_out, "--tab", tab, "--period", period, "--as-of", AS_OF.isoformat()
    )
    name, expected = expected_table(world.events, RATES, tab, period)
    assert path.name == name
    assert_same(path, actual, expected)
    assert len(expected) > 3  # the comparison is not vacuous


def test_the_golden_folder_holds_only_the_final_files(world: World, golden_out: Path) -> None:
    """After the 18 exports above (run here too if the test is selected alone): no temp file."""
    names = set()
    for tab in TABS:
        for period in PERIODS:
            first, last, _ = period_bounds(period, AS_OF)
            names.add(file_name(tab, first, last))
            if not (golden_out / file_name(tab, first, last)).exists():
                exported(world, golden_out, "--tab", tab, "--period", period, "--as-of", str(AS_OF))
    assert sorted(p.name for p in golden_out.iterdir()) == sorted(names)


def test_hand_worked_cells(world: World, tmp_path: Path) -> None:
    """Rounding and truncation cases, with numbers worked out by hand."""
    as_of = ("--as-of", AS_OF.isoformat())
    _, six = exported(world, tmp_path, "--tab", "cost", "--period", "6M", *as_of)
    tiny = row_of(six, "tiny-user")  # 0.004 + 0.004
    assert (tiny["2027-11"], tiny["2027-12"], tiny["Total"]) == ("0.00", "0.00", "0.01")
    # 49,999,999 + 50,000,001 bytes on 3 and 4 Dec 2027, default cluster, global 0.05 per GB:
    # one bucket, one cluster, one entry, so one priced sum: 100,000,000 x 0.05 / 10^9 = 0.005
    # exactly (no truncation), half up 0.01. (Priced per day, as before, it was 0.002499999|95
    # + 0.002500000|05 truncated to 0.002499999 + 0.002500000 = 0.004999999 -> 0.00.)
    trunc = row_of(six, "trunc-probe")
    assert (trunc["2027-12"], trunc["Total"]) == ("0.01", "0.01")
    archive = row_of(six, "Archive-Batch")  # 3 GB fetched at 0.0875 on the default cluster
    assert (archive["2027-11"], archive["Total"]) == ("0.26", "0.26")  # 0.2625
    _, ytd = exported(world, tmp_path, "--tab", "cost", "--period", "YTD", *as_of)
    half = row_of(ytd, "half-up")  # 0.125 and 0.025
    assert (half["2028-01"], half["2028-02"], half["Total"]) == ("0.13", "0.03", "0.15")
    # split-probe, bucket 2028-02, default cluster: two entries in force, two priced sums.
    # 19 Feb at 0.05 per GB: 49,999,999 x 0.05 / 10^9 = 0.00249999995 -> 0.002499999
    # 20 Feb at 0.07 per GB: 35,714,287 x 0.07 / 10^9 = 0.00250000009 -> 0.002500000
    # sum 0.004999999 -> 0.00; the exact sum, 0.00500000004, would have shown 0.01.
    split = row_of(ytd, "split-probe")
    assert (split["2028-02"], split["Total"]) == ("0.00", "0.00")
    _, seven = exported(world, tmp_path, "--tab", "ingress", "--period", "7D", *as_of)
    assert [row[0] for row in seven[1:]].count("late-writer") == 1
    assert row_of(seven, "late-writer")["2028-03-05"] == str(12 * GB)  # 5 GB + 7 GB late
    assert all(row[seven[0].index("2028-03-07")] == "0" for row in seven[1:])
    names = {row[0] for row in seven[1:]}
    assert "zero-user" not in names and "after-user" not in names and "Archive-Batch" not in names
    _, lm = exported(world, tmp_path, "--tab", "egress", "--period", "LM", *as_of)
    assert row_of(lm, "late-writer")["2028-02-29"] == str(2 * GB)
    _, lm_in = exported(world, tmp_path, "--tab", "ingress", "--period", "LM", *as_of)
    assert row_of(lm_in, "late-writer")["2028-02-29"] == "1234567891"


# --------------------------------------------------------------------------- 2. rates


def test_a_rate_change_mid_period_prices_the_days_before_and_after_differently(
    world: World, tmp_path: Path
) -> None:
    _, lm = exported(
        world, tmp_path, "--tab", "cost", "--period", "LM", "--as-of", AS_OF.isoformat()
    )
    probe = row_of(lm, "rate-probe")
    # 19th: 10 GB x 0.05 + 10 GB x 0.0875 = 0.50 + 0.875 = 1.375 -> 1.38
    # 20th: 10 GB x 0.07 + 10 GB x 0.1125 = 0.70 + 1.125 = 1.825 -> 1.83
    assert (probe["2028-02-19"], probe["2028-02-20"], probe["Total"]) == ("1.38", "1.83", "3.20")


def test_a_cluster_rate_prices_that_cluster_only(world: World, tmp_path: Path) -> None:
    as_of = ("--as-of", AS_OF.isoformat())
    cells = {}
    for cluster in ("prod-eu", "prod-us"):
        out = tmp_path / cluster
        path, table = exported(
            world, out, "--tab", "cost", "--period", "7D", "--cluster", cluster, *as_of
        )
        _, expected = expected_table(world.events, RATES, "cost", "7D", cluster=cluster)
        assert_same(path, table, expected)
        cells[cluster] = row_of(table, "twin")["2028-03-05"]
    # the same 10 GB produced on both clusters: 0.04 on prod-eu, the global 0.07 on prod-us
    assert cells == {"prod-eu": "0.40", "prod-us": "0.70"}
    _, both = exported(world, tmp_path / "all", "--tab", "cost", "--period", "7D", *as_of)
    assert row_of(both, "twin")["2028-03-05"] == "1.10"
    # before its date (2027-10-15) prod-eu pays the global price: 0.50 + 0.40
    _, six = exported(
        world, tmp_path / "6m", "--tab", "cost", "--period", "6M", "--cluster", "prod-eu", *as_of
    )
    assert row_of(six, "twin")["2027-10"] == "0.90"


def test_gib_and_gb_differ_by_exactly_2_to_the_30_over_10_to_the_9(tmp_path: Path) -> None:
    db = tmp_path / "chargeback.duckdb"
    n = GIB * 5**9  # a whole number of GB and of GiB: 2,097,152 GB = 1,953,125 GiB
    write_store(
        db,
        [
            [
                event("gib-probe", "produce", n, "2028-03-09T12:00:00Z", None),
                event("gib-probe", "fetch", n, "2028-03-09T12:00:00Z", "prod-eu"),
            ]
        ],
    )
    world = World(tmp_path, db, [])
    rate = ["--ingress", "0.01", "--egress", "0.02", "--from", "2028-01-01"]
    set_rates(tmp_path, db, [rate])
    args = ("--tab", "cost", "--period", "7D", "--as-of", AS_OF.isoformat())
    _, gb = exported(world, tmp_path / "gb", *args)
    # The unit is the whole file's: `rates set` refuses to change it under existing entries
    # (it would reprice the past), so the GiB file is a new one.
    (db.parent / "rates.toml").unlink()
    set_rates(tmp_path, db, [[*rate, "--unit", "gib"]])
    _, gib = exported(world, tmp_path / "gib", *args)
    gb_row, gib_row = row_of(gb, "gib-probe"), row_of(gib, "gib-probe")
    # 2,097,152 GB x (0.01 + 0.02) and 1,953,125 GiB x (0.01 + 0.02)
    assert (gb_row["2028-03-09"], gb_row["Total"]) == ("62914.56", "62914.56")
    assert (gib_row["2028-03-09"], gib_row["Total"]) == ("58593.75", "58593.75")
    assert Decimal(gb_row["Total"]) == Decimal(gib_row["Total"]) * GIB / GB
    for tab in ("ingress", "egress"):  # bytes do not depend on the unit
        _, table = exported(world, tmp_path / tab, "--tab", tab, "--period", "7D", *args[2:])
        assert row_of(table, "gib-probe")["Total"] == str(n)


def test_monthly_totals_give_the_same_cells_as_the_daily_rows(world: World) -> None:
    """The cells query reads whole months from usage_monthly_totals and the rest from
    usage_totals; on this data (a global change on 2028-02-20, a prod-eu entry from 2027-10-15,
    partial first and last months) it must give exactly the cells of the daily rows alone."""
    view = open_reader(world.db)
    try:
        sums = view.con.execute(
            "SELECT count(*) FROM usage_monthly_totals AS m FULL JOIN ("
            " SELECT CAST(date_trunc('month', day) AS DATE) AS month, series_id,"
            " sum(produced_bytes) AS p, sum(consumed_bytes) AS c, sum(event_count) AS n"
            " FROM usage_totals GROUP BY ALL) AS d USING (month, series_id)"
            " WHERE m.produced_bytes IS DISTINCT FROM d.p OR m.consumed_bytes IS DISTINCT FROM d.c"
            " OR m.event_count IS DISTINCT FROM d.n"
        ).fetchone()
        assert sums == (0,)  # the writer kept both tables in step
        periods = [resolve_period(name, AS_OF) for name in ("6M", "12M", "YTD", "LM", "30D")] + [
            custom_period(date(2027, 1, 1), date(2028, 3, 12), "month"),
            custom_period(date(2027, 10, 16), date(2028, 2, 19), "month"),
        ]
        filters = ((None, None), ("prod-eu", None), ("prod-us", "s"), (None, "-"))
        for period, tab, (cluster, text) in itertools.product(periods, Tab, filters):
            mixed = view.con.execute(
                *cells_query(period, view.rates, tab, cluster, text, exact=True)
            )
            rows = sorted(mixed.fetchall())
            daily = view.con.execute(
                *cells_query(
                    period, view.rates, tab, cluster, text, monthly_totals=False, exact=True
                )
            )
            assert rows == sorted(daily.fetchall()), (period, tab, cluster, text)
            assert rows, (period, tab, cluster, text)
        plan = read_plan(periods[1], view.rates)  # 12M: both kinds of piece
        assert any(p.whole_month for p in plan) and not all(p.whole_month for p in plan)
        # February 2028 (global change on the 20th) is read as days, cut at the 20th;
        # October 2027 too for prod-eu (its entry from the 15th), not for prod-us.
        feb = [(p.first.day, p.last.day) for p in plan if p.first.month == 2]
        assert feb == [(1, 19), (20, 29)]
        assert not any(p.whole_month for p in plan if p.first.month == 10)
        us = read_plan(periods[1], view.rates, "prod-us")
        assert [p.whole_month for p in us if p.first.month == 10] == [True]
    finally:
        view.close()


# --------------------------------------------------------------------------- 3. filter and sort


FILTER_SORT_CASES: list[tuple[str, str, dict[str, str]]] = [
    ("ingress", "12M", {"filter_text": "SVC"}),
    ("cost", "12M", {"filter_text": "bAtCh"}),
    ("egress", "30D", {"filter_text": "-"}),
    ("cost", "30D", {"cluster": "prod-us"}),
    ("ingress", "6M", {"cluster": "default", "filter_text": "E"}),
    ("cost", "6M", {"sort": "Total:asc"}),
    ("ingress", "YTD", {"sort": "Service Account:desc"}),
    ("egress", "12M", {"sort": "Service Account:asc"}),
    ("cost", "30D", {"sort": "2028-03-01:desc"}),
    ("ingress", "30D", {"sort": "2028-03-07:asc"}),  # all zero: every row ties, names ascending
    ("egress", "YTD", {"sort": "2028-03:asc"}),
    ("cost", "LM", {"sort": "2028-02-29:desc", "cluster": "prod-us"}),
]


@pytest.mark.parametrize(("tab", "period", "options"), FILTER_SORT_CASES)
def test_filters_and_sorting_match_the_computation(
    world: World, tmp_path: Path, tab: str, period: str, options: dict[str, str]
) -> None:
    flags = {"filter_text": "--filter", "cluster": "--cluster", "sort": "--sort"}
    args = [a for key, value in options.items() for a in (flags[key], value)]
    path, actual = exported(
        world, tmp_path, "--tab", tab, "--period", period, "--as-of", AS_OF.isoformat(), *args
    )
    name, expected = expected_table(
        world.events,
        RATES,
        tab,
        period,
        filter_text=options.get("filter_text"),
        cluster=options.get("cluster"),
        sort=options.get("sort", "Total:desc"),
    )
    assert path.name == name
    assert_same(path, actual, expected)
    assert len(expected) > 1  # at least one row


def test_ties_are_broken_by_name_ascending_in_both_directions(world: World, tmp_path: Path) -> None:
    for direction in ("desc", "asc"):
        _, table = exported(
            world,
            tmp_path / direction,
            *("--tab", "cost", "--period", "12M", "--as-of", AS_OF.isoformat()),
            *("--sort", f"Total:{direction}", "--filter", "tie-"),
        )
        assert [row[0] for row in table[1:]] == ["tie-a", "tie-b"]
        assert table[1][1:] == table[2][1:]


def test_a_filter_matching_nothing_gives_a_header_only_file(world: World, tmp_path: Path) -> None:
    path, table = exported(
        world,
        tmp_path,
        *("--tab", "egress", "--period", "7D", "--as-of", AS_OF.isoformat()),
        *("--filter", "no such account"),
    )
    days = [(date(2028, 3, 4) + timedelta(days=i)).isoformat() for i in range(7)]
    assert table == [["Service Account", *days, "Total"]]
    assert path.name == "Chargeback_2028-03-04_2028-03-10_Egress.csv"


def test_names_a_spreadsheet_would_run_as_formulas_are_written_as_text(tmp_path: Path) -> None:
    db, out = tmp_path / "chargeback.duckdb", tmp_path / "out"
    stamp = "2028-03-10T12:00:00Z"
    names = ["=1+1", "+cmd", "-x", "@sum(A1)", "plain", "a=b"]
    events = [
        {"service_account": name, "type": "produce", "bytes": 10 + i, "timestamp": stamp}
        for i, name in enumerate(names)
    ]
    write_store(db, [events])
    done = World(tmp_path, db, events).export(
        out, "--tab", "ingress", "--period", "7D", "--as-of", "2028-03-10", "--sort", "Total:asc"
    )
    assert done.returncode == 0, done.stderr
    lines = (out / "Chargeback_2028-03-04_2028-03-10_Ingress.csv").read_text().splitlines()
    # Total ascending: the byte counts 10..15 in the order the names were sent
    assert lines[1:] == [
        "'=1+1,0,0,0,0,0,0,10,10",
        "'+cmd,0,0,0,0,0,0,11,11",
        "'-x,0,0,0,0,0,0,12,12",
        "'@sum(A1),0,0,0,0,0,0,13,13",
        "plain,0,0,0,0,0,0,14,14",
        "a=b,0,0,0,0,0,0,15,15",
    ]


# --------------------------------------------------------------------------- 4. errors


def assert_one_line_error(done: subprocess.CompletedProcess[str], code: int, out: Path) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code, f"exit {done.returncode}, stderr: {done.stderr}"
    assert len(lines) == 1, f"expected one stderr line, got: {done.stderr!r}"
    assert "Traceback" not in done.stderr
    assert not out.exists() or list(out.iterdir()) == [], list(out.iterdir())


BAD_USAGE: list[tuple[str, ...]] = [
    ("--tab", "overall", "--period", "7D", "--as-of", "2028-03-10"),
    ("--tab", "cost", "--period", "5D", "--as-of", "2028-03-10"),
    ("--tab", "cost", "--period", "7D", "--as-of", "2026-02-30"),
    ("--tab", "cost", "--period", "7D", "--as-of", "yesterday"),
    ("--tab", "cost", "--period", "7D", "--as-of", "2028-03-10", "--sort", "Owner:desc"),
    ("--tab", "cost", "--period", "7D", "--as-of", "2028-03-10", "--sort", "2028-03-03:desc"),
    ("--tab", "cost", "--period", "7D", "--as-of", "2028-03-10", "--sort", "Total:up"),
    ("--tab", "cost", "--from", "2028-01-01"),
]


@pytest.mark.parametrize("args", BAD_USAGE, ids=lambda a: " ".join(a))
def test_bad_usage_is_one_line_exit_2_and_no_file(
    world: World, tmp_path: Path, args: tuple[str, ...]
) -> None:
    out = tmp_path / "out"
    assert_one_line_error(world.export(out, *args), 2, out)


def test_a_store_that_does_not_exist_is_refused_and_not_created(tmp_path: Path) -> None:
    db, out = tmp_path / "missing" / "chargeback.duckdb", tmp_path / "out"
    world = World(tmp_path, db, [])
    done = world.export(out, "--tab", "cost", "--period", "7D", "--as-of", "2028-03-10")
    assert_one_line_error(done, 2, out)
    assert not db.exists()


def test_a_file_that_is_not_a_duckdb_store_is_refused_and_left_alone(tmp_path: Path) -> None:
    db, out = tmp_path / "chargeback.duckdb", tmp_path / "out"
    junk = b"these are not the bytes of a DuckDB database\n" * 200
    db.write_bytes(junk)
    done = World(tmp_path, db, []).export(
        out, "--tab", "cost", "--period", "7D", "--as-of", "2028-03-10"
    )
    assert_one_line_error(done, 2, out)
    assert "is not a DuckDB database" in done.stderr
    assert db.read_bytes() == junk
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chargeback.duckdb"]


# --------------------------------------------------------------------------- 5. atomic write


def test_repeated_exports_leave_only_the_final_files(world: World, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for _ in range(2):  # the second run replaces the first files
        for tab in TABS:
            exported(world, out, "--tab", tab, "--period", "YTD", "--as-of", AS_OF.isoformat())
    assert sorted(p.name for p in out.iterdir()) == [
        "Chargeback_2028-01-01_2028-03-10_Egress.csv",
        "Chargeback_2028-01-01_2028-03-10_Ingress.csv",
        "Chargeback_2028-01-01_2028-03-10_OverallCost.csv",
    ]
