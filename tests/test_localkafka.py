"""The local broker through its command line: start, status, start again, use it, stop."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

pytestmark = pytest.mark.kafka


def _cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localkafka.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_start_status_use_stop(tmp_path: Path) -> None:
    kafka_dir = str(tmp_path / "kafka")
    port = _free_port()
    expected = f"127.0.0.1:{port}"

    started = _cli("start", "--dir", kafka_dir, "--port", str(port))
    try:
        assert started.returncode == 0, started.stderr
        assert started.stdout.splitlines()[-1] == expected

        status = _cli("status", "--dir", kafka_dir)
        assert (status.returncode, status.stdout.strip()) == (0, expected)

        again = _cli("start", "--dir", kafka_dir, "--port", "0")
        assert again.returncode == 0, again.stderr
        assert again.stdout.splitlines()[-1] == expected
        assert "already running" in again.stderr

        other = _free_port()  # another port asked for: still the running one, and it says so
        moved = _cli("start", "--dir", kafka_dir, "--port", str(other))
        assert moved.returncode == 0 and moved.stdout.splitlines()[-1] == expected
        assert f"at {expected}, not on --port {other}: stop it first" in moved.stderr

        topic = f"test-{uuid.uuid4().hex}"
        admin = AdminClient({"bootstrap.servers": expected})
        new = NewTopic(topic, num_partitions=1, replication_factor=1)
        admin.create_topics([new])[topic].result(timeout=30)

        producer = Producer({"bootstrap.servers": expected})
        producer.produce(topic, key=b"k", value=b"hello")
        assert producer.flush(30) == 0

        consumer = Consumer(
            {
                "bootstrap.servers": expected,
                "group.id": f"test-group-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        try:
            consumer.subscribe([topic])
            message = None
            for _ in range(60):
                message = consumer.poll(1.0)
                if message is not None:
                    break
            assert message is not None
            assert message.error() is None
            assert (message.key(), message.value()) == (b"k", b"hello")
        finally:
            consumer.close()
    finally:
        stopped = _cli("stop", "--dir", kafka_dir)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == "stopped"

    after = _cli("status", "--dir", kafka_dir)
    assert (after.returncode, after.stdout.strip()) == (1, "not running")


def test_session_fixtures(
    kafka_bootstrap: str, topic_factory: Callable[..., str], unique_group: str
) -> None:
    topic = topic_factory(partitions=3, config={"retention.ms": "3600000"})
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    assert len(admin.list_topics(topic=topic, timeout=10).topics[topic].partitions) == 3
    assert topic_factory() != topic
    assert unique_group.startswith("test-group-")
