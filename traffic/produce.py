"""Writing traffic to Kafka: a fast, idempotent, keyed producer, and topic creation."""

import time
from collections.abc import Callable, Iterable

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic  # admin re-exports it, but its stub does not say so

PROGRESS_EVERY = 50_000  # records between progress callbacks


def fill_topic(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[str, bytes]],
    partitions: int | None = None,
    progress: Callable[[int], None] | None = None,
    config: dict[str, object] | None = None,
) -> int:
    """Send every (key, value) record to `topic`, wait until all are acknowledged; return the count.

    Keyed by service account, so an account's events stay in order on one partition. With
    `partitions`, the topic is created first if missing. Raises KafkaException on the first
    delivery error (after flushing what is in flight).
    """
    if partitions is not None:
        ensure_topic(bootstrap, topic, partitions)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            # Idempotence: a retried batch is not written twice, so the topic holds exactly the
            # records given (benchmarks compare counts).
            "enable.idempotence": True,
            "linger.ms": 20,
            "batch.size": 1024 * 1024,
            "batch.num.messages": 100_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 512 * 1024,
            "compression.type": "lz4",
            **(config or {}),
        }
    )
    failures: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(error)

    sent = 0
    produce, poll = producer.produce, producer.poll
    for key, value in records:
        while True:
            try:
                produce(topic, value, key, on_delivery=on_delivery)
                break
            except BufferError:
                poll(0.05)  # the local queue is full: let deliveries drain it
        sent += 1
        if sent % PROGRESS_EVERY == 0:
            poll(0)
            if failures:
                break
            if progress is not None:
                progress(sent)
    remaining = producer.flush(120)
    if failures:
        raise KafkaException(failures[0])
    if remaining:
        raise KafkaException(
            KafkaError(KafkaError._MSG_TIMED_OUT, f"{remaining} records not acknowledged")
        )
    if progress is not None:
        progress(sent)
    return sent


def ensure_topic(bootstrap: str, topic: str, partitions: int, timeout: float = 30.0) -> None:
    """Create `topic` with `partitions` partitions unless it exists; return once it is visible."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if topic not in admin.list_topics(timeout=timeout).topics:
        future = admin.create_topics([NewTopic(topic, partitions, 1)])[topic]
        try:
            future.result(timeout)
        except KafkaException as error:
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    # Creation returns before every broker knows the topic: wait until metadata shows all
    # partitions with a leader, or the first produce may fail with an unknown partition.
    deadline = time.monotonic() + timeout
    while True:
        found = admin.list_topics(topic, timeout=timeout).topics.get(topic)
        if (
            found is not None
            and found.error is None
            and found.partitions
            and all(p.leader >= 0 for p in found.partitions.values())
        ):
            return
        if time.monotonic() > deadline:
            raise KafkaException(
                KafkaError(KafkaError._TIMED_OUT, f"topic {topic} not ready after {timeout}s")
            )
        time.sleep(0.2)
