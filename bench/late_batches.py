"""The writer on a large store when batches are late data spread over its whole history.

    .venv/bin/python bench/late_batches.py STORE [--batches 6] [--keys 130000]
                                           [--memory-limit 256MB] [--out docs/benchmarks.md]

STORE is a store with history, e.g. the one `bench/export_bench.py --keep DIR` leaves in DIR
(10,000 accounts x 3 clusters x 730 days). It is copied aside first, then `StoreWriter.apply`
writes batches of --keys (day, series) sums, each day drawn at random from the store's whole
range and each series from its series: the worst case for the primary-key index, a backfill of
old days. Live traffic touches a few recent days (export_bench's "after a batch": one day, every
series). Reports each batch's time and the process's peak RSS (VmHWM), with DuckDB's default
memory limit or --memory-limit.
"""

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script: bench/ is sys.path[0], the project is not

import ingest as ingest_bench  # noqa: E402  (bench/ is on sys.path when run as a script)

from consumer.batch import Batch  # noqa: E402
from consumer.writer import StoreWriter  # noqa: E402
from views.store import open_store  # noqa: E402


def peak_rss_mib() -> float:
    return ingest_bench.vm_hwm(os.getpid()) / 2**20


def late_batch(rng: random.Random, writer: StoreWriter, first: date, days: int, keys: int) -> Batch:
    series = list(writer.series)
    batch = Batch()
    for _ in range(keys):
        day = first + timedelta(days=rng.randrange(days))
        batch.totals[(day, *series[rng.randrange(len(series))])] = [1000, 3000, 1]
    batch.advance("late", 0, 0, keys)
    return batch


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("store", type=Path, help="a store with history (it is copied, not changed)")
    parser.add_argument("--batches", type=int, default=6, help="batches to apply")
    parser.add_argument("--keys", type=int, default=130_000, help="(day, series) sums per batch")
    parser.add_argument("--memory-limit", default=None, help="DuckDB's memory_limit, e.g. 256MB")
    parser.add_argument("--out", type=Path, default=None, help="append the section here")
    args = parser.parse_args()
    if not args.store.is_file():
        parser.error(f"no store at {args.store}")
    work = Path(tempfile.mkdtemp(prefix="chargeback-late-"))
    try:
        copy = work / "chargeback.duckdb"
        shutil.copyfile(args.store, copy)
        con = open_store(copy)
        if args.memory_limit:
            con.execute("SET memory_limit = ?", [args.memory_limit])
        limit = con.execute("SELECT current_setting('memory_limit')").fetchone()
        span = con.execute("SELECT min(day), max(day), count(*) FROM usage_totals").fetchone()
        if span is None or span[0] is None:
            parser.error(f"{args.store} holds no usage")
        first, last, rows = span
        writer = StoreWriter(con)
        opened = peak_rss_mib()
        rng = random.Random(20250101)
        seconds = []
        for _ in range(args.batches):
            batch = late_batch(rng, writer, first, (last - first).days + 1, args.keys)
            started = time.perf_counter()
            writer.apply(batch)
            seconds.append(time.perf_counter() - started)
        con.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    section = "\n".join(
        [
            f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — late batches on a large store",
            "",
            "From `bench/late_batches.py`: batches of old (day, series) sums drawn at random"
            " over the store's whole range, through `StoreWriter.apply`.",
            "",
            f"- Machine: {ingest_bench.machine()}",
            f"- Store: {rows:,} rows in `usage_totals`, {len(writer.series):,} series,"
            f" {first} .. {last}; DuckDB memory_limit {limit[0] if limit else '?'}",
            f"- {args.batches} batches of {args.keys:,} keys: "
            + ", ".join(f"{s:.1f} s" for s in seconds),
            f"- peak RSS: {opened:,.0f} MiB after opening, {peak_rss_mib():,.0f} MiB at the end",
            "",
        ]
    )
    print(section)
    if args.out is not None:
        ingest_bench.append_section(args.out, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
