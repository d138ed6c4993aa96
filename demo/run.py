"""`chargeback demo`: the whole product on this machine, on realistic traffic, until Ctrl-C.

It starts (or uses) a Kafka, runs the real ingestion service as a child process, backfills more
than a year of traffic, writes every export, prints a summary, then keeps feeding live traffic.
Everything it started, it stops: the service, and the local broker if it started it.
"""

import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import FrameType

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from chargeback.errors import ChargebackError, UsageError
from demo.summary import summary_text
from export.job import ExportRequest, run_export
from export.periods import PERIOD_NAMES
from export.table import Tab
from localkafka import broker
from traffic.model import events, live_events
from traffic.produce import ensure_topic, fill_topic
from views.publish import copy_path_for
from views.rates import load_rates, rates_path_for, save_rates, set_rate

Say = Callable[[str], None]
PR_SET_PDEATHSIG = 1  # prctl(2) on Linux


@dataclass(frozen=True)
class DemoSettings:
    bootstrap_servers: str | None = None  # None: the local broker in kafka_dir
    topic: str = "chargeback.usage"
    partitions: int = 4
    accounts: int = 40
    events: int = 300_000
    days: int = 400
    rate: float = 50.0
    seed: int = 2026
    db: Path = Path("data/chargeback.duckdb")
    out: Path = Path("exports")
    kafka_dir: Path = Path("data/kafka")
    timezone: str = "UTC"
    traffic_only: bool = False
    live: bool = True


class Stop(Exception):
    """Ctrl-C or SIGTERM: wind down what was started."""


def run_demo(settings: DemoSettings, say: Say) -> None:
    started_broker = False
    service: subprocess.Popen[bytes] | None = None
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    # Ctrl-C must stop the demo even when it was started with SIGINT ignored (`cmd &` in a script).
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        bootstrap = settings.bootstrap_servers
        if bootstrap is None:
            bootstrap, started_broker = _local_broker(settings.kafka_dir, say)
        ensure_topic(bootstrap, settings.topic, settings.partitions)
        backlog = sum(_end_offsets(bootstrap, settings.topic).values())
        if not settings.traffic_only:
            _demo_rates(settings, say)
            service, metrics_port = _start_service(settings, bootstrap, say)
        if backlog:
            say(f"the topic {settings.topic} holds {backlog:,} records already: no backfill")
        else:
            _backfill(settings, bootstrap, say)
        if service is not None:
            _wait_applied(service, metrics_port, _end_offsets(bootstrap, settings.topic), say)
            _wait_published(settings.db, service)
            _export_all(settings, say)
            say(summary_text(settings.db, settings.out, settings.timezone))
        if settings.live:
            _live(settings, bootstrap, service, say)
    except (Stop, KeyboardInterrupt):
        say("stopping…")
    finally:
        # Each step runs even if an earlier one failed (a closed terminal, a stuck service).
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        try:
            if service is not None:
                _stop_service(service, say)
        finally:
            if started_broker:
                broker.stop(settings.kafka_dir)
                say("stopped the local Kafka")


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise Stop()


def _local_broker(kafka_dir: Path, say: Say) -> tuple[str, bool]:
    running = broker.status(kafka_dir)
    if running:
        say(f"using the local Kafka already running at {running}")
        return running, False
    say("starting a local Apache Kafka (the first time, its jars are fetched from Maven Central)…")
    try:
        address = broker.start(kafka_dir, broker.DEFAULT_PORT, progress=say)
    except UsageError:  # 9092 is taken: any free port will do
        address = broker.start(kafka_dir, 0, progress=say)
    say(f"Kafka is serving at {address}")
    return address, True


def _demo_rates(settings: DemoSettings, say: Say) -> None:
    """Example rates, with a price change and a cluster override, unless the user has rates."""
    path = rates_path_for(settings.db)
    if path.exists():
        return
    first = datetime.now(UTC).date() - timedelta(days=settings.days)
    change = _months_ago(datetime.now(UTC).date(), 4)
    book = load_rates(path)
    book = set_rate(book, Decimal("0.05"), Decimal("0.09"), first, currency="USD", unit="GB")
    book = set_rate(book, Decimal("0.04"), Decimal("0.08"), change)
    book = set_rate(book, Decimal("0.02"), Decimal("0.03"), first, cluster="staging")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_rates(path, book)
    say(f"wrote example rates to {path} (edit it, or use `chargeback rates set`)")


def _months_ago(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)


def _start_service(
    settings: DemoSettings, bootstrap: str, say: Say
) -> tuple["subprocess.Popen[bytes]", int]:
    port = _free_port()
    log = settings.db.parent / "ingest.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "chargeback", "ingest",
        "--bootstrap-servers", bootstrap, "--topic", settings.topic, "--db", str(settings.db),
        "--timezone", settings.timezone, "--metrics-port", str(port),
        "--publish-interval", "5", "--log-interval", "30",
    ]  # fmt: skip
    with log.open("ab") as out:
        # Its own process group: Ctrl-C reaches the demo, which then stops the service itself.
        service = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_stop_with_parent,
        )
    say(f"started `chargeback ingest` (pid {service.pid}, log {log}, metrics :{port}/metrics)")
    return service, port


def _stop_with_parent() -> None:
    """In the service's process, before it starts: on Linux, a SIGTERM when the demo dies, even
    by kill -9, so that no service is left holding the store."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _backfill(settings: DemoSettings, bootstrap: str, say: Say) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    records = events(
        settings.seed,
        now - timedelta(days=settings.days),
        now,
        settings.events,
        accounts=settings.accounts,
        late_fraction=0.01,
        bad_fraction=0.001,
    )
    bar = ProgressBar(f"backfill of {settings.days} days", settings.events, say)
    # log_level 3: the coordinator's "load in progress, retrying" on a new broker is not news.
    sent = fill_topic(
        bootstrap, settings.topic, records, progress=bar.update, config={"log_level": 3}
    )
    bar.done(sent)


def _wait_applied(
    service: "subprocess.Popen[bytes]", port: int, ends: dict[int, int], say: Say
) -> None:
    bar = ProgressBar("ingesting", sum(ends.values()), say)
    while True:
        if service.poll() is not None:
            raise ChargebackError(f"the ingestion service exited with {service.returncode}")
        applied = _next_offsets(port)
        bar.update(sum(min(applied.get(p, 0), end) for p, end in ends.items()))
        if all(applied.get(p, 0) >= end for p, end in ends.items()):
            bar.done(sum(ends.values()))
            return
        time.sleep(0.5)


def _wait_published(db: Path, service: "subprocess.Popen[bytes]") -> None:
    """Until a copy made after now exists, so the exports see the whole backfill."""
    since = time.time()
    copy = copy_path_for(db)
    while not copy.exists() or copy.stat().st_mtime < since:
        if service.poll() is not None:
            raise ChargebackError(f"the ingestion service exited with {service.returncode}")
        time.sleep(0.2)


def _export_all(settings: DemoSettings, say: Say) -> None:
    written = set()
    for tab in Tab:
        for period in PERIOD_NAMES:
            request = ExportRequest(
                tab=tab, period=period, out=settings.out, db=settings.db, timezone=settings.timezone
            )
            written.add(run_export(request).path)
    # Periods with the same days share a file name (in December, 12M is YTD).
    say(f"wrote {len(written)} CSV files (every tab and period) to {settings.out}/")


def _live(
    settings: DemoSettings,
    bootstrap: str,
    service: "subprocess.Popen[bytes] | None",
    say: Say,
) -> None:
    say(f"live: about {settings.rate:g} events a second until Ctrl-C")
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "log_level": 3})
    # Live events come far more often than the backfill's; each carries proportionally fewer
    # bytes, so a live day has the volume of a backfilled one and the chart stays true.
    backfill_per_second = max(settings.events, 1) / (settings.days * 86_400)
    scale = min(1.0, backfill_per_second / settings.rate) if settings.rate else 1.0
    seconds: Iterator[list[tuple[str, bytes]]] = live_events(
        settings.seed,
        datetime.now(UTC),
        settings.rate,
        settings.accounts,
        bad_fraction=0.001,
        bytes_scale=scale,
    )
    sent, tick = 0, time.monotonic()
    try:
        for batch in seconds:
            for key, value in batch:
                producer.produce(settings.topic, value, key)
            producer.poll(0)
            sent += len(batch)
            if service is not None and service.poll() is not None:
                raise ChargebackError(f"the ingestion service exited with {service.returncode}")
            tick += 1.0
            if sent and int(tick) % 30 == 0:
                say(f"live: {sent:,} events sent")
            time.sleep(max(0.0, tick - time.monotonic()))
    finally:
        producer.flush(10)


def _stop_service(service: "subprocess.Popen[bytes]", say: Say) -> None:
    if service.poll() is None:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
    say(f"stopped the ingestion service (exit {service.returncode})")


def _end_offsets(bootstrap: str, topic: str, attempts: int = 20) -> dict[int, int]:
    """Each partition's end offset; retried while a new topic's leaders settle."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "chargeback-demo-probe"})
    try:
        for attempt in range(attempts):
            try:
                metadata = consumer.list_topics(topic, timeout=10).topics[topic]
                return {
                    p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                    for p in metadata.partitions
                }
            except KafkaException:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.5)
        raise AssertionError("unreachable")
    finally:
        consumer.close()


def _next_offsets(port: int) -> dict[int, int]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
            text = reply.read().decode()
    except OSError:
        return {}  # not serving yet
    found = re.findall(r'chargeback_next_offset\{topic="[^"]*",partition="(\d+)"\} (\d+)', text)
    return {int(p): int(o) for p, o in found}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ProgressBar:
    """A one-line bar on a terminal; every tenth on a log."""

    def __init__(self, label: str, total: int, say: Say) -> None:
        self.label, self.total, self.say = label, max(total, 1), say
        self.tty = sys.stderr.isatty()
        self.shown = -1

    def update(self, done: int) -> None:
        tenth = done * 10 // self.total
        if self.tty:
            filled = done * 30 // self.total
            sys.stderr.write(
                f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}]"
                f" {done * 100 // self.total:3d}% {done:,}/{self.total:,}"
            )
            sys.stderr.flush()
        elif tenth > self.shown:
            self.say(f"{self.label}: {done:,}/{self.total:,}")
        self.shown = max(self.shown, tenth)

    def done(self, count: int) -> None:
        if self.tty:
            self.update(count)
            sys.stderr.write(os.linesep)
        self.say(f"{self.label}: {count:,} records")
