"""Opening the DuckDB store: the lock, the schema version and its forward migrations, the views."""

from pathlib import Path

import duckdb

from chargeback.errors import ChargebackError, StoreLockedError, UsageError

SQL_DIR = Path(__file__).parent / "sql"

# Forward migrations, applied in order, each in its own transaction. Never edit a released one:
# add the next number.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, "001_initial.sql"),
    (2, "002_monthly_totals.sql"),
    (3, "003_store_settings.sql"),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


def read_sql(name: str) -> str:
    return (SQL_DIR / name).read_text(encoding="utf-8")


def open_store(path: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the store, migrating it forward when opened for writing."""
    if read_only and not path.exists():
        raise UsageError(f"no store at {path}: run `chargeback ingest` first or pass --db")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as error:
        if "lock" in str(error).lower():
            raise StoreLockedError(
                f"the store {path} is locked by another process (one writer only:"
                " is `chargeback ingest` already running on it?)"
            ) from None
        if is_not_a_database(error):
            raise UsageError(f"{path} is not a DuckDB database: pass another --db") from None
        raise ChargebackError(f"cannot open the store {path}: {first_line(error)}") from None
    except duckdb.Error as error:
        raise ChargebackError(f"cannot open the store {path}: {first_line(error)}") from None
    con.execute("SET enable_progress_bar = false")
    if not read_only:
        if schema_version(con) == 0 and _has_tables(con):
            con.close()
            raise UsageError(
                f"{path} is a DuckDB file but not a kafka-chargeback store: pass another --db"
            )
        migrate(con)
    return con


def _has_tables(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()"
    ).fetchone()
    return bool(row and row[0])


def pin_timezone(con: duckdb.DuckDBPyConnection, zone: str, path: Path) -> None:
    """Record the store's reporting time zone on its first write; refuse another one later."""
    if check_timezone_of(con, zone, path):
        con.execute("INSERT INTO store_settings VALUES ('timezone', ?)", [zone])


def check_timezone_of(con: duckdb.DuckDBPyConnection, zone: str, path: Path) -> bool:
    """Whether the store has no time zone yet; raises if it has another than `zone`."""
    row = con.execute("SELECT value FROM store_settings WHERE name = 'timezone'").fetchone()
    if row is None:
        return True
    if row[0] != zone:
        raise UsageError(
            f"the store {path} counts days in {row[0]} (set when it was first written), this run"
            f" in {zone}: its events would land on other day boundaries; pass --timezone"
            f" {row[0]}, or use a new store"
        )
    return False


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
    ).fetchone()
    if not exists or not exists[0]:
        return 0
    row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def refuse_newer_schema(version: int, store: str) -> None:
    """Raise when a store was written by a newer release, whose schema this one cannot read."""
    if version > SCHEMA_VERSION:
        raise ChargebackError(
            f"{store} has schema version {version}, newer than this kafka-chargeback"
            f" understands ({SCHEMA_VERSION}): upgrade kafka-chargeback"
        )


def migrate(con: duckdb.DuckDBPyConnection) -> None:
    current = schema_version(con)
    refuse_newer_schema(current, "the store")
    for version, name in MIGRATIONS:
        if version <= current:
            continue
        con.execute("BEGIN TRANSACTION")
        con.execute(
            "CREATE TABLE IF NOT EXISTS schema_version"
            " (version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
        )
        con.execute(read_sql(name))
        con.execute("INSERT INTO schema_version VALUES (?, now())", [version])
        con.execute("COMMIT")
    con.execute(read_sql("views.sql"))


def is_not_a_database(error: BaseException) -> bool:
    """DuckDB's answer for a file that exists but is not a database (text, empty, another kind)."""
    return "not a valid DuckDB database file" in str(error)


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
