INSERT INTO ingest_offsets (topic, "partition", next_offset, updated_at)
SELECT topic, "partition", next_offset, now()
FROM batch_offsets
ON CONFLICT (topic, "partition") DO UPDATE SET
    next_offset = excluded.next_offset,
    updated_at  = excluded.updated_at;
