"""Prometheus text endpoints: broker quota byte rates (``quota``) or one-minute deltas (``delta``).

``quota`` — jmx_exporter's ``kafka_server_produce_byte_rate`` / ``kafka_server_fetch_byte_rate``
gauges (labels ``user``, ``client_id``): bytes per second averaged over the broker's quota window.
Each series (broker URL, metric, user, client id) is integrated on its own with the trapezoid
rule between consecutive points, ``(r0 + r1) / 2 * (t1 - t0)``; a point's time is its sample
timestamp, or the time the scrape answered. The bytes of all brokers are summed per (user, client
id, type). The fraction of a byte left over stays with its series for the next span.
- NaN, infinite and negative samples are dropped (as if the series were absent from that scrape).
- A series absent from a scrape (or a failed scrape) keeps its last point: when it comes back
  within ``max_gap`` seconds of that point the span is integrated, otherwise a new segment starts
  and the unknown stretch is not counted.
- A point not later than the series' last one adds nothing.

``delta`` — the Confluent Cloud export endpoint's ``confluent_kafka_server_request_bytes`` /
``…response_bytes`` (labels ``principal_id``, ``type``, ``kafka_id``): each sample is the bytes
of one minute. Only ``type="Produce"`` on the request metric and ``type="Fetch"`` on the response
metric are usage. A sample is counted once per (series, timestamp), however often it is scraped;
samples without a timestamp, or older than ``DEDUP_WINDOW_MS`` behind the newest seen, are
skipped with a log line because they cannot be deduplicated.

State (saved only after the producer acknowledged the cycle's events): the last point and carry
of every quota series, or the (series, timestamp) pairs already counted.
"""

import json
import logging
import math
import threading
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chargeback.errors import ChargebackError
from collect import state
from collect.emit import MAX_BYTES, UsageProducer, event
from collect.fetch import Http
from collect.promtext import PromParseError, Sample, parse

log = logging.getLogger("chargeback.collect")
KIND = "prometheus"
DEFAULT_METRICS = {
    "quota": ("kafka_server_produce_byte_rate", "kafka_server_fetch_byte_rate"),
    "delta": ("confluent_kafka_server_request_bytes", "confluent_kafka_server_response_bytes"),
}
DEDUP_WINDOW_MS = 6 * 3600 * 1000
CARRY_KEEP_MS = 24 * 3600 * 1000  # a series silent this long forgets its (sub-byte) carry
ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"

UsageKey = tuple[str, str, str, str]  # account, produce|fetch, client id, cluster


class QuotaIntegrator:
    """Rates in, whole bytes out, per series; its `series` dict is the saved state."""

    def __init__(self, max_gap_s: float, series: dict[str, Any] | None = None) -> None:
        self.max_gap_ms = max_gap_s * 1000
        self.series: dict[str, dict[str, Any]] = dict(series or {})
        self.warned: set[str] = set()

    def add(self, key: str, t_ms: int, rate: float) -> int:
        """Record point (t, rate) of series `key`; return the whole bytes of the span it closes."""
        entry = self.series.setdefault(key, {"carry": 0.0})
        last_t, last_rate = entry.get("t"), entry.get("rate")
        if last_t is not None and t_ms <= last_t:
            return 0
        entry["t"], entry["rate"] = t_ms, rate
        if last_t is None or last_rate is None or t_ms - last_t > self.max_gap_ms:
            if last_t is not None:
                log.info("%s: %.1fs since its last point; new segment", key, (t_ms - last_t) / 1e3)
            return 0
        carry: float = float(entry["carry"]) + (last_rate + rate) / 2 * (t_ms - last_t) / 1000
        whole = math.floor(carry + 1e-9)  # 10 x 0.3 is 2.9999999999999996 in binary
        entry["carry"] = carry - whole
        return whole

    def prune(self) -> None:
        """Forget series silent for CARRY_KEEP_MS before the newest point (by sample time)."""
        now_ms = max((e["t"] for e in self.series.values() if e.get("t") is not None), default=0)
        for key in list(self.series):
            entry = self.series[key]
            if entry.get("t") is not None and now_ms - entry["t"] > CARRY_KEEP_MS:
                del self.series[key]


@dataclass
class Prometheus:
    urls: list[str]
    mode: str
    producer: UsageProducer
    http: Http
    state_path: Path
    max_gap: float = 60.0
    cluster: str | None = None
    produce_metric: str = ""
    fetch_metric: str = ""
    clock: Callable[[], float] = time.time
    integrator: QuotaIntegrator = field(init=False)
    seen: dict[str, int] = field(init=False)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        default_produce, default_fetch = DEFAULT_METRICS[self.mode]
        self.produce_metric = self.produce_metric or default_produce
        self.fetch_metric = self.fetch_metric or default_fetch
        saved = state.load(self.state_path, KIND)
        if saved and saved.get("mode") != self.mode:
            raise ChargebackError(
                f"state file {self.state_path} belongs to --mode {saved.get('mode')}"
            )
        self.integrator = QuotaIntegrator(self.max_gap, saved.get("series"))
        self.seen = {str(k): int(v) for k, v in saved.get("seen", {}).items()}
        self.warned: set[str] = set()

    def run_once(self) -> bool:
        """Scrape every URL, send the usage, save the state; False if a URL failed."""
        ok = True
        scrapes: list[tuple[str, list[Sample], int]] = []
        for url in self.urls:
            try:
                text = self.http.request(url).decode("utf-8")
                scraped_ms = int(self.clock() * 1000)
                scrapes.append((url, parse(text).samples, scraped_ms))
            except ChargebackError as error:  # names the URL already
                log.error("scrape failed: %s", error)
                ok = False
            except (PromParseError, UnicodeDecodeError) as error:
                log.error("%s: scrape refused: %s", url.split("?")[0], error)
                ok = False
        if self.mode == "quota":
            before = json.dumps(self.integrator.series)
            events = self.quota_events(scrapes)
            self.integrator.prune()
            try:
                self.producer.send(events)
            except ChargebackError:
                self.integrator.series = json.loads(before)  # the spans are integrated again
                raise
            state.save(self.state_path, KIND, {"mode": "quota", "series": self.integrator.series})
        else:
            events, counted = self.delta_events(scrapes)
            self.producer.send(events)
            self.seen.update(counted)
            if self.seen:
                horizon = max(self.seen.values()) - DEDUP_WINDOW_MS
                self.seen = {k: v for k, v in self.seen.items() if v >= horizon}
            state.save(self.state_path, KIND, {"mode": "delta", "seen": self.seen})
        total = sum(e["bytes"] for e in events)
        log.info(
            "%d of %d sources scraped: %d events, %d bytes",
            len(scrapes),
            len(self.urls),
            len(events),
            total,
        )
        return ok

    def quota_events(self, scrapes: list[tuple[str, list[Sample], int]]) -> list[dict[str, Any]]:
        kinds = {self.produce_metric: "produce", self.fetch_metric: "fetch"}
        usage: dict[UsageKey, int] = defaultdict(int)
        stamps: dict[UsageKey, int] = {}
        for url, samples, scraped_ms in scrapes:
            done: set[str] = set()
            for sample in samples:
                kind = kinds.get(sample.name)
                if kind is None:
                    continue
                user = urllib.parse.unquote(sample.label("user"))
                client = sample.label("client_id")
                key = json.dumps([url, kind, user, client])
                if not self._usable_rate(sample, key, user) or key in done:
                    continue
                done.add(key)
                t_ms = sample.timestamp_ms if sample.timestamp_ms is not None else scraped_ms
                nbytes = self.integrator.add(key, t_ms, sample.value)
                if nbytes:
                    usage_key = (user, kind, client, self.cluster or "default")
                    usage[usage_key] += nbytes
                    stamps[usage_key] = max(stamps.get(usage_key, 0), t_ms)
        return [
            event(account, kind, nbytes, stamps[key], cluster, client)
            for key, nbytes in usage.items()
            for account, kind, client, cluster in [key]
        ]

    def _usable_rate(self, sample: Sample, key: str, user: str) -> bool:
        if not user:
            self._warn_once(key, f"{key}: no user label (is a user-level quota set?); ignored")
            return False
        if not math.isfinite(sample.value) or sample.value < 0:
            log.warning("%s: dropped rate %r", key, sample.value)
            return False
        return True

    def delta_events(
        self, scrapes: list[tuple[str, list[Sample], int]]
    ) -> tuple[list[dict[str, Any]], dict[str, int]]:
        wanted = {
            (self.produce_metric, "Produce"): "produce",
            (self.fetch_metric, "Fetch"): "fetch",
        }
        newest = max(self.seen.values(), default=0)
        counted: dict[str, int] = {}
        events = []
        for _url, samples, _scraped in scrapes:
            for sample in samples:
                kind = wanted.get((sample.name, sample.label("type")))
                if kind is None:
                    continue
                series = json.dumps([sample.name, sample.labels])
                stamp = sample.timestamp_ms
                if stamp is None:
                    self._warn_once(series, f"{series}: no timestamp, cannot deduplicate; skipped")
                    continue
                key = f"{series}@{stamp}"
                if key in self.seen or key in counted:
                    continue
                if stamp < newest - DEDUP_WINDOW_MS:
                    log.warning(
                        "%s: sample at %d is older than the dedup window; skipped", series, stamp
                    )
                    continue
                principal = sample.label("principal_id")
                value = sample.value
                if not principal:
                    log.warning("%s: no principal_id; skipped", series)
                    continue
                if not (math.isfinite(value) and value.is_integer() and 0 <= value <= MAX_BYTES):
                    log.warning(
                        "%s at %d: value %r is not a whole number of bytes; skipped",
                        series,
                        stamp,
                        value,
                    )
                    continue
                counted[key] = stamp
                if value:
                    cluster = self.cluster or sample.label("kafka_id") or "default"
                    events.append(event(principal, kind, int(value), stamp, cluster))
        return events, counted

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            log.warning("%s", message)
