-- Adds a batch's totals to the rolling daily totals. The batch may hold a key more than once
-- (sums are split to fit 64-bit columns), so it is grouped first: ON CONFLICT may touch a row once.
INSERT INTO usage_totals (day, series_id, produced_bytes, consumed_bytes, event_count)
SELECT day, series_id,
       sum(CAST(produced AS HUGEINT)),
       sum(CAST(consumed AS HUGEINT)),
       sum(events)
FROM batch_totals
GROUP BY day, series_id
ON CONFLICT (day, series_id) DO UPDATE SET
    produced_bytes = produced_bytes + excluded.produced_bytes,
    consumed_bytes = consumed_bytes + excluded.consumed_bytes,
    event_count    = event_count + excluded.event_count;
