"""Quota mode against a real broker: SASL/SCRAM users on a second local Apache Kafka broker with
a user-level default quota and jmx_exporter's Java agent; real producers and consumers move a
known number of bytes at a steady rate while `chargeback collect prometheus --mode quota` (a
real process) scrapes the agent into a usage topic on the session broker; `chargeback ingest`
ingests it; each user's produce and fetch bytes are compared with what its clients moved.

What the broker's quota sensors count (Kafka 4.1 KafkaApis): produce, the size of each Produce
request (header, topic/partition framing and the record batches); fetch, the size of each Fetch
response (records plus framing, empty responses of an idle consumer included). The reference is
therefore the clients' own wire bytes on their connection to the broker (librdkafka statistics:
`txbytes` of the producer, `rxbytes` of the consumer), which also hold a few small non-produce /
non-fetch requests (ApiVersions, SASL, Metadata, offset commits: under 0.1 % here). The payload
and the broker's per-topic record-byte counters (BytesInPerSec/BytesOutPerSec Count) are shown
beside it.
"""

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from collect.promtext import parse
from tests.ingest_harness import REPO, IngestProcess, daily_totals, end_offsets
from tests.scram_broker import ScramBroker

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

# user -> (bytes per second, value size): steady traffic, different per user.
USERS = {
    "svc-orders": (60_000, 1_000),
    "svc-billing": (25_000, 300),
    "reporting@data": (40_000, 4_000),  # '@' is URL-encoded in the broker's user tag
}
TRAFFIC_S = 60.0
TICK_S = 0.1
INTERVAL_S = 5
QUOTA = 10 * 1024**3  # bytes/s: never reached, so nobody is throttled
BOUND = 0.03  # asserted: |collected / client wire bytes - 1| below this, per user and type
CLUSTER = "scram-local"


class Stats:
    """The newest librdkafka statistics of one client: wire bytes to and from broker 1."""

    def __init__(self) -> None:
        self.latest: dict[str, Any] = {}
        self.lock = threading.Lock()

    def callback(self, text: str) -> None:
        with self.lock:
            self.latest = json.loads(text)

    def wire(self, field: str) -> int:
        with self.lock:
            brokers = self.latest.get("brokers", {}).values()
            return sum(int(b[field]) for b in brokers if b.get("nodeid") == 1)


class User:
    def __init__(self, name: str, rate: int, size: int, broker: ScramBroker) -> None:
        self.name, self.rate, self.size = name, rate, size
        self.password = secrets.token_urlsafe(18)  # made up here, for this broker only
        self.topic = f"usage-{secrets.token_hex(4)}"
        self.broker = broker
        self.produced = self.consumed = 0  # payload bytes (key + value)
        self.produced_records = self.consumed_records = 0
        self.producer_stats, self.consumer_stats = Stats(), Stats()
        self.errors: list[str] = []

    def config(self, stats: Stats) -> dict[str, Any]:
        return {
            **self.broker.client_config(self.name, self.password),
            "statistics.interval.ms": 500,
            "stats_cb": stats.callback,
            "log_level": 3,
        }

    def producer(self) -> Producer:
        return Producer(
            {
                **self.config(self.producer_stats),
                "client.id": f"{self.name}-producer",
                "linger.ms": 20,
                "compression.type": "none",
                "acks": "all",
            }
        )

    def send(self, producer: Producer, value: bytes, key: bytes) -> None:
        def delivered(error: Any, _message: Any) -> None:
            if error is not None:
                self.errors.append(str(error))

        producer.produce(self.topic, value, key, on_delivery=delivered)
        self.produced += len(key) + len(value)
        self.produced_records += 1

    def produce_steadily(self, stop_at: float) -> None:
        producer = self.producer()
        per_tick = self.rate * TICK_S
        owed, number, tick = 0.0, 0, time.monotonic()
        while tick < stop_at:
            owed += per_tick
            while owed >= self.size:
                key = b"k%08d" % number
                value = secrets.token_bytes(self.size - len(key))
                self.send(producer, value, key)
                owed -= self.size
                number += 1
            producer.poll(0)
            tick += TICK_S
            time.sleep(max(0.0, tick - time.monotonic()))
        assert producer.flush(30) == 0
        producer.poll(1.0)  # one more statistics callback after the last request
        time.sleep(0.6)
        producer.poll(0.5)

    def consume(self, stop: threading.Event) -> None:
        consumer = Consumer(
            {
                **self.config(self.consumer_stats),
                "client.id": f"{self.name}-consumer",
                "group.id": f"{self.name}-group",
                "auto.offset.reset": "earliest",
            }
        )
        consumer.subscribe([self.topic])
        try:
            while not stop.is_set():
                message = consumer.poll(0.2)
                if message is None:
                    continue
                if message.error() is not None:
                    self.errors.append(str(message.error()))
                    continue
                self.consumed += len(message.key() or b"") + len(message.value() or b"")
                self.consumed_records += 1
            consumer.poll(0.6)  # the last statistics
        finally:
            consumer.close()


@pytest.fixture
def scram_broker(tmp_path: Path) -> Iterator[ScramBroker]:
    started = ScramBroker.start(tmp_path / "scram-kafka")
    try:
        yield started
    finally:
        started.stop()


def scrape(url: str) -> dict[tuple[str, str], float]:
    """(metric name, user or topic label) -> value, of our metrics only."""
    with urllib.request.urlopen(url, timeout=10) as reply:
        samples = parse(reply.read().decode()).samples
    return {
        (s.name, s.label("user") or s.label("topic")): s.value
        for s in samples
        if s.name.startswith("kafka_server_")
    }


def quota_series(state: Path) -> dict[str, Any]:
    try:
        series: dict[str, Any] = json.loads(state.read_text())["state"]["series"]
    except (FileNotFoundError, ValueError, KeyError):
        return {}
    return series


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not after {timeout} s"
        time.sleep(0.5)


def test_quota_mode_against_a_real_broker(
    kafka_bootstrap: str,
    topic_factory: Any,
    unique_group: str,
    tmp_path: Path,
    scram_broker: ScramBroker,
) -> None:
    began = time.monotonic()
    users = [User(name, rate, size, scram_broker) for name, (rate, size) in USERS.items()]
    scram_broker.add_scram_users({u.name: u.password for u in users})
    scram_broker.set_default_user_quota(QUOTA)
    admin = AdminClient({"bootstrap.servers": scram_broker.bootstrap, "log_level": 0})
    for future in admin.create_topics([NewTopic(u.topic, 1, 1) for u in users]).values():
        future.result(timeout=30)

    usage_topic = topic_factory(partitions=1)
    state = tmp_path / "quota.json"
    log = tmp_path / "collect.log"
    command = [
        sys.executable, "-m", "chargeback", "collect", "prometheus", "--mode", "quota",
        "--url", scram_broker.metrics_url, "--interval", str(INTERVAL_S),
        "--cluster", CLUSTER, "--state", str(state),
        "--bootstrap-servers", kafka_bootstrap, "--topic", usage_topic,
    ]  # fmt: skip
    with log.open("w") as out:
        collector = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    try:
        # Warm-up: every user's produce and fetch sensors exist and the collector has a first
        # point of each (the first point of a series adds nothing) before the traffic starts.
        stop_consumers = threading.Event()
        consumers = [threading.Thread(target=u.consume, args=(stop_consumers,)) for u in users]
        for thread in consumers:
            thread.start()
        for user in users:
            producer = user.producer()
            user.send(producer, b"warm-up", b"w")
            assert producer.flush(30) == 0
        wait_for(lambda: len(quota_series(state)) == 2 * len(users), 60, "collector's series")

        # Steady traffic.
        stop_at = time.monotonic() + TRAFFIC_S
        producers = [threading.Thread(target=u.produce_steadily, args=(stop_at,)) for u in users]
        for thread in producers:
            thread.start()
        for thread in producers:
            thread.join(TRAFFIC_S + 60)
        wait_for(
            lambda: all(u.consumed_records == u.produced_records for u in users), 60, "consumed"
        )
        time.sleep(1.0)
        stop_consumers.set()
        for thread in consumers:
            thread.join(30)
        for user in users:
            assert not user.errors, user.errors

        # The sensors' rates fall to zero within the quota window (11 s); two more scrapes after.
        wait_for(
            lambda: all(
                v == 0 for (name, _), v in scrape(scram_broker.metrics_url).items()
                if name.endswith("_byte_rate")
            ),
            60,
            "byte rates back to zero",
        )  # fmt: skip
        for _ in range(2):
            before = state.stat().st_mtime_ns
            wait_for(lambda b=before: state.stat().st_mtime_ns != b, 30, "a collector cycle")
        reference = scrape(scram_broker.metrics_url)
    finally:
        collector.send_signal(signal.SIGTERM)
        code = collector.wait(60)
    assert code == 0, log.read_text()
    assert "ERROR" not in log.read_text(), log.read_text()

    db = tmp_path / "chargeback.duckdb"
    service = IngestProcess(kafka_bootstrap, usage_topic, unique_group, db)
    service.wait_applied(end_offsets(kafka_bootstrap, usage_topic, 1))
    assert service.terminate() == 0
    collected: dict[tuple[str, str], int] = {}
    for (_day, cluster, account, kind), nbytes in daily_totals(db).items():
        assert cluster == CLUSTER
        collected[(account, kind)] = collected.get((account, kind), 0) + nbytes
    assert {account for account, _ in collected} == set(USERS)

    lines = [f"run {time.monotonic() - began:.0f} s, traffic {TRAFFIC_S:.0f} s"]
    errors = {}
    for user in users:
        for kind, wire, records, payload in (
            (
                "produce",
                user.producer_stats.wire("txbytes"),
                reference[("kafka_server_brokertopicmetrics_bytesinpersec_count", user.topic)],
                user.produced,
            ),
            (
                "fetch",
                user.consumer_stats.wire("rxbytes"),
                reference[("kafka_server_brokertopicmetrics_bytesoutpersec_count", user.topic)],
                user.consumed,
            ),
        ):
            got = collected.get((user.name, kind), 0)
            errors[(user.name, kind)] = got / wire - 1
            lines.append(
                f"{user.name:15} {kind:7} collected {got:9d}  client wire {wire:9d} "
                f"({got / wire - 1:+.3%})  broker records {int(records):9d} "
                f"({got / records - 1:+.3%})  payload {payload:9d} ({got / payload - 1:+.3%})"
            )
    report = "\n".join(lines)
    print(report)
    (tmp_path / "report.txt").write_text(report + "\n")
    assert all(abs(error) < BOUND for error in errors.values()), report
