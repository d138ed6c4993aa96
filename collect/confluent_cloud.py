"""Confluent Cloud: per-principal produce and fetch bytes from the Metrics API v2 query endpoint.

For each cluster, each closed interval (ending at or before now - settle, on the granularity's
grid) is asked for twice: ``io.confluent.kafka.server/request_bytes`` with ``metric.type`` =
Produce (ingress, ``produce`` events) and ``io.confluent.kafka.server/response_bytes`` with
``metric.type`` = Fetch (egress, ``fetch`` events), grouped by ``metric.principal_id``. All pages
of both are read before anything is sent; the cluster's watermark (the end of the last interval
sent) is saved only after the producer acknowledged every event of the chunk, so a restart
neither skips nor repeats an interval.
"""

import logging
import math
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from chargeback.errors import ChargebackError, UsageError
from collect import state
from collect.emit import MAX_BYTES, UsageProducer, event
from collect.fetch import Http, SourceError

log = logging.getLogger("chargeback.collect")
KIND = "confluent-cloud"
DEFAULT_URL = "https://api.telemetry.confluent.cloud"
GRANULARITY_S = {"PT1M": 60, "PT5M": 300, "PT1H": 3600}
# One query covers at most this much (well inside the API's per-granularity interval limits),
# so a long catch-up advances its watermark step by step.
MAX_SPAN_S = {"PT1M": 3600, "PT5M": 6 * 3600, "PT1H": 24 * 3600}
METRICS = (
    ("io.confluent.kafka.server/request_bytes", "Produce", "produce"),
    ("io.confluent.kafka.server/response_bytes", "Fetch", "fetch"),
)
PAGE_LIMIT = 1000
MAX_PAGES = 10_000


class Point(NamedTuple):
    principal: str
    timestamp_ms: int
    value: int


@dataclass
class ConfluentCloud:
    clusters: list[str]
    producer: UsageProducer
    http: Http
    state_path: Path
    granularity: str = "PT1M"
    settle: float = 300.0
    url: str = DEFAULT_URL
    since_ms: int | None = None
    clock: Callable[[], float] = time.time
    watermarks: dict[str, int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)  # checked between chunks

    def __post_init__(self) -> None:
        saved = state.load(self.state_path, KIND).get("watermarks", {})
        self.watermarks = {str(k): int(v) for k, v in saved.items()}
        self.step_ms = GRANULARITY_S[self.granularity] * 1000
        for cluster, mark in self.watermarks.items():
            if cluster in self.clusters and mark % self.step_ms:
                raise UsageError(
                    f"the watermark of {cluster} ({iso(mark)}) is not on the {self.granularity}"
                    " grid; keep the earlier --granularity until it is"
                )

    def closed_end_ms(self) -> int:
        """The end of the last interval the source has settled."""
        settled = int((self.clock() - self.settle) * 1000)
        return settled - settled % self.step_ms

    def run_once(self) -> bool:
        """Catch every cluster up to the last closed interval; False if any cluster failed."""
        ok = True
        for cluster in self.clusters:
            if self.stop.is_set():
                break
            try:
                self.catch_up(cluster)
            except ChargebackError as error:
                log.error("%s: %s; retried next cycle from %s", cluster, error, self._mark(cluster))
                ok = False
        return ok

    def _mark(self, cluster: str) -> str:
        mark = self.watermarks.get(cluster)
        return "the start" if mark is None else iso(mark)

    def catch_up(self, cluster: str) -> None:
        end = self.closed_end_ms()
        start = self.watermarks.get(cluster)
        if start is None:
            start = end - self.step_ms if self.since_ms is None else self.since_ms
            start -= start % self.step_ms
        span = MAX_SPAN_S[self.granularity] * 1000
        while start < end and not self.stop.is_set():
            chunk_end = min(start + span, end)
            events = []
            for metric, request_type, kind in METRICS:
                for point in self.query(cluster, metric, request_type, start, chunk_end):
                    if point.value:
                        events.append(
                            event(point.principal, kind, point.value, point.timestamp_ms, cluster)
                        )
            sent = self.producer.send(events)
            self.watermarks[cluster] = chunk_end
            state.save(self.state_path, KIND, {"watermarks": self.watermarks})
            log.info(
                "%s %s/%s: %d events sent, watermark %s",
                cluster,
                iso(start),
                iso(chunk_end),
                sent,
                iso(chunk_end),
            )
            start = chunk_end

    def query(
        self, cluster: str, metric: str, request_type: str, start: int, end: int
    ) -> list[Point]:
        body = orjson.dumps(
            {
                "aggregations": [{"metric": metric}],
                "filter": {
                    "op": "AND",
                    "filters": [
                        {"field": "resource.kafka.id", "op": "EQ", "value": cluster},
                        {"field": "metric.type", "op": "EQ", "value": request_type},
                    ],
                },
                "granularity": self.granularity,
                "group_by": ["metric.principal_id"],
                "intervals": [f"{iso(start)}/{iso(end)}"],
                "limit": PAGE_LIMIT,
                "format": "FLAT",
            }
        )
        base = self.url.rstrip("/") + "/v2/metrics/cloud/query"
        points: dict[tuple[str, int], Point] = {}
        token: str | None = None
        seen_tokens: set[str] = set()
        for _page in range(MAX_PAGES):
            query = "" if token is None else "?" + urllib.parse.urlencode({"page_token": token})
            url = base + query
            doc = _json(self.http.request(url, body, "application/json"), base)
            for raw in doc["data"]:
                point = self.point(raw, start, end, metric)
                if point is None:
                    continue
                key = (point.principal, point.timestamp_ms)
                if key in points:
                    log.warning("%s: %s at %s returned twice; kept once", metric, *key)
                    continue
                points[key] = point
            token = _next_token(doc)
            if token is None:
                return list(points.values())
            if token in seen_tokens:
                raise SourceError(f"{base}: the same next_page_token came back twice")
            seen_tokens.add(token)
        raise SourceError(f"{base}: more than {MAX_PAGES} pages")

    def point(self, raw: object, start: int, end: int, metric: str) -> Point | None:
        """A data point checked for sense; None (with a log line) for one that is skipped."""
        if not isinstance(raw, dict):
            log.warning("%s: skipped a data point that is not an object: %.200r", metric, raw)
            return None
        principal = raw.get("metric.principal_id")
        value = raw.get("value")
        try:
            stamp = parse_time(raw.get("timestamp"))
        except ValueError:
            log.warning("%s: skipped a point with a bad timestamp: %.200r", metric, raw)
            return None
        if not isinstance(principal, str) or not principal:
            log.warning("%s: skipped a point without metric.principal_id: %.200r", metric, raw)
            return None
        if not start <= stamp < end or stamp % self.step_ms:
            log.warning("%s: skipped a point outside the interval asked for: %.200r", metric, raw)
            return None
        nbytes = integer_bytes(value)
        if nbytes is None:
            log.warning(
                "%s: skipped %s at %s: value %r is not a whole number of bytes in 0..2^53",
                metric,
                principal,
                iso(stamp),
                value,
            )
            return None
        return Point(principal, stamp, nbytes)


def integer_bytes(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    else:
        return None
    return number if 0 <= number <= MAX_BYTES else None


def _json(data: bytes, where: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise SourceError(f"{where}: the answer is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise SourceError(f"{where}: the answer has no 'data' list")
    return doc


def _next_token(doc: dict[str, Any]) -> str | None:
    meta = doc.get("meta")
    pagination = meta.get("pagination") if isinstance(meta, dict) else None
    token = pagination.get("next_page_token") if isinstance(pagination, dict) else None
    return token if isinstance(token, str) and token else None


def iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: object) -> int:
    """Epoch ms of an RFC 3339 time with an offset (``Z`` included)."""
    if not isinstance(text, str):
        raise ValueError("not a string")
    when = datetime.fromisoformat(text.replace("z", "Z"))
    if when.tzinfo is None:
        raise ValueError("no offset")
    return round(when.timestamp() * 1000)
