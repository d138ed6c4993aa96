"""`chargeback ingest` on the real broker: exact totals, crashes, bad input, topic edge cases."""

import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from consumer.batch import Rejection
from consumer.service import RejectionLog
from tests.ingest_harness import (
    REPO,
    IngestProcess,
    daily_totals,
    end_offsets,
    produce,
    stored_offsets,
)

pytestmark = pytest.mark.kafka

Key = tuple[date, str, str, str]  # day, cluster, account, produce|fetch


def expected_day(stamp: str | int) -> date:
    """The UTC day of a timestamp, worked out without the service's parser."""
    if isinstance(stamp, int):
        return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=stamp)).date()
    return datetime.fromisoformat(stamp).astimezone(UTC).date()


def expect(events: list[dict[str, object]], totals: Counter[Key] | None = None) -> Counter[Key]:
    totals = Counter() if totals is None else totals
    for event in events:
        account = str(event["service_account"]).removeprefix("User:")
        stamp = event["timestamp"]
        assert isinstance(stamp, (str, int))
        key = (
            expected_day(stamp),
            str(event.get("cluster", "default")),
            account,
            str(event["type"]),
        )
        totals[key] += int(str(event["bytes"]))
    return totals


def encode(doc: object) -> bytes:
    return json.dumps(doc).encode()


def test_known_events_give_exactly_the_totals_worked_out_by_hand(
    kafka_bootstrap: str, topic_factory, unique_group: str, tmp_path: Path
) -> None:
    topic = topic_factory(partitions=2)
    first = [
        {
            "service_account": "alice",
            "type": "produce",
            "bytes": 1000,
            "cluster": "c1",
            "timestamp": "2026-03-01T23:59:59.999Z",
        },
        {
            "service_account": "alice",
            "type": "produce",
            "bytes": 500,
            "cluster": "c1",
            "timestamp": "2026-03-02T00:00:00Z",
        },
        {
            "service_account": "User:alice",
            "type": "fetch",
            "bytes": 300,
            "cluster": "c1",
            "timestamp": "2026-03-01T20:00:00-05:00",
        },
        {
            "service_account": "bob",
            "type": "fetch",
            "bytes": 2**40,
            "cluster": "c2",
            "timestamp": 1_772_409_599_999,
        },
        {
            "service_account": "dave",
            "type": "produce",
            "bytes": 2**53,
            "cluster": "c2",
            "timestamp": "2026-04-15T12:00:00+14:00",
            "client_id": "d1",
            "topic": "t1",
        },
    ]
    array_record = [
        {
            "service_account": "bob",
            "type": "produce",
            "bytes": 7,
            "cluster": "c2",
            "timestamp": "2026-03-03T01:00:00+02:00",
        },
        {
            "service_account": "User:carol",
            "type": "fetch",
            "bytes": 9,
            "timestamp": 1_772_409_600_000,
        },
    ]
    late = [
        {
            "service_account": "alice",
            "type": "produce",
            "bytes": 11,
            "cluster": "c1",
            "timestamp": "2026-02-28T12:00:00Z",
        },
        {
            "service_account": "alice",
            "type": "produce",
            "bytes": 13,
            "cluster": "c1",
            "timestamp": "2026-03-01T00:00:00.000+00:00",
        },
    ]
    produce(
        kafka_bootstrap,
        topic,
        [(i % 2, encode(e)) for i, e in enumerate(first)] + [(1, encode(array_record))],
    )
    db = tmp_path / "store.duckdb"
    service = IngestProcess(kafka_bootstrap, topic, unique_group, db)
    service.wait_applied(end_offsets(kafka_bootstrap, topic, 2))
    produce(kafka_bootstrap, topic, [(0, encode(e)) for e in late])
    service.wait_applied(end_offsets(kafka_bootstrap, topic, 2))
    assert service.terminate() == 0

    # Worked out by hand (UTC days):
    by_hand = Counter(
        {
            (date(2026, 2, 28), "c1", "alice", "produce"): 11,
            (date(2026, 3, 1), "c1", "alice", "produce"): 1000 + 13,
            (date(2026, 3, 2), "c1", "alice", "produce"): 500,
            (date(2026, 3, 2), "c1", "alice", "fetch"): 300,  # 20:00-05:00 is 01:00Z next day
            (date(2026, 3, 1), "c2", "bob", "fetch"): 2**40,  # ...599_999 ms is 23:59:59.999
            (date(2026, 3, 2), "default", "carol", "fetch"): 9,  # ...600_000 ms is midnight
            (date(2026, 3, 2), "c2", "bob", "produce"): 7,  # 01:00+02:00 is 23:00Z before
            (date(2026, 4, 14), "c2", "dave", "produce"): 2**53,  # 12:00+14:00 is 22:00Z before
        }
    )
    assert expect(first + array_record + late) == by_hand
    assert daily_totals(db) == by_hand
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM rejected_events").fetchone() == (0,)
        assert con.execute(
            "SELECT client_id, topic FROM usage_detail WHERE service_account = 'dave'"
        ).fetchall() == [("d1", "t1")]
        assert con.execute("SELECT sum(event_count) FROM usage_totals").fetchone() == (9,)


def test_a_record_without_timestamp_counts_on_its_record_time(
    kafka_bootstrap: str, topic_factory, unique_group: str, tmp_path: Path
) -> None:
    topic = topic_factory()
    record_ms = 1_767_225_599_999  # 2025-12-31T23:59:59.999Z
    produce(
        kafka_bootstrap,
        topic,
        [(0, b'{"service_account":"a","type":"fetch","bytes":5}')],
        timestamp_ms=record_ms,
    )
    db = tmp_path / "store.duckdb"
    service = IngestProcess(kafka_bootstrap, topic, unique_group, db)
    service.wait_applied({0: 1})
    assert service.terminate() == 0
    assert daily_totals(db) == Counter({(date(2025, 12, 31), "default", "a", "fetch"): 5})


def random_events(rng: random.Random, count: int) -> list[dict[str, object]]:
    base_ms = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    events: list[dict[str, object]] = []
    for _ in range(count):
        stamp_ms = base_ms + rng.randrange(10 * 86_400_000)
        events.append(
            {
                "service_account": f"sa-{rng.randrange(25)}",
                "type": rng.choice(("produce", "fetch")),
                "bytes": rng.randrange(1, 10**6),
                "cluster": rng.choice(("east", "west")),
                "client_id": f"client-{rng.randrange(3)}",
                "timestamp": stamp_ms
                if rng.random() < 0.5
                else datetime.fromtimestamp(stamp_ms / 1000, UTC).isoformat(
                    timespec="milliseconds"
                ),
            }
        )
    return events


@pytest.mark.slow
def test_sigkill_at_random_points_while_producing_loses_and_doubles_nothing(
    kafka_bootstrap: str, topic_factory, unique_group: str, tmp_path: Path
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    topic = topic_factory(partitions=2)
    events = random_events(rng, 120_000)
    records = [(i % 2, encode(e)) for i, e in enumerate(events)]

    def produce_slowly() -> None:  # about eight seconds of traffic, so kills land mid-stream
        for start in range(0, len(records), 3000):
            produce(kafka_bootstrap, topic, records[start : start + 3000])
            time.sleep(0.2)

    producer = threading.Thread(target=produce_slowly)
    producer.start()
    db = tmp_path / "store.duckdb"
    extra = ("--batch-records", "500", "--batch-seconds", "0.05")
    try:
        service = IngestProcess(kafka_bootstrap, topic, unique_group, db, *extra)
        applied_at_kill = []
        for _ in range(3):
            # Kill only once this run has applied something, so each kill lands mid-stream.
            before = applied_at_kill[-1] if applied_at_kill else 0
            service.wait_until(lambda s=service, b=before: sum(s.next_offsets().values()) > b)
            time.sleep(rng.uniform(0.1, 0.4))
            applied_at_kill.append(sum(service.next_offsets().values()))
            service.kill()
            service = IngestProcess(kafka_bootstrap, topic, unique_group, db, *extra)
        time.sleep(rng.uniform(0.5, 1.5))
        assert service.terminate() == 0  # and one graceful stop in the middle, too
        service = IngestProcess(kafka_bootstrap, topic, unique_group, db, *extra)
    finally:
        producer.join()
    ends = end_offsets(kafka_bootstrap, topic, 2)
    assert sum(ends.values()) == len(events)
    service.wait_applied(ends, timeout=120)
    assert service.terminate() == 0
    assert stored_offsets(db, topic) == ends, f"seed {seed}"
    assert daily_totals(db) == expect(events), f"seed {seed}"
    assert applied_at_kill[-1] < len(events), "the kills came after all was applied"


def test_bad_records_are_rejected_with_reasons_and_the_good_ones_around_them_count(
    kafka_bootstrap: str, topic_factory, unique_group: str, tmp_path: Path
) -> None:
    topic = topic_factory(config={"max.message.bytes": str(4 * 1024 * 1024)})
    good = {
        "service_account": "ok",
        "type": "produce",
        "bytes": 10,
        "cluster": "c",
        "timestamp": "2026-01-05T10:00:00Z",
    }
    mega = b'{"service_account":"ok","type":"produce","bytes":1,"pad":"' + b"x" * (1 << 20) + b'"}'
    bad: list[tuple[bytes | None, str]] = [
        (b"{not json", "not JSON (or not UTF-8)"),
        (b'{"service_account":"ok","type":"produce","bytes":"10"}', "bytes must be an integer"),
        (b'{"service_account":"ok","type":"produce","bytes":-10}', "bytes is negative"),
        (b'{"service_account":"ok","type":"produce","bytes":10.5}', "bytes is fractional"),
        (
            b'{"service_account":"ok","type":"produce","bytes":9007199254740993}',
            "bytes exceeds 2^53",
        ),
        (
            b'{"service_account":"ok","type":"delete","bytes":10}',
            "type must be 'produce' or 'fetch'",
        ),
        (
            b'{"service_account":"","type":"produce","bytes":10}',
            "service_account must be 1-256 characters",
        ),
        (
            b'{"service_account":"ok","type":"produce","bytes":10,'
            b'"timestamp":"2999-01-01T00:00:00Z"}',
            "timestamp too far in the future",
        ),
        (mega, f"record too large ({len(mega)} bytes > 1048576)"),
        (None, "empty record (no value)"),
    ]
    records: list[tuple[int | None, bytes | None]] = []
    for value, _ in bad:
        records += [(0, encode(good)), (0, value)]
    records.append((0, encode(good)))
    produce(kafka_bootstrap, topic, records, **{"message.max.bytes": 4 * 1024 * 1024})
    db = tmp_path / "store.duckdb"
    service = IngestProcess(kafka_bootstrap, topic, unique_group, db)
    service.wait_applied({0: len(records)})
    metrics = service.metrics()
    # and it goes on: one more good record after all the bad ones
    produce(kafka_bootstrap, topic, [(0, encode(good))])
    service.wait_applied({0: len(records) + 1})
    assert service.terminate() == 0

    good_count = len(bad) + 2
    assert daily_totals(db) == Counter({(date(2026, 1, 5), "c", "ok", "produce"): 10 * good_count})
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            'SELECT topic, "partition", "offset", reason, length(payload)'
            ' FROM rejected_events ORDER BY "offset"'
        ).fetchall()
    assert [(t, p, o, r) for t, p, o, r, _ in rows] == [
        (topic, 0, 2 * i + 1, reason) for i, (_, reason) in enumerate(bad)
    ]
    assert all(length is None or length <= 4096 for *_, length in rows)  # payload is cut
    assert 'chargeback_events_rejected_total{reason="bad_bytes"} 4' in metrics
    assert 'chargeback_events_rejected_total{reason="too_large"} 1' in metrics


def test_a_flood_of_bad_records_is_logged_in_a_few_lines_and_kept_whole(
    kafka_bootstrap: str, topic_factory, unique_group: str, tmp_path: Path
) -> None:
    topic = topic_factory(partitions=1)
    produce(kafka_bootstrap, topic, [(0, b"not json %d" % i) for i in range(25)])
    db = tmp_path / "store.duckdb"
    service = IngestProcess(kafka_bootstrap, topic, unique_group, db)
    service.wait_applied({0: 25})  # already in the topic: the first poll takes them in one batch
    assert service.terminate() == 0
    log = service.output()
    assert log.count(f"rejected {topic}[0]@") == 10
    assert "... and 15 more rejected, not logged one by one (all in rejected_events)" in log
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM rejected_events").fetchone() == (25,)
        # the first batch recorded the zone its days are counted in
        assert con.execute("FROM store_settings").fetchall() == [("timezone", "UTC")]


def test_the_rejection_log_shows_ten_a_minute_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def rejections(n: int) -> list[Rejection]:
        now = datetime.now(UTC)
        return [Rejection(now, "t", 0, i, "not JSON", "not_json", None) for i in range(n)]

    shown = RejectionLog(limit=10, every=60.0)
    with caplog.at_level("WARNING", logger="chargeback.ingest"):
        shown.tell(rejections(4), 100.0)
        shown.tell(rejections(9), 130.0)  # 6 more shown (10 in this minute), 3 held back
        shown.tell(rejections(2), 161.0)  # a new minute: the 3 are counted, these 2 shown
        shown.tell([], float("inf"))  # stopping: nothing held back, nothing said
    lines = [record.getMessage() for record in caplog.records]
    assert sum(line.startswith("rejected t[0]@") for line in lines) == 12
    assert [line for line in lines if "more rejected" in line] == [
        "... and 3 more rejected, not logged one by one (all in rejected_events)"
    ]


def test_an_empty_topic_is_fine_and_sigterm_stops_quickly(
    kafka_bootstrap: str, topic_factory, unique_group: str, tmp_path: Path
) -> None:
    topic = topic_factory(partitions=2)
    db = tmp_path / "store.duckdb"
    service = IngestProcess(kafka_bootstrap, topic, unique_group, db)
    service.wait_for_output("assigned [0]@beginning, [1]@beginning")
    started = time.monotonic()
    assert service.terminate() == 0
    assert time.monotonic() - started < 10
    assert daily_totals(db) == Counter()
    assert stored_offsets(db, topic) == {}


def test_the_memory_limit_is_set_on_the_store(
    kafka_bootstrap: str, topic_factory, unique_group: str, tmp_path: Path
) -> None:
    topic = topic_factory(partitions=1)
    service = IngestProcess(
        kafka_bootstrap, topic, unique_group, tmp_path / "store.duckdb", "--memory-limit", "300MB"
    )
    # 300 MB = 300,000,000 bytes = 286.1 MiB, as DuckDB prints it back
    service.wait_for_output("DuckDB memory limit 286.1 MiB")
    assert service.terminate() == 0


def test_a_topic_that_does_not_exist_yet_is_waited_for(
    kafka_bootstrap: str, unique_group: str, tmp_path: Path
) -> None:
    topic = f"late-{unique_group}"
    db = tmp_path / "store.duckdb"
    service = IngestProcess(kafka_bootstrap, topic, unique_group, db)
    service.wait_for_output(f"topic {topic} does not exist yet: waiting for it")
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    produce(
        kafka_bootstrap,
        topic,
        [(0, b'{"service_account":"a","type":"fetch","bytes":3,"timestamp":0}')],
    )
    service.wait_applied({0: 1})
    assert service.terminate() == 0
    assert daily_totals(db) == Counter({(date(1970, 1, 1), "default", "a", "fetch"): 3})


def test_a_second_service_on_the_same_store_exits_at_once_naming_the_lock(
    kafka_bootstrap: str, topic_factory, unique_group: str, tmp_path: Path
) -> None:
    topic = topic_factory()
    db = tmp_path / "store.duckdb"
    first = IngestProcess(kafka_bootstrap, topic, unique_group, db)
    first.wait_for_output("assigned")
    second = subprocess.run(
        [
            sys.executable,
            "-m",
            "chargeback",
            "ingest",
            "--bootstrap-servers",
            kafka_bootstrap,
            "--topic",
            topic,
            "--group",
            unique_group,
            "--db",
            str(db),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert second.returncode == 1
    assert second.stderr.strip().count("\n") == 0
    assert "is locked by another process" in second.stderr
    first.assert_alive()
    assert first.terminate() == 0
