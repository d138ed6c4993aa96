"""Readers beside the running service (PRODUCT.md §2): exports and SQL on the published copy."""

import csv
import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from tests.ingest_harness import REPO, IngestProcess, end_offsets, produce
from views.publish import copy_path_for

pytestmark = pytest.mark.kafka

READER_LOOP = r"""
import csv, json, sys, time
from pathlib import Path
import duckdb
from chargeback.cli import run

db, out, seconds = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    code = run(["export", "--tab", "ingress", "--period", "30D", "--db", str(db),
                "--out", str(out)])
    with duckdb.connect(str(db.with_name("chargeback.read.duckdb")), read_only=True) as con:
        row = con.execute("SELECT count(*), sum(produced_bytes) FROM usage_daily").fetchone()
    with open(next(out.glob("Chargeback_*_Ingress.csv"))) as handle:
        rows = list(csv.reader(handle))
    sums_ok = all(int(r[-1]) == sum(map(int, r[1:-1])) for r in rows[1:])
    print(json.dumps({"code": code, "sql_rows": row[0], "sums_ok": sums_ok}), flush=True)
"""


def test_exports_and_sql_beside_a_running_service_for_a_minute(
    kafka_bootstrap: str, topic_factory, unique_group: str, tmp_path: Path
) -> None:
    topic = topic_factory(partitions=2)
    db = tmp_path / "chargeback.duckdb"
    out = tmp_path / "exports"
    service = IngestProcess(kafka_bootstrap, topic, unique_group, db, "--publish-interval", "2")
    try:
        rng = random.Random(7)
        now_ms = int(time.time() * 1000)
        expected: Counter[str] = Counter()
        stop = threading.Event()

        def produce_for_a_while() -> None:
            while not stop.is_set():
                records = []
                for _ in range(500):
                    account, size = f"sa-{rng.randrange(12)}", rng.randrange(1, 10**6)
                    stamp = now_ms - rng.randrange(5 * 86_400_000)
                    expected[account] += size
                    value = {
                        "service_account": account,
                        "type": "produce",
                        "bytes": size,
                        "timestamp": stamp,
                    }
                    records.append((rng.randrange(2), json.dumps(value).encode()))
                produce(kafka_bootstrap, topic, records)
                time.sleep(0.2)

        service.wait_until(copy_path_for(db).exists)  # the first copy is made at start-up
        producer = threading.Thread(target=produce_for_a_while)
        producer.start()
        try:
            readers = subprocess.run(
                [sys.executable, "-c", READER_LOOP, str(db), str(out), "60"],
                capture_output=True,
                text=True,
                timeout=180,
                cwd=REPO,
            )
        finally:
            stop.set()
            producer.join()
        assert readers.returncode == 0, readers.stderr
        # The CLI prints each file's path too; the loop's own lines are the JSON ones.
        results = [json.loads(line) for line in readers.stdout.splitlines() if line.startswith("{")]
        assert len(results) >= 10
        assert all(r["code"] == 0 for r in results), readers.stderr
        assert all(r["sums_ok"] for r in results)
        assert "Traceback" not in readers.stderr and "lock" not in readers.stderr.lower()
        service.assert_alive()

        # Once everything is applied and published, the export equals the copy and the events sent.
        service.wait_applied(end_offsets(kafka_bootstrap, topic, 2))
        time.sleep(2 * 2 + 1)  # one more publish interval, and its copy
        copy = copy_path_for(db)
        age = time.time() - copy.stat().st_mtime
        assert age <= 2 + 1, f"the copy is {age:.1f}s old"
        export = subprocess.run(
            [
                sys.executable,
                "-m",
                "chargeback",
                "export",
                "--tab",
                "ingress",
                "--period",
                "30D",
                "--db",
                str(db),
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            check=True,
        )
        path = Path(export.stdout.strip().splitlines()[-1])
        with path.open() as handle:
            exported = {row[0]: int(row[-1]) for row in list(csv.reader(handle))[1:]}
        with duckdb.connect(str(copy), read_only=True) as con:
            first = (datetime.now(UTC) - timedelta(days=29)).date()
            in_copy = dict(
                con.execute(
                    "SELECT service_account, sum(produced_bytes)::BIGINT FROM usage_daily"
                    " WHERE day >= ? GROUP BY ALL",
                    [first],
                ).fetchall()
            )
        assert exported == in_copy == dict(expected)
        assert service.terminate() == 0
    finally:
        if service.process.poll() is None:
            service.kill()
