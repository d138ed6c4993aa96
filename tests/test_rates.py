"""Rates (PRODUCT.md §3) and the cost views (§2): the file, precedence, the CLI, exact costs.

Expected costs are worked out by hand (or by a plain Decimal computation in the test), never
copied from the program's output.
"""

import os
import subprocess
import sys
from datetime import date, datetime
from decimal import ROUND_DOWN, Context, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pytest
from click.testing import CliRunner

from chargeback.errors import UsageError
from views.rates import (
    DEFAULT_RATES,
    MONEY_CONTEXT,
    RateBook,
    RateEntry,
    install_rates,
    load_rates,
    price_for,
    rates_path_for,
    round_money,
    save_rates,
    set_rate,
)
from views.rates_cli import rates
from views.store import open_store

D = Decimal
GOOD = """\
currency = "EUR"
unit = "GiB"

[[rate]]
from = 2026-06-01
cluster = "prod-eu"
ingress = "0.04"
egress = 0.08

[[rate]]
from = 2026-01-01
ingress = "0.05"
egress = 0.1

[[rate]]
from = 2026-06-01
ingress = 1
egress = "0.000000001"
"""

Usage = tuple[str, str, str, int, int]  # day, cluster, account, produced, consumed


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rates.toml"
    path.write_text(text, encoding="utf-8")
    return path


def book(*entries: RateEntry, currency: str = "USD", unit: str = "GB") -> RateBook:
    return RateBook(currency, unit, entries)


def global_rate(day: str, ingress: str, egress: str) -> RateEntry:
    return RateEntry(date.fromisoformat(day), None, D(ingress), D(egress))


def cluster_rate(day: str, cluster: str, ingress: str, egress: str) -> RateEntry:
    return RateEntry(date.fromisoformat(day), cluster, D(ingress), D(egress))


def store_with(tmp_path: Path, usage: list[Usage]) -> duckdb.DuckDBPyConnection:
    con = open_store(tmp_path / "store.duckdb")
    series: dict[tuple[str, str], int] = {}
    for day, cluster, account, produced, consumed in usage:
        if (cluster, account) not in series:
            series[(cluster, account)] = len(series) + 1
            con.execute(
                "INSERT INTO series VALUES (?, ?, ?, '', '')",
                [series[(cluster, account)], cluster, account],
            )
        con.execute(
            "INSERT INTO usage_totals VALUES (?, ?, ?, ?, 1)",
            [date.fromisoformat(day), series[(cluster, account)], produced, consumed],
        )
    return con


def daily(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str, str], tuple[Decimal, ...]]:
    rows = con.execute(
        "SELECT day, cluster, service_account, ingress_cost, egress_cost, total_cost"
        " FROM cost_daily"
    ).fetchall()
    return {(r[0].isoformat(), r[1], r[2]): (r[3], r[4], r[5]) for r in rows}


# --- the file ----------------------------------------------------------------------------------


def test_a_good_file_parses_exactly_in_date_order(tmp_path: Path) -> None:
    parsed = load_rates(write(tmp_path, GOOD))
    assert parsed == RateBook(
        "EUR",
        "GiB",
        (
            global_rate("2026-01-01", "0.05", "0.1"),
            global_rate("2026-06-01", "1", "0.000000001"),
            cluster_rate("2026-06-01", "prod-eu", "0.04", "0.08"),
        ),
    )
    assert not parsed.is_default
    assert parsed.unit_bytes == 2**30
    # A TOML float is read from its text: 0.1 is exactly one tenth, not the nearest double.
    assert str(parsed.entries[0].egress) == "0.1"


def test_currency_and_unit_default_to_usd_per_gb(tmp_path: Path) -> None:
    parsed = load_rates(write(tmp_path, "[[rate]]\nfrom = 2026-01-01\ningress = 1\negress = 2\n"))
    assert (parsed.currency, parsed.unit, parsed.unit_bytes) == ("USD", "GB", 10**9)


ENTRY = '[[rate]]\nfrom = 2026-01-01\ningress = "0.05"\negress = "0.09"\n'
BAD_FILES = [
    ("currency = \n", "not valid TOML"),
    ('colour = "red"\n' + ENTRY, "unknown key(s) colour"),
    ('currency = "US"\n' + ENTRY, "three-letter code"),
    ('currency = "U$D"\n' + ENTRY, "three-letter code"),
    ('unit = "TB"\n' + ENTRY, "GB (10^9 bytes) or GiB"),
    ("rate = 1\n", "list of [[rate]] tables"),
    ("", "at least one [[rate]] without `cluster`"),
    ('[[rate]]\nfrom = 2026-01-01\ncluster = "a"\ningress = 1\negress = 1\n', "without `cluster`"),
    ('[[rate]]\nfrom = 2026-01-01\ningress = "0.05"\n', "#1: `egress` is missing"),
    ("[[rate]]\ningress = 1\negress = 1\n", "#1: `from` is missing"),
    (ENTRY + "[[rate]]\nfrom = 2026-02-01\ningres = 1\negress = 1\n", "#2: unknown key(s) ingres"),
    (ENTRY + "[[rate]]\nfrom = 2026-01-01\ningress = 1\negress = 1\n", "#2 repeats an entry"),
    ('[[rate]]\nfrom = 2026-01-01\ningress = "-0.01"\negress = 1\n', "ingress must not be neg"),
    ("[[rate]]\nfrom = 2026-01-01\ningress = -0.01\negress = 1\n", "ingress must not be neg"),
    ("[[rate]]\nfrom = 2026-01-01\ningress = nan\negress = 1\n", "ingress must be a finite"),
    ('[[rate]]\nfrom = 2026-01-01\ningress = "NaN"\negress = 1\n', "ingress must be a finite"),
    ("[[rate]]\nfrom = 2026-01-01\ningress = 1\negress = inf\n", "egress must be a finite"),
    ('[[rate]]\nfrom = 2026-01-01\ningress = "abc"\negress = 1\n', "ingress is not a number"),
    ("[[rate]]\nfrom = 2026-01-01\ningress = true\negress = 1\n", "ingress must be a number"),
    ('[[rate]]\nfrom = 2026-01-01\ningress = "0.0000000001"\negress = 1\n', "decimal places"),
    ("[[rate]]\nfrom = 2026-01-01\ningress = 1000000000\negress = 1\n", "must be below"),
    (
        "[[rate]]\nfrom = 2026-01-01T10:00:00\ningress = 1\negress = 1\n",
        "from must be a date such as 2026-01-01, got 2026-01-01T10:00:00",
    ),
    ('[[rate]]\nfrom = "January"\ningress = 1\negress = 1\n', "from must be a date"),
    (ENTRY + '[[rate]]\nfrom = 2026-02-01\ncluster = ""\ningress = 1\negress = 1\n', "#2: cluster"),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_a_bad_file_is_one_clear_usage_error(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as caught:
        load_rates(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value).strip()


def test_an_entry_error_names_the_entry(tmp_path: Path) -> None:
    text = ENTRY + '[[rate]]\nfrom = 2026-03-01\ncluster = "x"\ningress = 1\negress = "-1"\n'
    with pytest.raises(UsageError, match=r"#2 \(from 2026-03-01, cluster x\): egress"):
        load_rates(write(tmp_path, text))


def test_without_a_file_the_documented_default_applies(tmp_path: Path) -> None:
    default = load_rates(tmp_path / "rates.toml")
    assert default.is_default
    assert default == DEFAULT_RATES
    assert (default.currency, default.unit) == ("USD", "GB")
    assert default.entries == (global_rate("1970-01-01", "0.10", "0.10"),)


def test_the_rates_file_lives_beside_the_store() -> None:
    assert rates_path_for(Path("data/chargeback.duckdb")) == Path("data/rates.toml")


# --- precedence --------------------------------------------------------------------------------


def test_price_for_picks_the_entry_in_force() -> None:
    first = global_rate("2026-01-01", "0.05", "0.09")
    second = global_rate("2026-03-01", "0.04", "0.08")
    eu = cluster_rate("2026-02-01", "eu", "0.01", "0.02")
    rates_ = book(first, second, eu)
    assert price_for(rates_, "us", date(2026, 2, 28)) == first
    assert price_for(rates_, "us", date(2026, 3, 1)) == second
    # Before every entry: the earliest global entry, so a first rate prices all history.
    assert price_for(rates_, "us", date(2020, 1, 1)) == first
    assert price_for(rates_, "eu", date(2026, 1, 31)) == first
    # The cluster's own entry beats the global one, even a newer global one.
    assert price_for(rates_, "eu", date(2026, 2, 1)) == eu
    assert price_for(rates_, "eu", date(2027, 1, 1)) == eu


def test_set_rate_adds_replaces_and_keeps_the_book_canonical() -> None:
    first = set_rate(DEFAULT_RATES, D("0.05"), D("0.09"), date(2026, 1, 1))
    # The first rate replaces the default entry.
    assert first == book(global_rate("2026-01-01", "0.05", "0.09"))
    second = set_rate(first, D("0.04"), D("0.08"), date(2025, 6, 1), currency="EUR")
    assert second.currency == "EUR"
    assert [e.valid_from for e in second.entries] == [date(2025, 6, 1), date(2026, 1, 1)]
    replaced = set_rate(second, D("0.07"), D("0.07"), date(2026, 1, 1))
    assert replaced.entries[1] == global_rate("2026-01-01", "0.07", "0.07")
    assert len(replaced.entries) == 2


def test_a_first_per_cluster_rate_keeps_the_default_as_the_global_price() -> None:
    result = set_rate(DEFAULT_RATES, D("0.01"), D("0.02"), date(2026, 1, 1), cluster="eu")
    assert not result.is_default
    assert result.entries == (
        global_rate("1970-01-01", "0.10", "0.10"),
        cluster_rate("2026-01-01", "eu", "0.01", "0.02"),
    )


def test_saving_and_loading_round_trips_atomically(tmp_path: Path) -> None:
    path = tmp_path / "new" / "rates.toml"
    original = book(
        global_rate("2026-01-01", "0.050", "123456789.123456789"),
        cluster_rate("2026-02-01", 'we "ird" \\ clüster', "0", "0.000000001"),
        currency="CHF",
        unit="GiB",
    )
    save_rates(path, original)
    assert load_rates(path) == original
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# kafka-chargeback rates")
    assert 'ingress = "0.050"' in text
    assert os.listdir(path.parent) == ["rates.toml"]  # nothing left aside
    save_rates(path, original)
    assert path.read_text(encoding="utf-8") == text  # stable output


# --- the command line --------------------------------------------------------------------------


def test_show_says_the_default_applies(tmp_path: Path) -> None:
    result = CliRunner().invoke(rates, ["show", "--db", str(tmp_path / "s.duckdb")])
    assert result.exit_code == 0, result.output
    assert "default rates: yes" in result.output
    assert "unit: GB (10^9 bytes)" in result.output
    assert "from 1970-01-01  cluster (all clusters)  ingress 0.10  egress 0.10  USD per GB" in (
        result.output
    )
    assert str(tmp_path / "rates.toml") in result.output


def test_set_then_show_round_trips(tmp_path: Path) -> None:
    db = tmp_path / "store" / "yet.duckdb"  # its folder is made; one above it must exist
    runner = CliRunner()
    first = runner.invoke(
        rates,
        [
            *("set", "--ingress", "0.05", "--egress", "0.09", "--from", "2026-01-01"),
            *("--currency", "eur", "--unit", "gib", "--db", str(db)),
        ],
    )
    assert first.exit_code == 0, first.output
    assert "stored: from 2026-01-01  cluster (all clusters)  ingress 0.05  egress 0.09" in (
        first.output
    )
    second = runner.invoke(
        rates,
        [
            *("set", "--ingress", "0.04", "--egress", "0.08", "--from", "2026-06-01"),
            *("--cluster", "prod-eu"),
        ],
        env={"CHARGEBACK_DB": str(db)},
    )
    assert second.exit_code == 0, second.output
    for change in (["--currency", "USD"], ["--unit", "GB"]):  # would reprice the past
        refused = runner.invoke(
            rates, ["set", "--ingress", "1", "--egress", "1", *change, "--db", str(db)]
        )
        assert refused.exit_code != 0 and "edit" in str(refused.exception), refused.output
    assert not db.exists()  # only the rates file was written
    shown = runner.invoke(rates, ["show", "--db", str(db)])
    assert shown.exit_code == 0, shown.output
    assert shown.output.splitlines()[1:] == [
        "default rates: no",
        "currency: EUR",
        "unit: GiB (2^30 bytes)",
        "from 2026-01-01  cluster (all clusters)  ingress 0.05  egress 0.09  EUR per GiB",
        "from 2026-06-01  cluster prod-eu  ingress 0.04  egress 0.08  EUR per GiB",
    ]
    assert load_rates(db.parent / "rates.toml") == book(
        global_rate("2026-01-01", "0.05", "0.09"),
        cluster_rate("2026-06-01", "prod-eu", "0.04", "0.08"),
        currency="EUR",
        unit="GiB",
    )


def test_set_defaults_from_to_today_in_the_time_zone(tmp_path: Path) -> None:
    zone = "Pacific/Kiritimati"  # UTC+14: often a different date than UTC
    before = datetime.now(ZoneInfo(zone)).date()
    args = ["set", "--ingress", "1", "--egress", "2", "--timezone", zone]
    result = CliRunner().invoke(rates, [*args, "--db", str(tmp_path / "s.duckdb")])
    after = datetime.now(ZoneInfo(zone)).date()
    assert result.exit_code == 0, result.output
    (entry,) = load_rates(tmp_path / "rates.toml").entries
    assert entry.valid_from in {before, after}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ingress", "cheap", "--egress", "1"], "--ingress is not a number"),
        (["--ingress", "1", "--egress", "-1"], "--egress must not be negative"),
        (["--ingress", "1", "--egress", "1", "--from", "2026-13-01"], "--from must be a date"),
        (["--ingress", "1", "--egress", "1", "--currency", "dollars"], "three-letter code"),
        (["--ingress", "1", "--egress", "1", "--timezone", "Mars/Base"], "unknown time zone"),
        (["--ingress", "1", "--egress", "1", "--cluster", " "], "cluster must be a non-empty"),
    ],
)
def test_set_refuses_bad_input(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(rates, ["set", *args, "--db", str(tmp_path / "s.duckdb")])
    assert isinstance(result.exception, UsageError)
    assert result.exception.exit_code == 2
    assert message in str(result.exception)
    assert not (tmp_path / "rates.toml").exists()


def test_set_makes_the_stores_folder_but_no_made_up_path(tmp_path: Path) -> None:
    typo = tmp_path / "no" / "such" / "s.duckdb"
    result = CliRunner().invoke(
        rates, ["set", "--ingress", "1", "--egress", "1", "--db", str(typo)]
    )
    assert isinstance(result.exception, UsageError)
    assert f"no folder {tmp_path / 'no'} for the store" in str(result.exception)
    assert not (tmp_path / "no").exists()
    fresh = tmp_path / "data" / "s.duckdb"  # a first `rates set` before the first ingest
    result = CliRunner().invoke(
        rates, ["set", "--ingress", "1", "--egress", "1", "--db", str(fresh)]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "rates.toml").exists()


def test_set_works_while_another_process_holds_the_store(tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    open_store(db).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('open', flush=True);"
            " time.sleep(60)",
            str(db),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        args = ["set", "--ingress", "1", "--egress", "2", "--from", "2026-01-01", "--db", str(db)]
        result = CliRunner().invoke(rates, args)
        assert result.exit_code == 0, result.output
    finally:
        holder.kill()
        holder.communicate()
    assert load_rates(tmp_path / "rates.toml") == book(global_rate("2026-01-01", "1", "2"))


# --- the cost views ----------------------------------------------------------------------------


def test_a_rate_change_mid_month_prices_the_days_before_and_after_differently(
    tmp_path: Path,
) -> None:
    gb = 10**9
    con = store_with(
        tmp_path,
        [
            ("2026-01-15", "c1", "a", 3 * gb, 3 * gb // 2),
            ("2026-01-16", "c1", "a", 3 * gb, 3 * gb // 2),
        ],
    )
    install_rates(
        con,
        book(global_rate("2026-01-01", "0.05", "0.09"), global_rate("2026-01-16", "0.04", "0.08")),
    )
    assert daily(con) == {
        # 3 GB * 0.05 = 0.15; 1.5 GB * 0.09 = 0.135
        ("2026-01-15", "c1", "a"): (D("0.15"), D("0.135"), D("0.285")),
        # 3 GB * 0.04 = 0.12; 1.5 GB * 0.08 = 0.12
        ("2026-01-16", "c1", "a"): (D("0.12"), D("0.12"), D("0.24")),
    }
    monthly = con.execute(
        "SELECT month, produced_bytes, consumed_bytes, ingress_cost, egress_cost, total_cost,"
        " currency, unit, is_default FROM cost_monthly"
    ).fetchall()
    assert monthly == [
        (date(2026, 1, 1), 6 * gb, 3 * gb, D("0.27"), D("0.255"), D("0.525"), "USD", "GB", False)
    ]


def test_a_cluster_rate_applies_to_that_cluster_only_and_from_its_date(tmp_path: Path) -> None:
    gb = 10**9
    usage = [
        ("2026-01-05", "c1", "a", 2 * gb, gb),
        ("2026-01-05", "c2", "a", 2 * gb, gb),
        ("2026-01-15", "c1", "a", 2 * gb, gb),
        ("2026-01-15", "c2", "a", 2 * gb, gb),
        # Older than every global entry: priced by the earliest one.
        ("2025-12-31", "c1", "b", 2 * gb, gb),
    ]
    con = store_with(tmp_path, usage)
    install_rates(
        con,
        book(
            global_rate("2026-01-01", "0.05", "0.09"),
            cluster_rate("2026-01-10", "c2", "0.01", "0.02"),
        ),
    )
    assert daily(con) == {
        ("2026-01-05", "c1", "a"): (D("0.10"), D("0.09"), D("0.19")),
        ("2026-01-05", "c2", "a"): (D("0.10"), D("0.09"), D("0.19")),
        ("2026-01-15", "c1", "a"): (D("0.10"), D("0.09"), D("0.19")),
        ("2026-01-15", "c2", "a"): (D("0.02"), D("0.02"), D("0.04")),
        ("2025-12-31", "c1", "b"): (D("0.10"), D("0.09"), D("0.19")),
    }


def test_gib_and_gb_costs_differ_by_exactly_2_30_over_10_9(tmp_path: Path) -> None:
    # 2^30 * 10^9 bytes is a whole number of both units, so both costs are exact.
    volume = 2**30 * 10**9
    con = store_with(tmp_path, [("2026-01-01", "c1", "a", volume, volume)])
    prices = global_rate("2026-01-01", "0.05", "0.000000003")
    install_rates(con, book(prices, unit="GB"))
    per_gb = daily(con)[("2026-01-01", "c1", "a")]
    install_rates(con, book(prices, unit="GiB"))
    per_gib = daily(con)[("2026-01-01", "c1", "a")]
    # 2^30 GB at 0.05 = 53687091.2; 10^9 GiB at 0.05 = 50000000
    assert per_gb[0] == D("53687091.2") and per_gib[0] == D("50000000")
    # 2^30 GB at 3e-9 = 3.221225472; 10^9 GiB at 3e-9 = 3
    assert per_gb[1] == D("3.221225472") and per_gib[1] == D("3")
    for gb_cost, gib_cost in zip(per_gb, per_gib, strict=True):
        assert gb_cost * 10**9 == gib_cost * 2**30


def test_cost_monthly_prices_each_months_sum_once_per_rate_entry(tmp_path: Path) -> None:
    # c1 pays the global 0.05 per GB; c2 has its own 0.5 from 2026-01-16.
    usage = [
        ("2026-01-01", "c1", "a", 7, 0),
        ("2026-01-02", "c1", "a", 7, 0),
        ("2026-01-03", "c1", "a", 6, 0),
        ("2026-01-10", "c2", "a", 3, 0),
        ("2026-01-20", "c2", "a", 3, 0),
        ("2026-01-21", "c2", "a", 3, 0),
    ]
    con = store_with(tmp_path, usage)
    install_rates(
        con,
        book(global_rate("2026-01-01", "0.05", "0"), cluster_rate("2026-01-16", "c2", "0.5", "0")),
    )
    rows = con.execute("SELECT cluster, ingress_cost FROM cost_monthly ORDER BY cluster").fetchall()
    # c1: one entry, one sum: 20 bytes x 0.05 / 10^9 = 1e-9 (per day it was 0.35e-9 x 2 + 0.3e-9,
    # each truncated to 0). c2: two entries, two sums: 3 x 0.05 -> 0.15e-9 -> 0, and
    # 6 x 0.5 = 3e-9 (per day 1.5e-9 -> 1e-9 twice, 2e-9).
    assert rows == [("c1", D("0.000000001")), ("c2", D("0.000000003"))]
    assert sum(v[0] for v in daily(con).values()) == D("0.000000002")  # per day: 0+0+0+0+1+1


def test_costs_are_truncated_at_nine_places_per_row(tmp_path: Path) -> None:
    # 7 bytes at 0.5 per GB = 3.5e-9 -> 0.000000003; 1 byte at 0.05 per GB -> 0
    con = store_with(tmp_path, [("2026-01-01", "c1", "a", 7, 1)])
    install_rates(con, book(global_rate("2026-01-01", "0.5", "0.05")))
    assert daily(con)[("2026-01-01", "c1", "a")] == (D("0.000000003"), D("0"), D("0.000000003"))


def test_very_large_byte_counts_stay_exact(tmp_path: Path) -> None:
    big = 10**18
    usage = [(f"2026-01-{d:02d}", "c1", "a", big, big) for d in range(1, 32)]
    con = store_with(tmp_path, usage)
    ingress, egress = D("123456789.123456789"), D("0.000000007")
    install_rates(con, book(global_rate("2026-01-01", str(ingress), str(egress)), unit="GiB"))
    exact = Context(prec=80)

    def expected(price: Decimal, volume: int = big) -> Decimal:
        cost = exact.divide(exact.multiply(D(volume), price), D(2**30))
        return cost.quantize(D("1e-9"), rounding=ROUND_DOWN, context=exact)

    row = daily(con)[("2026-01-01", "c1", "a")]
    assert row[:2] == (expected(ingress), expected(egress))
    total = con.execute(
        "SELECT produced_bytes, ingress_cost, egress_cost, total_cost FROM cost_monthly"
    ).fetchone()
    # The month is priced once, from its 31 * 10^18 bytes (docs/rates.md).
    month_in, month_out = expected(ingress, 31 * big), expected(egress, 31 * big)
    assert total == (31 * big, month_in, month_out, exact.add(month_in, month_out))
    assert month_out != 31 * expected(egress)  # 31 truncations lose more than one


def test_every_cost_column_is_decimal_never_double(tmp_path: Path) -> None:
    con = store_with(tmp_path, [("2026-01-01", "c1", "a", 10, 20)])
    install_rates(con, DEFAULT_RATES)
    for view in ("cost_daily", "cost_monthly"):
        types = dict(
            con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {view})").fetchall()
        )
        assert not any(t in {"DOUBLE", "FLOAT"} for t in types.values()), types
        row = con.execute(
            f"SELECT typeof(ingress_cost), typeof(egress_cost), typeof(total_cost) FROM {view}"
        ).fetchone()
        assert row == ("DECIMAL(38,9)",) * 3
        assert types["produced_bytes"] == "HUGEINT"


def test_the_default_shows_in_the_views_and_survives_reopening(tmp_path: Path) -> None:
    con = store_with(tmp_path, [("2026-01-01", "c1", "a", 10**9, 2 * 10**9)])
    install_rates(con, DEFAULT_RATES)
    con.close()
    con = open_store(tmp_path / "store.duckdb")  # recreates the usage views under cost_daily
    row = con.execute(
        "SELECT ingress_cost, egress_cost, total_cost, currency, unit, is_default FROM cost_daily"
    ).fetchone()
    assert row == (D("0.1"), D("0.2"), D("0.3"), "USD", "GB", True)
    # Reinstalling replaces the rates: nothing is left of the previous book.
    install_rates(con, book(global_rate("2026-01-01", "1", "1"), currency="EUR"))
    assert con.execute("SELECT count(*), any_value(currency) FROM rates").fetchone() == (1, "EUR")
    row = con.execute("SELECT total_cost, currency, is_default FROM cost_daily").fetchone()
    assert row == (D("3"), "EUR", False)


def test_round_money_is_half_up_to_two_places() -> None:
    assert round_money(D("0.005")) == D("0.01")
    assert round_money(D("0.025")) == D("0.03")  # half-even would give 0.02
    assert round_money(D("0.004999999")) == D("0.00")
    assert round_money(D("1.10")) == D("1.10")
    assert str(round_money(D("0"))) == "0.00"
    huge = D("123456789012345678901234567.125000000")  # DECIMAL(38,9) magnitude
    assert round_money(huge) == D("123456789012345678901234567.13")


def test_money_text_in_sql_is_round_money_with_two_places(tmp_path: Path) -> None:
    """The export's cells are rounded and written by the SQL macro money_text; it must give
    exactly round_money's text, at the half-cent edges, on both of its paths (64-bit below 2^62,
    128-bit above) and for negative counts."""
    con = open_store(tmp_path / "store.duckdb")
    install_rates(con, DEFAULT_RATES)
    edges = [0, 1, 4_999_999, 5_000_000, 14_999_999, 15_000_000, 994_999_999, 995_000_000]
    big = [2**62 - 1, 2**62, 2**62 + 4_999_999, 2**62 + 5_000_000, 10**37 + 5_000_000]
    counts = [*edges, *big, 1234567890123, *(-n for n in [*edges, *big])]
    for n in counts:
        (text,) = con.execute(f"SELECT money_text(CAST({n} AS HUGEINT))").fetchone() or ("",)
        assert text == f"{round_money(D(n).scaleb(-9, MONEY_CONTEXT)):.2f}", n
    con.close()


def test_a_book_without_a_global_price_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="global entry"):
        book(cluster_rate("2026-01-01", "c1", "1", "1"))


def test_a_cluster_name_with_control_characters_is_refused(tmp_path: Path) -> None:
    (tmp_path / "rates.toml").write_text(
        '[[rate]]\nfrom = 2026-01-01\ningress = "1"\negress = "1"\n'
        '[[rate]]\nfrom = 2026-01-01\ncluster = "a\\nb"\ningress = "1"\negress = "1"\n'
    )
    with pytest.raises(UsageError, match="must not contain control characters"):
        load_rates(tmp_path / "rates.toml")
