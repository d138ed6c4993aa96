"""Opening the data for reading, for the export and the dashboard, without ever blocking the writer.

Readers open an in-memory DuckDB, attach the data read-only as `store`, and price it there with the
rates file as it is now (so a rate set a second ago applies at once, service running or not).

Which file: the store itself when no service holds it and it is newer than the published copy (the
freshest data, e.g. after the service was killed before its final copy); otherwise the published
copy, at most the publish interval old.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from chargeback.errors import ChargebackError, UsageError
from views.publish import copy_path_for, sql_literal
from views.rates import RateBook, install_rates, load_rates, rates_path_for
from views.store import first_line, is_not_a_database, refuse_newer_schema

STORE_VIEWS = ("usage_daily", "usage_monthly", "usage_detail", "rejected_events")
# Base tables the export's cells query reads directly (export/sql/chargeback_cells.sql).
STORE_TABLES = ("series", "usage_totals", "usage_monthly_totals")
# A store at schema version 1 (a read copy published by an older service) has no monthly totals:
# they are summed from the daily ones instead, slower but the same numbers.
MONTHLY_FALLBACK = """
CREATE VIEW usage_monthly_totals AS
SELECT CAST(date_trunc('month', day) AS DATE) AS month, series_id,
       sum(produced_bytes) AS produced_bytes, sum(consumed_bytes) AS consumed_bytes,
       sum(event_count) AS event_count
FROM store.main.usage_totals
GROUP BY month, series_id
"""


@dataclass
class ReadView:
    con: duckdb.DuckDBPyConnection  # in memory: the usage views over `store`, rates, cost views
    source: Path  # the file read: the store or its published copy
    data_time: datetime  # when the data read was current
    rates: RateBook

    def close(self) -> None:
        self.con.close()


def open_reader(db: Path, rates_path: Path | None = None) -> ReadView:
    rates = load_rates(rates_path or rates_path_for(db))
    con = duckdb.connect(":memory:")
    con.execute("SET enable_progress_bar = false")
    try:
        source, data_time = _attach_freshest(con, db)
        present = {
            str(row[0])
            for row in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = 'store'"
            ).fetchall()
        }
        _check_version(con, source)
        for view in (*STORE_VIEWS, *STORE_TABLES):
            if view == "usage_monthly_totals" and view not in present:
                con.execute(MONTHLY_FALLBACK)
                continue
            # Names from a fixed list, not from input.
            con.execute(f"CREATE VIEW {view} AS SELECT * FROM store.main.{view}")
        install_rates(con, rates)
    except BaseException:
        con.close()
        raise
    return ReadView(con, source, data_time, rates)


def _check_version(con: duckdb.DuckDBPyConnection, source: Path) -> None:
    tables = con.execute(
        "SELECT count(*) FROM duckdb_tables()"
        " WHERE database_name = 'store' AND table_name = 'schema_version'"
    ).fetchone()
    if not tables or not tables[0]:
        raise UsageError(f"{source} is not a kafka-chargeback store (it has no schema version)")
    row = con.execute("SELECT max(version) FROM store.main.schema_version").fetchone()
    refuse_newer_schema(int(row[0]) if row and row[0] is not None else 0, f"the store {source}")


def _attach_freshest(con: duckdb.DuckDBPyConnection, db: Path) -> tuple[Path, datetime]:
    copy = copy_path_for(db)
    if copy.exists() and (not db.exists() or _mtime(copy) >= _store_mtime(db)):
        return copy, _attach(con, copy)
    if not db.exists():
        raise UsageError(f"no store at {db}: run `chargeback ingest` first, or pass --db")
    try:
        _attach(con, db)
        return db, datetime.now(UTC)
    except duckdb.IOException as error:
        if is_not_a_database(error):
            raise UsageError(f"{db} is not a DuckDB database: pass another --db") from None
        if "lock" not in str(error).lower():
            raise ChargebackError(f"cannot read the store {db}: {first_line(error)}") from None
    if copy.exists():
        return copy, _attach(con, copy)
    raise ChargebackError(
        f"the store {db} is in use by the ingestion service and it has published no read copy"
        f" yet ({copy.name}): wait for it, or run the service with --publish-interval above 0"
    )


def _attach(con: duckdb.DuckDBPyConnection, path: Path) -> datetime:
    """Attach read-only as `store`; returns when its data was current."""
    current = datetime.fromtimestamp(_mtime(path), UTC)
    try:
        # ATTACH takes no bound parameters; the path comes from --db, quoted as a literal.
        con.execute(f"ATTACH {sql_literal(str(path))} AS store (READ_ONLY)")
    except duckdb.IOException:
        raise
    except duckdb.Error as error:
        raise ChargebackError(f"cannot read {path}: {first_line(error)}") from None
    return current


def _mtime(path: Path) -> float:
    return path.stat().st_mtime


def _store_mtime(db: Path) -> float:
    wal = db.with_name(db.name + ".wal")
    return max(_mtime(db), _mtime(wal) if wal.exists() else 0.0)
