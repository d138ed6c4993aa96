"""Collectors end to end: loopback HTTP servers in the real APIs' shapes -> `chargeback collect`
(a real process) -> a real Kafka topic -> `chargeback ingest` -> totals equal what was served."""

import base64
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from tests.ingest_harness import REPO, IngestProcess, daily_totals, end_offsets

pytestmark = pytest.mark.kafka

KEY, SECRET = "TESTKEY000", "not-a-real-secret-0123456789"  # fake; checked by the fake API
HOUR_MS = 3_600_000
Totals = Counter[tuple[date, str, str, str]]


def day_of(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, UTC).date()


class Loopback:
    """A ThreadingHTTPServer on 127.0.0.1 in a thread; `handle(handler)` answers each request."""

    def __init__(self, handle: Any) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.handle(self)

            def do_POST(self) -> None:
                outer.handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.handle = handle
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def reply(handler: BaseHTTPRequestHandler, status: int, body: bytes, **headers: str) -> None:
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def collect(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = subprocess.run(
        [sys.executable, "-m", "chargeback", "collect", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        timeout=180,
    )
    return result.returncode, result.stderr


def ingest_totals(bootstrap: str, topic: str, group: str, tmp_path: Path) -> Totals:
    db = tmp_path / "chargeback.duckdb"
    service = IngestProcess(bootstrap, topic, group, db)
    service.wait_applied(end_offsets(bootstrap, topic, 1))
    assert service.terminate() == 0
    return daily_totals(db)


# -- Confluent Cloud Metrics API ------------------------------------------------------------------

PRINCIPALS = ["sa-7yq21p", "sa-9mm3xx", "u-4kd90z", "sa-frac", "sa-idle"]
CLUSTERS = ["lkc-a1b2c3", "lkc-z9y8x7"]
KINDS = {
    "io.confluent.kafka.server/request_bytes": ("Produce", "produce"),
    "io.confluent.kafka.server/response_bytes": ("Fetch", "fetch"),
}


def served_value(cluster: str, request_type: str, principal: str, stamp: int) -> int | float:
    """The fake source's data: deterministic, so the test can add it up on its own."""
    if principal == "sa-idle":
        return 0
    if principal == "sa-frac" and (stamp // HOUR_MS) % 5 == 0:
        return 1234.5  # not a whole number of bytes: skipped with a log line
    seed = sum(map(ord, cluster + request_type + principal)) + stamp // HOUR_MS
    return (seed * 7919) % 1_000_003 + (0 if request_type == "Produce" else 17)


class FakeMetricsApi:
    def __init__(self, settle: float) -> None:
        self.settle = settle
        self.requests = 0
        self.fault_at = {1: (429, "1"), 4: (500, None)}  # request number -> status, Retry-After
        self.fail_after: int | None = None  # then every request is a 500 (Retry-After: 0)
        self.delay = 0.0
        self.problems: list[str] = []
        self.lock = threading.Lock()
        self.server = Loopback(self.handle)

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        time.sleep(self.delay)
        with self.lock:
            self.requests += 1
            number = self.requests
            failing = self.fail_after is not None and number > self.fail_after
        expected = "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
        if handler.headers.get("Authorization") != expected:
            return reply(handler, 401, b'{"errors":[{"status":"401"}]}')
        if number in self.fault_at or failing:
            status, after = self.fault_at.get(number, (500, "0"))
            headers = {} if after is None else {"Retry_After": after}
            return reply(handler, status, b'{"errors":[{"status":"%d"}]}' % status, **headers)
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length", "0"))
        body = json.loads(handler.rfile.read(length))
        if parts.path != "/v2/metrics/cloud/query":
            return reply(handler, 404, b"{}")
        try:
            points = self.points(body)
        except (KeyError, ValueError, AssertionError) as error:
            self.problems.append(f"bad query {body}: {error!r}")
            return reply(handler, 400, b'{"errors":[{"status":"400"}]}')
        offset = int(parse_qs(parts.query).get("page_token", ["0"])[0] or 0)
        page = points[offset : offset + 7]
        meta: dict[str, Any] = {"page_size": len(page), "total_size": len(points)}
        if offset + 7 < len(points):
            meta["next_page_token"] = str(offset + 7)
        reply(handler, 200, json.dumps({"data": page, "meta": {"pagination": meta}}).encode())

    def points(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        (aggregation,) = body["aggregations"]
        request_type, _kind = KINDS[aggregation["metric"]]
        filters = {f["field"]: f["value"] for f in body["filter"]["filters"]}
        assert body["filter"]["op"] == "AND" and all(
            f["op"] == "EQ" for f in body["filter"]["filters"]
        )
        assert filters["metric.type"] == request_type, "wrong metric.type"
        cluster = filters["resource.kafka.id"]
        assert body["group_by"] == ["metric.principal_id"] and body["granularity"] == "PT1H"
        (interval,) = body["intervals"]
        start_text, end_text = interval.split("/")
        start = int(datetime.fromisoformat(start_text).timestamp() * 1000)
        end = int(datetime.fromisoformat(end_text).timestamp() * 1000)
        assert start % HOUR_MS == 0 and end % HOUR_MS == 0 and start < end
        if end > (time.time() - self.settle) * 1000:
            self.problems.append(f"asked for an interval not yet closed: {interval}")
        return [
            {
                "timestamp": datetime.fromtimestamp(stamp / 1000, UTC).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                ),
                "value": served_value(cluster, request_type, principal, stamp),
                "metric.principal_id": principal,
            }
            for stamp in range(start, end, HOUR_MS)
            for principal in PRINCIPALS
        ]


@pytest.fixture
def metrics_api() -> Iterator[FakeMetricsApi]:
    api = FakeMetricsApi(settle=300)
    yield api
    api.server.close()


def test_confluent_cloud_end_to_end_with_restarts(
    kafka_bootstrap: str,
    topic_factory: Any,
    unique_group: str,
    tmp_path: Path,
    metrics_api: FakeMetricsApi,
) -> None:
    topic = topic_factory(partitions=1)
    since = (int(time.time() * 1000) // HOUR_MS - 30) * HOUR_MS  # 30 hourly intervals back
    state = tmp_path / "ccloud.json"
    args = [
        "confluent-cloud", "--cluster", CLUSTERS[0], "--cluster", CLUSTERS[1],
        "--granularity", "PT1H", "--settle", "300", "--url", metrics_api.server.url,
        "--state", str(state), "--since", datetime.fromtimestamp(since / 1000, UTC).isoformat(),
        "--bootstrap-servers", kafka_bootstrap, "--topic", topic,
    ]  # fmt: skip
    env = {"CONFLUENT_CLOUD_API_KEY": KEY, "CONFLUENT_CLOUD_API_SECRET": SECRET}

    # 1. Always-on, stopped with SIGTERM as soon as the first watermark is saved.
    metrics_api.delay = 0.05
    log1 = tmp_path / "run1.log"
    with log1.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "chargeback", "collect", *args, "--interval", "0.5"],
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO), **env},
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while not state.exists():
                assert process.poll() is None and time.monotonic() < deadline, log1.read_text()
                time.sleep(0.02)
            process.send_signal(signal.SIGTERM)
            assert process.wait(60) == 0, log1.read_text()
        finally:
            if process.poll() is None:
                process.kill()
    first = json.loads(state.read_text())["state"]["watermarks"]
    assert first and any(first.get(c) != since + 30 * HOUR_MS for c in CLUSTERS), first

    # 2. Once, with the source failing for good part-way: exit 1, some progress kept.
    metrics_api.delay = 0.0
    metrics_api.fail_after = metrics_api.requests + 9
    code, err = collect(tmp_path, *args, "--once", env=env)
    assert code == 1 and "the cycle did not complete" in err, err
    assert "HTTP 500 after 6 attempts" in err

    # 3. Once more with a healthy source: caught up.
    metrics_api.fail_after = None
    code, err3 = collect(tmp_path, *args, "--once", env=env)
    assert code == 0, err3
    marks = json.loads(state.read_text())["state"]["watermarks"]
    end = marks[CLUSTERS[0]]
    assert marks == {c: end for c in CLUSTERS}
    assert end >= since + 29 * HOUR_MS
    assert not metrics_api.problems, metrics_api.problems
    for text in (log1.read_text(), err, err3):
        assert SECRET not in text and KEY not in text
        assert base64.b64encode(f"{KEY}:{SECRET}".encode()).decode() not in text
    assert "is not a whole number of bytes" in log1.read_text() + err + err3
    assert "HTTP 429" in log1.read_text()  # the first request, answered with Retry-After: 1

    expected: Totals = Counter()
    for cluster in CLUSTERS:
        for request_type, kind in KINDS.values():
            for stamp in range(since, end, HOUR_MS):
                for principal in PRINCIPALS:
                    value = served_value(cluster, request_type, principal, stamp)
                    if value and float(value).is_integer():
                        expected[(day_of(stamp), cluster, principal, kind)] += int(value)
    assert ingest_totals(kafka_bootstrap, topic, unique_group, tmp_path) == expected


def test_confluent_cloud_needs_credentials_from_the_environment(tmp_path: Path) -> None:
    env = {"CONFLUENT_CLOUD_API_KEY": "", "CONFLUENT_CLOUD_API_SECRET": ""}
    code, err = collect(tmp_path, "confluent-cloud", "--cluster", "lkc-1", "--once", env=env)
    assert code == 2 and "set CONFLUENT_CLOUD_API_KEY and CONFLUENT_CLOUD_API_SECRET" in err


# -- Prometheus: jmx_exporter quota rates on two brokers ------------------------------------------


class FakeScrapes:
    """Serves `pages[path]`; a path set to None answers 503 (a broker that is down)."""

    def __init__(self) -> None:
        self.pages: dict[str, str | None] = {}
        self.fail_next: set[str] = set()
        self.served: list[str] = []
        self.server = Loopback(self.handle)

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        path = urlsplit(handler.path).path
        if path in self.fail_next:
            self.fail_next.discard(path)
            return reply(handler, 500, b"busy")
        page = self.pages.get(path)
        if page is None:
            return reply(handler, 503, b"down")
        self.served.append(path)
        reply(handler, 200, page.encode(), Content_Type="text/plain; version=0.0.4")


@pytest.fixture
def scrapes() -> Iterator[FakeScrapes]:
    fake = FakeScrapes()
    yield fake
    fake.server.close()


A1 = ("produce", "svc-orders", "api-1")
REP = ("fetch", "CN%3Dreporting%2COU%3Ddata", "rep-1")  # URL-encoded, as Kafka tags it
A2 = ("produce", "svc-orders", "api-2")
BC = ("fetch", "svc-billing", "bc")
# Each step: seconds since T0, then per broker {(type, user, client): rate text}; absent = vanished.
STEPS: list[tuple[int, dict[str, dict[tuple[str, str, str], str]]]] = [
    (0, {"/b1": {A1: "1000.5", REP: "2048"}, "/b2": {A2: "300"}}),
    (10, {"/b1": {A1: "1200.25", REP: "NaN"}, "/b2": {A2: "300.5"}}),
    (20, {"/b1": {A1: "800", REP: "4096"}, "/b2": {}}),  # api-2 vanished
    (30, {"/b1": {A1: "+Inf", REP: "4096"}, "/b2": {A2: "100.25", BC: "-5"}}),
    (40, {"/b1": {A1: "600.75", REP: "1000"}, "/b2": {A2: "100.25", BC: "512000"}}),
    (130, {"/b1": {A1: "600.75", REP: "1000"}, "/b2": {A2: "100.25", BC: "512000"}}),  # 90 s gap
    (140, {"/b1": {A1: "601", REP: "999.5"}, "/b2": {A2: "99", BC: "511999.5"}}),
    (150, {"/b1": {A1: "0", REP: "0.25"}, "/b2": {A2: "0", BC: "1.5"}}),
]
MAX_GAP = 60


def quota_page(broker: str, t_ms: int, series: dict[tuple[str, str, str], str]) -> str:
    lines = ["# jmx_exporter (fake)"]
    for kind in ("produce", "fetch"):
        lines.append(f"# HELP kafka_server_{kind}_byte_rate Byte rate (bytes/s).")
        lines.append(f"# TYPE kafka_server_{kind}_byte_rate gauge")
        for (metric, user, client), rate in series.items():
            if metric == kind:
                # broker 1 writes milliseconds, broker 2 fractional seconds
                stamp = str(t_ms) if broker == "/b1" else f"{t_ms / 1000:.3f}"
                lines.append(
                    f'kafka_server_{kind}_byte_rate{{user="{user}",client_id="{client}",}}'
                    f" {rate} {stamp}"
                )
    lines.append('kafka_server_request_total{request="Produce",} 12345.0')  # not ours
    return "\n".join(lines) + "\n"


def expected_quota(t0_ms: int) -> Totals:
    """Trapezoids per series worked out here, floored per series, summed per account and type."""
    per_series: dict[tuple[str, str, str, str], float] = Counter()
    last: dict[tuple[str, str, str, str], tuple[float, float]] = {}
    for seconds, brokers in STEPS:
        for broker, series in brokers.items():
            for (kind, user, client), text in series.items():
                rate = float(text)
                if not math.isfinite(rate) or rate < 0:
                    continue
                key = (broker, kind, user, client)
                if key in last and seconds - last[key][0] <= MAX_GAP:
                    per_series[key] += (last[key][1] + rate) / 2 * (seconds - last[key][0])
                last[key] = (seconds, rate)
    totals: Totals = Counter()
    for (_broker, kind, user, _client), nbytes in per_series.items():
        if math.floor(nbytes):
            totals[(day_of(t0_ms), "kraft-1", unquote(user), kind)] += math.floor(nbytes)
    return totals


def test_prometheus_quota_mode_end_to_end(
    kafka_bootstrap: str,
    topic_factory: Any,
    unique_group: str,
    tmp_path: Path,
    scrapes: FakeScrapes,
) -> None:
    topic = topic_factory(partitions=1)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    t0_ms = int((today - timedelta(hours=12)).timestamp() * 1000)  # yesterday noon: one day
    base = [
        "prometheus", "--mode", "quota", "--url", scrapes.server.url + "/b1",
        "--url", scrapes.server.url + "/b2", "--max-gap", str(MAX_GAP), "--cluster", "kraft-1",
        "--state", str(tmp_path / "quota.json"), "--bootstrap-servers", kafka_bootstrap,
        "--topic", topic, "--once",
    ]  # fmt: skip
    for number, (seconds, brokers) in enumerate(STEPS):
        for broker, series in brokers.items():
            scrapes.pages[broker] = quota_page(broker, t0_ms + seconds * 1000, series)
        if number == 3:
            scrapes.fail_next.add("/b2")  # one 500, retried
        code, err = collect(tmp_path, *base)  # every scrape a new process: a restart each time
        assert code == 0, err
    totals = ingest_totals(kafka_bootstrap, topic, unique_group, tmp_path)
    expected = expected_quota(t0_ms)
    assert "CN=reporting,OU=data" in {key[2] for key in expected}
    assert totals == expected
    assert sum(expected.values()) > 0


# -- Prometheus: the Confluent Cloud export endpoint's one-minute deltas --------------------------


def export_page(minutes: list[int]) -> str:
    lines = []
    for name, kinds in (("request", ("Produce", "Metadata")), ("response", ("Fetch", "Metadata"))):
        metric = f"confluent_kafka_server_{name}_bytes"
        lines.append(f"# HELP {metric} Bytes per principal and type, one-minute delta.")
        lines.append(f"# TYPE {metric} gauge")
        for stamp in minutes:
            for principal in ("sa-7yq21p", "sa-9mm3xx", "u-4kd90z"):
                for kind in kinds:
                    value = delta_value(principal, kind, stamp)
                    lines.append(
                        f'{metric}{{kafka_id="lkc-a1b2c3",principal_id="{principal}",'
                        f'type="{kind}"}} {value:.1f} {stamp}'
                    )
    return "\n".join(lines) + "\n# EOF\n"


def delta_value(principal: str, kind: str, stamp: int) -> int:
    return (sum(map(ord, principal + kind)) * 31 + stamp // 60_000) % 900_001


def test_prometheus_delta_mode_end_to_end(
    kafka_bootstrap: str,
    topic_factory: Any,
    unique_group: str,
    tmp_path: Path,
    scrapes: FakeScrapes,
) -> None:
    topic = topic_factory(partitions=1)
    first = (int(time.time()) // 60 - 30) * 60_000
    base = [
        "prometheus", "--mode", "delta", "--url", scrapes.server.url + "/export",
        "--state", str(tmp_path / "delta.json"), "--bootstrap-servers", kafka_bootstrap,
        "--topic", topic, "--once",
    ]  # fmt: skip
    served: set[int] = set()
    for scrape in range(8):  # each scrape shows the last three minutes: overlaps every time
        minutes = [first + 60_000 * (scrape + k) for k in range(3)]
        served.update(minutes)
        scrapes.pages["/export"] = export_page(minutes)
        if scrape == 4:
            scrapes.fail_next.add("/export")
        code, err = collect(tmp_path, *base, env={"CONFLUENT_CLOUD_API_KEY": "x"})
        assert code == 0, err
    expected: Totals = Counter()
    for stamp in served:
        for principal in ("sa-7yq21p", "sa-9mm3xx", "u-4kd90z"):
            for kind, usage in (("Produce", "produce"), ("Fetch", "fetch")):
                expected[(day_of(stamp), "lkc-a1b2c3", principal, usage)] += delta_value(
                    principal, kind, stamp
                )
    assert ingest_totals(kafka_bootstrap, topic, unique_group, tmp_path) == +expected
