"""`chargeback ingest`: poll a batch, add it up, apply it and its offsets in one transaction.

Kafka's committed offsets are written too, after the store commits, but only so that the usual lag
tools see progress: on assignment the service always starts from the offsets stored in DuckDB.
"""

import hashlib
import logging
import re
import signal
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, cast

import duckdb
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from chargeback.errors import KafkaUnavailableError, UsageError
from consumer.batch import Batch, Rejection
from consumer.events import DayResolver, EventParser, Rejected
from consumer.metrics import Metrics, ProgressLog, serve_metrics
from consumer.writer import StoreWriter
from views.publish import Publisher
from views.rates import install_rates, load_rates, rates_path_for
from views.store import check_timezone_of, first_line, open_store, pin_timezone

log = logging.getLogger("chargeback.ingest")

# How the service fetches (bench/suite.py gives its raw consumer the same, for a fair ceiling).
FETCH_SETTINGS: dict[str, int] = {
    # Bounded prefetch: the service's memory must not grow with the topic's backlog. 8 MiB queued
    # is 40k records, a fifth of a second of work, and librdkafka refills it at over 1M records/s;
    # the earlier 32 MiB queue and 16 MiB fetches cost the service 110 MiB more and bought nothing.
    "fetch.max.bytes": 4 * 1024 * 1024,
    "max.partition.fetch.bytes": 1024 * 1024,
    "queued.max.messages.kbytes": 8 * 1024,
    # librdkafka pauses fetching this long whenever its queue is above those bounds; at the
    # default (1 s) a plain consumer read 150k records/s from the local broker, at 10 ms 800k+.
    "fetch.queue.backoff.ms": 10,
}


@dataclass
class IngestSettings:
    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "chargeback.usage"
    group: str = "chargeback"
    db: Path = Path("data/chargeback.duckdb")
    timezone: str = "UTC"
    max_future_seconds: int = 3600
    max_record_bytes: int = 1024 * 1024
    payload_limit: int = 4096
    batch_max_records: int = 200_000
    batch_max_seconds: float = 1.0
    log_interval: float = 10.0
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    session_timeout_ms: int = 10_000
    publish_interval: float = 10.0
    memory_limit: str | None = None  # DuckDB's memory_limit, e.g. "1GB"; None: DuckDB's default
    kafka_config: dict[str, str] = field(default_factory=dict)


class IngestService:
    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        created = not settings.db.exists()
        store = open_store(settings.db)
        consumer: Consumer | None = None
        publisher: Publisher | None = None
        try:
            # Days are pinned to one zone with the first batch (_flush); a start that fails
            # pins nothing and leaves no new store behind.
            self.zone_unpinned = check_timezone_of(store, settings.timezone, settings.db)
            if settings.memory_limit is not None:
                set_memory_limit(store, settings.memory_limit)
            consumer = self.consumer = Consumer(self._consumer_config(), logger=_librdkafka_log())
            self.writer = StoreWriter(store)
            self.parser = EventParser(
                DayResolver(settings.timezone),
                max_future_ms=settings.max_future_seconds * 1000,
                max_record_bytes=settings.max_record_bytes,
                now_ms=lambda: time.time_ns() // 1_000_000,
            )
            self.metrics = Metrics()
            self.progress = ProgressLog(settings.log_interval)
            self.batch = Batch()
            self.batch_started = time.monotonic()
            self.rejection_log = RejectionLog()
            self.stopping = False
            self.waiting_for_topic = False
            publisher = self.publisher = Publisher(
                self.writer.con,
                settings.db,
                self.writer.lock,
                max_age=settings.publish_interval,
                changes=lambda: self.metrics.batches + self.rates_version,
                before_copy=self._sync_rates,
            )
            self.rates_path = rates_path_for(settings.db)
            self.rates_stamp: tuple[float, int] | None = None
            self.rates_version = 0
            self._sync_rates()
        except BaseException:
            if publisher is not None:
                publisher.store.close()
            if consumer is not None:
                consumer.close()
            store.close()
            if created:
                for path in (settings.db, settings.db.with_name(settings.db.name + ".wal")):
                    path.unlink(missing_ok=True)
            raise

    def _consumer_config(self) -> dict[str, Any]:
        s = self.settings
        # Static membership: a restarted service (even after SIGKILL) takes its partitions back at
        # once instead of waiting out the session timeout. The id follows the store, the owner of
        # the offsets.
        store_id = hashlib.sha256(str(s.db.resolve()).encode()).hexdigest()[:12]
        return {
            "bootstrap.servers": s.bootstrap_servers,
            "group.id": s.group,
            "group.instance.id": f"chargeback-{socket.gethostname()}-{store_id}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": s.session_timeout_ms,
            "topic.metadata.refresh.interval.ms": 5000,
            **FETCH_SETTINGS,
            "error_cb": self._on_client_error,
            **s.kafka_config,
        }

    def run(self) -> None:
        s = self.settings
        if s.metrics_port:
            serve_metrics(self.metrics, s.topic, s.metrics_host, s.metrics_port)
        self._install_signal_handlers()
        if s.publish_interval > 0:
            self.publisher.publish_now()  # readers get a copy at once, not after the interval
            self.publisher.start()
        self.consumer.subscribe(
            [s.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        log.info(
            "consuming %s from %s as group %s into %s", s.topic, s.bootstrap_servers, s.group, s.db
        )
        if s.memory_limit is not None:
            row = self.writer.con.execute("SELECT current_setting('memory_limit')").fetchone()
            log.info("DuckDB memory limit %s", row[0] if row else s.memory_limit)
        try:
            while not self.stopping:
                self._poll_once()
            self._flush()
            if s.publish_interval > 0:
                self.publisher.stop()
                self.publisher.publish_now()  # the copy ends equal to the store
        finally:
            self.publisher.stop()
            self.consumer.close()
            self.writer.con.close()
            self.publisher.store.close()  # only now: closing it earlier would unlock the store
        self.rejection_log.tell([], float("inf"))  # what it held back, counted
        log.info("stopped after applying %s events", f"{self.metrics.events_applied:,}")

    def _sync_rates(self) -> None:
        """Keep the store's `rates` table and cost views equal to the rates file, for SQL users."""
        try:
            stat = self.rates_path.stat()
            stamp = (stat.st_mtime, stat.st_size)
        except FileNotFoundError:
            stamp = (0.0, 0)
        if stamp == self.rates_stamp:
            return
        try:
            book = load_rates(self.rates_path)
        except UsageError as error:
            if self.rates_stamp is None:
                raise
            log.error("%s: keeping the rates in force before", error)
            self.rates_stamp = stamp
            return
        with self.writer.lock:
            cursor = self.writer.con.cursor()
            try:
                install_rates(cursor, book)
            finally:
                cursor.close()
        self.rates_stamp = stamp
        self.rates_version += 1
        log.info("rates from %s%s", self.rates_path, " (defaults)" if book.is_default else "")

    def _poll_once(self) -> None:
        s = self.settings
        messages = self.consumer.consume(num_messages=10_000, timeout=0.2)
        self.metrics.last_loop_at = time.monotonic()
        batch, parser, topic = self.batch, self.parser, s.topic
        add_events, horizon_ms = batch.add_events, parser.horizon_ms()
        # Each partition's last message (the next offset follows it); no casts in this loop, as
        # typing.cast is a call: partition() is set on every message without an error.
        last: dict[int | None, Message] = {}
        errors = 0
        for message in messages:
            error = message.error()
            if error is not None:
                self._on_message_error(error)
                errors += 1
                continue
            value = message.value()
            try:
                add_events(parser, value, message.timestamp()[1], horizon_ms)
            except Rejected as rejected:
                where = (topic, cast(int, message.partition()), cast(int, message.offset()))
                batch.add_rejection(rejected, value, where, datetime.now(UTC), s.payload_limit)
            last[message.partition()] = message
        records = len(messages) - errors
        for partition, message in last.items():
            batch.advance(topic, cast(int, partition), cast(int, message.offset()), records)
            records = 0
        if messages and self.waiting_for_topic:
            self.waiting_for_topic = False
        if len(batch) >= s.batch_max_records or (
            len(batch) and time.monotonic() - self.batch_started >= s.batch_max_seconds
        ):
            self._flush()
        line = self.progress.line_if_due(self._refresh_lag())
        if line:
            log.info(line)

    def _flush(self) -> None:
        batch = self.batch
        if not len(batch):
            self.batch_started = time.monotonic()
            return
        if self.zone_unpinned:
            with self.writer.lock:
                pin_timezone(self.writer.con, self.settings.timezone, self.settings.db)
            self.zone_unpinned = False
        self.writer.apply(batch)
        m = self.metrics
        m.events_applied += batch.events
        m.records_applied += batch.records
        m.batches += 1
        m.last_commit_at = time.time()
        m.rejected.update(r.kind for r in batch.rejections)
        self.rejection_log.tell(batch.rejections, time.monotonic())
        self.metrics.applied_next.update({p: o for (_, p), o in batch.next_offsets.items()})
        self._commit_to_kafka(batch)
        self.batch = Batch()
        self.batch_started = time.monotonic()

    def _commit_to_kafka(self, batch: Batch) -> None:
        offsets = [TopicPartition(t, p, o) for (t, p), o in batch.next_offsets.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as error:  # informational only: the store holds the truth
            log.debug("kafka offset commit failed: %s", error)

    def _refresh_lag(self) -> Metrics:
        for tp in self.consumer.assignment():
            try:
                low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high >= 0:
                applied = self.metrics.applied_next.get(tp.partition, max(low, 0))
                self.metrics.lag[tp.partition] = max(0, high - applied)
        return self.metrics

    # Rebalance callbacks run inside consume(); they see the loop's state as it stands.

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        stored = self.writer.stored_offsets(self.settings.topic)
        gaps = Batch()
        for tp in partitions:
            tp.offset = stored.get(tp.partition, OFFSET_BEGINNING)
            if tp.offset >= 0:
                self.metrics.applied_next[tp.partition] = tp.offset
            low, _ = consumer.get_watermark_offsets(tp, timeout=10)
            if tp.partition in stored and stored[tp.partition] < low:
                self._record_gap(gaps, tp.partition, stored[tp.partition], low)
                tp.offset = low
        if len(gaps.rejections):
            self.writer.apply(gaps)
            self.metrics.rejected.update(r.kind for r in gaps.rejections)
        consumer.assign(partitions)
        self.metrics.assigned = True
        log.info(
            "assigned %s",
            ", ".join(f"[{tp.partition}]@{_where(tp.offset)}" for tp in partitions)
            or "no partitions",
        )

    def _record_gap(self, gaps: Batch, partition: int, stored: int, low: int) -> None:
        reason = (
            f"offsets {stored}..{low - 1} were deleted by retention before they were read:"
            " their usage is lost"
        )
        log.error("partition %d: %s", partition, reason)
        gaps.add_rejection(
            Rejected(reason, "retention_gap"),
            None,
            (self.settings.topic, partition, stored),
            datetime.now(UTC),
            0,
        )
        gaps.next_offsets[(self.settings.topic, partition)] = low
        self.metrics.applied_next[partition] = low

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._flush()  # what is in hand belongs to the partitions we still own
        consumer.unassign()
        self.metrics.lag.clear()

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost, not revoked: another member may own them already, so what is in hand is dropped
        # unwritten; it will be read again from the stored offsets by whoever owns them.
        self.batch = Batch()
        consumer.unassign()
        self.metrics.lag.clear()

    def _on_message_error(self, error: KafkaError) -> None:
        code = error.code()
        if code == KafkaError.UNKNOWN_TOPIC_OR_PART:
            if not self.waiting_for_topic:
                log.warning("topic %s does not exist yet: waiting for it", self.settings.topic)
                self.waiting_for_topic = True
            return
        if code == KafkaError._PARTITION_EOF:
            return
        if error.fatal():
            raise KafkaUnavailableError(f"kafka: {error.str()}")
        log.warning("kafka: %s", error.str())

    def _on_client_error(self, error: KafkaError) -> None:
        if error.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            _KAFKA_ERRORS.warning("kafka: %s (retrying)", error.str())
        elif error.fatal():
            _KAFKA_ERRORS.error("kafka: %s", error.str())
        else:
            _KAFKA_ERRORS.debug("kafka: %s", error.str())

    def _install_signal_handlers(self) -> None:
        def stop(signum: int, frame: FrameType | None) -> None:
            log.info("%s: applying what is in hand, then stopping", signal.Signals(signum).name)
            self.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)


class RejectionLog:
    """Logs at most `limit` rejections one by one per `every` seconds, and counts the rest.

    A producer gone wrong must not drown the log: every rejection is in rejected_events and in
    the metrics anyway, so past the limit the log only says how many it did not show.
    """

    def __init__(self, limit: int = 10, every: float = 60.0) -> None:
        self.limit = limit
        self.every = every
        self.period_started = -every
        self.shown = 0
        self.held_back = 0

    def tell(self, rejections: list[Rejection], now: float) -> None:
        if now - self.period_started >= self.every:
            if self.held_back:
                log.warning(
                    "... and %s more rejected, not logged one by one (all in rejected_events)",
                    f"{self.held_back:,}",
                )
            self.period_started, self.shown, self.held_back = now, 0, 0
        for r in rejections:
            if self.shown < self.limit:
                log.warning("rejected %s[%d]@%d: %s", r.topic, r.partition, r.offset, r.reason)
                self.shown += 1
            else:
                self.held_back += 1


def set_memory_limit(store: duckdb.DuckDBPyConnection, limit: str) -> None:
    try:
        store.execute("SET memory_limit = ?", [limit])
    except duckdb.Error as error:  # e.g. below what DuckDB already holds
        raise UsageError(f"--memory-limit {limit}: {first_line(error)}") from None


class _Repeats(logging.Filter):
    """Lets each kind of librdkafka message through once a minute: an unreachable broker is
    reported every few milliseconds otherwise, and would drown the service's own log."""

    def __init__(self, every: float = 60.0) -> None:
        super().__init__()
        self.every = every
        self.last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        kind = re.sub(r"\d+", "#", record.getMessage())[:200]
        now = time.monotonic()
        if now - self.last.get(kind, -self.every) < self.every:
            return False
        if len(self.last) > 1000:
            self.last.clear()
        self.last[kind] = now
        return True


def _librdkafka_log() -> logging.Logger:
    return _repeats_filtered("chargeback.librdkafka")


def _repeats_filtered(name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    if not logger.filters:
        logger.addFilter(_Repeats())
    return logger


# librdkafka reports an unreachable broker at every reconnect, many times a second.
_KAFKA_ERRORS = _repeats_filtered("chargeback.kafka")


def _where(offset: int) -> str:
    return "beginning" if offset == OFFSET_BEGINNING else str(offset)
