"""The README's SQL examples run, as written, on a store the service would leave."""

import re
from pathlib import Path

import pytest

from consumer.batch import Batch
from consumer.writer import StoreWriter
from tests.ingest_harness import REPO
from tests.test_store import add
from views.rates import DEFAULT_RATES, install_rates
from views.store import open_store

README = (REPO / "README.md").read_text(encoding="utf-8")
STATEMENTS = [
    statement.strip()
    for block in re.findall(r"```sql\n(.*?)```", README, re.DOTALL)
    for statement in block.split(";")
    if re.sub(r"--[^\n]*", "", statement).strip()
]


def test_the_readme_has_sql_examples() -> None:
    assert len(STATEMENTS) >= 3


@pytest.mark.parametrize("statement", STATEMENTS, ids=lambda s: s.splitlines()[0][:40])
def test_each_readme_query_runs(statement: str, tmp_path: Path) -> None:
    con = open_store(tmp_path / "chargeback.duckdb")
    batch = Batch()
    add(batch, 0, 0, b'{"service_account":"a","type":"fetch","bytes":5,"cluster":"c"}', 0)
    add(batch, 0, 1, b"not json")
    StoreWriter(con).apply(batch)
    install_rates(con, DEFAULT_RATES)  # as the service does at start
    con.execute(statement).fetchall()
    con.close()
