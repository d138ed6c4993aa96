"""The service's counters, the one-line progress log, and the /metrics and /healthz endpoint."""

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from chargeback.errors import UsageError


@dataclass
class Metrics:
    """Counters read by the HTTP thread while the consume loop writes them (ints: GIL-atomic)."""

    started_at: float = field(default_factory=time.time)
    events_applied: int = 0
    records_applied: int = 0
    batches: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    lag: dict[int, int] = field(default_factory=dict)
    applied_next: dict[int, int] = field(default_factory=dict)  # partition -> next offset to apply
    last_loop_at: float = field(default_factory=time.monotonic)
    last_commit_at: float = 0.0
    assigned: bool = False

    def render(self, topic: str) -> str:
        lines = [
            "# HELP chargeback_events_applied_total Usage events added to the store.",
            "# TYPE chargeback_events_applied_total counter",
            f"chargeback_events_applied_total {self.events_applied}",
            "# HELP chargeback_records_applied_total Kafka records applied (accepted or rejected).",
            "# TYPE chargeback_records_applied_total counter",
            f"chargeback_records_applied_total {self.records_applied}",
            "# HELP chargeback_events_rejected_total Records rejected, by reason.",
            "# TYPE chargeback_events_rejected_total counter",
        ]
        lines += [
            f'chargeback_events_rejected_total{{reason="{kind}"}} {count}'
            for kind, count in sorted(self.rejected.items())
        ]
        lines += [
            "# HELP chargeback_batches_total Transactions committed to the store.",
            "# TYPE chargeback_batches_total counter",
            f"chargeback_batches_total {self.batches}",
            "# HELP chargeback_consumer_lag Records in the partition not yet applied.",
            "# TYPE chargeback_consumer_lag gauge",
        ]
        lines += [
            f'chargeback_consumer_lag{{topic="{topic}",partition="{partition}"}} {lag}'
            for partition, lag in sorted(self.lag.items())
        ]
        lines += [
            "# HELP chargeback_next_offset The next offset to apply, as stored with the totals.",
            "# TYPE chargeback_next_offset gauge",
        ]
        lines += [
            f'chargeback_next_offset{{topic="{topic}",partition="{partition}"}} {offset}'
            for partition, offset in sorted(self.applied_next.items())
        ]
        lines += [
            "# HELP chargeback_last_commit_timestamp_seconds When the last batch was committed.",
            "# TYPE chargeback_last_commit_timestamp_seconds gauge",
            f"chargeback_last_commit_timestamp_seconds {self.last_commit_at:.3f}",
        ]
        return "\n".join(lines) + "\n"


class ProgressLog:
    """Says every `interval` seconds how fast events are applied, in one line."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.last_time = time.monotonic()
        self.last_events = 0

    def line_if_due(self, metrics: Metrics) -> str | None:
        now = time.monotonic()
        if self.interval <= 0 or now - self.last_time < self.interval:
            return None
        rate = (metrics.events_applied - self.last_events) / (now - self.last_time)
        self.last_time, self.last_events = now, metrics.events_applied
        return (
            f"applied {metrics.events_applied:,} events ({rate:,.0f}/s),"
            f" rejected {sum(metrics.rejected.values()):,},"
            f" lag {sum(metrics.lag.values()):,}, batches {metrics.batches:,}"
        )


def serve_metrics(metrics: Metrics, topic: str, host: str, port: int) -> ThreadingHTTPServer:
    """Start the endpoint on a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._reply(200, metrics.render(topic), "text/plain; version=0.0.4")
            elif self.path == "/healthz":
                # Alive while the consume loop turns; whether partitions are assigned is said, not
                # judged: a service waiting for its topic to be created is healthy.
                healthy = time.monotonic() - metrics.last_loop_at < 30
                state = "assigned" if metrics.assigned else "waiting for partitions"
                self._reply(200 if healthy else 503, f"{'ok' if healthy else 'stalled'}: {state}\n")
            else:
                self._reply(404, "not found\n")

        def _reply(self, status: int, body: str, kind: str = "text/plain") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes every few seconds would drown the progress log

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as error:
        raise UsageError(
            f"--metrics-host {host} --metrics-port {port}: {error.strerror or error}"
        ) from None
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
