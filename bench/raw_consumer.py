"""The one-process ceiling: a plain confluent-kafka consumer reading a whole topic, no parsing.

    .venv/bin/python bench/raw_consumer.py BOOTSTRAP TOPIC GROUP END_OFFSETS_JSON [CONFIG_JSON]

Subscribes with a fresh group from the earliest offset (librdkafka's defaults, plus the settings
in CONFIG_JSON if given), calls `consume(num_messages=10000)` and
reads each message's `.value()` (its length is added up, so the bytes are touched) until every
partition has reached its end offset, then prints one JSON line: records, value bytes, and the
`time.monotonic()` (system-wide on Linux, so the parent can compare it) of the first message and
of the last. bench/suite.py runs it as its own process and measures its wall, CPU and memory.
"""

import json
import sys
import time

from confluent_kafka import Consumer, KafkaError


def main() -> int:
    bootstrap, topic, group, ends_json = sys.argv[1:5]
    settings = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
    ends = {int(p): int(o) for p, o in json.loads(ends_json).items()}
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **settings,
        }
    )
    consumer.subscribe([topic])
    remaining = {p for p, end in ends.items() if end > 0}
    records = 0
    value_bytes = 0
    first: float | None = None
    try:
        while remaining:
            messages = consumer.consume(num_messages=10_000, timeout=1.0)
            if messages and first is None:
                first = time.monotonic()
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        print(f"kafka: {error.str()}", file=sys.stderr)
                    continue
                value = message.value()
                value_bytes += len(value) if value is not None else 0
                records += 1
                partition = message.partition()
                if partition in remaining and (message.offset() or 0) + 1 >= ends[partition]:
                    remaining.discard(partition)
        done = time.monotonic()
    finally:
        consumer.close()
    print(
        json.dumps({"records": records, "value_bytes": value_bytes, "first": first, "done": done})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
