-- The columnar variant measured by bench/columnar_probe.py (not used by the service): one chunk
-- of record values, the events it is sure of summed per (day, names), and the positions of the
-- records it leaves to the Python parser. Sure means: the names as sent were already checked by
-- the Python parser ($names), the day of the quarter hour is known ($days), and the record is
-- exactly its fields written the shortest way JSON allows (its length proves there is nothing
-- else in it: no spaces, escapes, unknown or repeated fields), with plain digits for numbers.
WITH parsed AS (
    SELECT i, record_ms, strlen(v) AS len,
           json_transform(
               CASE WHEN json_valid(v) AND left(v, 1) = '{' THEN v END,
               '{"service_account": "VARCHAR", "type": "VARCHAR", "bytes": "JSON",
                 "timestamp": "JSON", "cluster": "VARCHAR", "client_id": "VARCHAR",
                 "topic": "VARCHAR"}'
           ) AS j
    FROM chunk
), fields AS (
    SELECT i, record_ms, len,
           j.service_account AS sa, j.type AS ty, CAST(j.bytes AS VARCHAR) AS b,
           CAST(j.timestamp AS VARCHAR) AS ts, j.cluster AS cl, j.client_id AS ci, j.topic AS tp
    FROM parsed
), named AS (
    SELECT f.i, f.record_ms, f.len, f.b, f.ts, n.name_id, n.produce,
           1 + (21 + strlen(f.sa)) + (10 + strlen(f.ty)) + (9 + strlen(f.b))
             + CASE WHEN f.ts IS NULL THEN 0 ELSE 13 + strlen(f.ts) END
             + CASE WHEN f.cl IS NULL THEN 0 ELSE 13 + strlen(f.cl) END
             + CASE WHEN f.ci IS NULL THEN 0 ELSE 15 + strlen(f.ci) END
             + CASE WHEN f.tp IS NULL THEN 0 ELSE 11 + strlen(f.tp) END AS shortest
    FROM fields AS f
    LEFT JOIN names AS n
      ON f.sa = n.sa AND f.ty = n.ty AND f.cl IS NOT DISTINCT FROM n.cl
     AND f.ci IS NOT DISTINCT FROM n.ci AND f.tp IS NOT DISTINCT FROM n.tp
), timed AS (
    SELECT i, name_id, produce, len, shortest,
           CASE WHEN regexp_full_match(b, '0|[1-9][0-9]{0,15}') THEN CAST(b AS BIGINT) END AS size,
           CASE
             WHEN ts IS NULL THEN record_ms
             WHEN regexp_full_match(ts, '[0-9]{1,15}') THEN CAST(ts AS BIGINT)
             WHEN regexp_full_match(ts, '"[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{3})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"')
             THEN date_diff('day', DATE '1970-01-01', TRY_CAST(substr(ts, 2, 10) AS DATE)) * 86400000
                  + CAST(substr(ts, 13, 2) AS BIGINT) * 3600000
                  + CAST(substr(ts, 16, 2) AS BIGINT) * 60000
                  + CAST(substr(ts, 19, 2) AS BIGINT) * 1000
                  + CASE WHEN substr(ts, 21, 1) = '.' THEN CAST(substr(ts, 22, 3) AS BIGINT) ELSE 0 END
                  - CASE WHEN right(ts, 2) = 'Z"' THEN 0
                         ELSE (CASE WHEN substr(ts, -7, 1) = '-' THEN -1 ELSE 1 END)
                              * (CAST(substr(ts, -6, 2) AS BIGINT) * 3600000
                                 + CAST(substr(ts, -3, 2) AS BIGINT) * 60000) END
           END AS ms
    FROM named
), sure AS (
    SELECT t.i, t.name_id, t.produce, t.size, d.day
    FROM timed AS t
    JOIN days AS d ON d.quarter = t.ms // 900000
    WHERE t.name_id IS NOT NULL AND t.len = t.shortest AND t.len <= $max_record_bytes
      AND t.size <= 9007199254740992 AND t.ms BETWEEN 0 AND $horizon_ms
)
SELECT day, name_id,
       sum(CASE WHEN produce THEN size ELSE 0 END) AS produced,
       sum(CASE WHEN produce THEN 0 ELSE size END) AS consumed,
       count(*) AS events,
       CAST(NULL AS INTEGER) AS declined
FROM sure
GROUP BY day, name_id
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, i FROM chunk WHERE i NOT IN (SELECT i FROM sure)
