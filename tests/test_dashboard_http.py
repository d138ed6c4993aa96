"""`chargeback serve` over HTTP (no browser): the API against a real store and the CLI's export.

The store is written by the real writer from a handful of events whose numbers are worked out by
hand below; the server runs in a thread on a free port and is asked with urllib.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from chargeback.cli import run
from consumer.batch import Batch
from consumer.events import DayResolver, EventParser
from consumer.writer import StoreWriter
from dashboard import server as server_module
from dashboard.api import Settings
from dashboard.server import DashboardServer
from views.store import open_store

PARSER = EventParser(DayResolver("UTC"), 3_600_000, 1 << 20, lambda: 2_000_000_000_000)
AS_OF = "2026-03-10"
EVENTS: list[dict[str, Any]] = [
    {"service_account": "svc-orders", "type": "produce", "bytes": 2_000_000_000,
     "timestamp": "2026-03-09T10:00:00Z", "cluster": "prod-eu"},
    {"service_account": "User:svc-orders", "type": "fetch", "bytes": 5_000_000_000,
     "timestamp": "2026-03-10T23:59:59Z", "cluster": "prod-eu"},
    {"service_account": "bi_reader", "type": "fetch", "bytes": 1_500_000_000,
     "timestamp": "2026-03-08T00:00:00Z", "cluster": "prod-us"},
    {"service_account": "Audit%Log", "type": "produce", "bytes": 123_456_789,
     "timestamp": "2026-03-04T12:00:00Z"},
    {"service_account": "old-svc", "type": "produce", "bytes": 10_000_000_000,
     "timestamp": "2025-12-01T00:00:00Z"},
]  # fmt: skip
DAYS_7D = [f"2026-03-{d:02d}" for d in range(4, 11)]


def write_small_store(db: Path) -> None:
    con = open_store(db)
    batch = Batch()
    for offset, event in enumerate(EVENTS):
        batch.add_events(PARSER, json.dumps(event).encode(), 0)
        batch.advance("usage", 0, offset)
    StoreWriter(con).apply(batch)
    con.close()


@contextmanager
def running(settings: Settings, host: str = "127.0.0.1") -> Iterator[str]:
    """A dashboard server on a free port, in a thread; yields its base URL (no trailing /)."""
    server = DashboardServer(host, 0, settings)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.url.rstrip("/")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("dashboard") / "chargeback.duckdb"
    write_small_store(db)
    return db


@pytest.fixture(scope="module")
def base(store: Path) -> Iterator[str]:
    with running(Settings(db=store)) as url:
        yield url


class Reply:
    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        assert self.headers["Content-Type"].startswith("application/json"), self.headers
        return json.loads(self.body)


def call(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
    request = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Reply(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, error.headers, error.read())


def table(base: str, **params: str) -> Reply:
    return call(f"{base}/api/table?{urlencode(params)}")


def assert_refused(reply: Reply, status: int, words: str) -> None:
    """A clear 4xx: the status, a one-line JSON message naming the problem, no traceback."""
    assert reply.status == status, (reply.status, reply.body)
    message = reply.json()["error"]
    assert words.lower() in message.lower(), message
    assert "\n" not in message and "Traceback" not in message


# --------------------------------------------------------------------------- the table


def test_the_cost_table_for_7d_has_the_values_worked_out_by_hand(base: str) -> None:
    reply = table(base, tab="cost", period="7D", as_of=AS_OF)
    assert reply.status == 200
    data = reply.json()
    assert data["header"] == ["Service Account", *DAYS_7D, "Total"]
    zeros = ["0.00"] * 7
    # default rates: 0.10 USD per GB each way; sorted by Total descending
    assert data["rows"] == [
        ["svc-orders", *zeros[:5], "0.20", "0.50", "0.70"],
        ["bi_reader", *zeros[:4], "0.15", "0.00", "0.00", "0.15"],
        # 123,456,789 bytes = 0.0123456789 USD, truncated to 0.012345678, shown 0.01
        ["Audit%Log", "0.01", *zeros[:6], "0.01"],
    ]
    assert data["totals"] == ["0.01", "0.00", "0.00", "0.00", "0.15", "0.20", "0.50", "0.86"]
    assert data["kind"] == "money" and data["currency"] == "USD" and data["unit"] == "GB"
    assert data["default_rates"] is True
    assert data["period"] == {"name": "7D", "first": "2026-03-04", "last": AS_OF, "bucket": "day"}
    assert data["file_name"] == "Chargeback_2026-03-04_2026-03-10_OverallCost.csv"
    assert data["source"]["kind"] == "store" and data["source"]["age_seconds"] >= 0
    names = [series["name"] for series in data["chart"]["series"]]
    assert names == ["svc-orders", "bi_reader", "Audit%Log"]


def test_byte_tabs_and_monthly_periods(base: str) -> None:
    ingress = table(base, tab="ingress", period="7D", as_of=AS_OF).json()
    assert [(row[0], row[-1]) for row in ingress["rows"]] == [
        ("svc-orders", "2000000000"),
        ("Audit%Log", "123456789"),
        ("bi_reader", "0"),  # every tab has the same rows (§6)
    ]
    assert ingress["kind"] == "bytes"
    egress = table(base, tab="egress", period="12M", as_of=AS_OF).json()
    assert egress["header"][1] == "2025-04" and egress["header"][-2] == "2026-03"
    assert egress["rows"][0] == ["svc-orders", *["0"] * 11, "5000000000", "5000000000"]
    assert egress["totals"][-1] == "6500000000"
    cost = table(base, tab="cost", period="12M", as_of=AS_OF).json()
    assert [row[0] for row in cost["rows"]] == ["old-svc", "svc-orders", "bi_reader", "Audit%Log"]
    assert cost["rows"][0][cost["header"].index("2025-12")] == "1.00"


def test_custom_range_filter_cluster_and_sort(base: str) -> None:
    custom = table(
        base, tab="ingress", **{"from": "2025-12-01", "to": "2026-03-31"}, bucket="month"
    )
    data = custom.json()
    assert data["header"] == [
        "Service Account",
        "2025-12",
        "2026-01",
        "2026-02",
        "2026-03",
        "Total",
    ]
    assert data["period"]["name"] == "custom"
    # `_` and `%` are plain characters, never patterns
    only = table(base, period="7D", as_of=AS_OF, filter="_").json()
    assert [row[0] for row in only["rows"]] == ["bi_reader"]
    only = table(base, period="7D", as_of=AS_OF, filter="%").json()
    assert [row[0] for row in only["rows"]] == ["Audit%Log"]
    only = table(base, period="7D", as_of=AS_OF, filter="ORDERS").json()
    assert [row[0] for row in only["rows"]] == ["svc-orders"]
    eu = table(base, period="7D", as_of=AS_OF, cluster="prod-eu").json()
    assert [row[0] for row in eu["rows"]] == ["svc-orders"]
    by_name = table(base, period="7D", as_of=AS_OF, sort="Service Account").json()
    assert [row[0] for row in by_name["rows"]] == ["Audit%Log", "bi_reader", "svc-orders"]
    by_day = table(base, period="7D", as_of=AS_OF, sort="2026-03-04:desc").json()
    assert [row[0] for row in by_day["rows"]] == ["Audit%Log", "bi_reader", "svc-orders"]
    asc = table(base, period="7D", as_of=AS_OF, sort="total:asc").json()
    assert [row[0] for row in asc["rows"]] == ["Audit%Log", "bi_reader", "svc-orders"]


def test_an_injection_in_the_filter_is_a_search_for_that_text(base: str) -> None:
    for text in ("'; DROP TABLE usage_totals; --", "' OR 1=1 --", "%' OR '%'='"):
        reply = table(base, period="7D", as_of=AS_OF, filter=text)
        assert reply.status == 200 and reply.json()["rows"] == []
    assert len(table(base, period="7D", as_of=AS_OF).json()["rows"]) == 3


def test_a_period_without_data_is_an_empty_table_not_an_error(base: str) -> None:
    data = table(base, period="30D", as_of="2020-01-31").json()
    assert data["rows"] == [] and data["chart"]["series"] == []
    assert data["totals"] == ["0.00"] * 31


def test_the_csv_is_byte_for_byte_the_cli_export(base: str, store: Path, tmp_path: Path) -> None:
    views = [
        {"tab": "cost", "period": "7D", "as_of": AS_OF},
        {"tab": "ingress", "period": "12M", "as_of": AS_OF, "sort": "Service Account:desc"},
        {"tab": "egress", "period": "30D", "as_of": AS_OF, "filter": "SVC", "cluster": "prod-eu"},
        {"tab": "cost", "from": "2025-11-15", "to": "2026-03-10", "bucket": "month"},
        {"tab": "cost", "period": "LM", "as_of": AS_OF},  # no rows: just the header
    ]
    for number, view in enumerate(views):
        reply = call(f"{base}/api/export.csv?{urlencode(view)}")
        assert reply.status == 200
        assert reply.headers["Content-Type"] == "text/csv; charset=utf-8"
        out = tmp_path / str(number)
        args = ["export", "--db", str(store), "--out", str(out)]
        args += [
            item for key, value in view.items() for item in (f"--{key.replace('_', '-')}", value)
        ]
        assert run(args) == 0
        (written,) = out.iterdir()
        disposition = reply.headers["Content-Disposition"]
        assert disposition.startswith(f'attachment; filename="{written.name}"'), disposition
        assert reply.body == written.read_bytes(), view


def test_clusters_and_rates(base: str) -> None:
    assert call(f"{base}/api/clusters").json() == {"clusters": ["default", "prod-eu", "prod-us"]}
    rates = call(f"{base}/api/rates").json()
    assert rates["default_rates"] is True and rates["token_required"] is False
    assert rates["entries"] == [
        {"from": "1970-01-01", "cluster": None, "ingress": "0.10", "egress": "0.10"}
    ]


def test_the_page_and_its_files_are_served(base: str) -> None:
    page = call(f"{base}/")
    assert page.status == 200 and b"<title>Chargeback" in page.body
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert call(f"{base}/static/app.js").headers["Content-Type"].startswith("text/javascript")
    assert call(f"{base}/static/app.css").status == 200
    assert_refused(call(f"{base}/static/../api.py"), 404, "no such")
    assert_refused(call(f"{base}/static/server.py"), 404, "no such file")


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"tab": "profit", "period": "7D"}, "unknown tab"),
        ({"period": "7W"}, "unknown period"),
        ({"period": "7D", "as_of": "2026-02-30"}, "as_of must be a date"),
        ({"period": "7D", "as_of": "20260310"}, "as_of must be a date"),
        ({"period": "7D", "as_of": "'; DROP TABLE x; --"}, "as_of must be a date"),
        ({"from": "2026-03-10", "to": "2026-03-01"}, "is after"),
        ({"from": "2026-03-10"}, "needs both"),
        ({"period": "7D", "from": "2026-03-01", "to": "2026-03-02"}, "not both"),
        ({"from": "0001-01-01", "to": "9999-12-31"}, "at most"),
        ({"period": "7D", "bucket": "week"}, "bucket must be"),
        ({"period": "7D", "sort": "'; DROP TABLE usage_totals; --"}, "cannot sort by"),
        ({"period": "7D", "sort": "%"}, "cannot sort by"),
        ({"period": "7D", "sort": "_"}, "cannot sort by"),
        ({"period": "7D", "sort": "Total:sideways"}, "cannot sort by"),
        ({"period": "7D", "sort": "2026-01"}, "cannot sort by"),
        ({"period": "7D", "filter": "x" * 10_000}, "longer than"),
        ({"period": "7D", "filter": "a\x00b"}, "control characters"),
        ({"period": "7D", "limit": "1"}, "unknown parameter"),
    ],
)
def test_bad_input_is_a_clear_400(base: str, params: dict[str, str], words: str) -> None:
    assert_refused(table(base, **params), 400, words)
    assert_refused(call(f"{base}/api/export.csv?{urlencode(params)}"), 400, words)


def test_malformed_query_strings_are_400(base: str) -> None:
    assert_refused(call(f"{base}/api/table?period=7D&period=30D"), 400, "twice")
    assert_refused(call(f"{base}/api/table?" + "&".join(["tab=cost"] * 50)), 400, "fields")
    assert_refused(call(f"{base}/api/table?filter=%ff%fe"), 400, "utf-8")
    assert_refused(call(f"{base}/api/clusters?x=1"), 400, "no parameters")
    assert_refused(call(f"{base}/api/nothing"), 404, "no such page")
    huge = call(f"{base}/api/table?filter=" + "a" * 70_000)
    assert huge.status == 414  # the standard library's own limit on the request line


def test_a_foreign_host_header_is_refused(base: str) -> None:
    # A DNS-rebinding page reaches 127.0.0.1 under its own name: refused.
    reply = call(f"{base}/api/table?period=7D", headers={"Host": "evil.example:8080"})
    assert_refused(reply, 403, "host")


def test_an_unexpected_failure_is_a_500_with_one_line(
    base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("secret detail\nTraceback (most recent call last)")

    monkeypatch.setattr(server_module, "table_json", broken)
    reply = table(base, period="7D")
    assert reply.status == 500
    message = reply.json()["error"]
    assert message == "internal error (RuntimeError); see the server's log"


def test_no_store_is_a_409_the_page_shows_as_its_empty_state(tmp_path: Path) -> None:
    with running(Settings(db=tmp_path / "none" / "chargeback.duckdb")) as url:
        reply = table(url, period="7D")
        assert_refused(reply, 409, "no store at")
        assert reply.json()["state"] == "no_store"
        assert call(f"{url}/api/clusters").status == 409
        assert call(f"{url}/api/rates").json()["default_rates"] is True


# --------------------------------------------------------------------------- changing rates


def post(url: str, body: object, **headers: str) -> Reply:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return call(f"{url}/api/rates", data, {"Content-Type": "application/json", **headers})


RATE = {"ingress": "0.05", "egress": "0.09", "from": "2026-03-09", "currency": "EUR"}


def test_a_rate_posted_is_saved_and_prices_the_days_from_its_date(tmp_path: Path) -> None:
    db = tmp_path / "chargeback.duckdb"
    write_small_store(db)
    with running(Settings(db=db)) as url:
        origin = url  # what a browser sends from the page itself
        reply = post(url, RATE, Origin=origin)
        assert reply.status == 200, reply.body
        assert reply.json()["entries"] == [
            {"from": "2026-03-09", "cluster": None, "ingress": "0.05", "egress": "0.09"}
        ]
        assert 'currency = "EUR"' in (tmp_path / "rates.toml").read_text()
        reply = post(url, {**RATE, "from": "2026-03-10", "egress": "1", "cluster": "prod-eu"})
        assert reply.status == 200
        data = table(url, period="7D", as_of=AS_OF).json()
        assert data["currency"] == "EUR" and data["default_rates"] is False
        # 03-09: 2 GB x 0.05 = 0.10; 03-10 on prod-eu: 5 GB x 1 = 5.00
        assert data["rows"][0] == ["svc-orders", *["0.00"] * 5, "0.10", "5.00", "5.10"]
        history = call(f"{url}/api/rates").json()["entries"]
        assert [(e["from"], e["cluster"]) for e in history] == [
            ("2026-03-09", None),
            ("2026-03-10", "prod-eu"),
        ]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({**RATE, "ingress": "-1"}, "must not be negative"),
        ({**RATE, "ingress": 0.05}, "must be a string"),
        ({**RATE, "egress": "abc"}, "not a number"),
        ({**RATE, "from": "yesterday"}, "must be a date"),
        ({**RATE, "currency": "EURO"}, "three-letter"),
        ({**RATE, "cluster": "   "}, "non-empty"),
        ({**RATE, "extra": 1}, "unknown field"),
        ({"ingress": "0.05"}, "missing"),
        ([RATE], "json object"),
        (b"{not json", "not valid json"),
    ],
)
def test_bad_rates_are_a_clear_400(tmp_path: Path, body: object, words: str) -> None:
    with running(Settings(db=tmp_path / "chargeback.duckdb")) as url:
        assert_refused(post(url, body), 400, words)
        assert not (tmp_path / "rates.toml").exists()


def test_writes_need_json_the_same_origin_and_the_token(tmp_path: Path) -> None:
    with running(Settings(db=tmp_path / "chargeback.duckdb", token="s3cret")) as url:
        assert_refused(post(url, RATE), 401, "token")
        assert_refused(post(url, RATE, Authorization="Bearer wrong"), 401, "wrong token")
        assert_refused(post(url, RATE, Authorization="Basic czNjcmV0"), 401, "token")
        good = {"Authorization": "Bearer s3cret"}
        assert_refused(post(url, RATE, Origin="http://evil.example", **good), 403, "cross-site")
        assert_refused(post(url, RATE, **{"Sec-Fetch-Site": "cross-site"}, **good), 403, "cross")
        form = call(
            f"{url}/api/rates",
            b"ingress=0.05",
            {"Content-Type": "application/x-www-form-urlencoded", **good},
        )
        assert_refused(form, 403, "content-type")
        assert_refused(post(url, b"x" * 20_000, **good), 413, "body above")
        assert not (tmp_path / "rates.toml").exists()
        assert post(url, RATE, Origin=url, **good).status == 200
        assert call(f"{url}/api/rates").json()["token_required"] is True
        assert_refused(call(f"{url}/api/table", b"{}", {}), 405, "only /api/rates")


def test_serve_refuses_a_network_address_without_a_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHARGEBACK_TOKEN", raising=False)
    assert run(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("chargeback: error: --host 0.0.0.0 is not a loopback address")
    assert len(error.splitlines()) == 1
    monkeypatch.setenv("CHARGEBACK_HOST", "192.0.2.1")
    assert run(["serve", "--port", "0"]) == 2
    assert "192.0.2.1 is not a loopback" in capsys.readouterr().err
