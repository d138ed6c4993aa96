"""Rates (PRODUCT.md §3): the rates file, the prices in force on a day, the cost views.

The rates file is TOML, beside the store (`rates.toml` next to `chargeback.duckdb`), meant to be
edited by hand or with `chargeback rates set` and kept in git (docs/rates.md):

    currency = "USD"          # ISO 4217 code, three letters; default USD
    unit = "GB"               # GB = 10^9 bytes (default) or GiB = 2^30 bytes

    [[rate]]
    from = 2026-01-01         # TOML date: the first day this entry prices
    ingress = "0.05"          # price per unit produced (string or number, read exactly)
    egress = "0.09"           # price per unit consumed

    [[rate]]
    from = 2026-06-01
    cluster = "prod-eu"       # optional: overrides the global entries for this cluster
    ingress = "0.04"
    egress = "0.08"

A day is priced by the latest entry of its cluster that starts on or before it; failing that, by
the latest global entry (no `cluster`) that starts on or before it; failing that (the day is older
than every global entry) by the earliest global entry, so setting your first rate prices all past
usage too. At least one global entry is required so that every cluster always has a price.

Without a rates file, DEFAULT_RATES apply (0.10 USD per GB each way) and outputs say so.
Costs are exact to 10^-9 per (day, cluster, account) row, truncated; `round_money` rounds for
display only (two places, half up).
"""

import os
import tempfile
import tomllib
from dataclasses import dataclass, replace
from datetime import date, time
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import duckdb

from chargeback.errors import UsageError
from views.store import read_sql

RATES_FILE = "rates.toml"
UNIT_BYTES: dict[str, int] = {"GB": 10**9, "GiB": 2**30}
UNIT_TEXT: dict[str, str] = {"GB": "10^9 bytes", "GiB": "2^30 bytes"}
# Prices are stored as DECIMAL(18,9) in DuckDB: nine places, below 10^9.
PRICE_PLACES = 9
PRICE_LIMIT = Decimal(10) ** (18 - PRICE_PLACES)
NANO = Decimal(1).scaleb(-PRICE_PLACES)
CENT = Decimal("0.01")
# Costs reach ~10^27 (DECIMAL(38,9)): the default 28-digit context could not quantize them.
MONEY_CONTEXT = Context(prec=60)
EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class RateEntry:
    valid_from: date
    cluster: str | None  # None: the global entry, for every cluster without its own
    ingress: Decimal  # per unit produced
    egress: Decimal  # per unit consumed

    def label(self) -> str:
        where = f"cluster {self.cluster}" if self.cluster is not None else "all clusters"
        return f"from {self.valid_from.isoformat()}, {where}"


@dataclass(frozen=True)
class RateBook:
    currency: str
    unit: str
    entries: tuple[RateEntry, ...]  # in date order, the global entry first on a shared date
    is_default: bool = False

    def __post_init__(self) -> None:
        # Without a global entry the cost views would have no price for some clusters' days.
        if self.unit not in UNIT_BYTES or not any(e.cluster is None for e in self.entries):
            raise ValueError("a RateBook needs a known unit and at least one global entry")

    @property
    def unit_bytes(self) -> int:
        return UNIT_BYTES[self.unit]


DEFAULT_RATES = RateBook(
    currency="USD",
    unit="GB",
    entries=(RateEntry(EPOCH, None, Decimal("0.10"), Decimal("0.10")),),
    is_default=True,
)


def rates_path_for(db: Path) -> Path:
    """The rates file that belongs to the store `db`: beside it."""
    return db.parent / RATES_FILE


def entry_order(entry: RateEntry) -> tuple[date, bool, str]:
    return (entry.valid_from, entry.cluster is not None, entry.cluster or "")


# --- parsing -----------------------------------------------------------------------------------


def parse_price(value: object, what: str) -> Decimal:
    """A price from the file or the command line: exact, finite, 0 <= p < 10^9, <= 9 places."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise UsageError(f'{what} must be a number or a string such as "0.05", got {value!r}')
    try:
        price = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise UsageError(f"{what} is not a number: {value!r}") from None
    if not price.is_finite():
        raise UsageError(f"{what} must be a finite number, got {value!r}")
    if price < 0:
        raise UsageError(f"{what} must not be negative, got {value!r}")
    if price >= PRICE_LIMIT:
        raise UsageError(f"{what} must be below {PRICE_LIMIT:f}, got {value!r}")
    if price.quantize(NANO) != price:
        raise UsageError(f"{what} has more than {PRICE_PLACES} decimal places: {value!r}")
    return price


def parse_currency(value: object, what: str = "currency") -> str:
    if not isinstance(value, str) or len(value) != 3 or not value.isascii() or not value.isalpha():
        raise UsageError(f"{what} must be a three-letter code such as USD, got {value!r}")
    return value.upper()


def parse_unit(value: object, what: str = "unit") -> str:
    for unit in UNIT_BYTES:
        if isinstance(value, str) and value.lower() == unit.lower():
            return unit
    raise UsageError(f"{what} must be GB (10^9 bytes) or GiB (2^30 bytes), got {value!r}")


def parse_cluster(value: object, what: str = "cluster") -> str:
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{what} must be a non-empty string, got {value!r}")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise UsageError(f"{what} must not contain control characters, got {value!r}")
    return value


def parse_date(value: object, what: str) -> date:
    # datetime is a subclass of date: a TOML date-time is not a day.
    if isinstance(value, date) and type(value) is date:
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    shown = value.isoformat() if isinstance(value, (date, time)) else repr(value)  # TOML's types
    raise UsageError(f"{what} must be a date such as 2026-01-01, got {shown}")


def parse_rates(document: dict[str, Any], source: str) -> RateBook:
    """The book in a parsed rates file; `source` names the file in every error."""
    unknown = set(document) - {"currency", "unit", "rate"}
    if unknown:
        raise UsageError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}")
    currency = parse_currency(document.get("currency", "USD"), f"{source}: currency")
    unit = parse_unit(document.get("unit", "GB"), f"{source}: unit")
    raw_entries = document.get("rate", [])
    if not isinstance(raw_entries, list) or not all(isinstance(e, dict) for e in raw_entries):
        raise UsageError(f"{source}: `rate` must be a list of [[rate]] tables")
    entries: dict[tuple[date, str | None], RateEntry] = {}
    for number, raw in enumerate(raw_entries, start=1):
        entry = parse_entry(raw, f"{source}: [[rate]] #{number}")
        key = (entry.valid_from, entry.cluster)
        if key in entries:
            raise UsageError(f"{source}: [[rate]] #{number} repeats an entry {entry.label()}")
        entries[key] = entry
    if not any(entry.cluster is None for entry in entries.values()):
        raise UsageError(
            f"{source}: needs at least one [[rate]] without `cluster` (the global price)"
        )
    return RateBook(currency, unit, tuple(sorted(entries.values(), key=entry_order)))


def parse_entry(raw: dict[str, Any], where: str) -> RateEntry:
    unknown = set(raw) - {"from", "cluster", "ingress", "egress"}
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    for key in ("from", "ingress", "egress"):
        if key not in raw:
            raise UsageError(f"{where}: `{key}` is missing")
    valid_from = parse_date(raw["from"], f"{where}: from")
    cluster = parse_cluster(raw["cluster"], f"{where}: cluster") if "cluster" in raw else None
    entry = RateEntry(valid_from, cluster, Decimal(0), Decimal(0))
    where = f"{where} ({entry.label()})"
    return replace(
        entry,
        ingress=parse_price(raw["ingress"], f"{where}: ingress"),
        egress=parse_price(raw["egress"], f"{where}: egress"),
    )


def load_rates(path: Path) -> RateBook:
    """The rates in `path`, or DEFAULT_RATES when there is no such file."""
    try:
        with path.open("rb") as handle:
            # parse_float: a TOML float is read from its text, never through a binary float.
            document = tomllib.load(handle, parse_float=Decimal)
    except FileNotFoundError:
        return DEFAULT_RATES
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"rates file {path} is not valid TOML: {error}") from None
    except OSError as error:
        raise UsageError(f"rates file {path} cannot be read: {error.strerror}") from None
    return parse_rates(document, f"rates file {path}")


# --- prices and money --------------------------------------------------------------------------


def price_for(book: RateBook, cluster: str, day: date) -> RateEntry:
    """The entry that prices `day` on `cluster` (the rule in the module docstring)."""
    own = [e for e in book.entries if e.cluster == cluster and e.valid_from <= day]
    if own:
        return max(own, key=entry_order)
    global_entries = [e for e in book.entries if e.cluster is None]
    in_force = [e for e in global_entries if e.valid_from <= day]
    if in_force:
        return max(in_force, key=entry_order)
    return min(global_entries, key=entry_order)


def round_money(value: Decimal) -> Decimal:
    """A cost as displayed (CSV cell, dashboard): two places, halves rounded up (away from 0)."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP, context=MONEY_CONTEXT)


# --- changing and saving -----------------------------------------------------------------------


def set_rate(
    book: RateBook,
    ingress: Decimal,
    egress: Decimal,
    valid_from: date,
    cluster: str | None = None,
    currency: str | None = None,
    unit: str | None = None,
) -> RateBook:
    """`book` with this entry added, or replacing the one with the same (from, cluster).

    `currency` and `unit` apply to the whole book (prices are not converted). Setting the first
    rate replaces the default entry, except that a first per-cluster rate keeps the default as
    the global entry, written out, so every other cluster still has a price.
    """
    new = RateEntry(
        valid_from,
        None if cluster is None else parse_cluster(cluster),
        parse_price(ingress, "ingress"),
        parse_price(egress, "egress"),
    )
    kept = book.entries if not book.is_default or new.cluster is not None else ()
    entries = [e for e in kept if (e.valid_from, e.cluster) != (new.valid_from, new.cluster)]
    return RateBook(
        currency=book.currency if currency is None else parse_currency(currency),
        unit=book.unit if unit is None else parse_unit(unit),
        entries=tuple(sorted([*entries, new], key=entry_order)),
    )


HEADER = """\
# kafka-chargeback rates (PRODUCT.md §3, docs/rates.md).
# Prices are per unit of bytes: per unit produced (ingress) and per unit consumed (egress),
# in `currency`; unit GB = 10^9 bytes, GiB = 2^30 bytes. Each [[rate]] prices the days from its
# `from` date until the next entry of the same scope; an entry with `cluster` overrides the
# global entries (no `cluster`) for that cluster. Edit by hand or with `chargeback rates set`;
# keep this file in git. Prices are strings so they stay exact decimals.
"""


def toml_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(
        f"\\u{ord(char):04X}" if ord(char) < 0x20 or ord(char) == 0x7F else char for char in escaped
    )
    return f'"{escaped}"'


def render_rates(book: RateBook) -> str:
    lines = [HEADER, f"currency = {toml_string(book.currency)}", f"unit = {toml_string(book.unit)}"]
    for entry in sorted(book.entries, key=entry_order):
        lines += ["", "[[rate]]", f"from = {entry.valid_from.isoformat()}"]
        if entry.cluster is not None:
            lines.append(f"cluster = {toml_string(entry.cluster)}")
        lines.append(f'ingress = "{entry.ingress:f}"')
        lines.append(f'egress = "{entry.egress:f}"')
    return "\n".join(lines) + "\n"


def save_rates(path: Path, book: RateBook) -> None:
    """Write `book` to `path` atomically: a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, aside = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); a file kept in git keeps the usual mode.
        os.chmod(aside, path.stat().st_mode & 0o7777 if path.exists() else 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(render_rates(book))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(aside, path)
    except BaseException:
        Path(aside).unlink(missing_ok=True)
        raise


# --- into DuckDB -------------------------------------------------------------------------------


def install_rates(con: duckdb.DuckDBPyConnection, book: RateBook) -> None:
    """(Re)create the `rates` table from `book` and the cost views over it, in one transaction."""
    rows = []
    for entry in book.entries:
        # valid_to: the next entry of the same scope starts; NULL for the last one.
        later = [
            e.valid_from
            for e in book.entries
            if e.cluster == entry.cluster and e.valid_from > entry.valid_from
        ]
        rows.append(
            [
                entry.cluster,
                entry.valid_from,
                min(later, default=None),
                entry.ingress,
                entry.egress,
                book.currency,
                book.unit,
                book.unit_bytes,
                book.is_default,
            ]
        )
    con.execute("BEGIN TRANSACTION")
    try:
        # The script replaces the table (empty) and the views; views bind by name at query time.
        con.execute(read_sql("cost_views.sql"))
        con.executemany("INSERT INTO rates VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
