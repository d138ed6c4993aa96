-- The Chargeback table's cells: per service account and bucket, the bytes each way and the cost.
-- Every tab reads the same cells, so the dashboard can switch tabs without asking again.
--
-- export.table.read_plan cuts the period into pieces, each inside one bucket and one month and
-- priced by one rate entry throughout, for every cluster; it fills in the placeholders:
--   {{day_rows}}    the rows of usage_totals in the pieces of days: (bucket, piece start,
--                   series_id, produced_bytes, consumed_bytes), summed by piece and series with
--                   monthly buckets; with daily buckets each day is its own piece
--   {{month_filter}} the whole months read from usage_monthly_totals, as ranges of `m.month`
-- A whole month is taken from the monthly totals only when it lies inside the period and no rate
-- entry starts in it after its first day; both tables hold the same sums, so the cells are the
-- same either way (tests/test_export.py proves it).
--
-- Pricing is views/sql/cost_views.sql's (rate_spans, cost_nanos, nanos_money): the bytes of one
-- (bucket, cluster, account) that one rate entry prices are summed, priced once, truncated to
-- 10^-9; a cell's cost is the sum of those priced sums. Bytes are summed per series first, from
-- the base tables, and the series' names joined to those few sums.
WITH usage AS (
    -- Per (bucket, piece, series): the days' rows (summed by piece with monthly buckets), and
    -- the whole months' rows.
    {day_rows}
    UNION ALL
    SELECT m.month, m.month, m.series_id, m.produced_bytes, m.consumed_bytes
    FROM usage_monthly_totals AS m
    WHERE {month_filter}
),
clusters AS (
    SELECT cluster, row_number() OVER (ORDER BY cluster) AS cluster_id
    FROM (SELECT DISTINCT cluster FROM series)
),
picked AS (
    -- The series asked for, with small integer keys for their cluster and account: grouping
    -- by integers is much faster than by names, which are joined back at the end.
    SELECT s.series_id, c.cluster_id, s.service_account,
           dense_rank() OVER (ORDER BY s.service_account) AS account_id
    FROM series AS s
    JOIN clusters AS c USING (cluster)
    WHERE ($cluster IS NULL OR s.cluster = $cluster)
      AND ($filter IS NULL OR contains(lower(s.service_account), lower($filter)))
),
entry AS (
    -- Per day of the period and cluster, the rate entry in force (a piece is named by its first
    -- day): a few thousand rows at most, joined by equality.
    SELECT CAST(d.day AS DATE) AS piece_start, c.cluster_id, r.span_from,
           r.ingress_nanos, r.egress_nanos, r.unit_bytes
    FROM range(CAST($period_first AS DATE), CAST($period_last AS DATE) + 1, INTERVAL 1 DAY)
         AS d(day)
    JOIN rate_spans AS r
      ON CAST(d.day AS DATE) >= r.span_from
     AND (r.span_to IS NULL OR CAST(d.day AS DATE) < r.span_to)
    JOIN clusters AS c USING (cluster)
),
sums AS (
    -- The bytes of one (bucket, piece, cluster, account).
    SELECT u.bucket, u.piece_start, p.cluster_id, p.account_id,
           sum(u.produced_bytes) AS produced_bytes, sum(u.consumed_bytes) AS consumed_bytes
    FROM usage AS u
    JOIN picked AS p USING (series_id)
    GROUP BY u.bucket, u.piece_start, p.cluster_id, p.account_id
),
entries AS (
    SELECT x.bucket, x.cluster_id, x.account_id, e.span_from, x.produced_bytes,
           x.consumed_bytes, e.ingress_nanos, e.egress_nanos, e.unit_bytes
    FROM sums AS x
    JOIN entry AS e ON e.piece_start = x.piece_start AND e.cluster_id = x.cluster_id
),
by_entry AS (
    -- The bytes of one (bucket, cluster, account, rate entry in force): {{by_entry}} adds up
    -- the pieces of one bucket that the same entry prices (with daily buckets there is one).
    {by_entry}
),
priced AS (
    -- Each sum priced once.
    SELECT account_id, bucket, produced_bytes, consumed_bytes,
           cost_nanos(produced_bytes, ingress_nanos, unit_bytes)
               + cost_nanos(consumed_bytes, egress_nanos, unit_bytes) AS cost_nanos
    FROM by_entry
),
cells AS (
    SELECT account_id, bucket,
           sum(produced_bytes) AS produced_bytes,
           sum(consumed_bytes) AS consumed_bytes,
           sum(cost_nanos) AS cost_nanos
    FROM priced
    GROUP BY account_id, bucket
    HAVING sum(produced_bytes) + sum(consumed_bytes) > 0
)
SELECT a.service_account, x.bucket, x.produced_bytes, x.consumed_bytes,
       nanos_money(x.cost_nanos) AS total_cost
FROM cells AS x
JOIN (SELECT DISTINCT account_id, service_account FROM picked) AS a USING (account_id);
