"""Export latency at production size: publishing the read copy and every tab and period CSV.

    .venv/bin/python bench/export_bench.py [--accounts 10000] [--clusters 3] [--days 730]
                                     [--as-of YYYY-MM-DD] [--repeats 3] [--keep DIR]
                                     [--out docs/benchmarks.md]

Builds a large store straight in DuckDB (no Kafka): one series per (account, cluster) and a
`usage_totals` row for every (day, series) over --days days ending at --as-of, with heavy-tailed
hash-based byte counts, plus a rates file with two global entries and one per-cluster override.
Then times `views.publish.publish` (checkpoint + file copy, as the service does it) against
`COPY FROM DATABASE` into a fresh file, and every export as `export.job.run_export` runs it
(open_reader on the published copy + query + CSV), split into opening the reader, the cells SQL,
the Python part and the CSV write; the slowest export's cells query is profiled by DuckDB
operator. Appends the figures, with the machine they were measured on, to the --out file.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar, cast

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script: bench/ is sys.path[0], the project is not

import duckdb  # noqa: E402
import ingest as ingest_bench  # noqa: E402  (bench/ is on sys.path when run as a script)

from export.csvfile import write_csv  # noqa: E402
from export.job import ExportRequest, query, resolve, run_export  # noqa: E402
from export.periods import PERIOD_NAMES  # noqa: E402
from export.table import ChargebackTable, Tab, cells_query  # noqa: E402
from views.publish import StoreFile, copy_path_for, publish, sql_literal  # noqa: E402
from views.rates import DEFAULT_RATES, rates_path_for, save_rates, set_rate  # noqa: E402
from views.reader import ReadView, open_reader  # noqa: E402
from views.store import open_store  # noqa: E402

SEED = 20250101
TARGET_SECONDS = 1.0  # the aim for one export, end to end
CLUSTER_NAMES = ("prod-us", "prod-eu", "prod-ap")
DAYS_PER_CHUNK = 73  # the fact table is inserted in chunks of days, for progress lines

T = TypeVar("T")

SERIES_SQL = """
INSERT INTO series
SELECT i AS series_id,
       $clusters[(i % $n_clusters) + 1] AS cluster,
       printf('sa-%05d', i // $n_clusters) AS service_account,
       '' AS client_id,
       '' AS topic
FROM range($n_series) AS t(i)
"""

# Deterministic pseudo-random numbers in [0, 1) from hash(); per account a Pareto scale (alpha
# 1.1: a few accounts dominate), per series a share of that account's traffic and a consumer
# fan-out, per day noise and a weekend dip. Rows come in (day, series_id) order, the key's order.
TOTALS_SQL = """
INSERT INTO usage_totals
WITH keys AS (
    SELECT $first_day + CAST(i // $n_series AS INTEGER) AS day,
           CAST(i % $n_series AS INTEGER) AS series_id
    FROM range($start, $stop) AS t(i)
),
draws AS (
    SELECT day, series_id,
           hash(series_id // $n_clusters, $seed) / 18446744073709551616.0 AS u_account,
           hash(series_id, $seed + 1) / 18446744073709551616.0 AS u_share,
           hash(series_id, $seed + 2) / 18446744073709551616.0 AS u_fanout,
           hash(day, series_id, $seed + 3) / 18446744073709551616.0 AS u_day,
           CASE WHEN isodow(day) >= 6 THEN 0.6 ELSE 1.0 END AS weekday
    FROM keys
),
bytes AS (
    SELECT day, series_id,
           1e7 * pow(1 - u_account, -1 / 1.1) * (0.05 + pow(u_share, 2))
               * (0.5 + u_day) * weekday AS produced,
           0.5 + 3 * u_fanout AS fanout
    FROM draws
)
SELECT day, series_id,
       CAST(round(produced) AS HUGEINT) AS produced_bytes,
       CAST(round(produced * fanout) AS HUGEINT) AS consumed_bytes,
       CAST(greatest(1, round(produced / 2000)) AS BIGINT) AS event_count
FROM bytes
"""

# One batch as the service would write it: the last day's totals for every series, upserted.
BATCH_SQL = """
INSERT INTO usage_totals
SELECT $day, series_id, 1000, 3000, 1 FROM series
ON CONFLICT (day, series_id) DO UPDATE SET
    produced_bytes = produced_bytes + excluded.produced_bytes,
    consumed_bytes = consumed_bytes + excluded.consumed_bytes,
    event_count    = event_count + excluded.event_count
"""
# ... and the same added to the month's totals, in the same transaction, as the writer does.
BATCH_MONTHLY_SQL = """
INSERT INTO usage_monthly_totals
SELECT CAST(date_trunc('month', CAST($day AS DATE)) AS DATE), series_id, 1000, 3000, 1 FROM series
ON CONFLICT (month, series_id) DO UPDATE SET
    produced_bytes = produced_bytes + excluded.produced_bytes,
    consumed_bytes = consumed_bytes + excluded.consumed_bytes,
    event_count    = event_count + excluded.event_count
"""


def write_batch(con: duckdb.DuckDBPyConnection, day: date) -> None:
    con.execute("BEGIN TRANSACTION")
    con.execute(BATCH_SQL, {"day": day})
    con.execute(BATCH_MONTHLY_SQL, {"day": day})
    con.execute("COMMIT")


@dataclass
class Timings:
    samples: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    def text(self) -> str:
        return f"{fmt(self.median)} / {fmt(self.max)}"


@dataclass
class Build:
    seconds: float
    rows: int
    series: int
    first_day: date
    store_bytes: int
    rates: str


@dataclass
class Publishing:
    after_batch: Timings  # a 1-day upsert of every series, then publish
    unchanged: Timings  # nothing written since the last copy: checkpoint is a no-op
    batch: Timings  # the upsert itself, for scale
    copy_bytes: int
    naive_seconds: float
    naive_bytes: int


@dataclass
class Case:
    label: str
    tab: Tab
    request: ExportRequest
    buckets: int = 0
    rows: int = 0
    cells: int = 0
    csv_bytes: int = 0
    end_to_end: Timings = field(default_factory=Timings)
    open_reader: Timings = field(default_factory=Timings)
    query: Timings = field(default_factory=Timings)  # export.job.query: SQL + pivot + sort
    pivot: Timings = field(default_factory=Timings)  # query's Python part, on fetched rows
    csv: Timings = field(default_factory=Timings)  # write_csv: render + fsync + rename
    query_derived: bool = False  # query = end to end - open_reader - CSV (too slow to repeat)

    @property
    def sql(self) -> float:
        return max(0.0, self.query.median - self.pivot.median)


@dataclass
class Profile:
    label: str
    operators: list[tuple[str, float, int]]  # name, seconds, rows out; slowest first
    latency: float


def main() -> int:
    args = parse_args()
    if args.keep is not None:
        work = args.keep.resolve()
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="chargeback-bench-export-"))
    db = work / "store" / "chargeback.duckdb"
    built_file = work / "build.json"
    try:
        if built_file.exists():  # a store kept by an earlier run with --keep: reuse it
            built = Build(**json.loads(built_file.read_text(encoding="utf-8")))
            built.first_day = date.fromisoformat(str(built.first_day))
            if (
                built.series != args.accounts * args.clusters
                or built.rows != built.series * args.days
            ):
                raise SystemExit(f"{db} was built with other --accounts/--clusters/--days")
            print(f"reusing {db} (built by an earlier run)", flush=True)
        else:
            if db.exists():
                raise SystemExit(f"{db} exists without {built_file.name}: give an empty --keep")
            built = build(args, db)
            built_file.write_text(json.dumps({**vars(built), "first_day": str(built.first_day)}))
        published = time_publishing(args, db)
        cases = time_exports(args, db, work / "exports")
        profile = profile_slowest(db, cases)
    except BaseException:
        print(f"kept {work} for a look", flush=True)
        raise
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept {work}", flush=True)
    section = report(args, built, published, cases, profile)
    print(section)
    append_section(args.out, section)
    print(f"appended to {args.out}")
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--clusters", type=int, default=3)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--as-of", type=date.fromisoformat, default=datetime.now(UTC).date())
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measure")
    parser.add_argument(
        "--keep", type=Path, default=None, help="build here and keep it (reused if already built)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args()
    if args.accounts < 1 or args.clusters < 1 or args.days < 1 or args.repeats < 1:
        parser.error("--accounts, --clusters, --days and --repeats must be at least 1")
    return args


def timed(action: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def cluster_names(count: int) -> list[str]:
    return [*CLUSTER_NAMES, *(f"cluster-{n}" for n in range(4, count + 1))][:count]


# --- 1. the store ------------------------------------------------------------------------------


def build(args: argparse.Namespace, db: Path) -> Build:
    clusters = cluster_names(args.clusters)
    n_series = args.accounts * args.clusters
    first_day = args.as_of - timedelta(days=args.days - 1)
    total = n_series * args.days
    print(f"building {db}: {n_series:,} series x {args.days} days = {total:,} rows", flush=True)
    started = time.perf_counter()
    con = open_store(db)
    try:
        con.execute(
            SERIES_SQL, {"clusters": clusters, "n_clusters": args.clusters, "n_series": n_series}
        )
        for day0 in range(0, args.days, DAYS_PER_CHUNK):
            day1 = min(args.days, day0 + DAYS_PER_CHUNK)
            params = {
                "first_day": first_day,
                "n_series": n_series,
                "n_clusters": args.clusters,
                "seed": SEED,
                "start": day0 * n_series,
                "stop": day1 * n_series,
            }
            con.execute(TOTALS_SQL, params)
            print(f"  days {day1}/{args.days} ({time.perf_counter() - started:.1f} s)", flush=True)
        # The monthly totals the service's writer keeps beside the daily ones.
        con.execute(
            "INSERT INTO usage_monthly_totals SELECT CAST(date_trunc('month', day) AS DATE) AS m,"
            " series_id, sum(produced_bytes), sum(consumed_bytes), sum(event_count)"
            " FROM usage_totals GROUP BY m, series_id ORDER BY m, series_id"
        )
        con.execute("CHECKPOINT")
        row = con.execute("SELECT count(*) FROM usage_totals").fetchone()
    finally:
        con.close()
    seconds = time.perf_counter() - started
    rows = int(row[0]) if row else 0
    if rows != total:
        raise SystemExit(f"the store holds {rows:,} rows, not {total:,}")
    rates = write_rates(db, first_day, args.as_of, clusters)
    print(f"built in {seconds:.1f} s, {db.stat().st_size / 2**20:,.0f} MiB", flush=True)
    return Build(seconds, rows, n_series, first_day, db.stat().st_size, rates)


def write_rates(db: Path, first_day: date, as_of: date, clusters: list[str]) -> str:
    """Two global entries (a change mid-month ~6 months back) and one per-cluster override."""
    change = as_of - timedelta(days=170)
    override = as_of - timedelta(days=80)
    book = set_rate(DEFAULT_RATES, Decimal("0.05"), Decimal("0.09"), first_day)
    book = set_rate(book, Decimal("0.045"), Decimal("0.085"), change)
    book = set_rate(book, Decimal("0.04"), Decimal("0.07"), override, cluster=clusters[-1])
    save_rates(rates_path_for(db), book)
    return f"global from {first_day} and from {change}, {clusters[-1]} override from {override}"


# --- 2. publishing the read copy ---------------------------------------------------------------


def time_publishing(args: argparse.Namespace, db: Path) -> Publishing:
    target = copy_path_for(db)
    lock = threading.Lock()
    con = open_store(db)
    store = StoreFile(db)
    result = Publishing(Timings(), Timings(), Timings(), 0, 0.0, 0)
    try:
        publish(con, store, target, lock)  # the service publishes at once on start
        for n in range(args.repeats + 2):
            _, seconds = timed(lambda: write_batch(con, args.as_of))
            result.batch.add(seconds)
            _, seconds = timed(lambda: publish(con, store, target, lock))
            result.after_batch.add(seconds)
            print(f"  publish after a batch #{n + 1}: {seconds:.3f} s", flush=True)
        for n in range(args.repeats + 2):
            _, seconds = timed(lambda: publish(con, store, target, lock))
            result.unchanged.add(seconds)
            print(f"  publish, nothing new #{n + 1}: {seconds:.3f} s", flush=True)
        result.copy_bytes = target.stat().st_size
        naive = db.with_name("naive.duckdb")
        row = con.execute("SELECT current_database()").fetchone()
        source = str(row[0]) if row else db.stem

        def copy_database() -> None:
            con.execute(f"ATTACH {sql_literal(str(naive))} AS naive")
            con.execute(f'COPY FROM DATABASE "{source}" TO naive')
            con.execute("DETACH naive")

        print("  COPY FROM DATABASE into a fresh file ...", flush=True)
        _, result.naive_seconds = timed(copy_database)
        result.naive_bytes = naive.stat().st_size
        print(f"  COPY FROM DATABASE: {result.naive_seconds:.1f} s", flush=True)
        naive.unlink()
        publish(con, store, target, lock)  # the copy ends equal to the store, as on stop
    finally:
        con.close()
        store.close()
    # Closing the writer may touch the store file; the reader then prefers the store (no service
    # holds it). The copy holds the same data: date it after the store so readers take the copy,
    # as they do while the service runs.
    os.utime(target)
    return result


# --- 3. exports --------------------------------------------------------------------------------


def export_cases(args: argparse.Namespace, out: Path, db: Path) -> list[Case]:
    cases = []
    custom_first = date(args.as_of.year - 2, args.as_of.month, 1)
    custom_first = (custom_first.replace(day=28) + timedelta(days=4)).replace(day=1)  # 23 back
    for tab in Tab:
        for name in PERIOD_NAMES:
            request = ExportRequest(tab, period=name, as_of=args.as_of, out=out, db=db)
            cases.append(Case(f"{tab.id} {name}", tab, request))
        request = ExportRequest(
            tab, first=custom_first, last=args.as_of, bucket="month", out=out, db=db
        )
        cases.append(Case(f"{tab.id} custom 24 months", tab, request))
    return cases


SLOW_SECONDS = 20.0  # an export's end-to-end runs stop once they have taken this long together


class CachedCells:
    """Stands in for the reader's connection: returns rows already fetched, so build_table's
    Python part (rows, rounding of totals, sort) can be timed without the SQL."""

    def __init__(self, cells: list[tuple[Any, ...]]) -> None:
        self.cells = cells

    def execute(self, sql: str, parameters: object = None) -> "CachedCells":
        return self

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.cells


def cells_of(table: ChargebackTable) -> list[tuple[Any, ...]]:
    """The rows of the query the table was built from (export/sql/chargeback_cells.sql)."""
    rows: list[tuple[Any, ...]] = []
    for row in table.rows:
        total = row.exact_total
        raw = int(total.scaleb(9)) if isinstance(total, Decimal) else total
        rows.append((row.service_account, row.text, None, raw))
    return rows


def time_exports(args: argparse.Namespace, db: Path, out: Path) -> list[Case]:
    cases = export_cases(args, out, db)
    copy = copy_path_for(db)
    for case in cases:
        request = case.request
        for _ in range(args.repeats):
            result, seconds = timed(lambda: run_export(request))  # noqa: B023
            if result.source != copy:
                raise SystemExit(f"the export read {result.source}, not the published copy")
            case.end_to_end.add(seconds)
            if sum(case.end_to_end.samples) > SLOW_SECONDS:
                break
        table = result.table
        cells = cells_of(table)
        stand_in = ReadView(
            cast(duckdb.DuckDBPyConnection, CachedCells(cells)), copy, result_time(), table.rates
        )
        for _ in range(args.repeats):
            view, seconds = timed(lambda: open_reader(request.db))  # noqa: B023
            case.open_reader.add(seconds)
            if case.end_to_end.median < SLOW_SECONDS / args.repeats:
                try:
                    _, seconds = timed(lambda: query(view, request, resolve(request)))  # noqa: B023
                    case.query.add(seconds)
                finally:
                    view.close()
            else:
                view.close()
            _, seconds = timed(lambda: query(stand_in, request, resolve(request)))  # noqa: B023
            case.pivot.add(seconds)
            path, seconds = timed(lambda: write_csv(table, request.out))  # noqa: B023
            case.csv.add(seconds)
        if not case.query.samples:  # too slow to run again: what run_export spent on it
            case.query_derived = True
            case.query.add(case.end_to_end.median - case.open_reader.median - case.csv.median)
        case.buckets = len(table.period.buckets())
        case.rows = len(table.rows)
        case.cells = len(cells) * len(table.period.buckets())
        case.csv_bytes = path.stat().st_size
        print(
            f"  {case.label:<24} end to end {case.end_to_end.text()}  open"
            f" {fmt(case.open_reader.median)}  query {fmt(case.query.median)}"
            f"{' (derived)' if case.query_derived else ''}  of which pivot"
            f" {fmt(case.pivot.median)}  CSV {fmt(case.csv.median)}  ({case.rows:,} rows x"
            f" {case.buckets} buckets)",
            flush=True,
        )
    return cases


def result_time() -> datetime:
    return datetime.now(UTC)


def profile_slowest(db: Path, cases: list[Case]) -> Profile:
    """Where the slowest export's cells query spends its time, by DuckDB operator."""
    case = max(cases, key=lambda c: c.end_to_end.median)
    request = case.request
    period = resolve(request)
    print(f"profiling the cells query of {case.label}", flush=True)
    view = open_reader(request.db)
    try:
        profile_file = db.parent / "profile.json"
        view.con.execute("SET enable_profiling = 'json'")
        view.con.execute(f"SET profiling_output = {sql_literal(str(profile_file))}")
        view.con.execute(*cells_query(period, view.rates, case.tab)).fetchall()
        view.con.execute("PRAGMA disable_profiling")
        tree = json.loads(profile_file.read_text(encoding="utf-8"))
    finally:
        view.close()
    operators: list[tuple[str, float, int]] = []
    walk_profile(tree, operators)
    operators.sort(key=lambda op: op[1], reverse=True)
    return Profile(case.label, operators[:8], float(tree.get("latency", 0.0)))


def walk_profile(node: dict[str, Any], out: list[tuple[str, float, int]]) -> None:
    name = node.get("operator_name") or node.get("operator_type")
    if name:
        extra = node.get("extra_info") or {}
        detail = ""
        if isinstance(extra, dict):
            for key in ("Join Type", "Aggregates", "Table", "Function", "Projections"):
                if key in extra:
                    detail = f" {key.lower()}={str(extra[key])[:40]}"
                    break
        out.append(
            (
                f"{str(name).strip()}{detail}",
                float(node.get("operator_timing", 0.0)),
                int(node.get("operator_cardinality", 0)),
            )
        )
    for child in node.get("children", []):
        walk_profile(child, out)


# --- 4. the report -----------------------------------------------------------------------------


def fmt(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


def report(
    args: argparse.Namespace,
    built: Build,
    published: Publishing,
    cases: list[Case],
    profile: Profile,
) -> str:
    n = args.repeats
    over = [c for c in cases if c.end_to_end.median > TARGET_SECONDS]
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — exports: {args.accounts:,} accounts x"
        f" {args.clusters} clusters x {args.days} days",
        "",
        "From `bench/export_bench.py` (re-run: `.venv/bin/python bench/export_bench.py`)."
        " The store is built straight in DuckDB, no Kafka: one series per (account, cluster),"
        " one `usage_totals` row per (day, series), heavy-tailed hash-based bytes"
        " (Pareto accounts). Timings are wall time,"
        f" median / max of {n} runs (publishing: {n + 2}), page cache warm.",
        "",
        f"- Machine: {ingest_bench.machine()}",
        f"- Python {platform.python_version()}, duckdb {duckdb.__version__}",
        f"- Store: {built.rows:,} rows in `usage_totals`, {built.series:,} series,"
        f" {built.first_day} .. {args.as_of}; built in {built.seconds:.1f} s"
        f" ({built.rows / built.seconds:,.0f} rows/s); file {mib(built.store_bytes)}",
        f"- Rates: {built.rates}",
        "",
        "| publishing the read copy | time | file |",
        "|---|---|---|",
        f"| `publish()` after a batch ({built.series:,}-row upsert of one day) |"
        f" {published.after_batch.text()} | {mib(published.copy_bytes)} |",
        f"| `publish()` with nothing new (checkpoint no-op + copy) |"
        f" {published.unchanged.text()} | {mib(published.copy_bytes)} |",
        f"| the batch itself (for scale, not in the above) | {published.batch.text()} | |",
        f"| naive: `COPY FROM DATABASE` into a fresh file (once) |"
        f" {fmt(published.naive_seconds)} | {mib(published.naive_bytes)} |",
        "",
        "Exports, as `run_export` runs them on the published copy (runs stop once an export has"
        f" taken {SLOW_SECONDS:.0f} s), then split: opening the reader (`open_reader`: attach +"
        " views + rates), `query()` alone on an open reader (* = too slow to repeat: end to end"
        " minus open and CSV), of which the Python part (`build_table` on already-fetched"
        " rows) and so the SQL, and `write_csv` (render + fsync + rename). Medians.",
        "",
        "| export | buckets | rows | end to end (median / max, runs) | open_reader | query |"
        " SQL | Python | CSV | CSV size |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        lines.append(
            f"| {c.label} | {c.buckets} | {c.rows:,} | {c.end_to_end.text()},"
            f" {len(c.end_to_end.samples)} | {fmt(c.open_reader.median)} |"
            f" {fmt(c.query.median)}{'*' if c.query_derived else ''} | {fmt(c.sql)} |"
            f" {fmt(c.pivot.median)} | {fmt(c.csv.median)} | {c.csv_bytes / 1024:,.0f} KiB |"
        )
    lines += [
        "",
        f"Above the {TARGET_SECONDS:.0f} s aim: "
        + (", ".join(f"{c.label} ({fmt(c.end_to_end.median)})" for c in over) or "none")
        + ".",
        "",
        f"Profile of the slowest export ({profile.label}): DuckDB operators of the cells query"
        f" (query latency {fmt(profile.latency)}), slowest first:",
        "",
        "| operator | time | rows out |",
        "|---|---|---|",
        *(f"| {name} | {fmt(secs)} | {rows:,} |" for name, secs, rows in profile.operators),
        "",
    ]
    return "\n".join(lines)


def append_section(out: Path, section: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    text = out.read_text(encoding="utf-8") if out.exists() else "# Benchmarks\n"
    out.write_text(text.rstrip("\n") + "\n\n" + section, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
