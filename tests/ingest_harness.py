"""Runs `chargeback ingest` as a real process and watches it through its /metrics endpoint."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import date
from pathlib import Path
from typing import ClassVar

import duckdb
from confluent_kafka import Consumer, Producer, TopicPartition

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class IngestProcess:
    # The fixture `no_leftover_services` ends what a failed test leaves running.
    started: ClassVar[list["IngestProcess"]] = []

    def __init__(self, bootstrap: str, topic: str, group: str, db: Path, *extra: str) -> None:
        self.port = free_port()
        self.log = db.with_suffix(f".{self.port}.log")
        self.args = [
            sys.executable,
            "-m",
            "chargeback",
            "ingest",
            "--bootstrap-servers",
            bootstrap,
            "--topic",
            topic,
            "--group",
            group,
            "--db",
            str(db),
            "--batch-seconds",
            "0.2",
            "--log-interval",
            "1",
            "--metrics-port",
            str(self.port),
            *extra,
        ]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                self.args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=db.parent
            )
        IngestProcess.started.append(self)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as reply:
            return str(reply.read().decode())

    def next_offsets(self) -> dict[int, int]:
        found = re.findall(
            r'chargeback_next_offset\{topic="[^"]*",partition="(\d+)"\} (\d+)', self.metrics()
        )
        return {int(p): int(o) for p, o in found}

    def wait_applied(self, end_offsets: dict[int, int], timeout: float = 90) -> None:
        """Until the service reports every partition applied up to its end offset."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.assert_alive()
            try:
                applied = self.next_offsets()
            except OSError:
                applied = {}
            if all(applied.get(p, 0) >= end for p, end in end_offsets.items()):
                return
            time.sleep(0.2)
        raise AssertionError(f"not caught up with {end_offsets} after {timeout}s:\n{self.output()}")

    def wait_until(self, condition: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.assert_alive()
            try:
                if condition():
                    return
            except OSError:  # the metrics endpoint is not up yet
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met after {timeout}s:\n{self.output()}")
            time.sleep(0.05)

    def wait_for_output(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            self.assert_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never logged:\n{self.output()}")
            time.sleep(0.1)

    def assert_alive(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"ingest exited {self.process.returncode}:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self, timeout: float = 15) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[int | None, bytes | None]],
    timestamp_ms: int = 0,
    **config: object,
) -> None:
    """Send (partition, value) records and wait until all are acknowledged.

    `timestamp_ms`, when set, is every record's own timestamp (else the producer's clock).
    """
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **config})
    failures: list[str] = []

    def on_delivery(error: object, _message: object) -> None:
        if error is not None:
            failures.append(str(error))

    for partition, value in records:
        while True:
            try:
                where = {} if partition is None else {"partition": partition}
                producer.produce(
                    topic, value, timestamp=timestamp_ms, on_delivery=on_delivery, **where
                )
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert not failures, failures


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe"})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        }
    finally:
        consumer.close()


def daily_totals(db: Path) -> Counter[tuple[date, str, str, str]]:
    """(day, cluster, account, produce|fetch) -> bytes, read straight from the usage_daily view."""
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            "SELECT day, cluster, service_account, produced_bytes, consumed_bytes FROM usage_daily"
        ).fetchall()
    totals: Counter[tuple[date, str, str, str]] = Counter()
    for day, cluster, account, produced, consumed in rows:
        if produced:
            totals[(day, cluster, account, "produce")] += produced
        if consumed:
            totals[(day, cluster, account, "fetch")] += consumed
    return totals


def stored_offsets(db: Path, topic: str) -> dict[int, int]:
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            'SELECT "partition", next_offset FROM ingest_offsets WHERE topic = ?', [topic]
        ).fetchall()
    return {int(p): int(o) for p, o in rows}
