"""Would columnar parsing in DuckDB beat the service's Python parser? A probe, no Kafka.

    .venv/bin/python bench/columnar_probe.py [--events 400000] [--out docs/benchmarks.md]

Makes the suite's traffic (traffic.model: seed 20250101, 200 accounts, a year, 1% late, 0.1% bad
records) in memory and adds it up two ways, each timed in wall and CPU seconds per record:

- **python**: what `chargeback ingest` does per record (`Batch.add_events`: orjson, the fast
  path, the dict of totals), on a parser warmed on the first 50,000 records as a running
  service's is;
- **columnar**: chunks of record values as one Arrow string column, the SQL of
  `bench/sql/columnar_chunk.sql` (DuckDB's JSON reader, a length guard that only lets through
  records written exactly the shortest way, names already checked by the Python parser joined
  in, the day by a table of quarter hours, the sums per (day, names)), and the Python parser for
  every record the SQL declines. With 1 and 2 DuckDB threads, chunks of 10,000 and 50,000.

Both exclude what any variant pays the same: consuming the records (the suite's raw consumer
measures that) and writing the batch. The run fails unless the two give the same totals and the
same number of rejections. Appends a section to --out when given.
"""

import argparse
import array
import contextlib
import itertools
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script: bench/ is sys.path[0], the project is not

import duckdb  # noqa: E402
import ingest as ingest_bench  # noqa: E402  (bench/ is on sys.path when run as a script)
import pyarrow as pa  # noqa: E402

from consumer.batch import Batch  # noqa: E402
from consumer.events import DayResolver, EventParser, Rejected, TotalsKey  # noqa: E402
from traffic.model import events  # noqa: E402

SEED = 20250101
WARM_RECORDS = 50_000
QUARTER_MS = 900_000
SQL = (Path(__file__).parent / "sql" / "columnar_chunk.sql").read_text(encoding="utf-8")
Totals = dict[TotalsKey, list[int]]


@dataclass
class Timing:
    label: str
    wall: float
    cpu: float
    declined: int
    rejected: int


def make_records(count: int) -> tuple[list[bytes], int]:
    """The suite's traffic; every record's Kafka timestamp is the end of the range."""
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    made = events(
        SEED,
        end - timedelta(days=365),
        end,
        count,
        accounts=200,
        late_fraction=0.01,
        bad_fraction=0.001,
    )
    return [value for _, value in made], int(end.timestamp() * 1000)


def warm_parser(records: list[bytes], record_ms: int) -> EventParser:
    parser = EventParser(DayResolver("UTC"), 3_600_000, 1 << 20, lambda: record_ms)
    batch = Batch()
    for value in records[:WARM_RECORDS]:
        with contextlib.suppress(Rejected):
            batch.add_events(parser, value, record_ms)
    return parser


def python_totals(parser: EventParser, records: list[bytes], record_ms: int) -> tuple[Batch, int]:
    batch, rejected, horizon = Batch(), 0, parser.horizon_ms()
    add = batch.add_events
    for value in records:
        try:
            add(parser, value, record_ms, horizon)
        except Rejected:
            rejected += 1
    return batch, rejected


def names_table(parser: EventParser) -> tuple[pa.Table, list[tuple[str, str, str, str, bool]]]:
    sent = list(parser.names_seen)
    checked = [parser.names_seen[key] for key in sent]
    table = pa.table(
        {
            "name_id": pa.array(range(len(sent)), pa.int32()),
            "sa": [key[0] for key in sent],
            "ty": [key[1] for key in sent],
            "cl": [key[2] for key in sent],
            "ci": [key[3] for key in sent],
            "tp": [key[4] for key in sent],
            "produce": [names[4] for names in checked],
        }
    )
    return table, checked


def days_table(days: DayResolver, record_ms: int) -> pa.Table:
    """Every quarter hour of the traffic's year, resolved (and cached) by the service's resolver."""
    first = (record_ms - 400 * 86_400_000) // QUARTER_MS
    for quarter in range(first, record_ms // QUARTER_MS + 8):
        days.day_of(quarter * QUARTER_MS)
    quarters = list(days.by_quarter.items())
    return pa.table(
        {
            "quarter": pa.array([q for q, _ in quarters], pa.int64()),
            "day": pa.array([d for _, d in quarters], pa.date32()),
        }
    )


def string_column(values: list[bytes]) -> pa.Array | None:
    """The values as one Arrow string column, built from one joined buffer; None if not UTF-8."""
    data = b"".join(values)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    offsets = array.array("i", [0])
    offsets.extend(itertools.accumulate(map(len, values)))
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    return pa.Array.from_buffers(pa.string(), len(values), buffers)


def columnar_totals(
    con: duckdb.DuckDBPyConnection,
    parser: EventParser,
    records: list[bytes],
    record_ms: int,
    chunk_size: int,
) -> tuple[list[pa.Table], Batch, int, int]:
    horizon = parser.horizon_ms()
    parts: list[pa.Table] = []
    leftovers, declined, rejected = Batch(), 0, 0
    for start in range(0, len(records), chunk_size):
        values = records[start : start + chunk_size]
        column = string_column(values)
        if column is None:
            late = list(range(len(values)))
        else:
            chunk = pa.table(
                {
                    "i": pa.array(range(len(values)), pa.int32()),
                    "v": column,
                    "record_ms": pa.array(itertools.repeat(record_ms, len(values)), pa.int64()),
                }
            )
            con.register("chunk", chunk)
            params = {"max_record_bytes": parser.max_record_bytes, "horizon_ms": horizon}
            out = con.execute(SQL, params).fetch_arrow_table()
            con.unregister("chunk")
            late = out.column("declined").drop_null().to_pylist()
            parts.append(out.filter(out.column("declined").is_null()))
        declined += len(late)
        for index in late:
            try:
                leftovers.add_events(parser, values[index], record_ms, horizon)
            except Rejected:
                rejected += 1
    return parts, leftovers, declined, rejected


def merged_totals(
    parts: list[pa.Table], leftovers: Batch, names: list[tuple[str, str, str, str, bool]]
) -> Totals:
    """The columnar sums and the leftovers' as one dict, to compare with the Python path."""
    totals: Totals = {key: list(sums) for key, sums in leftovers.totals.items()}
    for part in parts:
        for row in part.to_pylist():
            cluster, account, client_id, topic, _ = names[row["name_id"]]
            sums = totals.setdefault((row["day"], cluster, account, client_id, topic), [0, 0, 0])
            sums[0] += row["produced"]
            sums[1] += row["consumed"]
            sums[2] += row["events"]
    return totals


def timed_columnar(
    threads: int,
    chunk_size: int,
    parser: EventParser,
    records: list[bytes],
    record_ms: int,
    expected: Totals,
) -> Timing:
    con = duckdb.connect()
    con.execute(f"SET threads = {int(threads)}")
    names, checked = names_table(parser)
    con.register("names", names)
    con.register("days", days_table(parser.days, record_ms))
    wall, cpu = time.perf_counter(), time.process_time()
    parts, leftovers, declined, rejected = columnar_totals(
        con, parser, records, record_ms, chunk_size
    )
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if merged_totals(parts, leftovers, checked) != expected:
        raise SystemExit(f"columnar totals differ from the Python parser's ({threads} threads)")
    con.close()
    label = (
        f"columnar, {threads} DuckDB thread{'s' if threads > 1 else ''}, chunks of {chunk_size:,}"
    )
    return Timing(label, wall, cpu, declined, rejected)


def main() -> int:
    parser_args = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser_args.add_argument(
        "--events",
        type=int,
        default=400_000,
        help=f"records to make and add up, more than {WARM_RECORDS:,} (the parser's warm-up)",
    )
    parser_args.add_argument("--out", type=Path, default=None, help="append the section here")
    args = parser_args.parse_args()
    if args.events <= WARM_RECORDS:
        parser_args.error(f"--events must be more than {WARM_RECORDS:,}")
    records, record_ms = make_records(args.events)
    parser = warm_parser(records, record_ms)
    timings: list[Timing] = []
    for _ in range(2):  # the second run of each is the one reported: caches and allocator warm
        wall, cpu = time.perf_counter(), time.process_time()
        batch, rejected = python_totals(parser, records, record_ms)
        python = Timing(
            "python (the service's parser)",
            time.perf_counter() - wall,
            time.process_time() - cpu,
            0,
            rejected,
        )
    timings.append(python)
    expected = {key: list(sums) for key, sums in batch.totals.items()}
    for threads in (1, 2):
        for chunk_size in (10_000, 50_000):
            timed_columnar(threads, chunk_size, parser, records, record_ms, expected)
            timing = timed_columnar(threads, chunk_size, parser, records, record_ms, expected)
            if timing.rejected != python.rejected:
                raise SystemExit("columnar rejections differ from the Python parser's")
            timings.append(timing)
    section = report(args.events, timings)
    print(section)
    if args.out is not None:
        ingest_bench.append_section(args.out, section)
    return 0


def report(count: int, timings: list[Timing]) -> str:
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — columnar probe: {count:,} records",
        "",
        "From `bench/columnar_probe.py`: the suite's traffic in memory, no Kafka and no write;"
        " per record, the second of two runs. Both ways gave the same totals and rejections.",
        "",
        f"- Machine: {ingest_bench.machine()}",
        f"- Python {sys.version.split()[0]}, duckdb {duckdb.__version__},"
        f" pyarrow {metadata.version('pyarrow')}, orjson {metadata.version('orjson')}",
        "",
        "| way | wall per record | CPU per record | left to Python | rejected |",
        "|---|---|---|---|---|",
    ]
    for t in timings:
        lines.append(
            f"| {t.label} | {t.wall / count * 1e6:.2f} µs | {t.cpu / count * 1e6:.2f} µs"
            f" | {t.declined:,} | {t.rejected:,} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
