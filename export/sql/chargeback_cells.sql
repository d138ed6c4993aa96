-- The Chargeback table of one tab: one row per service account with usage in the period, its
-- cells already pivoted and written as the CSV shows them, so that no per-cell work is left to
-- Python: (service_account, shown, exact, total) where
--   shown  the bucket values in bucket order, comma-separated, as shown: bytes as integers, costs
--          rounded half up to two places (money_text); a bucket without usage shows 0 / 0.00
--   exact  costs, when $exact (else NULL): the same cells before rounding, in 10^-9 currency
--          units (the dashboard's totals row and chart need them, the CSV does not)
--   total  the exact total: bytes, or 10^-9 currency units
--
-- export.table.read_plan cuts the period into pieces, each inside one bucket and one month and
-- priced by one rate entry throughout, for every cluster; export.table.cells_query fills in:
--   {{day_rows}}    the rows of usage_totals in the pieces of days: (bucket, piece start,
--                   series_id, produced_bytes, consumed_bytes); with monthly buckets one
--                   SELECT per piece (one day range each, so DuckDB skips the other row
--                   groups), summed per series; with daily buckets each day is its own piece
--   {{month_filter}} the whole months read from usage_monthly_totals, as ranges of `m.month`
--   {{by_entry}}    entries or split_entries, see by_entry below
--   {{tab}}, {{tab_cells}}  the tab's column (cost, ingress or egress) and where it comes from
-- A whole month is taken from the monthly totals only when it lies inside the period and (for
-- costs) no rate entry starts in it after its first day; both tables hold the same sums, so the
-- cells are the same either way (tests/test_export.py proves it). The byte tabs need no pricing,
-- so they read every whole month from the monthly totals, whatever the rates.
--
-- Pricing is views/sql/cost_views.sql's (rate_spans, cost_nanos): the bytes of one (bucket,
-- cluster, account) that one rate entry prices are summed, priced once, truncated to 10^-9; a
-- cell's cost is the sum of those priced sums. Bytes are summed per series first, from the base
-- tables, and the series' names joined to the few rows at the end.
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
           dense_rank() OVER (ORDER BY s.service_account) AS account_id,
           count(*) OVER (PARTITION BY s.cluster, s.service_account) = 1 AS alone
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
located AS (
    -- Each usage row with its small cluster and account keys.
    SELECT u.bucket, u.piece_start, p.cluster_id, p.account_id, p.alone, u.produced_bytes,
           u.consumed_bytes
    FROM usage AS u
    JOIN picked AS p USING (series_id)
),
sums AS (
    -- The bytes of one (bucket, piece, cluster, account). A usage row is one (bucket, piece,
    -- series): a series alone in its (cluster, account) (no other client or topic) is its sum.
    SELECT bucket, piece_start, cluster_id, account_id, produced_bytes, consumed_bytes
    FROM located
    WHERE alone
    UNION ALL
    SELECT bucket, piece_start, cluster_id, account_id,
           sum(produced_bytes) AS produced_bytes, sum(consumed_bytes) AS consumed_bytes
    FROM located
    WHERE NOT alone
    GROUP BY bucket, piece_start, cluster_id, account_id
),
entries AS (
    SELECT x.bucket, x.cluster_id, x.account_id, e.span_from, x.produced_bytes,
           x.consumed_bytes, e.ingress_nanos, e.egress_nanos, e.unit_bytes
    FROM sums AS x
    JOIN entry AS e ON e.piece_start = x.piece_start AND e.cluster_id = x.cluster_id
),
split_entries AS (
    -- With buckets read as several pieces ($split_buckets: months with a rate change in them),
    -- the pieces of one bucket that the same entry prices are added up; the other buckets'
    -- pieces are their sums already.
    SELECT * FROM entries
    WHERE NOT list_contains(CAST($split_buckets AS DATE[]), bucket)
    UNION ALL
    SELECT bucket, cluster_id, account_id, span_from,
           sum(produced_bytes) AS produced_bytes, sum(consumed_bytes) AS consumed_bytes,
           any_value(ingress_nanos) AS ingress_nanos, any_value(egress_nanos) AS egress_nanos,
           any_value(unit_bytes) AS unit_bytes
    FROM entries
    WHERE list_contains(CAST($split_buckets AS DATE[]), bucket)
    GROUP BY bucket, cluster_id, account_id, span_from
),
by_entry AS (
    -- The bytes of one (bucket, cluster, account, rate entry in force): {{by_entry}} is
    -- `entries` when every bucket is one piece (daily buckets, most monthly periods), else
    -- `split_entries`.
    SELECT * FROM {by_entry}
),
cost_cells AS (
    -- Each sum priced once; a cell's cost is the sum of its priced sums.
    SELECT account_id, bucket,
           sum(cost_nanos(produced_bytes, ingress_nanos, unit_bytes)
               + cost_nanos(consumed_bytes, egress_nanos, unit_bytes)) AS cost
    FROM by_entry
    GROUP BY account_id, bucket
    HAVING sum(produced_bytes + consumed_bytes) > 0
),
byte_cells AS (
    -- The byte tabs price nothing: the bytes of one (account, bucket), straight from the rows.
    SELECT p.account_id, u.bucket,
           sum(u.produced_bytes) AS ingress, sum(u.consumed_bytes) AS egress
    FROM usage AS u
    JOIN picked AS p USING (series_id)
    GROUP BY p.account_id, u.bucket
    HAVING sum(u.produced_bytes) + sum(u.consumed_bytes) > 0
),
cells AS (
    SELECT account_id, bucket, {tab} AS value FROM {tab_cells}
),
grid AS (
    -- Every bucket of every account with a cell, so each row has all its columns.
    SELECT a.account_id, CAST(b.bucket AS DATE) AS bucket
    FROM (SELECT DISTINCT account_id FROM cells) AS a,
         unnest(CAST($buckets AS DATE[])) AS b(bucket)
),
full_cells AS (
    SELECT g.account_id, g.bucket, coalesce(c.value, 0) AS value
    FROM grid AS g
    LEFT JOIN cells AS c USING (account_id, bucket)
),
rows AS (
    -- The cells of one account in bucket order: a list sorted once per account, several times
    -- faster in DuckDB than string_agg(… ORDER BY bucket); written as text once sorted.
    SELECT account_id, list_sort(list(struct_pack(bucket, value))) AS cells, sum(value) AS total
    FROM full_cells
    GROUP BY account_id
)
SELECT a.service_account,
       array_to_string(list_transform(r.cells, lambda c: CASE WHEN $money THEN money_text(c.value)
                                                              ELSE CAST(c.value AS VARCHAR) END),
                       ',') AS shown,
       CASE WHEN $exact
            THEN array_to_string(list_transform(r.cells, lambda c: CAST(c.value AS VARCHAR)), ',')
       END AS exact,
       r.total
FROM rows AS r
JOIN (SELECT DISTINCT account_id, service_account FROM picked) AS a USING (account_id);
