-- Schema version 1: rolling daily totals keyed by a small integer series id.
-- A series is one (cluster, service_account, client_id, topic); keying the fact table by
-- (day, series_id) keeps its primary-key index small and upserts fast.

CREATE TABLE series (
    series_id       INTEGER PRIMARY KEY,
    cluster         VARCHAR NOT NULL,
    service_account VARCHAR NOT NULL,
    client_id       VARCHAR NOT NULL,
    topic           VARCHAR NOT NULL,
    UNIQUE (cluster, service_account, client_id, topic)
);

CREATE TABLE usage_totals (
    day            DATE    NOT NULL,
    series_id      INTEGER NOT NULL,
    produced_bytes HUGEINT NOT NULL,
    consumed_bytes HUGEINT NOT NULL,
    event_count    BIGINT  NOT NULL,
    PRIMARY KEY (day, series_id)
);

-- The next offset to read, per partition, written in the same transaction as the totals:
-- this row is what makes ingestion exactly-once.
CREATE TABLE ingest_offsets (
    topic       VARCHAR     NOT NULL,
    "partition" INTEGER     NOT NULL,
    next_offset BIGINT      NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (topic, "partition")
);

CREATE TABLE rejections (
    received_at TIMESTAMPTZ NOT NULL,
    topic       VARCHAR     NOT NULL,
    "partition" INTEGER     NOT NULL,
    "offset"    BIGINT      NOT NULL,
    reason      VARCHAR     NOT NULL,
    payload     VARCHAR
);
