"""The benchmark suite: ingest beside the raw client and a Faust pipeline, then the exports.

    .venv/bin/python bench/suite.py [--events 5000000] [--partitions 4]
                                    [--bootstrap-servers HOST:PORT] [--skip-faust]
                                    [--skip-exports] [--export-store DIR] [--out docs/benchmarks.md]

In one run, on the project's local broker (started in a temporary dir unless --bootstrap-servers
is given): fills a fresh topic with N realistic events (traffic.model, keyed by account, with the
demo's 1% late and 0.1% bad records); then, one after the other, each as its own process from a
fresh consumer group and (where there is one) a fresh store:

- raw: bench/raw_consumer.py, a plain confluent-kafka `consume()` loop reading `.value()`;
- ours: `chargeback ingest`, from process start until /metrics shows every offset applied
  (bench/ingest.py's `ingest`);
- faust: bench/faust_app.py, the same aggregation as a faust-streaming agent writing through the
  project's StoreWriter, until its status file shows every offset applied;

and compares faust's final totals with ours key by key. Then it times every tab x period export
and the publishing of the read copy on the large store of bench/export_bench.py (built in
--export-store the first time, reused after). Appends one section to --out.
"""

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script: bench/ is sys.path[0], the project is not

import confluent_kafka  # noqa: E402
import duckdb  # noqa: E402
import export_bench  # noqa: E402
import ingest as ingest_bench  # noqa: E402

from consumer.service import FETCH_SETTINGS  # noqa: E402
from localkafka import broker  # noqa: E402
from traffic.model import events  # noqa: E402
from traffic.produce import ensure_topic  # noqa: E402

SEED = ingest_bench.SEED
LATE_FRACTION = 0.01  # as the demo's traffic
BAD_FRACTION = 0.001
STALL_SECONDS = 120.0  # a run that applies nothing new for this long is given up
TARGET_RAW_RATIO = 0.5
TARGET_EVENTS_PER_SECOND = 300_000
TARGET_FAUST_RATIO = 10.0
TARGET_PEAK_BYTES = 500 * 10**6
TARGET_EXPORT_SECONDS = export_bench.TARGET_SECONDS
TARGET_COPY_STALENESS = 10.0

# Per (day, cluster, account, client, topic): produced bytes, consumed bytes, events.
Totals = dict[tuple[date, str, str, str, str], tuple[int, int, int]]


@dataclass
class Run:
    name: str
    what: str
    wall: float = 0.0  # process start until every offset was read (raw) or applied
    startup: float = 0.0  # process start until the first batch (raw: first message)
    first_events: int = 0  # events already in hand at that moment
    cpu: float = 0.0  # user + system of the process, until caught up
    peak_rss: int = 0  # VmHWM
    batches: int = 0
    load_before: float = 0.0  # 1-minute load average just before the start
    totals: Totals = field(default_factory=dict)
    rejections: int = 0
    note: str = ""
    copy_staleness: float | None = None  # ours: the longest the read copy was behind the store


@dataclass
class Fill:
    topic: str
    seconds: float
    value_bytes: int
    ends: dict[int, int]


@dataclass
class Exports:
    built: export_bench.Build
    as_of: date
    publishing: export_bench.Publishing
    cases: list[export_bench.Case]
    profile: export_bench.Profile
    repeats: int


def main() -> int:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="chargeback-suite-"))
    broker_dir = work / "kafka"
    bootstrap = args.bootstrap_servers
    runs: list[Run] = []
    if bootstrap is None:
        print(f"starting the local broker in {broker_dir}", flush=True)
        bootstrap = broker.start(broker_dir, 0, progress=lambda line: print(line, flush=True))
    try:
        fill = fill_the_topic(args, bootstrap)
        runs.append(run_raw(args, bootstrap, fill, tuned=False))
        runs.append(run_raw(args, bootstrap, fill, tuned=True))
        runs.append(run_ours(args, bootstrap, fill, work / "ours"))
        if not args.skip_faust:
            runs.append(run_faust(args, bootstrap, fill, work / "faust"))
    except BaseException:
        print(f"kept {work} (broker data, stores, logs) for a look", flush=True)
        raise
    finally:
        if args.bootstrap_servers is None:
            broker.stop(broker_dir)
    if args.bootstrap_servers is None:  # the runs succeeded: the topic's copy is not worth keeping
        shutil.rmtree(broker_dir / "data", ignore_errors=True)
    exports = None if args.skip_exports else run_exports(args)
    section = report(args, fill, runs, exports)
    print(section)
    export_bench.append_section(args.out, section)
    print(f"appended to {args.out}; kept {work} (stores and logs, not the broker's data)")
    ours = next(r for r in runs if r.name == "ours")
    stored = sum(n for _, _, n in ours.totals.values()) + ours.rejections
    if stored != args.events:
        print(f"FAILED: ours holds {stored:,} events + rejections, not {args.events:,}")
        return 1
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--bootstrap-servers", default=None)
    parser.add_argument("--skip-faust", action="store_true")
    parser.add_argument("--skip-exports", action="store_true")
    parser.add_argument(
        "--export-store",
        type=Path,
        default=Path("/tmp/bench-export-full"),
        help="bench/export_bench.py --keep dir: the large store is built there once, then reused",
    )
    parser.add_argument("--export-repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up a run after (s)")
    parser.add_argument(
        "--code-label",
        default=None,
        help="what code is measured, for the report [default: this checkout's git HEAD]",
    )
    args = parser.parse_args()
    if args.events < 1 or args.partitions < 1 or args.export_repeats < 1:
        parser.error("--events, --partitions and --export-repeats must be at least 1")
    return args


# --- 1. the topic ------------------------------------------------------------------------------


def fill_the_topic(args: argparse.Namespace, bootstrap: str) -> Fill:
    topic = f"bench.usage.{uuid.uuid4().hex[:8]}"
    ensure_topic(bootstrap, topic, args.partitions)
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    records = events(
        SEED,
        end - timedelta(days=365),
        end,
        args.events,
        accounts=args.accounts,
        late_fraction=LATE_FRACTION,
        bad_fraction=BAD_FRACTION,
    )
    seconds, value_bytes, ends = ingest_bench.fill(
        bootstrap, topic, records, args.events, args.partitions
    )
    print(f"filled in {seconds:.1f} s ({value_bytes / args.events:.0f} B/record)", flush=True)
    return Fill(topic, seconds, value_bytes, ends)


# --- 2. the three consumers --------------------------------------------------------------------


def settle() -> float:
    """Let the previous run's exit and the broker's flushes pass; return the load average."""
    time.sleep(3)
    return os.getloadavg()[0]


def run_raw(args: argparse.Namespace, bootstrap: str, fill: Fill, tuned: bool) -> Run:
    """The plain consumer: librdkafka's defaults, or (tuned) the service's fetch settings."""
    if tuned:
        run = Run(
            "raw (tuned)",
            "the same, with `chargeback ingest`'s fetch settings (`fetch.queue.backoff.ms` 10 …)",
        )
        settings: dict[str, int] = FETCH_SETTINGS
    else:
        run = Run("raw", "confluent-kafka `consume(num_messages=10000)` + `.value()`, no parsing")
        settings = {}
    run.load_before = settle()
    print(f"{run.name}: plain confluent-kafka consumer", flush=True)
    command = [
        sys.executable,
        str(REPO / "bench" / "raw_consumer.py"),
        bootstrap,
        fill.topic,
        f"bench-raw-{uuid.uuid4().hex[:8]}",
        json.dumps(fill.ends),
        json.dumps(settings),
    ]
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, env=ingest_bench.child_env())
    timer = threading.Timer(args.timeout, process.kill)
    timer.start()
    try:
        assert process.stdout is not None
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)  # its own rusage, not all children's
        process.returncode = os.waitstatus_to_exitcode(status)
    finally:
        timer.cancel()
        if process.returncode is None:
            process.kill()
            process.wait()
    if process.returncode != 0:
        raise SystemExit(f"raw consumer exited {process.returncode}")
    result = json.loads(output.decode().strip().splitlines()[-1])
    if result["records"] != args.events:
        raise SystemExit(f"raw consumer read {result['records']:,} records, not {args.events:,}")
    run.wall = result["done"] - started
    run.startup = result["first"] - started
    run.cpu = usage.ru_utime + usage.ru_stime
    run.peak_rss = usage.ru_maxrss * 1024
    print(f"{run.name}: {run.wall:.1f} s, {args.events / run.wall:,.0f} records/s", flush=True)
    return run


def run_ours(args: argparse.Namespace, bootstrap: str, fill: Fill, work: Path) -> Run:
    run = Run("ours", "`chargeback ingest` (confluent-kafka, orjson, DuckDB), as shipped")
    run.load_before = settle()
    work.mkdir()
    print("ours: chargeback ingest", flush=True)
    report_file = work / "bench-ingest.txt"
    with report_file.open("w") as out, contextlib.redirect_stdout(out):
        result = ingest_bench.ingest(
            args, bootstrap, fill.topic, fill.ends, work, fill.seconds, fill.value_bytes
        )
    run.wall = result.total_seconds
    run.startup = result.startup_seconds
    run.first_events = result.first_events
    run.cpu = result.cpu_seconds
    run.peak_rss = result.peak_rss_bytes
    run.batches = result.batches
    run.copy_staleness = result.copy_staleness
    run.totals, run.rejections = store_totals(work / "store" / "chargeback.duckdb")
    print(f"ours: {run.wall:.1f} s, {args.events / run.wall:,.0f} events/s", flush=True)
    return run


def run_faust(args: argparse.Namespace, bootstrap: str, fill: Fill, work: Path) -> Run:
    run = Run(
        "faust",
        f"faust-streaming {metadata.version('faust-streaming')} agent, aiokafka"
        f" {metadata.version('aiokafka')}, `take_events(10000, within=1)`, EventParser +"
        " StoreWriter",
    )
    run.load_before = settle()
    work.mkdir()
    db = work / "store" / "chargeback.duckdb"
    db.parent.mkdir()
    status_file = work / "status.json"
    env = {
        **ingest_bench.child_env(),
        "BENCH_FAUST_BOOTSTRAP": bootstrap,
        "BENCH_FAUST_TOPIC": fill.topic,
        "BENCH_FAUST_GROUP": f"bench-faust-{uuid.uuid4().hex[:8]}",
        "BENCH_FAUST_DB": str(db),
        "BENCH_FAUST_STATUS": str(status_file),
    }
    command = [
        sys.executable,
        "-m",
        "faust",
        "--loop",
        "uvloop",
        "-A",
        "bench.faust_app",
        "worker",
        "-l",
        "warn",
    ]
    log_path = work / "faust.log"
    print("faust: faust-streaming agent", flush=True)
    with log_path.open("w") as log:
        started = time.monotonic()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    status: dict[str, Any] = {}
    progressed = started
    last_events = -1
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit(f"faust exited {process.returncode}:\n{tail(log_path)}")
            now = time.monotonic()
            run.peak_rss = max(run.peak_rss, ingest_bench.vm_hwm(process.pid))
            with contextlib.suppress(OSError, ValueError):
                status = json.loads(status_file.read_text(encoding="utf-8"))
            applied = {int(p): int(o) for p, o in status.get("next_offsets", {}).items()}
            events_now = int(status.get("events", 0))
            if events_now != last_events:
                last_events, progressed = events_now, now
            if all(applied.get(p, 0) >= end for p, end in fill.ends.items()):
                run.wall = now - started
                run.cpu = ingest_bench.cpu_seconds(process.pid)
                run.peak_rss = max(run.peak_rss, ingest_bench.vm_hwm(process.pid))
                break
            if now - started > args.timeout or now - progressed > STALL_SECONDS:
                raise SystemExit(
                    f"faust applied {events_now:,} events, then nothing for"
                    f" {now - progressed:.0f} s:\n{tail(log_path)}"
                )
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            run.note = "did not stop within 60 s of SIGTERM: killed (its store is committed)"
            process.kill()
            process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            process.wait()
    run.startup = float(status["first"]) - started
    run.first_events = int(status["first_events"])
    run.batches = int(status["batches"])
    run.totals, run.rejections = store_totals(db)
    print(f"faust: {run.wall:.1f} s, {args.events / run.wall:,.0f} events/s", flush=True)
    return run


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def store_totals(db: Path) -> tuple[Totals, int]:
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            "SELECT t.day, s.cluster, s.service_account, s.client_id, s.topic,"
            " sum(t.produced_bytes), sum(t.consumed_bytes), sum(t.event_count)"
            " FROM usage_totals t JOIN series s USING (series_id) GROUP BY ALL"
        ).fetchall()
        rejected = con.execute("SELECT count(*) FROM rejected_events").fetchone()
    totals = {(d, c, a, i, t): (int(p), int(q), int(n)) for d, c, a, i, t, p, q, n in rows}
    return totals, int(rejected[0]) if rejected else 0


def compare(ours: Run, other: Run) -> str:
    """One sentence: whether `other` holds exactly our totals, key by key, and our rejections."""

    def sums(run: Run) -> tuple[int, int, int]:
        values = run.totals.values()
        return sum(v[0] for v in values), sum(v[1] for v in values), sum(v[2] for v in values)

    ours_sums, other_sums = sums(ours), sums(other)
    differing = sum(
        1
        for key in ours.totals.keys() | other.totals.keys()
        if ours.totals.get(key) != other.totals.get(key)
    )
    described = (
        f"{other_sums[2]:,} events, {other_sums[0] + other_sums[1]:,} bytes"
        f" ({other_sums[0]:,} produced + {other_sums[1]:,} consumed) over"
        f" {len(other.totals):,} keys, {other.rejections:,} rejections"
    )
    if differing == 0 and ours.rejections == other.rejections:
        return f"{other.name} totals EQUAL ours, key by key: {described}."
    return (
        f"{other.name} totals DIFFER from ours: {described}; ours {ours_sums[2]:,} events,"
        f" {ours_sums[0] + ours_sums[1]:,} bytes over {len(ours.totals):,} keys,"
        f" {ours.rejections:,} rejections; {differing:,} keys differ."
    )


# --- 3. the exports on the large store ---------------------------------------------------------


def run_exports(args: argparse.Namespace) -> Exports:
    work = args.export_store.resolve()
    work.mkdir(parents=True, exist_ok=True)
    db = work / "store" / "chargeback.duckdb"
    built_file = work / "build.json"
    options = argparse.Namespace(
        accounts=10_000,
        clusters=3,
        days=730,
        as_of=datetime.now(UTC).date(),
        repeats=args.export_repeats,
        keep=work,
        out=args.out,
    )
    print(f"exports on the large store in {work}", flush=True)
    if built_file.exists():  # as bench/export_bench.py --keep reuses it
        saved = json.loads(built_file.read_text(encoding="utf-8"))
        built = export_bench.Build(**{**saved, "first_day": date.fromisoformat(saved["first_day"])})
        if built.rows != 30_000 * 730:
            raise SystemExit(f"{db} was not built with the default size: use another dir")
        print(f"reusing {db}", flush=True)
    else:
        if db.exists():
            raise SystemExit(f"{db} exists without {built_file.name}: give an empty dir")
        built = export_bench.build(options, db)
        built_file.write_text(json.dumps({**vars(built), "first_day": str(built.first_day)}))
    options.as_of = built.first_day + timedelta(days=options.days - 1)  # the store's last day
    publishing = export_bench.time_publishing(options, db)
    cases = export_bench.time_exports(options, db, work / "exports")
    profile = export_bench.profile_slowest(db, cases)
    return Exports(built, options.as_of, publishing, cases, profile, options.repeats)


# --- 4. the report -----------------------------------------------------------------------------


def mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


def verdict(met: bool) -> str:
    return "met" if met else "**not met**"


def report(args: argparse.Namespace, fill: Fill, runs: list[Run], exports: Exports | None) -> str:
    n = args.events
    mb = fill.value_bytes / 1e6
    kafka = f"{metadata.version('confluent-kafka')} (librdkafka {confluent_kafka.libversion()[0]})"
    where = "local (localkafka)" if args.bootstrap_servers is None else args.bootstrap_servers
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — suite: {n:,} events,"
        f" {args.partitions} partitions",
        "",
        f"From `bench/suite.py --events {n}`, code: {args.code_label or commit()}.",
        "",
        f"- Machine: {ingest_bench.machine()}",
        f"- Python {platform.python_version()}, duckdb {duckdb.__version__},"
        f" confluent-kafka {kafka}",
        f"- Broker: {where}; traffic: seed {SEED}, {args.accounts} accounts, one year,"
        f" {LATE_FRACTION:.0%} late, {BAD_FRACTION:.1%} bad, {mb:,.1f} MB of record values"
        f" ({fill.value_bytes / n:.0f} B/record), keyed by account",
        f"- Fill (producer, lz4, idempotent): {fill.seconds:.1f} s"
        f" ({n / fill.seconds:,.0f} records/s)",
        "",
        "Each consumer ran alone, as its own process, from a fresh group (and store). Wall: process"
        " start until every offset was read (raw) or applied in DuckDB; after start-up: from the"
        " first batch (raw: first message) on. CPU: the process's user+sys until then; peak RSS:"
        " its VmHWM. Load: the 1-minute load average just before the start (the machine is shared;"
        " above ~0.5 another process was busy).",
        "",
        "| engine | what | wall | events/s | MB/s | events/s after start-up | start-up |"
        " CPU | CPU per M events | peak RSS | batches | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        after = r.wall - r.startup
        steady = f"{(n - r.first_events) / after:,.0f}" if after > 0.5 else "n/a"
        lines.append(
            f"| {r.name} | {r.what} | {r.wall:.1f} s | {n / r.wall:,.0f} | {mb / r.wall:.1f} |"
            f" {steady} | {r.startup:.1f} s | {r.cpu:.1f} s ({r.cpu / r.wall:.0%}) |"
            f" {r.cpu / n * 1e6:.1f} s | {mib(r.peak_rss)} | {r.batches or '—'} |"
            f" {r.load_before:.2f} |"
        )
    by_name = {r.name: r for r in runs}
    raw, tuned = by_name["raw"], by_name["raw (tuned)"]
    ours, faust = by_name["ours"], by_name.get("faust")
    ours_rate = n / ours.wall
    raw_ratio = raw.wall / ours.wall
    tuned_ratio = tuned.wall / ours.wall
    lines += [
        "",
        "| target (issue 6) | measured | |",
        "|---|---|---|",
        f"| ours/raw ≥ {TARGET_RAW_RATIO} (events/s), raw with the service's fetch settings"
        f" | {tuned_ratio:.2f} | {verdict(tuned_ratio >= TARGET_RAW_RATIO)} |",
        f"| ours/raw ≥ {TARGET_RAW_RATIO} (events/s), raw with librdkafka's defaults"
        f" | {raw_ratio:.2f} | {verdict(raw_ratio >= TARGET_RAW_RATIO)} |",
        f"| ours ≥ {TARGET_EVENTS_PER_SECOND:,} events/s | {ours_rate:,.0f} |"
        f" {verdict(ours_rate >= TARGET_EVENTS_PER_SECOND)} |",
    ]
    if faust is not None:
        faust_ratio = faust.wall / ours.wall
        lines.append(
            f"| ours/faust ≥ {TARGET_FAUST_RATIO:.0f} (events/s) | {faust_ratio:.1f} |"
            f" {verdict(faust_ratio >= TARGET_FAUST_RATIO)} |"
        )
    lines += [
        f"| service peak RSS < {TARGET_PEAK_BYTES / 1e6:.0f} MB | {ours.peak_rss / 1e6:,.0f} MB |"
        f" {verdict(ours.peak_rss < TARGET_PEAK_BYTES)} |",
    ]
    if ours.copy_staleness is not None:
        lines.append(
            f"| read copy ≤ {TARGET_COPY_STALENESS:.0f} s behind under full load"
            f" | {ours.copy_staleness:.1f} s at most |"
            f" {verdict(ours.copy_staleness <= TARGET_COPY_STALENESS)} |"
        )
    lines.append("")
    stored = sum(v[2] for v in ours.totals.values())
    lines.append(
        f"Ours stored {stored:,} events and {ours.rejections:,} rejections"
        f" ({'= N records' if stored + ours.rejections == n else 'WRONG: not N records'})."
    )
    for r in runs:
        if r.name != "ours" and r.totals:
            lines.append(compare(ours, r))
        if r.note:
            lines.append(f"{r.name}: {r.note}.")
    if faust is None:
        lines.append("Faust skipped (--skip-faust).")
    lines.append("")
    if exports is not None:
        lines += export_lines(exports)
    return "\n".join(lines)


def export_lines(e: Exports) -> list[str]:
    fmt = export_bench.fmt
    b, p = e.built, e.publishing
    over = [c for c in e.cases if c.end_to_end.median > TARGET_EXPORT_SECONDS]
    lines = [
        f"### Exports and publishing: {b.series:,} series x {b.rows // b.series} days"
        f" ({b.rows:,} rows, file {mib(b.store_bytes)}), as of {e.as_of}",
        "",
        "Through bench/export_bench.py's functions, on its store. Wall time, median / max of"
        f" {e.repeats} runs (publishing: {e.repeats + 2}; an export's runs stop once they have"
        f" taken {export_bench.SLOW_SECONDS:.0f} s), page cache warm.",
        "",
        "| publishing the read copy | time |",
        "|---|---|",
        f"| after a batch ({b.series:,}-row upsert) | {p.after_batch.text()} |",
        f"| nothing new | {p.unchanged.text()} |",
        f"| naive `COPY FROM DATABASE` (once) | {fmt(p.naive_seconds)} |",
        "",
        "| export | buckets | rows | end to end (median / max, runs) | SQL | Python | CSV |"
        f" ≤ {TARGET_EXPORT_SECONDS:.0f} s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in e.cases:
        lines.append(
            f"| {c.label} | {c.buckets} | {c.rows:,} | {c.end_to_end.text()},"
            f" {len(c.end_to_end.samples)} | {fmt(c.sql)}{'*' if c.query_derived else ''} |"
            f" {fmt(c.pivot.median)} | {fmt(c.csv.median)} |"
            f" {'yes' if c.end_to_end.median <= TARGET_EXPORT_SECONDS else '**no**'} |"
        )
    lines += [
        "",
        f"{len(e.cases) - len(over)} of {len(e.cases)} exports within"
        f" {TARGET_EXPORT_SECONDS:.0f} s (* SQL derived: end to end minus open, Python and CSV).",
        "",
        f"Slowest ({e.profile.label}), DuckDB operators of its cells query (latency"
        f" {fmt(e.profile.latency)}):",
        "",
        "| operator | time | rows out |",
        "|---|---|---|",
        *(f"| {name} | {fmt(secs)} | {rows:,} |" for name, secs, rows in e.profile.operators[:5]),
        "",
    ]
    return lines


def commit() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"commit {head}{' with uncommitted changes' if dirty else ''}"


if __name__ == "__main__":
    sys.exit(main())
