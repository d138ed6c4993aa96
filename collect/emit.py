"""Usage events (PRODUCT.md §1) to the usage topic through one idempotent, keyed producer."""

import logging
from collections.abc import Iterable
from typing import Any

import orjson
from confluent_kafka import KafkaError, Message, Producer

from chargeback.errors import ChargebackError

log = logging.getLogger("chargeback.collect")
MAX_BYTES = 2**53


class DeliveryError(ChargebackError):
    """Some events were not acknowledged: the caller must not advance its state."""


class UsageProducer:
    def __init__(
        self, bootstrap: str, topic: str, config: dict[str, str] | None = None, timeout: float = 60
    ) -> None:
        self.topic = topic
        self.timeout = timeout
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                # A retried batch is written once; acks=all comes with idempotence.
                "enable.idempotence": True,
                "linger.ms": 20,
                "compression.type": "lz4",
                **(config or {}),
            }
        )

    def send(self, events: Iterable[dict[str, Any]]) -> int:
        """Produce every event keyed by its account; return once all are acknowledged.

        Raises DeliveryError when any was not, so the caller keeps its watermark where it was.
        """
        failures: list[KafkaError] = []

        def on_delivery(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                failures.append(error)

        sent = 0
        for event in events:
            value = orjson.dumps(event)
            key = str(event["service_account"]).encode()
            while True:
                try:
                    self.producer.produce(self.topic, value, key, on_delivery=on_delivery)
                    break
                except BufferError:
                    self.producer.poll(0.05)
            sent += 1
        remaining = self.producer.flush(self.timeout)
        if failures:
            raise DeliveryError(f"{len(failures)} usage events not delivered: {failures[0]}")
        if remaining:
            raise DeliveryError(f"{remaining} usage events not acknowledged in {self.timeout}s")
        return sent

    def close(self) -> None:
        self.producer.flush(self.timeout)


def event(
    account: str,
    kind: str,
    nbytes: int,
    timestamp_ms: int,
    cluster: str,
    client_id: str = "",
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "service_account": account,
        "type": kind,
        "bytes": nbytes,
        "timestamp": timestamp_ms,
        "cluster": cluster,
    }
    if client_id:
        doc["client_id"] = client_id
    return doc
