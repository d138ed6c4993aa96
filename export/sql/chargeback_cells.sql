-- The Chargeback table's cells: per service account and bucket, the bytes each way and the cost.
-- Every tab reads the same cells, so the dashboard can switch tabs without asking again.
SELECT service_account,
       CASE WHEN $monthly THEN CAST(date_trunc('month', day) AS DATE) ELSE day END AS bucket,
       sum(produced_bytes) AS produced_bytes,
       sum(consumed_bytes) AS consumed_bytes,
       sum(total_cost)     AS total_cost
FROM cost_daily
WHERE day BETWEEN $first AND $last
  AND ($cluster IS NULL OR cluster = $cluster)
  AND ($filter IS NULL OR contains(lower(service_account), lower($filter)))
GROUP BY service_account, bucket
HAVING sum(produced_bytes) + sum(consumed_bytes) > 0;
