-- Schema version 2: monthly pre-aggregates beside the daily totals, so that long periods read one
-- row per (month, series) instead of one per (day, series). The writer upserts both in the same
-- transaction (consumer/sql/upsert_totals.sql, upsert_monthly_totals.sql): for every month and
-- series, the row here equals the sum of that month's rows in usage_totals.

CREATE TABLE usage_monthly_totals (
    month          DATE    NOT NULL,  -- the month's first day
    series_id      INTEGER NOT NULL,
    produced_bytes HUGEINT NOT NULL,
    consumed_bytes HUGEINT NOT NULL,
    event_count    BIGINT  NOT NULL,
    PRIMARY KEY (month, series_id)
);

INSERT INTO usage_monthly_totals (month, series_id, produced_bytes, consumed_bytes, event_count)
SELECT CAST(date_trunc('month', day) AS DATE) AS month, series_id,
       sum(produced_bytes), sum(consumed_bytes), sum(event_count)
FROM usage_totals
GROUP BY month, series_id
ORDER BY month, series_id;
