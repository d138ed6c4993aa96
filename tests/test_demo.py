"""`chargeback demo`, small and short, against the session broker: exports, summary, Ctrl-C."""

import csv
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from tests.ingest_harness import REPO

pytestmark = pytest.mark.kafka


def months_before(month_start: date, months: int) -> date:
    index = month_start.year * 12 + month_start.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)


def children_of(pid: int) -> list[int]:
    """Every live process whose parent chain leads to `pid` (Linux /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [child for child, p in parents.items() if p == parent]
        found += kids
        frontier += kids
    return found


def test_the_demo_exports_everything_and_ctrl_c_leaves_nothing_behind(
    kafka_bootstrap: str, unique_group: str, tmp_path: Path
) -> None:
    topic = f"demo-{unique_group}"
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        demo = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chargeback",
                "demo",
                "--bootstrap-servers",
                kafka_bootstrap,
                "--topic",
                topic,
                "--accounts",
                "12",
                "--events",
                "20000",
                "--days",
                "400",
                "--rate",
                "20",
                "--seed",
                "7",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    try:
        deadline = time.monotonic() + 180
        while "live: about 20 events a second" not in log.read_text():
            assert demo.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        service_pids = children_of(demo.pid)
        assert service_pids, "the demo runs the service as a child process"
        time.sleep(3)  # a few seconds of live traffic
        demo.send_signal(signal.SIGINT)
        assert demo.wait(60) == 0, log.read_text()
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    output = log.read_text()
    assert "Traceback" not in output
    assert "stopped the ingestion service (exit 0)" in output
    assert all(not Path(f"/proc/{pid}").exists() for pid in service_pids)

    today = datetime.now(UTC).date()
    month = today.replace(day=1)
    last_month_end = month - timedelta(days=1)
    ranges = {
        (today - timedelta(days=6), today),  # 7D
        (today - timedelta(days=29), today),  # 30D
        (months_before(month, 5), today),  # 6M
        (months_before(month, 11), today),  # 12M
        (date(today.year, 1, 1), today),  # YTD (the same file as 12M in December)
        (last_month_end.replace(day=1), last_month_end),  # LM
    }
    tabs = ("OverallCost", "Ingress", "Egress")
    expected = {f"Chargeback_{a}_{b}_{tab}.csv" for a, b in ranges for tab in tabs}
    assert {p.name for p in (tmp_path / "exports").iterdir()} == expected

    # The 12M ingress export agrees with the store, account by account.
    first, last = months_before(month, 11), today
    ingress = tmp_path / "exports" / f"Chargeback_{first}_{last}_Ingress.csv"
    with ingress.open() as handle:
        rows = list(csv.reader(handle))
    with duckdb.connect(str(tmp_path / "data" / "chargeback.duckdb"), read_only=True) as con:
        in_store = dict(
            con.execute(
                "SELECT service_account, sum(produced_bytes)::BIGINT FROM usage_daily"
                " WHERE day BETWEEN ? AND ? GROUP BY ALL HAVING sum(produced_bytes) > 0",
                [first, last],
            ).fetchall()
        )
        rejected = con.execute("SELECT count(*) FROM rejected_events").fetchone()
    # the store may hold a few more live seconds than the export did, never less
    exported = {row[0]: int(row[-1]) for row in rows[1:] if int(row[-1])}
    assert set(exported) <= set(in_store)
    assert all(in_store[a] >= b for a, b in exported.items())
    assert sum(exported.values()) > 0.9 * sum(in_store.values())
    assert rejected is not None and rejected[0] > 0  # the traffic carries some bad records
    assert "top accounts by cost" in output

    # The SQL the summary offers to try works as printed (the read copy is there after Ctrl-C).
    [suggested] = [line for line in output.splitlines() if '-c "import duckdb' in line]
    code = suggested.split('-c "', 1)[1].rstrip('"')
    tried = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert tried.returncode == 0 and "total_cost" in tried.stdout, tried.stderr
