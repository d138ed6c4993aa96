"""The Chargeback table: one row per service account, one column per bucket, then Total.

This is the one query path behind both the CSV export and the dashboard, so they cannot disagree.
Costs are shown rounded to cents (half up), each cell and each total from its own exact value
(docs/rates.md): a total is never a sum of rounded cells, so thirty days of 0.004 show 0.00 each
and a Total of 0.12.

The query pivots in SQL and writes each row's cells as the CSV shows them (export/sql/
chargeback_cells.sql): with 10,000 accounts and 30 days that is 300,000 cells, and turning each
into Python numbers and back into text took longer than the whole query. A row keeps that text;
its cells are parsed into numbers only where numbers are needed (sorting by a bucket, the
dashboard's totals row and chart).
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import duckdb

from chargeback.errors import UsageError
from export.periods import Period
from views.rates import MONEY_CONTEXT, RateBook, round_money

SQL_DIR = Path(__file__).parent / "sql"
NAME_COLUMN = "Service Account"
TOTAL_COLUMN = "Total"


class Tab(Enum):
    """The three tabs (PRODUCT.md §5): id, title, and the word in the CSV file name."""

    COST = ("cost", "Overall Cost", "OverallCost")
    INGRESS = ("ingress", "Ingress", "Ingress")
    EGRESS = ("egress", "Egress", "Egress")

    def __init__(self, id: str, title: str, file_word: str) -> None:
        self.id = id
        self.title = title
        self.file_word = file_word

    @classmethod
    def parse(cls, text: str) -> "Tab":
        for tab in cls:
            if text.strip().lower() == tab.id:
                return tab
        raise UsageError(f"unknown tab {text!r}: use one of cost, ingress, egress")


Value = int | Decimal


@dataclass(frozen=True)
class Row:
    service_account: str
    text: str  # the cells as shown, comma-separated in bucket order: the CSV's own text
    total: Value  # as shown: a cost total is rounded from the exact sum
    exact_total: Value  # the total before rounding
    money: bool  # the cells are costs (Decimal), not bytes (int)
    exact_text: str | None = None  # costs, when asked for: the cells before rounding, in 10^-9

    @property
    def cells(self) -> tuple[Value, ...]:
        """One per bucket, in bucket order, as shown (costs rounded)."""
        return tuple(map(self._parse, self.text.split(",")))

    def cell(self, index: int) -> Value:
        return self._parse(self.text.split(",")[index])

    @property
    def exact(self) -> tuple[Value, ...]:
        """The cells before rounding (for the totals row and the dashboard's chart)."""
        if not self.money:
            return self.cells
        if self.exact_text is None:
            raise ValueError("the exact costs were not read: build_table(..., exact=True)")
        return tuple(nanos_to_money(int(n)) for n in self.exact_text.split(","))

    def _parse(self, text: str) -> Value:
        return Decimal(text) if self.money else int(text)


@dataclass(frozen=True)
class Sort:
    column: str  # a header name, exactly as in the table
    descending: bool


@dataclass(frozen=True)
class ChargebackTable:
    period: Period
    tab: Tab
    rates: RateBook
    rows: tuple[Row, ...]

    @property
    def header(self) -> list[str]:
        return [NAME_COLUMN, *map(self.period.bucket_label, self.period.buckets()), TOTAL_COLUMN]

    def column_totals(self) -> list[Value]:
        """The totals row: each bucket's sum over the rows shown, then the grand total."""
        width = len(self.period.buckets())
        exact = [row.exact for row in self.rows]
        columns = zip(*exact, strict=True) if exact else [()] * width
        sums: list[Value] = [sum(column) for column in columns]
        return [*map(self.shown, sums), self.shown(sum(sums))]

    def shown(self, exact: Value) -> Value:
        return round_money(Decimal(exact)) if self.tab is Tab.COST else exact


def parse_sort(text: str | None, header: Sequence[str]) -> Sort:
    """`COLUMN[:asc|:desc]`, the column named as in the header (any case).

    Without a direction, names sort ascending and numbers descending. Default: Total descending.
    """
    if not text:
        return Sort(TOTAL_COLUMN, True)
    name, _, direction = text.rpartition(":")
    if direction.lower() not in ("asc", "desc"):
        name, direction = text, ""
    aliases = {"service_account": NAME_COLUMN, "account": NAME_COLUMN, "name": NAME_COLUMN}
    wanted = aliases.get(name.strip().lower(), name.strip())
    column = next((c for c in header if c.lower() == wanted.lower()), None)
    if column is None:
        raise UsageError(
            f"cannot sort by {name!r}: use '{NAME_COLUMN}', '{TOTAL_COLUMN}' or a bucket"
            f" ({header[1]} … {header[-2]}), optionally with :asc or :desc"
            if len(header) > 2
            else f"cannot sort by {name!r}: use '{NAME_COLUMN}' or '{TOTAL_COLUMN}'"
        )
    if direction:
        return Sort(column, direction.lower() == "desc")
    return Sort(column, column != NAME_COLUMN)


def build_table(
    con: duckdb.DuckDBPyConnection,
    rates: RateBook,
    period: Period,
    tab: Tab,
    filter_text: str | None = None,
    cluster: str | None = None,
    sort: Sort | None = None,
    exact: bool = False,
) -> ChargebackTable:
    """Query the rows of the period (pivoted in SQL) and sort them as the table shows them.

    `exact`: also read each cost cell before rounding (`Row.exact`: the dashboard's totals row
    and chart); the CSV does not need them."""
    sql, parameters = cells_query(period, rates, tab, cluster, filter_text, exact=exact)
    empty = ChargebackTable(period, tab, rates, ())
    money = tab is Tab.COST
    rows = []
    for account, text, exact_text, total in con.execute(sql, parameters).fetchall():
        exact_total = nanos_to_money(int(total)) if money else int(total)
        rows.append(Row(account, text, empty.shown(exact_total), exact_total, money, exact_text))
    ordered = sort_rows(rows, sort or parse_sort(None, empty.header), empty.header)
    return ChargebackTable(period, tab, rates, tuple(ordered))


@dataclass(frozen=True)
class Piece:
    """Days first..last of one bucket, inside one month, that one rate entry prices throughout
    for every cluster: a whole month read from `usage_monthly_totals`, or days from
    `usage_totals`."""

    first: date
    last: date
    whole_month: bool


def read_plan(
    period: Period,
    rates: RateBook | None,
    cluster: str | None = None,
    monthly_totals: bool = True,
) -> list[Piece]:
    """The period cut into pieces for the cells query (export/sql/chargeback_cells.sql).

    Daily buckets: one piece of days (each day is its own bucket and has one entry in force).
    Monthly buckets: each month inside the period that no rate entry starts in after its first
    day is one whole-month piece; the other days (a partial first or last month, a month with a
    rate change) are cut into pieces of days at every date a rate entry starts. The entries
    considered are the global ones and those of `cluster` (all clusters' when None), so a piece
    has one entry in force for every cluster it reads; `rates` None (bytes, not priced): none.
    `monthly_totals=False` reads every day from the daily totals (the tests compare both ways).
    """
    if period.bucket == "day":
        return [Piece(period.first, period.last, False)]
    entries = rates.entries if rates is not None else ()
    starts = sorted(
        {e.valid_from for e in entries if cluster is None or e.cluster in (None, cluster)}
    )
    pieces: list[Piece] = []
    month = period.first.replace(day=1)
    while month <= period.last:
        month_end = _month_end(month)
        first, last = max(period.first, month), min(period.last, month_end)
        cuts = [d for d in starts if first < d <= last]
        whole = first == month and last == month_end
        if whole and not cuts and monthly_totals:
            pieces.append(Piece(first, last, True))
        else:
            ends = [d - timedelta(days=1) for d in cuts]
            pieces += [
                Piece(a, b, False) for a, b in zip([first, *cuts], [*ends, last], strict=True)
            ]
        if month_end == date.max:  # December 9999: there is no next month
            break
        month = month_end + timedelta(days=1)
    return pieces


def cells_query(
    period: Period,
    rates: RateBook,
    tab: Tab,
    cluster: str | None = None,
    filter_text: str | None = None,
    monthly_totals: bool = True,
    exact: bool = False,
) -> tuple[str, dict[str, Any]]:
    """The table's query for the period and tab, and its parameters (values never go into the
    text): one row per account, (service_account, shown, exact, total), see the SQL file;
    `exact` also reads the exact cost of each cell (else NULL)."""
    params: dict[str, Any] = {
        "cluster": cluster or None,
        "filter": filter_text or None,
        "period_first": period.first,
        "period_last": period.last,
        "buckets": period.buckets(),
        "money": tab is Tab.COST,
        "exact": exact and tab is Tab.COST,
    }
    priced = rates if tab is Tab.COST else None
    pieces = read_plan(period, priced, cluster or None, monthly_totals)
    day_rows, month_ranges = [], []
    for n, piece in enumerate(pieces):
        params[f"p{n}_first"], params[f"p{n}_last"] = piece.first, piece.last
        if piece.whole_month:
            month_ranges.append(f"m.month BETWEEN $p{n}_first AND $p{n}_last")
        elif period.bucket == "day":  # one piece: every day is its own bucket and piece
            day_rows.append(
                "SELECT t.day AS bucket, t.day AS piece_start, t.series_id, t.produced_bytes,"
                " t.consumed_bytes FROM usage_totals AS t"
                f" WHERE t.day BETWEEN $p{n}_first AND $p{n}_last"
            )
        else:  # one scan per piece: a single range lets DuckDB skip the other row groups
            params[f"p{n}_bucket"] = period.bucket_of(piece.first)
            day_rows.append(
                f"SELECT CAST($p{n}_bucket AS DATE) AS bucket,"
                f" CAST($p{n}_first AS DATE) AS piece_start, t.series_id,"
                " sum(t.produced_bytes) AS produced_bytes, sum(t.consumed_bytes) AS consumed_bytes"
                f" FROM usage_totals AS t WHERE t.day BETWEEN $p{n}_first AND $p{n}_last"
                " GROUP BY t.series_id"
            )
    no_days = (
        "SELECT t.day AS bucket, t.day AS piece_start, t.series_id, t.produced_bytes,"
        " t.consumed_bytes FROM usage_totals AS t WHERE FALSE"
    )
    pieces_per_bucket = Counter(period.bucket_of(piece.first) for piece in pieces)
    split = params["split_buckets"] = sorted(b for b, n in pieces_per_bucket.items() if n > 1)
    template = (SQL_DIR / "chargeback_cells.sql").read_text(encoding="utf-8")
    sql = template.format(
        day_rows="\n    UNION ALL\n    ".join(day_rows) or no_days,
        month_filter=" OR ".join(month_ranges) or "FALSE",
        by_entry="split_entries" if split else "entries",  # fixed names, never input
        tab=tab.id,  # fixed names, never input
        tab_cells="cost_cells" if tab is Tab.COST else "byte_cells",
    )
    return sql, params


def nanos_to_money(nanos: int) -> Decimal:
    """n 10^-9 currency units as an exact Decimal (scaleb only moves the exponent)."""
    return Decimal(nanos).scaleb(-9, MONEY_CONTEXT)


def sort_rows(rows: list[Row], sort: Sort, header: Sequence[str]) -> list[Row]:
    """Sort by one column; ties, and the name column itself, fall back to the name ascending."""
    by_name = sorted(rows, key=lambda row: row.service_account)
    if sort.column == NAME_COLUMN:
        return list(reversed(by_name)) if sort.descending else by_name
    index = header.index(sort.column)

    def value(row: Row) -> Value:
        return row.total if sort.column == TOTAL_COLUMN else row.cell(index - 1)

    # sorted() is stable, with reverse too: ties keep the names ascending.
    return sorted(by_name, key=value, reverse=sort.descending)


def _month_end(month: date) -> date:
    """The last day of the month that starts on `month`."""
    if month.year == date.max.year and month.month == 12:
        return date.max
    return (month + timedelta(days=31)).replace(day=1) - timedelta(days=1)


def clusters(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute((SQL_DIR / "clusters.sql").read_text(encoding="utf-8")).fetchall()
    return [str(row[0]) for row in rows]
