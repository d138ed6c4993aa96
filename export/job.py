"""One export, as the CLI and the scheduler ask for it: resolve the period, read, write the file."""

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from chargeback.errors import UsageError
from export.csvfile import write_csv
from export.periods import Bucket, Period, custom_period, resolve_period, today_in
from export.table import ChargebackTable, Tab, build_table, parse_sort
from views.reader import ReadView, open_reader


@dataclass(frozen=True)
class ExportRequest:
    tab: Tab
    period: str | None = None  # 7D, 30D, 6M, 12M, YTD, LM; or None with first/last
    as_of: date | None = None
    first: date | None = None
    last: date | None = None
    bucket: Bucket = "day"
    filter_text: str | None = None
    cluster: str | None = None
    sort: str | None = None
    out: Path = Path("exports")
    db: Path = Path("data/chargeback.duckdb")
    timezone: str = "UTC"


@dataclass(frozen=True)
class ExportResult:
    path: Path
    table: ChargebackTable
    source: Path
    data_time_text: str


def resolve(request: ExportRequest) -> Period:
    """The period asked for: a named one at as_of (default today), or a custom --from/--to."""
    custom = request.first is not None or request.last is not None
    if custom and request.period:
        raise UsageError("give either --period or --from/--to, not both")
    if custom:
        if request.first is None or request.last is None:
            raise UsageError("a custom range needs both --from and --to")
        if request.as_of is not None:
            raise UsageError("--as-of goes with --period, not with --from/--to")
        return custom_period(request.first, request.last, request.bucket)
    if not request.period:
        raise UsageError("give --period (7D, 30D, 6M, 12M, YTD, LM) or --from/--to")
    return resolve_period(request.period, request.as_of or today_in(request.timezone))


def query(
    view: ReadView, request: ExportRequest, period: Period, exact: bool = False
) -> ChargebackTable:
    """The table asked for; `exact`: with the exact costs of each cell (see build_table)."""
    header = ChargebackTable(period, request.tab, view.rates, ()).header
    return build_table(
        view.con,
        view.rates,
        period,
        request.tab,
        filter_text=request.filter_text,
        cluster=request.cluster,
        sort=parse_sort(request.sort, header),
        exact=exact,
    )


def run_export(request: ExportRequest) -> ExportResult:
    period = resolve(request)  # bad input is reported before any file is opened
    view = open_reader(request.db)
    try:
        table = query(view, request, period)
    finally:
        view.close()
    path = write_csv(table, request.out)
    return ExportResult(path, table, view.source, view.data_time.isoformat(timespec="seconds"))
