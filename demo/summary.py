"""The demo's closing summary: this month's top accounts, totals, where things are, SQL to try."""

from decimal import Decimal
from pathlib import Path

from export.periods import today_in
from views.publish import copy_path_for
from views.rates import rates_path_for, round_money
from views.reader import open_reader

SQL = (Path(__file__).parent / "sql" / "month_top.sql").read_text(encoding="utf-8")


def human_bytes(count: int) -> str:
    """Decimal units, as the default rates are per GB (10^9 bytes)."""
    value = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if value < 1000 or unit == "PB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.2f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def summary_text(db: Path, out: Path, timezone: str) -> str:
    view = open_reader(db)
    try:
        month = today_in(timezone).replace(day=1)
        rows = view.con.execute(SQL, {"month": month}).fetchall()
        rejected = view.con.execute("SELECT count(*) FROM rejected_events").fetchone()
        currency = view.rates.currency
    finally:
        view.close()
    total_cost = round_money(sum((Decimal(r[3]) for r in rows), Decimal(0)))
    produced = sum(int(r[1]) for r in rows)
    consumed = sum(int(r[2]) for r in rows)
    lines = [
        "",
        f"== kafka-chargeback: {month:%B %Y} so far ==",
        f"{len(rows)} service account{'' if len(rows) == 1 else 's'} produced"
        f" {human_bytes(produced)} and consumed"
        f" {human_bytes(consumed)}, costing {total_cost} {currency}.",
        "",
        f"{'top accounts by cost':<34}{'ingress':>14}{'egress':>14}{'cost':>14}",
    ]
    for account, produced_bytes, consumed_bytes, cost in rows[:5]:
        lines.append(
            f"{account[:33]:<34}{human_bytes(int(produced_bytes)):>14}"
            f"{human_bytes(int(consumed_bytes)):>14}{round_money(Decimal(cost)):>10} {currency}"
        )
    copy = copy_path_for(db)
    lines += [
        "",
        f"rejected records kept for inspection: {rejected[0] if rejected else 0:,}",
        f"store: {db}  (read copy while the service runs: {copy})",
        f"rates: {rates_path_for(db)}",
        f"exports: {out}/Chargeback_*.csv",
        "",
        "try:",
        f"  ./run export --tab cost --period LM --out {out}",
        f"  .venv/bin/python -c \"import duckdb; con = duckdb.connect('{copy}', read_only=True);"
        " con.sql('FROM cost_monthly ORDER BY month DESC, total_cost DESC LIMIT 10').show()\"",
        "",
    ]
    return "\n".join(lines)
