-- The rates table, the pricing macros and the cost views (PRODUCT.md §2, §3), run by
-- views.rates.install_rates, which then inserts one row per rate entry in the same transaction.
-- docs/rates.md documents the precedence and the pricing rule implemented here; the export's
-- cells query (export/sql/chargeback_cells.sql) prices with the same `rate_spans` and macros.
--
-- Exact arithmetic only, never DOUBLE: in DuckDB a DECIMAL / DECIMAL is a DOUBLE, and a
-- DECIMAL * DECIMAL adds scales and overflows 38 digits for large byte counts. So a cost is
-- computed on integers: bytes (HUGEINT) * price in 10^-9 currency units (HUGEINT),
-- integer-divided by the unit's bytes (truncating, exact to 10^-9), then split into whole units
-- and a nine-place fraction to become a DECIMAL(38,9) with no rounding. A HUGEINT overflow is an
-- error, never a wrap; bytes * price stays below 1.7e38 (10^18 bytes at 10^9 a unit fits).
--
-- What is priced is a sum of bytes: all the bytes of one (bucket, cluster, account) that one
-- rate entry prices. cost_daily prices each day; cost_monthly and the export's monthly buckets
-- price each month's bytes per rate entry in force, once, and add those up.

CREATE OR REPLACE TABLE rates (
    cluster       VARCHAR,          -- NULL: the global entry, for clusters without their own
    valid_from    DATE NOT NULL,    -- the first day the entry prices
    valid_to      DATE,             -- exclusive: the next entry of the same scope; NULL: open
    ingress_price DECIMAL(18,9) NOT NULL,  -- per unit produced
    egress_price  DECIMAL(18,9) NOT NULL,  -- per unit consumed
    currency      VARCHAR NOT NULL,
    unit          VARCHAR NOT NULL,        -- GB or GiB
    unit_bytes    BIGINT NOT NULL,         -- 10^9 or 2^30
    is_default    BOOLEAN NOT NULL         -- no rates file: the documented default applies
);

-- The cost of `bytes` at `price_nanos` (10^-9 currency units) per unit of `unit_bytes` bytes,
-- in 10^-9 currency units, truncated: floor(bytes * price_nanos / unit_bytes). A 128-bit division
-- is slow, so when bytes < 2^62 and the price below 2^33 nanos (8.59 a unit) it is computed as
-- q * price + (r * price) // unit with bytes = q * unit + r, every division on 64 bits
-- (r < unit <= 2^30, so r * price < 2^63): the same integer, exactly.
CREATE OR REPLACE MACRO cost_nanos(bytes, price_nanos, unit_bytes) AS
    CASE WHEN bytes < 4611686018427387904 AND price_nanos < 8589934592
         THEN CAST(CAST(bytes AS BIGINT) // unit_bytes AS HUGEINT) * price_nanos
              + (CAST(bytes AS BIGINT) % unit_bytes) * CAST(price_nanos AS BIGINT) // unit_bytes
         ELSE CAST(bytes AS HUGEINT) * price_nanos // unit_bytes END;

-- n 10^-9 currency units as a DECIMAL(38,9), with no rounding: below 10^27 in size, n scaled by
-- 10^-9 (a DECIMAL(28,0) times a DECIMAL(10,9) is a DECIMAL(38,9), exact); beyond, split into
-- whole units and a nine-place fraction (128-bit divisions, slow but never needed in practice).
CREATE OR REPLACE MACRO nanos_money(n) AS
    CASE WHEN n > -1000000000000000000000000000 AND n < 1000000000000000000000000000
         THEN CAST(n AS DECIMAL(28,0)) * CAST(0.000000001 AS DECIMAL(10,9))
         ELSE CAST(CAST(n // 1000000000 AS DECIMAL(38,9))
                   + CAST(n % 1000000000 AS DECIMAL(9,0)) * CAST(0.000000001 AS DECIMAL(10,9))
                   AS DECIMAL(38,9)) END;

-- n 10^-9 currency units as shown (views.rates.round_money, then two places): rounded half up
-- (away from zero) to cents, as text with '.' and two decimals, no grouping: 4999999 -> '0.00',
-- 5000000 -> '0.01', 1234567890123 -> '1234.57'. Integer arithmetic, on 64 bits when n is
-- below 2^62 (which costs are, in practice); the export writes these texts as they are.
CREATE OR REPLACE MACRO money_text(n) AS
    CASE WHEN n >= 0 AND n < 4611686018427387904
         THEN CAST((CAST(n AS BIGINT) + 5000000) // 1000000000 AS VARCHAR) || '.'
              || lpad(CAST((CAST(n AS BIGINT) + 5000000) // 10000000 % 100 AS VARCHAR), 2, '0')
         ELSE CASE WHEN n < 0 THEN '-' ELSE '' END
              || CAST((abs(n) + 5000000) // 1000000000 AS VARCHAR) || '.'
              || lpad(CAST((abs(n) + 5000000) // 10000000 % 100 AS VARCHAR), 2, '0') END;

-- Per cluster of the store, the rate entry in force over each span of days [span_from, span_to)
-- (span_to NULL: open), the spans of one cluster in a row without gaps or overlaps: from its
-- first own entry on, its own entries; before, the global ones. The earliest global entry also
-- prices every older day (span_from 0001-01-01). `entry_from`/`entry_cluster` name the entry.
CREATE OR REPLACE VIEW rate_spans AS
WITH entries AS (
    SELECT cluster, valid_from, valid_to, currency, unit, unit_bytes, is_default,
           CASE WHEN cluster IS NULL
                     AND valid_from = (SELECT min(valid_from) FROM rates WHERE cluster IS NULL)
                THEN DATE '0001-01-01' ELSE valid_from END AS span_from,
           -- Widened first: DECIMAL(18,9) * 10^9 would overflow its own 18 digits.
           CAST(CAST(ingress_price AS DECIMAL(38,9)) * 1000000000 AS HUGEINT) AS ingress_nanos,
           CAST(CAST(egress_price AS DECIMAL(38,9)) * 1000000000 AS HUGEINT) AS egress_nanos
    FROM rates
),
clusters AS (
    SELECT c.cluster, min(e.valid_from) AS first_own
    FROM (SELECT DISTINCT cluster FROM series) AS c
    LEFT JOIN entries AS e ON e.cluster = c.cluster
    GROUP BY c.cluster
)
SELECT c.cluster, e.span_from, e.valid_to AS span_to,
       e.ingress_nanos, e.egress_nanos, e.unit_bytes, e.currency, e.unit, e.is_default,
       e.valid_from AS entry_from, e.cluster AS entry_cluster
FROM clusters AS c
JOIN entries AS e ON e.cluster = c.cluster
UNION ALL
SELECT c.cluster, g.span_from,
       CASE WHEN c.first_own IS NULL THEN g.valid_to
            ELSE least(coalesce(g.valid_to, c.first_own), c.first_own) END AS span_to,
       g.ingress_nanos, g.egress_nanos, g.unit_bytes, g.currency, g.unit, g.is_default,
       g.valid_from AS entry_from, g.cluster AS entry_cluster
FROM clusters AS c
JOIN entries AS g ON g.cluster IS NULL
WHERE c.first_own IS NULL OR g.span_from < c.first_own;

-- Each day priced on its own: the bytes of one (day, cluster, account).
CREATE OR REPLACE VIEW cost_daily AS
WITH priced AS (
    SELECT u.day, u.cluster, u.service_account, u.produced_bytes, u.consumed_bytes,
           r.currency, r.unit, r.is_default,
           cost_nanos(u.produced_bytes, r.ingress_nanos, r.unit_bytes) AS ingress_nanos,
           cost_nanos(u.consumed_bytes, r.egress_nanos, r.unit_bytes) AS egress_nanos
    FROM usage_daily AS u
    JOIN rate_spans AS r
      ON r.cluster = u.cluster
     AND u.day >= r.span_from AND (r.span_to IS NULL OR u.day < r.span_to)
)
SELECT day, cluster, service_account, produced_bytes, consumed_bytes,
       nanos_money(ingress_nanos) AS ingress_cost,
       nanos_money(egress_nanos) AS egress_cost,
       nanos_money(ingress_nanos + egress_nanos) AS total_cost,
       currency, unit, is_default
FROM priced;

-- Each month's bytes of one (cluster, account) priced once per rate entry in force in it: a rate
-- change mid-month prices the days before and after it as two sums.
CREATE OR REPLACE VIEW cost_monthly AS
WITH sums AS (
    SELECT CAST(date_trunc('month', u.day) AS DATE) AS month, u.cluster, u.service_account,
           r.span_from,
           any_value(r.ingress_nanos) AS ingress_price_nanos,
           any_value(r.egress_nanos) AS egress_price_nanos,
           any_value(r.unit_bytes) AS unit_bytes,
           any_value(r.currency) AS currency,
           any_value(r.unit) AS unit,
           any_value(r.is_default) AS is_default,
           sum(u.produced_bytes) AS produced_bytes,
           sum(u.consumed_bytes) AS consumed_bytes
    FROM usage_daily AS u
    JOIN rate_spans AS r
      ON r.cluster = u.cluster
     AND u.day >= r.span_from AND (r.span_to IS NULL OR u.day < r.span_to)
    GROUP BY month, u.cluster, u.service_account, r.span_from
),
priced AS (
    SELECT *,
           cost_nanos(produced_bytes, ingress_price_nanos, unit_bytes) AS ingress_nanos,
           cost_nanos(consumed_bytes, egress_price_nanos, unit_bytes) AS egress_nanos
    FROM sums
)
SELECT month, cluster, service_account,
       sum(produced_bytes) AS produced_bytes,
       sum(consumed_bytes) AS consumed_bytes,
       nanos_money(sum(ingress_nanos)) AS ingress_cost,
       nanos_money(sum(egress_nanos)) AS egress_cost,
       nanos_money(sum(ingress_nanos + egress_nanos)) AS total_cost,
       currency, unit, is_default
FROM priced
GROUP BY month, cluster, service_account, currency, unit, is_default;
