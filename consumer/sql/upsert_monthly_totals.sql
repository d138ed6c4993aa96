-- Adds a batch's totals to the monthly totals, in the same transaction as the daily ones
-- (upsert_totals.sql): the batch grouped by month, so each (month, series) row is touched once.
INSERT INTO usage_monthly_totals (month, series_id, produced_bytes, consumed_bytes, event_count)
SELECT CAST(date_trunc('month', day) AS DATE) AS month, series_id,
       sum(CAST(produced AS HUGEINT)),
       sum(CAST(consumed AS HUGEINT)),
       sum(events)
FROM batch_totals
GROUP BY month, series_id
ON CONFLICT (month, series_id) DO UPDATE SET
    produced_bytes = produced_bytes + excluded.produced_bytes,
    consumed_bytes = consumed_bytes + excluded.consumed_bytes,
    event_count    = event_count + excluded.event_count;
