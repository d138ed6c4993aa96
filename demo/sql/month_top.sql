-- This month's accounts by cost, summed over clusters.
SELECT service_account,
       sum(produced_bytes) AS produced_bytes,
       sum(consumed_bytes) AS consumed_bytes,
       sum(total_cost)     AS total_cost
FROM cost_monthly
WHERE month = $month
GROUP BY service_account
ORDER BY total_cost DESC, service_account
