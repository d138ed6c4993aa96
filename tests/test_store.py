"""The store on a real DuckDB file: migrations, the writer's transaction, the views, the lock."""

import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pytest

from chargeback.errors import ChargebackError, StoreLockedError
from consumer.batch import Batch
from consumer.events import DayResolver, EventParser, Rejected
from consumer.writer import StoreWriter
from views.store import SCHEMA_VERSION, open_store, pin_timezone, read_sql, schema_version

PARSER = EventParser(DayResolver("UTC"), 3_600_000, 1 << 20, lambda: 2_000_000_000_000)


def add(batch: Batch, partition: int, offset: int, value: bytes, record_ms: int = 0) -> None:
    try:
        batch.add_events(PARSER, value, record_ms)
    except Rejected as rejected:
        batch.add_rejection(rejected, value, ("t", partition, offset), datetime.now(UTC), 10)
    batch.advance("t", partition, offset)


def test_a_new_store_gets_the_current_schema_and_reopening_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "store.duckdb"
    open_store(path).close()
    con = open_store(path)
    assert schema_version(con) == SCHEMA_VERSION
    assert con.execute("SELECT count(*) FROM schema_version").fetchone() == (SCHEMA_VERSION,)
    con.close()


def test_a_store_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.duckdb"
    con = open_store(path)
    con.execute("INSERT INTO schema_version VALUES (999, now())")
    con.close()
    with pytest.raises(ChargebackError, match="newer than this kafka-chargeback"):
        open_store(path)


def test_batches_add_up_in_the_views(tmp_path: Path) -> None:
    con = open_store(tmp_path / "store.duckdb")
    writer = StoreWriter(con)
    first = Batch()
    add(
        first,
        0,
        0,
        b'{"service_account":"a","type":"produce","bytes":100,'
        b'"timestamp":"2026-01-31T23:59:59.999Z","cluster":"c1"}',
    )
    add(
        first,
        0,
        1,
        b'{"service_account":"a","type":"fetch","bytes":40,'
        b'"timestamp":"2026-02-01T00:00:00Z","cluster":"c1","client_id":"x"}',
    )
    add(first, 1, 0, b"oops")
    writer.apply(first)
    second = Batch()
    add(
        second,
        0,
        2,
        b'[{"service_account":"User:a","type":"produce","bytes":5,'
        b'"timestamp":"2026-01-31T10:00:00Z","cluster":"c1"},'
        b'{"service_account":"b","type":"fetch","bytes":2,'
        b'"timestamp":"2026-01-31T10:00:00Z"}]',
    )
    writer.apply(second)

    daily = con.execute(
        "SELECT day, cluster, service_account, produced_bytes, consumed_bytes"
        " FROM usage_daily ORDER BY ALL"
    ).fetchall()
    assert daily == [
        (date(2026, 1, 31), "c1", "a", 105, 0),
        (date(2026, 1, 31), "default", "b", 0, 2),
        (date(2026, 2, 1), "c1", "a", 0, 40),
    ]
    monthly = con.execute("SELECT * FROM usage_monthly ORDER BY ALL").fetchall()
    assert monthly == [
        (date(2026, 1, 1), "c1", "a", 105, 0),
        (date(2026, 1, 1), "default", "b", 0, 2),
        (date(2026, 2, 1), "c1", "a", 0, 40),
    ]
    assert writer.stored_offsets("t") == {0: 3, 1: 1}
    rejected = con.execute(
        'SELECT topic, "partition", "offset", reason, payload FROM rejected_events'
    ).fetchall()
    assert rejected == [("t", 1, 0, "not JSON (or not UTF-8)", "oops")]
    con.close()


def test_sums_beyond_64_bits_stay_exact(tmp_path: Path) -> None:
    con = open_store(tmp_path / "store.duckdb")
    writer = StoreWriter(con)
    batch = Batch()
    value = b'{"service_account":"big","type":"produce","bytes":9007199254740992,"timestamp":0}'
    for offset in range(2048):  # 2048 * 2^53 = 2^64: past a signed 64-bit column
        add(batch, 0, offset, value)
    writer.apply(batch)
    writer.apply(batch)
    row = con.execute("SELECT produced_bytes FROM usage_daily").fetchone()
    assert row == (2 * 2**64,)
    assert con.execute("SELECT sum(event_count) FROM usage_totals").fetchone() == (4096,)
    con.close()


def test_a_series_numbered_0_is_found_again(tmp_path: Path) -> None:
    # Stores built outside the service (the export benchmark's) number series from 0; the writer
    # must add to that series, not insert it a second time.
    con = open_store(tmp_path / "store.duckdb")
    con.execute("INSERT INTO series VALUES (0, 'default', 'a', '', '')")
    writer = StoreWriter(con)
    batch = Batch()
    add(batch, 0, 0, b'{"service_account":"a","type":"produce","bytes":5,"timestamp":0}')
    writer.apply(batch)
    assert con.execute("SELECT series_id, produced_bytes FROM usage_totals").fetchall() == [(0, 5)]
    con.close()


def test_the_first_writer_pins_the_time_zone_and_another_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    con = open_store(db)
    pin_timezone(con, "Europe/Berlin", db)
    pin_timezone(con, "Europe/Berlin", db)  # the same zone again: fine
    con.close()
    done = subprocess.run(
        [sys.executable, "-m", "chargeback", "ingest", "--db", str(db), "--timezone", "UTC"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert f"the store {db} counts days in Europe/Berlin" in done.stderr
    con = open_store(db)
    assert con.execute("FROM store_settings").fetchall() == [("timezone", "Europe/Berlin")]
    con.close()


def test_a_failed_batch_leaves_nothing_behind(tmp_path: Path) -> None:
    con = open_store(tmp_path / "store.duckdb")
    writer = StoreWriter(con)
    batch = Batch()
    add(batch, 0, 0, b'{"service_account":"a","type":"produce","bytes":1,"timestamp":0}')
    con.execute("DROP TABLE ingest_offsets")  # the last statement of the transaction will fail
    with pytest.raises(duckdb.Error):
        writer.apply(batch)
    assert con.execute("SELECT count(*) FROM usage_totals").fetchone() == (0,)
    assert con.execute("SELECT count(*) FROM series").fetchone() == (0,)
    assert writer.series == {}
    con.close()


def test_a_second_writer_gets_a_clear_lock_error(tmp_path: Path) -> None:
    path = tmp_path / "store.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('open', flush=True);"
            " time.sleep(60)",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreLockedError, match="locked by another process"):
            open_store(path)
    finally:
        holder.kill()
        holder.communicate()


MONTHLY_FROM_DAILY = (
    "SELECT CAST(date_trunc('month', day) AS DATE) AS month, series_id, sum(produced_bytes),"
    " sum(consumed_bytes), sum(event_count) FROM usage_totals GROUP BY ALL ORDER BY ALL"
)
MONTHLY = (
    "SELECT month, series_id, produced_bytes, consumed_bytes, event_count"
    " FROM usage_monthly_totals ORDER BY ALL"
)


def test_a_version_1_store_gets_its_monthly_totals_filled(tmp_path: Path) -> None:
    path = tmp_path / "store.duckdb"
    con = duckdb.connect(str(path))  # a store as release 1 left it
    con.execute(read_sql("001_initial.sql"))
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMPTZ)")
    con.execute("INSERT INTO schema_version VALUES (1, now())")
    con.execute("INSERT INTO series VALUES (1, 'c', 'a', '', ''), (2, 'c', 'b', 'x', 't')")
    con.execute(
        "INSERT INTO usage_totals SELECT DATE '2026-01-01' + CAST(i AS INTEGER), 1 + i % 2,"
        " CAST(i AS HUGEINT) * 1000000000000, 2 * i, 1 FROM range(70) AS t(i)"
    )
    con.execute("INSERT INTO usage_totals VALUES ('2026-02-02', 2, 170141183460469231731, 0, 5)")
    con.close()
    con = open_store(path)
    assert schema_version(con) == 3  # through 2 (monthly totals) and 3 (store settings)
    monthly = con.execute(MONTHLY).fetchall()
    assert monthly == con.execute(MONTHLY_FROM_DAILY).fetchall()
    assert [(m.month, sid) for m, sid, *_ in monthly] == [
        (1, 1),
        (1, 2),
        (2, 1),
        (2, 2),
        (3, 1),
        (3, 2),
    ]
    con.close()


def test_the_writer_keeps_the_monthly_totals_equal_to_the_daily_ones(tmp_path: Path) -> None:
    con = open_store(tmp_path / "store.duckdb")
    writer = StoreWriter(con)
    big = b'{"service_account":"big","type":"produce","bytes":9007199254740992,"timestamp":0}'
    for round_ in range(3):
        batch = Batch()
        for offset in range(40):
            day = f"2026-0{1 + offset % 3}-{1 + (offset * 7 + round_) % 28:02d}"
            add(
                batch,
                0,
                round_ * 100 + offset,
                b'{"service_account":"s%d","type":"fetch","bytes":%d,"timestamp":"%sT10:00:00Z"}'
                % (offset % 4, offset + 1, day.encode()),
            )
        for offset in range(1100):  # past 2^63 bytes in one (month, series): split rows
            add(batch, 1, round_ * 10_000 + offset, big)
        writer.apply(batch)
    assert con.execute(MONTHLY).fetchall() == con.execute(MONTHLY_FROM_DAILY).fetchall()
    assert con.execute("SELECT count(*) FROM usage_monthly_totals").fetchone() == (13,)
    con.close()


def test_a_batch_sum_beyond_64_bits_is_stored_exactly(tmp_path: Path) -> None:
    # The writer carries a batch in 64-bit Arrow columns; a larger sum must arrive whole.
    con = open_store(tmp_path / "store.duckdb")
    writer = StoreWriter(con)
    batch = Batch()
    day = date(2026, 1, 2)
    batch.totals[(day, "c", "big", "", "")] = [2**64 + 5, 2**63, 7]
    batch.totals[(day, "c", "small", "", "")] = [1, 2, 1]
    batch.advance("t", 0, 0)
    writer.apply(batch)
    rows = con.execute(
        "SELECT s.service_account, t.produced_bytes, t.consumed_bytes, t.event_count"
        " FROM usage_totals t JOIN series s USING (series_id) ORDER BY 1"
    ).fetchall()
    assert rows == [
        ("big", 18_446_744_073_709_551_621, 9_223_372_036_854_775_808, 7),
        ("small", 1, 2, 1),
    ]
    monthly = con.execute("SELECT sum(produced_bytes) FROM usage_monthly_totals").fetchone()
    assert monthly == (18_446_744_073_709_551_622,)
