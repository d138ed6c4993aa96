"""Applies a batch to the store in one transaction: totals, rejections and offsets land together."""

import threading
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from consumer.batch import Batch

SQL_DIR = Path(__file__).parent / "sql"
INT64_MAX = 2**63 - 1
SeriesKey = tuple[str, str, str, str]  # cluster, service_account, client_id, topic


def _sql(name: str) -> str:
    return (SQL_DIR / name).read_text(encoding="utf-8")


class StoreWriter:
    """The store's single writer. It keeps the series ids in memory; the store stays the truth."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        # Held while a batch is written, so the publisher can copy the file between two batches.
        self.lock = threading.Lock()
        self.sql = {
            name: _sql(f"{name}.sql")
            for name in (
                "insert_series",
                "upsert_totals",
                "upsert_monthly_totals",
                "insert_rejections",
                "upsert_offsets",
                "stored_offsets",
            )
        }
        self._load_series()

    def _series_id(self, key: SeriesKey, new_series: dict[SeriesKey, int]) -> int:
        sid = self.series.get(key)
        if sid is None:
            sid = new_series.get(key)
        if sid is None:
            sid = new_series[key] = self.next_series_id + len(new_series)
        return sid

    def _load_series(self) -> None:
        rows = self.con.execute(
            "SELECT series_id, cluster, service_account, client_id, topic FROM series"
        ).fetchall()
        self.series: dict[SeriesKey, int] = {(c, a, i, t): sid for sid, c, a, i, t in rows}
        self.next_series_id = max(self.series.values(), default=0) + 1

    def stored_offsets(self, topic: str) -> dict[int, int]:
        with self.lock:
            rows = self.con.execute(self.sql["stored_offsets"], {"topic": topic}).fetchall()
        return {int(partition): int(offset) for partition, offset in rows}

    def apply(self, batch: Batch) -> None:
        """Write the batch atomically; on failure nothing of it is visible and it may be retried."""
        new_series: dict[SeriesKey, int] = {}
        totals = self._totals_table(batch, new_series)
        with self.lock:
            self._write(batch, new_series, totals)
        self.series.update(new_series)
        self.next_series_id += len(new_series)

    def _write(self, batch: Batch, new_series: dict[SeriesKey, int], totals: pa.Table) -> None:
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            if new_series:
                con.register("batch_series", _series_table(new_series))
                con.execute(self.sql["insert_series"])
            if totals.num_rows:
                con.register("batch_totals", totals)
                con.execute(self.sql["upsert_totals"])
                con.execute(self.sql["upsert_monthly_totals"])
            if batch.rejections:
                con.register("batch_rejections", _rejections_table(batch))
                con.execute(self.sql["insert_rejections"])
            if batch.next_offsets:
                con.register("batch_offsets", _offsets_table(batch))
                con.execute(self.sql["upsert_offsets"])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            for name in ("batch_series", "batch_totals", "batch_rejections", "batch_offsets"):
                con.unregister(name)

    def _totals_table(self, batch: Batch, new_series: dict[SeriesKey, int]) -> pa.Table:
        keys = list(batch.totals)
        sums = list(batch.totals.values())
        days = [key[0] for key in keys]
        ids = [self._series_id(key[1:], new_series) for key in keys]
        produced = [s[0] for s in sums]
        consumed = [s[1] for s in sums]
        events = [s[2] for s in sums]
        if max(produced, default=0) > INT64_MAX or max(consumed, default=0) > INT64_MAX:
            days, ids, produced, consumed, events = _split_wide(
                days, ids, produced, consumed, events
            )
        return pa.table(
            {
                "day": pa.array(days, pa.date32()),
                "series_id": pa.array(ids, pa.int32()),
                "produced": pa.array(produced, pa.int64()),
                "consumed": pa.array(consumed, pa.int64()),
                "events": pa.array(events, pa.int64()),
            }
        )


def _split_wide(
    days: list[Any], ids: list[int], produced: list[int], consumed: list[int], events: list[int]
) -> tuple[list[Any], list[int], list[int], list[int], list[int]]:
    """The same rows, a sum beyond the 64-bit columns carried as several rows of one key."""
    rows: list[tuple[Any, int, int, int, int]] = []
    for day, sid, p, c, n in zip(days, ids, produced, consumed, events, strict=True):
        while p > INT64_MAX or c > INT64_MAX:
            rows.append((day, sid, min(p, INT64_MAX), min(c, INT64_MAX), 0))
            p -= min(p, INT64_MAX)
            c -= min(c, INT64_MAX)
        rows.append((day, sid, p, c, n))
    return (
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [r[4] for r in rows],
    )


def _series_table(new_series: dict[SeriesKey, int]) -> pa.Table:
    keys = list(new_series)
    return pa.table(
        {
            "series_id": pa.array([new_series[k] for k in keys], pa.int32()),
            "cluster": [k[0] for k in keys],
            "service_account": [k[1] for k in keys],
            "client_id": [k[2] for k in keys],
            "topic": [k[3] for k in keys],
        }
    )


def _rejections_table(batch: Batch) -> pa.Table:
    rows = batch.rejections
    return pa.table(
        {
            "received_at": pa.array([r.received_at for r in rows], pa.timestamp("us", tz="UTC")),
            "topic": [r.topic for r in rows],
            "partition": pa.array([r.partition for r in rows], pa.int32()),
            "offset": pa.array([r.offset for r in rows], pa.int64()),
            "reason": [r.reason for r in rows],
            "payload": pa.array([r.payload for r in rows], pa.string()),
        }
    )


def _offsets_table(batch: Batch) -> pa.Table:
    items = list(batch.next_offsets.items())
    return pa.table(
        {
            "topic": [topic for (topic, _), _ in items],
            "partition": pa.array([partition for (_, partition), _ in items], pa.int32()),
            "next_offset": pa.array([offset for _, offset in items], pa.int64()),
        }
    )
