SELECT "partition", next_offset
FROM ingest_offsets
WHERE topic = $topic;
