"""The same aggregation written as a faust-streaming agent, the way a team would with that library.

    BENCH_FAUST_BOOTSTRAP=HOST:PORT BENCH_FAUST_TOPIC=... BENCH_FAUST_GROUP=...
    BENCH_FAUST_DB=store.duckdb BENCH_FAUST_STATUS=status.json \
        .venv/bin/faust -A bench.faust_app worker -l warn

(run from the repository root, which must be on PYTHONPATH). One agent over the topic, aiokafka
driver (faust's default), batches from `stream.take_events(10000, within=1)` (`take` that keeps
each event's partition and offset), each record parsed by the project's `EventParser` and added
up per (day, cluster, account, client, topic) in a `consumer.batch.Batch`, and the batch written
by the project's `StoreWriter.apply`: totals, rejections and next offsets in one DuckDB
transaction. Faust acks the events and commits Kafka offsets on its own interval, as usual.

After every batch the agent replaces BENCH_FAUST_STATUS with a JSON object: the next offset per
partition applied so far, events, batches, and the `time.monotonic()` of the first and the
latest apply (bench/suite.py polls it: the store itself is locked by this process).
"""

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import faust

from consumer.batch import Batch
from consumer.events import DayResolver, EventParser, Rejected
from consumer.writer import StoreWriter
from views.store import open_store

BOOTSTRAP = os.environ.get("BENCH_FAUST_BOOTSTRAP", "127.0.0.1:9092")
TOPIC = os.environ.get("BENCH_FAUST_TOPIC", "chargeback.usage")
GROUP = os.environ.get("BENCH_FAUST_GROUP", "chargeback-faust")
DB = Path(os.environ.get("BENCH_FAUST_DB", "data/faust.duckdb"))
STATUS = Path(os.environ.get("BENCH_FAUST_STATUS", "data/faust-status.json"))
PAYLOAD_LIMIT = 4096

app = faust.App(
    GROUP,  # the app id is faust's consumer group
    broker=f"kafka://{BOOTSTRAP}",
    datadir=str(DB.parent / "faust-data"),
    consumer_auto_offset_reset="earliest",
    topic_disable_leader=True,  # no leader topic: nothing here needs one
    topic_allow_declare=False,  # the topic exists; faust must not try to create it
    web_enabled=False,
)
usage = app.topic(TOPIC, key_type=bytes, value_type=bytes, value_serializer="raw")

writer: StoreWriter | None = None
parser = EventParser(
    DayResolver("UTC"),
    max_future_ms=3600 * 1000,
    max_record_bytes=1024 * 1024,
    now_ms=lambda: time.time_ns() // 1_000_000,
)
applied: dict[int, int] = {}
progress: dict[str, Any] = {"events": 0, "batches": 0, "first": None, "first_events": 0}


def store_writer() -> StoreWriter:
    global writer
    if writer is None:
        writer = StoreWriter(open_store(DB))
    return writer


def write_status() -> None:
    temporary = STATUS.with_suffix(".tmp")
    temporary.write_text(json.dumps({"next_offsets": applied, **progress}), encoding="utf-8")
    temporary.replace(STATUS)


@app.agent(usage)
async def aggregate(stream: faust.StreamT[bytes]) -> None:
    sink = store_writer()
    # take_events is take() that keeps each event (partition, offset): Stream has it, StreamT not.
    async for events in cast(faust.Stream[bytes], stream).take_events(10_000, within=1):
        batch = Batch()
        received_at = datetime.now(UTC)
        for event in events:
            message = event.message
            value = message.value
            record_ms = round(message.timestamp * 1000)
            try:
                batch.add_events(parser, value, record_ms)
            except Rejected as rejected:
                where = (message.topic, message.partition, message.offset)
                batch.add_rejection(rejected, value, where, received_at, PAYLOAD_LIMIT)
            batch.advance(message.topic, message.partition, message.offset)
        sink.apply(batch)
        applied.update({partition: offset for (_, partition), offset in batch.next_offsets.items()})
        now = time.monotonic()
        progress["events"] += batch.events
        progress["batches"] += 1
        if progress["first"] is None:
            progress["first"], progress["first_events"] = now, progress["events"]
        progress["latest"] = now
        write_status()


@app.on_before_shutdown.connect
async def close_store(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
    if writer is not None:
        writer.con.close()
