"""``chargeback rates show|set``: the rates file beside the store (PRODUCT.md §3, docs/rates.md).

Both commands touch only the TOML file, never the DuckDB store: they work before the store exists
and while `chargeback ingest` holds it open. Errors are raised as `chargeback.errors` errors; the
main CLI turns them into one line and an exit code.
"""

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from chargeback.errors import UsageError
from chargeback.options import db_option, env, timezone_option
from views.rates import (
    DEFAULT_RATES,
    UNIT_BYTES,
    UNIT_TEXT,
    RateBook,
    RateEntry,
    load_rates,
    parse_currency,
    parse_date,
    parse_price,
    parse_unit,
    rates_path_for,
    save_rates,
    set_rate,
)


def _today(timezone: str) -> date:
    return datetime.now(ZoneInfo(timezone)).date()


def _price_line(entry: RateEntry, book: RateBook) -> str:
    where = entry.cluster if entry.cluster is not None else "(all clusters)"
    return (
        f"from {entry.valid_from.isoformat()}  cluster {where}  ingress {entry.ingress:f}"
        f"  egress {entry.egress:f}  {book.currency} per {book.unit}"
    )


@click.group("rates")
def rates() -> None:
    """Prices per GB produced (ingress) and consumed (egress), effective-dated."""


@rates.command("show")
@db_option("The DuckDB store file; the rates file is rates.toml beside it.")
def show_cmd(db: Path) -> None:
    """Print the rates in force: file, currency, unit and entries in date order."""
    path = rates_path_for(db)
    book = load_rates(path)
    state = "absent" if book.is_default else "present"
    click.echo(f"rates file: {path} ({state})")
    if book.is_default:
        click.echo("default rates: yes (no rates file; set rates with `chargeback rates set`)")
    else:
        click.echo("default rates: no")
    click.echo(f"currency: {book.currency}")
    click.echo(f"unit: {book.unit} ({UNIT_TEXT[book.unit]})")
    for entry in book.entries:
        click.echo(_price_line(entry, book))


@rates.command("set")
@click.option(
    "--ingress", required=True, envvar=env("ingress"), help="Price per unit produced, e.g. 0.05."
)
@click.option(
    "--egress", required=True, envvar=env("egress"), help="Price per unit consumed, e.g. 0.09."
)
@click.option(
    "--from",
    "valid_from",
    envvar=env("rate_from"),  # not CHARGEBACK_FROM: that one is the export's custom range
    help="First day the price applies (YYYY-MM-DD) [default: today in --timezone].",
)
@click.option(
    "--cluster",
    "rate_cluster",
    envvar=env("rate_cluster"),  # not CHARGEBACK_CLUSTER, the export filter: never set by accident
    help="Price this cluster only, overriding the global price [default: all clusters].",
)
@click.option(
    "--currency",
    envvar=env("currency"),
    help="Currency code for the whole rates file, e.g. EUR [default: unchanged, USD at first].",
)
@click.option(
    "--unit",
    type=click.Choice(list(UNIT_BYTES), case_sensitive=False),
    envvar=env("unit"),
    help="GB (10^9 bytes) or GiB (2^30 bytes), for the whole file [default: unchanged, GB].",
)
@timezone_option("Reporting time zone (IANA name): what today means for --from.")
@db_option("The DuckDB store file; the rates file is rates.toml beside it.")
def set_cmd(
    ingress: str,
    egress: str,
    valid_from: str | None,
    rate_cluster: str | None,
    currency: str | None,
    unit: str | None,
    timezone: str,
    db: Path,
) -> None:
    """Add a rate entry (or replace the one with the same --from and --cluster)."""
    cluster = rate_cluster
    day = _today(timezone) if valid_from is None else parse_date(valid_from, "--from")
    ingress_price = parse_price(ingress, "--ingress")
    egress_price = parse_price(egress, "--egress")
    new_currency = None if currency is None else parse_currency(currency, "--currency")
    new_unit = None if unit is None else parse_unit(unit, "--unit")
    path = rates_path_for(db)
    if not path.parent.parent.is_dir():
        # A mistyped --db: make the store's own folder (data/), never a whole made-up path.
        raise UsageError(f"no folder {path.parent.parent} for the store {db}: check --db")
    old = load_rates(path)
    # Currency and unit belong to the whole file: changing them would silently reprice (or
    # relabel) every past entry, which effective dating exists to prevent.
    if not old.is_default and new_currency not in (None, old.currency):
        raise UsageError(
            f"the rates file prices in {old.currency}: changing the currency would relabel every"
            f" past entry; edit {path} by hand if you mean it"
        )
    if not old.is_default and new_unit not in (None, old.unit):
        raise UsageError(
            f"the rates file prices per {old.unit}: changing the unit would reprice every past"
            f" entry; edit {path} by hand if you mean it"
        )
    book = set_rate(old, ingress_price, egress_price, day, cluster, new_currency, new_unit)
    save_rates(path, book)
    notes = []
    if not old.is_default and any((e.valid_from, e.cluster) == (day, cluster) for e in old.entries):
        notes.append("replaced the entry with the same date and cluster")
    if old.is_default and cluster is not None:
        default = DEFAULT_RATES.entries[0]
        notes.append(
            f"no global price was set: kept the default ({default.ingress:f} / {default.egress:f}"
            f" {book.currency} per {book.unit}) for the other clusters, now in {path}"
        )
    for note in notes:
        click.echo(f"note: {note}", err=True)
    stored = next(e for e in book.entries if (e.valid_from, e.cluster) == (day, cluster))
    click.echo(f"rates file: {path}")
    click.echo(f"stored: {_price_line(stored, book)}")
