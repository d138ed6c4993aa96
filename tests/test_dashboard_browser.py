"""The Chargeback page in a real headless Chromium (Debian's `chromium`, driven by Playwright).

Clicks through every tab and period, searches, picks a cluster, sorts, sets a rate in the
Configuration dialog, exports and compares the download with `chargeback export`; saves a
screenshot of each tab under test-artifacts/. Measures page load and tab switch for 12M with
1,000 accounts (docs/dashboard.md). Skips when /usr/bin/chromium is missing:
`apt-get install -y chromium` installs it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from dashboard.api import Settings
from tests.test_dashboard_http import AS_OF, running, write_small_store
from views.store import open_store

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium: apt-get install -y chromium",
    ),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], errors


def loaded(page: Page) -> int:
    return int(page.evaluate("Number(document.body.dataset.loaded || 0)"))


def wait_loaded(page: Page, above: int, timeout: float = 30.0) -> None:
    """Poll until the page has shown a table asked for after `above` (the page's CSP forbids
    the eval that `wait_for_function` needs)."""
    deadline = time.monotonic() + timeout
    while loaded(page) <= above:
        assert time.monotonic() < deadline, "the page did not show the table"
        page.wait_for_timeout(5)


def after(page: Page, action: Any) -> None:
    """Do `action` and wait until the page has shown the table it asked for."""
    before = loaded(page)
    action()
    wait_loaded(page, before)


def names(page: Page) -> list[str]:
    return list(page.locator("#table tbody tr td:first-child").all_inner_texts())


def header(page: Page) -> list[str]:
    return list(page.locator("#table thead th").all_inner_texts())


def test_click_through_the_page(page: Page, tmp_path: Path) -> None:
    from chargeback.cli import run

    db = tmp_path / "chargeback.duckdb"
    write_small_store(db)
    ARTIFACTS.mkdir(exist_ok=True)
    with running(Settings(db=db)) as url:
        page.goto(f"{url}/?period=7D&as_of={AS_OF}")
        wait_loaded(page, 0)
        assert names(page) == ["svc-orders", "bi_reader", "Audit%Log"]
        assert page.locator("#table tbody tr").first.locator("td").last.inner_text() == "0.70 USD"
        assert page.locator("#table tfoot td").last.inner_text() == "0.86 USD"
        status = page.locator("#status").inner_text()
        assert "default rates" in status and "the store" in status and "old" in status
        assert page.locator("#chart svg rect").count() == 4  # 0.20 + 0.50, 0.15, 0.01
        assert "USD" in page.locator("#chart svg").inner_html()
        tooltip = page.locator("#chart svg rect title").first.text_content() or ""
        assert "USD" in tooltip and "2026-03-" in tooltip

        # every tab, with a screenshot of each
        for tab, file in (("cost", "cost"), ("ingress", "ingress"), ("egress", "egress")):
            after(page, lambda tab=tab: page.click(f"[data-tab={tab}]"))
            page.screenshot(path=str(ARTIFACTS / f"dashboard-{file}.png"), full_page=True)
        # bytes: human-readable, the exact integer in the title
        egress_cell = page.locator("#table tbody tr").first.locator("td").last
        assert egress_cell.inner_text() == "5.00 GB"
        assert egress_cell.get_attribute("title") == "5000000000 bytes"
        assert "GB" in page.locator("#chart svg").inner_html()

        # every period: the header has one column per bucket
        widths = {"7D": 7, "30D": 30, "6M": 6, "12M": 12, "YTD": 3, "LM": 28}
        for period, buckets in widths.items():
            after(page, lambda period=period: page.click(f"[data-period='{period}']"))
            assert len(header(page)) == buckets + 2, period
        assert header(page)[1] == "2026-02-01"
        page.click("[data-period=custom]")
        page.fill("#from", "2025-12-01")
        page.fill("#to", "2026-03-10")
        page.select_option("#bucket", "month")
        after(page, lambda: page.click("#custom-apply"))
        assert header(page) == [
            "Service Account",
            "2025-12",
            "2026-01",
            "2026-02",
            "2026-03",
            "Total",
        ]
        assert names(page) == ["svc-orders", "bi_reader", "Audit%Log", "old-svc"]  # egress
        after(page, lambda: page.click("[data-period='7D']"))

        # search (any case, `_` literally) and cluster
        after(page, lambda: page.fill("#search", "_READ"))
        assert names(page) == ["bi_reader"]
        after(page, lambda: page.fill("#search", ""))
        after(page, lambda: page.select_option("#cluster", "prod-eu"))
        assert names(page) == ["svc-orders"]
        after(page, lambda: page.select_option("#cluster", ""))

        # sort: click a header, then again for the other direction
        after(page, lambda: page.click("#table thead th >> text='Service Account'"))
        assert names(page) == ["Audit%Log", "bi_reader", "svc-orders"]
        after(page, lambda: page.click("#table thead th >> text='Service Account'"))
        assert names(page) == ["svc-orders", "bi_reader", "Audit%Log"]
        after(page, lambda: page.click("#table thead th >> text='2026-03-04'"))
        assert names(page)[0] == "Audit%Log"
        assert page.locator("#table thead th[aria-sort=descending]").inner_text() == "2026-03-04"

        # a rate from the Configuration dialog changes the costs
        after(page, lambda: page.click("[data-tab=cost]"))
        page.click("#config-open")
        page.wait_for_selector("#history tbody tr")
        page.fill("#rate-ingress", "1")
        page.fill("#rate-egress", "1.5")
        page.fill("#rate-from", "2026-03-10")
        page.fill("#rate-currency", "EUR")
        after(page, lambda: page.click("#config-save"))
        history = page.locator("#history tbody").inner_text()
        assert "2026-03-10" in history and "1.5" in history
        page.click("#config-close")
        after(page, lambda: page.click("#table thead th >> text='Total'"))
        # The first rate replaces the default and prices the past too (docs/rates.md, rule 3):
        # 03-09: 2 GB produced at 1 = 2.00; 03-10: 5 GB fetched at 1.5 = 7.50
        row = page.locator("#table tbody tr", has_text="svc-orders").locator("td")
        assert row.nth(6).inner_text() == "2.00"
        assert row.last.inner_text() == "9.50 EUR"
        assert "default rates" not in page.locator("#status").inner_text()
        page.screenshot(path=str(ARTIFACTS / "dashboard-cost-after-rate.png"), full_page=True)

        # Export all: the download is the CLI's file, byte for byte
        after(page, lambda: page.fill("#search", "S"))
        with page.expect_download() as info:
            page.click("#export")
        download = info.value
        saved = tmp_path / "download.csv"
        download.save_as(saved)
        out = tmp_path / "cli"
        args = ["export", "--db", str(db), "--out", str(out), "--tab", "cost", "--period", "7D"]
        args += ["--as-of", AS_OF, "--filter", "S", "--sort", "Total:asc"]
        assert run(args) == 0
        (cli_file,) = out.iterdir()
        assert download.suggested_filename == cli_file.name
        assert saved.read_bytes() == cli_file.read_bytes()


def test_the_empty_state_when_there_is_no_store(page: Page, tmp_path: Path) -> None:
    with running(Settings(db=tmp_path / "chargeback.duckdb")) as url:
        page.goto(f"{url}/")
        page.wait_for_selector("#empty:not([hidden])")
        text = page.locator("#empty").inner_text()
        assert "No data yet" in text and "chargeback ingest" in text and "no store at" in text
        page.screenshot(path=str(ARTIFACTS / "dashboard-empty.png"))


def write_big_store(db: Path, accounts: int) -> None:
    """A year of daily usage for `accounts` accounts, written directly with DuckDB."""
    con = open_store(db)
    con.execute(
        "INSERT INTO series SELECT i, 'cluster-' || (i % 3), 'svc-' || lpad(i::VARCHAR, 5, '0'),"
        " '', '' FROM range($n) t(i)",
        {"n": accounts},
    )
    con.execute(
        "INSERT INTO usage_totals"
        " SELECT CAST(d AS DATE), s, CAST(hash(d, s) % 20000000000 AS HUGEINT),"
        " CAST(hash(s, d) % 50000000000 AS HUGEINT), 1"
        " FROM range(DATE '2025-04-01', DATE '2026-03-11', INTERVAL 1 DAY) t(d), range($n) u(s)",
        {"n": accounts},
    )
    # Written beside the daily rows, as the service's writer does.
    con.execute(
        "INSERT INTO usage_monthly_totals SELECT CAST(date_trunc('month', day) AS DATE) AS m,"
        " series_id, sum(produced_bytes), sum(consumed_bytes), sum(event_count)"
        " FROM usage_totals GROUP BY m, series_id"
    )
    con.close()


def test_12m_with_1000_accounts_loads_and_switches_tabs_quickly(page: Page, tmp_path: Path) -> None:
    db = tmp_path / "chargeback.duckdb"
    write_big_store(db, 1000)
    with running(Settings(db=db)) as url:
        started = time.perf_counter()
        page.goto(f"{url}/?period=12M&as_of={AS_OF}")
        wait_loaded(page, 0)
        load_s = time.perf_counter() - started
        assert page.locator("#table tbody tr").count() == 1000
        switches = []
        for tab in ("ingress", "egress", "cost", "ingress", "egress", "cost"):
            started = time.perf_counter()
            after(page, lambda tab=tab: page.click(f"[data-tab={tab}]"))
            switches.append(time.perf_counter() - started)
        assert page.locator("#table tbody tr").count() == 1000
        started = time.perf_counter()
        after(page, lambda: page.click("#table thead th >> text='2025-07'"))
        sort_s = time.perf_counter() - started
        page.screenshot(path=str(ARTIFACTS / "dashboard-12m-1000-accounts.png"))
    worst = max(switches)
    print(
        f"\n12M x 1000 accounts: page load {load_s * 1000:.0f} ms; tab switch median"
        f" {sorted(switches)[len(switches) // 2] * 1000:.0f} ms, worst {worst * 1000:.0f} ms;"
        f" sort by a month {sort_s * 1000:.0f} ms"
    )
    # The aim is under a second (docs/dashboard.md); the bound leaves room for a busy CI machine.
    assert load_s < 5 and worst < 5
