"""Shared fixtures: one Apache Kafka broker per test session, unique topics and groups.

The broker, in order of preference:
1. ``CHARGEBACK_TEST_BOOTSTRAP`` (host:port of a broker you run yourself);
2. a container of ``apache/kafka:<pinned version>`` when a Docker engine answers;
3. the project's own local broker (``localkafka``, needs Java 17+) in a temporary dir.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Protocol

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic  # admin re-exports it, but its stub does not say so

from localkafka import broker
from localkafka.jars import KAFKA_VERSION

_TOPIC_TIMEOUT_S = 30.0


class TopicFactory(Protocol):
    def __call__(self, partitions: int = 1, config: dict[str, str] | None = None) -> str: ...


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "kafka: needs the Apache Kafka broker (started by the session fixture)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use the broker are ``kafka`` tests even if not marked (``-m 'not kafka'``)."""
    for item in items:
        if "kafka_bootstrap" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)


def _docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(
            ["docker", "info"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _kafka_container() -> Iterator[str]:
    """apache/kafka in a container, KRaft single node.

    testcontainers' KafkaContainer is written for confluentinc/cp-kafka (its start script and
    its with_kraft() version check assume Confluent tags), so the generic container is used
    with the apache/kafka image's documented environment variables. The host port is chosen
    up front so the advertised listener can name it.
    """
    from testcontainers.core.container import DockerContainer

    host_port = _free_port()
    container = DockerContainer(f"apache/kafka:{KAFKA_VERSION}")
    container.with_bind_ports(9092, host_port)
    settings = {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{host_port}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS": "10",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        "KAFKA_NUM_PARTITIONS": "1",
        "KAFKA_MESSAGE_MAX_BYTES": str(8 * 1024 * 1024),
    }
    for key, value in settings.items():
        container.with_env(key, value)
    container.start()
    try:
        bootstrap = f"127.0.0.1:{host_port}"
        broker.wait_serving(bootstrap)
        yield bootstrap
    finally:
        container.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The bootstrap address of the session's broker."""
    given = os.environ.get("CHARGEBACK_TEST_BOOTSTRAP")
    if given:
        yield given
        return
    if _docker_available():
        yield from _kafka_container()
        return
    kafka_dir = tmp_path_factory.mktemp("kafka")
    address = broker.start(kafka_dir, port=0)
    try:
        yield address
    finally:
        broker.stop(kafka_dir)


@pytest.fixture
def topic_factory(kafka_bootstrap: str) -> TopicFactory:
    """``make_topic(partitions=1, config=None) -> name``: a new, uniquely named topic."""
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})

    def make_topic(partitions: int = 1, config: dict[str, str] | None = None) -> str:
        name = f"test-{uuid.uuid4().hex}"
        new = NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})
        admin.create_topics([new], operation_timeout=_TOPIC_TIMEOUT_S)[name].result(
            timeout=_TOPIC_TIMEOUT_S
        )
        deadline = time.monotonic() + _TOPIC_TIMEOUT_S
        while True:
            topic = admin.list_topics(topic=name, timeout=5.0).topics.get(name)
            if topic is not None and topic.error is None and len(topic.partitions) == partitions:
                return name
            if time.monotonic() >= deadline:
                raise TimeoutError(f"topic {name} did not appear within {_TOPIC_TIMEOUT_S} s")
            time.sleep(0.1)

    return make_topic


@pytest.fixture
def unique_group() -> str:
    """A consumer group id no other test uses."""
    return f"test-group-{uuid.uuid4().hex}"


@pytest.fixture(autouse=True)
def no_leftover_services() -> Iterator[None]:
    """A test that fails half-way must not leave `chargeback ingest` processes running."""
    from tests.ingest_harness import IngestProcess

    yield
    while IngestProcess.started:
        service = IngestProcess.started.pop()
        if service.process.poll() is None:
            service.kill()
