"""Ingestion throughput: how fast `chargeback ingest` turns a full topic into totals.

    .venv/bin/python bench/ingest.py [--events 1000000] [--partitions 4]
                                     [--bootstrap-servers HOST:PORT] [--out docs/benchmarks.md]

Starts the project's local broker in a temporary dir (unless --bootstrap-servers is given), fills
a fresh topic with realistic events (traffic.model), then runs the real service as a process on
a fresh store and group and times it until /metrics shows every partition applied to its end
offset. Appends the figures, with the machine they were measured on, to the --out file.
"""

import argparse
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script: bench/ is sys.path[0], the project is not

import confluent_kafka  # noqa: E402
import duckdb  # noqa: E402
from confluent_kafka import Consumer, TopicPartition  # noqa: E402

from localkafka import broker  # noqa: E402
from traffic.model import events  # noqa: E402
from traffic.produce import ensure_topic, fill_topic  # noqa: E402
from views.publish import copy_path_for  # noqa: E402

SEED = 20250101
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
INTRO = """# Benchmarks

Figures from `bench/ingest.py`, newest last; earlier sections stay so the history shows.

Re-run with `.venv/bin/python bench/ingest.py --events 1000000 --partitions 4` (it starts the
project's local Kafka in a temporary dir; `--bootstrap-servers HOST:PORT` uses yours instead).

What is measured: a fresh topic is filled with N realistic usage events from `traffic.model` (a
year of traffic, heavy-tailed accounts over three clusters, ~190-byte JSON records; fill time is
reported separately). Then `chargeback ingest` starts as its own process on a fresh store and
consumer group, and the wall time runs from process start until its `/metrics` shows every
partition's `chargeback_next_offset` at the topic's end offset, so start-up (imports, opening the
store, joining the group) is included; the rate "after the first batch" leaves it out. CPU is the
service's user+system time until caught up; peak RSS is its VmHWM. The run fails unless the store
holds exactly N events (`SELECT sum(event_count) FROM usage_totals`) once the service has
stopped on SIGTERM.
"""


@dataclass
class Result:
    fill_seconds: float
    value_bytes: int
    startup_seconds: float  # process start until the first batch was applied
    first_events: int  # events in the first batch(es) seen applied
    total_seconds: float  # process start until every partition was applied
    cpu_seconds: float  # user+sys until caught up
    cpu_seconds_total: float  # user+sys of the whole process life, stop included
    peak_rss_bytes: int
    batches: int
    stop_seconds: float
    stored_events: int
    store_bytes: int
    copy_staleness: float | None  # the longest the read copy was seen behind the store (s)


def main() -> int:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="chargeback-bench-"))
    broker_dir = work / "kafka"
    bootstrap = args.bootstrap_servers
    if bootstrap is None:
        print(f"starting the local broker in {broker_dir}", flush=True)
        bootstrap = broker.start(broker_dir, 0, progress=lambda line: print(line, flush=True))
    try:
        result = run(args, bootstrap, work)
    except BaseException:
        print(f"kept {work} (broker data, store, ingest.log) for a look", flush=True)
        raise
    finally:
        if args.bootstrap_servers is None:
            broker.stop(broker_dir)
    shutil.rmtree(work, ignore_errors=True)  # broker data and store: ~90 MB per million events
    section = report(args, result)
    print(section)
    append_section(args.out, section)
    print(f"appended to {args.out}")
    if result.stored_events != args.events:
        print(f"FAILED: the store holds {result.stored_events:,} events, not {args.events:,}")
        return 1
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--bootstrap-servers", default=None)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up after (s)")
    return parser.parse_args()


def run(args: argparse.Namespace, bootstrap: str, work: Path) -> Result:
    topic = f"bench.usage.{uuid.uuid4().hex[:8]}"
    ensure_topic(bootstrap, topic, args.partitions)
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    records = events(SEED, end - timedelta(days=365), end, args.events, accounts=args.accounts)
    fill_seconds, value_bytes, ends = fill(bootstrap, topic, records, args.events, args.partitions)
    print(f"filled in {fill_seconds:.1f} s; ingesting", flush=True)
    return ingest(args, bootstrap, topic, ends, work, fill_seconds, value_bytes)


def fill(
    bootstrap: str,
    topic: str,
    records: Iterator[tuple[str, bytes]],
    count: int,
    partitions: int,
) -> tuple[float, int, dict[int, int]]:
    """Produce the records; return the seconds it took, their value bytes and the end offsets."""
    value_bytes = 0

    def measured() -> Iterator[tuple[str, bytes]]:
        nonlocal value_bytes
        for key, value in records:
            value_bytes += len(value)
            yield key, value

    print(f"filling {topic} with {count:,} events", flush=True)
    started = time.monotonic()
    fill_topic(bootstrap, topic, measured(), progress=lambda n: print(f"  {n:,}", flush=True))
    seconds = time.monotonic() - started
    ends = end_offsets(bootstrap, topic, partitions)
    if sum(ends.values()) != count:
        raise SystemExit(f"the topic holds {sum(ends.values())} records, not {count}")
    return seconds, value_bytes, ends


def ingest(
    args: argparse.Namespace,
    bootstrap: str,
    topic: str,
    ends: dict[int, int],
    work: Path,
    fill_seconds: float,
    value_bytes: int,
) -> Result:
    db = work / "store" / "chargeback.duckdb"
    db.parent.mkdir()
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "chargeback",
        "ingest",
        "--bootstrap-servers",
        bootstrap,
        "--topic",
        topic,
        "--group",
        f"bench-{uuid.uuid4().hex[:8]}",
        "--db",
        str(db),
        "--metrics-port",
        str(port),
        "--log-interval",
        "5",
    ]
    log_path = work / "ingest.log"
    with log_path.open("w") as log:
        started = time.monotonic()
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=db.parent, env=child_env()
        )
    first_applied: float | None = None
    first_events = 0
    staleness = CopyStaleness(copy_path_for(db))
    done = started
    peak_rss = 0
    cpu = 0.0
    batches = 0
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit(f"ingest exited {process.returncode}:\n{log_path.read_text()}")
            if time.monotonic() - started > args.timeout:
                raise SystemExit(f"not caught up after {args.timeout:.0f} s")
            peak_rss = max(peak_rss, vm_hwm(process.pid))
            try:
                text = scrape(port)
            except OSError:
                time.sleep(0.05)
                continue
            applied = gauge_by_partition(text, "chargeback_next_offset")
            staleness.sample(sum(applied.values()))
            applied_events = int(counter(text, "chargeback_events_applied_total"))
            if first_applied is None and applied_events > 0:
                first_applied, first_events = time.monotonic(), applied_events
            if all(applied.get(p, 0) >= end for p, end in ends.items()):
                done = time.monotonic()
                cpu = cpu_seconds(process.pid)
                peak_rss = max(peak_rss, vm_hwm(process.pid))
                batches = int(counter(text, "chargeback_batches_total"))
                break
            time.sleep(0.05)
        stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        stop_seconds = time.monotonic() - stopping
    finally:
        if process.returncode is None:
            process.kill()
            process.wait()
    if process.returncode != 0:
        raise SystemExit(f"ingest exited {process.returncode}:\n{log_path.read_text()}")
    print(log_path.read_text(), flush=True)
    with duckdb.connect(str(db), read_only=True) as con:
        row = con.execute("SELECT sum(event_count) FROM usage_totals").fetchone()
    return Result(
        fill_seconds=fill_seconds,
        value_bytes=value_bytes,
        startup_seconds=(first_applied or done) - started,
        first_events=first_events,
        total_seconds=done - started,
        cpu_seconds=cpu,
        cpu_seconds_total=usage.ru_utime + usage.ru_stime,
        peak_rss_bytes=max(peak_rss, usage.ru_maxrss * 1024),
        batches=batches,
        stop_seconds=stop_seconds,
        stored_events=int(row[0] or 0) if row else 0,
        store_bytes=db.stat().st_size,
        copy_staleness=staleness.longest,
    )


class CopyStaleness:
    """How far the published read copy trails the store while the service works.

    Every half second it reads the copy's offsets; the copy is stale from the moment the store
    (as /metrics showed it) first went past them until a newer copy appears. `longest` is the
    longest such span seen: an upper bound, as /metrics shows a commit a little after it lands.
    """

    def __init__(self, copy: Path) -> None:
        self.copy = copy
        self.history: list[tuple[float, int]] = []  # (time, offsets applied in the store)
        self.next_read = 0.0
        self.longest: float | None = None

    def sample(self, applied: int) -> None:
        now = time.monotonic()
        self.history.append((now, applied))
        if now < self.next_read:
            return
        self.next_read = now + 0.5
        try:
            with duckdb.connect(str(self.copy), read_only=True) as con:
                row = con.execute(
                    "SELECT coalesce(sum(next_offset), 0) FROM ingest_offsets"
                ).fetchone()
        except duckdb.Error:
            return  # not published yet, or replaced while opening: the next read will see it
        in_copy = int(row[0]) if row else 0
        passed = next((t for t, total in self.history if total > in_copy), None)
        stale = 0.0 if passed is None else now - passed
        self.longest = max(self.longest or 0.0, stale)


def child_env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO)}


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-probe"})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        }
    finally:
        consumer.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
        return str(reply.read().decode())


def gauge_by_partition(text: str, name: str) -> dict[int, int]:
    found = re.findall(rf'^{name}\{{[^}}]*partition="(\d+)"\}} (\d+)$', text, re.MULTILINE)
    return {int(p): int(v) for p, v in found}


def counter(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def vm_hwm(pid: int) -> int:
    """Peak resident set size of `pid` so far, in bytes (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` so far (its own threads, not reaped children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime: fields 14, 15


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    system = f"{platform.system()} {platform.machine()}"
    return f"{os.cpu_count()} CPUs ({cpu}), {ram:.1f} GiB RAM, {system}"


def report(args: argparse.Namespace, r: Result) -> str:
    n = args.events
    after_first = r.total_seconds - r.startup_seconds
    mb = r.value_bytes / 1e6
    # The events already applied when the first batch was seen do not count towards this rate.
    steady = (
        f"{(n - r.first_events) / after_first:,.0f}" if after_first > 0.5 else "n/a (too short)"
    )
    kafka = f"{metadata.version('confluent-kafka')} (librdkafka {confluent_kafka.libversion()[0]})"
    where = "local (localkafka)" if args.bootstrap_servers is None else args.bootstrap_servers
    stored = f"{r.stored_events:,} ({'= N' if r.stored_events == n else 'WRONG'})"
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {n:,} events, {args.partitions} partitions",
        "",
        f"- Machine: {machine()}",
        f"- Python {platform.python_version()}, duckdb {duckdb.__version__},"
        f" confluent-kafka {kafka}",
        f"- Broker: {where}"
        f"; traffic: seed {SEED}, {args.accounts} accounts, one year,"
        f" {mb:,.1f} MB of record values ({r.value_bytes / n:.0f} B/record)",
        f"- Fill (producer, lz4, idempotent): {r.fill_seconds:.1f} s"
        f" ({n / r.fill_seconds:,.0f} records/s)",
        "",
        "| measure | value |",
        "|---|---|",
        f"| wall time, process start → all applied | {r.total_seconds:.1f} s |",
        f"| events/s, process start → all applied | {n / r.total_seconds:,.0f} |",
        f"| MB/s of record values, same span | {mb / r.total_seconds:.1f} |",
        f"| start-up, process start → first batch applied | {r.startup_seconds:.1f} s |",
        f"| events/s, first batch → all applied | {steady} |",
        f"| CPU (user+sys) until caught up | {r.cpu_seconds:.1f} s"
        f" ({r.cpu_seconds / r.total_seconds:.0%} of one core) |",
        f"| CPU per million events | {r.cpu_seconds / n * 1e6:.1f} s |",
        f"| peak RSS (VmHWM) | {r.peak_rss_bytes / 2**20:,.0f} MiB |",
        f"| batches (transactions) | {r.batches:,} |",
        f"| SIGTERM → exit | {r.stop_seconds:.1f} s |",
        f"| store file after exit | {r.store_bytes / 2**20:,.1f} MiB |",
        f"| events in the store | {stored} |",
        f"| read copy behind the store, longest seen | {_seconds(r.copy_staleness)} |",
        "",
    ]
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def append_section(out: Path, section: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    text = out.read_text(encoding="utf-8") if out.exists() else INTRO
    out.write_text(text.rstrip("\n") + "\n\n" + section, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
