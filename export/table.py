"""The Chargeback table: one row per service account, one column per bucket, then Total.

This is the one query path behind both the CSV export and the dashboard, so they cannot disagree.
Costs are shown rounded to cents (half up), each cell and each total from its own exact value
(docs/rates.md): a total is never a sum of rounded cells, so thirty days of 0.004 show 0.00 each
and a Total of 0.12.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from pathlib import Path

import duckdb

from chargeback.errors import UsageError
from export.periods import Period
from views.rates import RateBook, round_money

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
    cells: tuple[Value, ...]  # one per bucket, in bucket order, as shown (costs rounded)
    total: Value  # as shown: a cost total is rounded from the exact sum
    exact: tuple[Value, ...]  # the cells before rounding, for the totals row


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
        sums = [sum(row.exact[i] for row in self.rows) for i in range(width)]
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
) -> ChargebackTable:
    """Query the cells of the period and arrange them as the table shows them."""
    cells = con.execute(
        (SQL_DIR / "chargeback_cells.sql").read_text(encoding="utf-8"),
        {
            "monthly": period.bucket == "month",
            "first": period.first,
            "last": period.last,
            "cluster": cluster or None,
            "filter": filter_text or None,
        },
    ).fetchall()
    buckets = period.buckets()
    position = {bucket: i for i, bucket in enumerate(buckets)}
    by_account: dict[str, list[Value]] = {}
    for account, bucket, produced, consumed, cost in cells:
        values = by_account.setdefault(account, [0] * len(buckets))
        values[position[bucket]] = _exact(tab, int(produced), int(consumed), cost)
    empty = ChargebackTable(period, tab, rates, ())
    rows = [
        Row(account, tuple(map(empty.shown, exact)), empty.shown(sum(exact)), tuple(exact))
        for account, exact in by_account.items()
    ]
    ordered = sort_rows(rows, sort or parse_sort(None, empty.header), empty.header)
    return ChargebackTable(period, tab, rates, tuple(ordered))


def _exact(tab: Tab, produced: int, consumed: int, cost: Decimal) -> Value:
    if tab is Tab.INGRESS:
        return produced
    if tab is Tab.EGRESS:
        return consumed
    return cost


def sort_rows(rows: list[Row], sort: Sort, header: Sequence[str]) -> list[Row]:
    """Sort by one column; ties, and the name column itself, fall back to the name ascending."""
    by_name = sorted(rows, key=lambda row: row.service_account)
    if sort.column == NAME_COLUMN:
        return list(reversed(by_name)) if sort.descending else by_name
    index = header.index(sort.column)

    def value(row: Row) -> Value:
        return row.total if sort.column == TOTAL_COLUMN else row.cells[index - 1]

    # sorted() is stable, with reverse too: ties keep the names ascending.
    return sorted(by_name, key=value, reverse=sort.descending)


def clusters(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute((SQL_DIR / "clusters.sql").read_text(encoding="utf-8")).fetchall()
    return [str(row[0]) for row in rows]
