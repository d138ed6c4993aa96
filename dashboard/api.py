"""The dashboard's JSON API, without HTTP: query parameters in, plain dicts (or CSV text) out.

Every table goes through `export.job.resolve` and `export.job.query`, the functions behind
`chargeback export`, and the CSV through `export.csvfile.render_csv`: the page, its "Export all"
button and the CLI cannot disagree. Every input is checked before the store is opened: bad input
is an `InputError` (HTTP 400), a store or rates file that cannot be read a `ChargebackError`
(HTTP 409).
"""

import os
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, cast

import duckdb

from chargeback.errors import UsageError
from export.csvfile import file_name, format_value, render_csv
from export.job import ExportRequest, query, resolve
from export.periods import BUCKETS, Period, parse_date
from export.table import ChargebackTable, Tab, Value, clusters, parse_sort
from views.publish import copy_path_for
from views.rates import (
    DEFAULT_RATES,
    UNIT_TEXT,
    RateBook,
    load_rates,
    parse_currency,
    parse_price,
    rates_path_for,
    save_rates,
    set_rate,
)
from views.reader import ReadView, open_reader

TABLE_PARAMS = ("tab", "period", "as_of", "from", "to", "bucket", "filter", "cluster", "sort")
MAX_VALUE_CHARS = 256
CHART_ACCOUNTS = 8


class InputError(UsageError):
    """A request the API refuses as it stands (HTTP 400)."""


@dataclass(frozen=True)
class Settings:
    db: Path
    timezone: str = "UTC"
    token: str | None = None


# One reader at a time: DuckDB's file locks are per process (docs/design.md, "One trap"), so two
# threads attaching and detaching the same file could drop each other's lock. Reads take ~0.1 s.
_READ_LOCK = threading.Lock()
# Read-modify-write of rates.toml, so two dialogs saving at once cannot lose an entry.
_RATES_LOCK = threading.Lock()


def table_request(params: list[tuple[str, str]], settings: Settings) -> ExportRequest:
    """The export request these query parameters describe, every value checked."""
    values = checked_params(params, TABLE_PARAMS)
    tab = Tab.parse(values.get("tab") or "cost")
    bucket = values.get("bucket") or "day"
    if bucket not in BUCKETS:
        raise InputError(f"bucket must be 'day' or 'month', got {bucket!r}")

    def day(name: str) -> Any:
        text = values.get(name)
        return None if not text else parse_date(text, name)

    first, last = day("from"), day("to")
    period = values.get("period") or (None if first or last else "30D")
    return ExportRequest(
        tab=tab,
        period=period,
        as_of=day("as_of"),
        first=first,
        last=last,
        bucket=bucket,
        filter_text=values.get("filter") or None,
        cluster=values.get("cluster") or None,
        sort=values.get("sort") or None,
        db=settings.db,
        timezone=settings.timezone,
    )


def checked_params(params: list[tuple[str, str]], allowed: tuple[str, ...]) -> dict[str, str]:
    values: dict[str, str] = {}
    for key, value in params:
        if key not in allowed:
            raise InputError(f"unknown parameter {key[:40]!r}: use {', '.join(allowed)}")
        if key in values:
            raise InputError(f"parameter {key!r} is given twice")
        if len(value) > MAX_VALUE_CHARS:
            raise InputError(f"parameter {key!r} is longer than {MAX_VALUE_CHARS} characters")
        if any(ord(char) < 0x20 for char in value):
            raise InputError(f"parameter {key!r} contains control characters")
        values[key] = value
    return values


def checked_table(
    params: list[tuple[str, str]], settings: Settings
) -> tuple[ExportRequest, Period]:
    """Validate everything (tab, dates, period, sort against the header) before any file."""
    try:
        request = table_request(params, settings)
        period = resolve(request)
        # The header depends on the period only, not on the rates.
        parse_sort(request.sort, ChargebackTable(period, request.tab, DEFAULT_RATES, ()).header)
    except InputError:
        raise
    except UsageError as error:
        # The export's messages name CLI flags (--from); here they are query parameters.
        raise InputError(str(error).replace("--", "")) from None
    return request, period


def read_table(params: list[tuple[str, str]], settings: Settings) -> tuple[ChargebackTable, Any]:
    request, period = checked_table(params, settings)
    with _READ_LOCK:
        view = open_reader(settings.db)
        try:
            cached = replace(view, con=cast(duckdb.DuckDBPyConnection, _CellCache(view)))
            table = query(cached, request, period, exact=True)
        finally:
            view.close()
    return table, source_info(view, settings.db)


class _CellCache:
    """The reader's connection, remembering the answers of `build_table`'s one query.

    The query (export/sql/chargeback_cells.sql) depends on the tab but not on the sort, so
    sorting, or going back to a tab already seen, re-arranges remembered rows through the same
    `build_table` instead of reading the file again. An answer is reused only for the same SQL
    and parameters, the same file unchanged (path, size, modification time, and its WAL's) and
    the same rates.
    """

    entries: ClassVar[OrderedDict[Hashable, list[Any]]] = OrderedDict()
    size: ClassVar[int] = 24

    def __init__(self, view: ReadView) -> None:
        self.con = view.con
        self.key = (_file_key(view.source), view.rates)

    def execute(self, sql: str, parameters: dict[str, Any]) -> "_CellCache":
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in parameters.items()}
        key = (self.key, sql, tuple(sorted(values.items())))
        rows = self.entries.get(key)
        if rows is None:
            rows = self.con.execute(sql, parameters).fetchall()
            self.entries[key] = rows
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)
        self.entries.move_to_end(key)
        self.rows = rows
        return self

    def fetchall(self) -> list[Any]:
        return self.rows


def _file_key(path: Path) -> tuple[object, ...]:
    wal = path.with_name(path.name + ".wal")
    stats = [os.stat(p) for p in (path, wal) if p.exists()]
    return (str(path.resolve()), *((s.st_size, s.st_mtime_ns, s.st_ino) for s in stats))


def source_info(view: ReadView, db: Path) -> dict[str, Any]:
    copy = view.source == copy_path_for(db)
    age = (datetime.now(UTC) - view.data_time).total_seconds()
    return {
        "path": str(view.source),
        "kind": "published copy" if copy else "store",
        "data_time": view.data_time.isoformat(timespec="seconds"),
        "age_seconds": max(0, round(age)),
    }


def table_json(params: list[tuple[str, str]], settings: Settings) -> dict[str, Any]:
    table, source = read_table(params, settings)
    rates = table.rates
    period = table.period
    return {
        "tab": {"id": table.tab.id, "title": table.tab.title},
        "kind": "money" if table.tab is Tab.COST else "bytes",
        "currency": rates.currency,
        "unit": rates.unit,
        "default_rates": rates.is_default,
        "period": {
            "name": period.name,
            "first": period.first.isoformat(),
            "last": period.last.isoformat(),
            "bucket": period.bucket,
        },
        "header": table.header,
        "rows": [
            [row.service_account, *row.text.split(","), text(row.total)] for row in table.rows
        ],
        "totals": [text(value) for value in table.column_totals()],
        "chart": chart(table),
        "file_name": file_name(table),
        "source": source,
    }


def text(value: Value) -> str:
    """A value exactly as the CSV writes it: integer bytes, or money with two places."""
    return format_value(value)


def chart(table: ChargebackTable) -> dict[str, Any]:
    """The top accounts by exact total, each bucket's values, and the rest as one band."""
    ranked = sorted(table.rows, key=lambda row: (-row.exact_total, row.service_account))
    top, rest = ranked[:CHART_ACCOUNTS], ranked[CHART_ACCOUNTS:]
    series = [{"name": row.service_account, "values": row.text.split(",")} for row in top]
    if rest:
        columns = zip(*(row.exact for row in rest), strict=True)
        others = [table.shown(sum(column, Decimal(0))) for column in columns]
        if table.tab is not Tab.COST:
            others = [int(value) for value in others]
        series.append({"name": f"others ({len(rest)})", "values": list(map(text, others))})
    return {"series": series}


def csv_export(params: list[tuple[str, str]], settings: Settings) -> tuple[str, str]:
    """(file name, text): what `chargeback export` writes for the same view."""
    table, _ = read_table(params, settings)
    return file_name(table), render_csv(table)


_CLUSTERS: dict[tuple[object, ...], list[str]] = {}


def clusters_json(settings: Settings) -> dict[str, Any]:
    with _READ_LOCK:
        view = open_reader(settings.db)
        try:
            key = _file_key(view.source)
            if key not in _CLUSTERS:
                _CLUSTERS.clear()  # one file at a time: the last one read
                _CLUSTERS[key] = clusters(view.con)
            names = _CLUSTERS[key]
        finally:
            view.close()
    return {"clusters": names}


def rates_json(settings: Settings) -> dict[str, Any]:
    path = rates_path_for(settings.db)
    return book_json(load_rates(path), path, settings)


def book_json(book: RateBook, path: Path, settings: Settings) -> dict[str, Any]:
    return {
        "path": str(path),
        "default_rates": book.is_default,
        "currency": book.currency,
        "unit": book.unit,
        "unit_text": UNIT_TEXT[book.unit],
        "token_required": settings.token is not None,
        "entries": [
            {
                "from": entry.valid_from.isoformat(),
                "cluster": entry.cluster,
                "ingress": f"{entry.ingress:f}",
                "egress": f"{entry.egress:f}",
            }
            for entry in book.entries
        ],
    }


def set_rates(body: object, settings: Settings) -> dict[str, Any]:
    """POST /api/rates: {ingress, egress, from, currency?, cluster?} -> the new history."""
    if not isinstance(body, dict):
        raise InputError("the body must be a JSON object with ingress, egress and from")
    unknown = set(body) - {"ingress", "egress", "from", "currency", "cluster"}
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(sorted(map(str, unknown)))[:80]}")
    for key in ("ingress", "egress", "from"):
        if key not in body:
            raise InputError(f"field {key!r} is missing")
    for key, value in body.items():
        if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
            raise InputError(f"field {key!r} is longer than {MAX_VALUE_CHARS} characters")
    try:
        ingress = parse_price(_price_text(body["ingress"], "ingress"), "ingress")
        egress = parse_price(_price_text(body["egress"], "egress"), "egress")
        valid_from = parse_date(_string(body["from"], "from"), "from")
        currency = body.get("currency") or None
        if currency is not None:
            currency = parse_currency(currency)
        cluster = body.get("cluster") or None
        if cluster is not None and (not isinstance(cluster, str) or not cluster.strip()):
            raise InputError(f"cluster must be a non-empty string, got {cluster!r}")
    except InputError:
        raise
    except UsageError as error:
        raise InputError(str(error)) from None
    path = rates_path_for(settings.db)
    with _RATES_LOCK:
        book = set_rate(load_rates(path), ingress, egress, valid_from, cluster, currency)
        save_rates(path, book)
    return book_json(book, path, settings)


def _string(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"{what} must be a string YYYY-MM-DD, got {value!r}")
    return value


def _price_text(value: object, what: str) -> str:
    # A JSON number arrives as a float: take prices as strings (or integers) to keep them exact.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InputError(f'{what} must be a string such as "0.05", got {value!r}')
    return str(value)
