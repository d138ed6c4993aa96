INSERT INTO rejections (received_at, topic, "partition", "offset", reason, payload)
SELECT received_at, topic, "partition", "offset", reason, payload
FROM batch_rejections;
