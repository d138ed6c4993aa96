-- The rates table and the cost views (PRODUCT.md §2, §3), run by views.rates.install_rates,
-- which then inserts one row per rate entry in the same transaction. docs/rates.md documents
-- the precedence and the rounding rule implemented here.
--
-- Exact arithmetic only, never DOUBLE: in DuckDB a DECIMAL / DECIMAL is a DOUBLE, and a
-- DECIMAL * DECIMAL adds scales and overflows 38 digits for large byte counts. So a cost is
-- computed on integers: bytes (HUGEINT) * price in 10^-9 currency units (HUGEINT),
-- integer-divided by the unit's bytes (truncating, exact to 10^-9), then split into whole units
-- and a nine-place fraction to become a DECIMAL(38,9) with no rounding. A HUGEINT overflow is an
-- error, never a wrap; bytes * price stays below 1.7e38 (10^18 bytes a day at 10^9 a unit fits).

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

CREATE OR REPLACE VIEW cost_daily AS
WITH spans AS (
    SELECT cluster, valid_to, currency, unit, unit_bytes, is_default,
           -- The earliest global entry also prices every older day: each day has a global price.
           CASE WHEN cluster IS NULL
                     AND valid_from = (SELECT min(valid_from) FROM rates WHERE cluster IS NULL)
                THEN DATE '0001-01-01' ELSE valid_from END AS span_from,
           -- Widened first: DECIMAL(18,9) * 10^9 would overflow its own 18 digits.
           CAST(CAST(ingress_price AS DECIMAL(38,9)) * 1000000000 AS HUGEINT) AS ingress_nanos,
           CAST(CAST(egress_price AS DECIMAL(38,9)) * 1000000000 AS HUGEINT) AS egress_nanos
    FROM rates
),
priced AS (
    -- A cluster's own entry in force beats the global one.
    SELECT u.day, u.cluster, u.service_account, u.produced_bytes, u.consumed_bytes,
           g.currency, g.unit, g.is_default,
           u.produced_bytes * coalesce(c.ingress_nanos, g.ingress_nanos)
               // g.unit_bytes AS ingress_nanos,
           u.consumed_bytes * coalesce(c.egress_nanos, g.egress_nanos)
               // g.unit_bytes AS egress_nanos
    FROM usage_daily AS u
    JOIN spans AS g
      ON g.cluster IS NULL
     AND u.day >= g.span_from AND (g.valid_to IS NULL OR u.day < g.valid_to)
    LEFT JOIN spans AS c
      ON c.cluster = u.cluster
     AND u.day >= c.span_from AND (c.valid_to IS NULL OR u.day < c.valid_to)
),
money AS (
    SELECT *,
           CAST(ingress_nanos // 1000000000 AS DECIMAL(38,9))
               + CAST(ingress_nanos % 1000000000 AS DECIMAL(9,0))
                 * CAST(0.000000001 AS DECIMAL(10,9)) AS ingress_cost,
           CAST(egress_nanos // 1000000000 AS DECIMAL(38,9))
               + CAST(egress_nanos % 1000000000 AS DECIMAL(9,0))
                 * CAST(0.000000001 AS DECIMAL(10,9)) AS egress_cost
    FROM priced
)
SELECT day, cluster, service_account, produced_bytes, consumed_bytes,
       ingress_cost, egress_cost,
       CAST(ingress_cost + egress_cost AS DECIMAL(38,9)) AS total_cost,
       currency, unit, is_default
FROM money;

-- Sums of the daily rows: a rate change mid-month prices the days before and after differently.
CREATE OR REPLACE VIEW cost_monthly AS
SELECT CAST(date_trunc('month', day) AS DATE) AS month, cluster, service_account,
       sum(produced_bytes) AS produced_bytes,
       sum(consumed_bytes) AS consumed_bytes,
       CAST(sum(ingress_cost) AS DECIMAL(38,9)) AS ingress_cost,
       CAST(sum(egress_cost) AS DECIMAL(38,9)) AS egress_cost,
       CAST(sum(total_cost) AS DECIMAL(38,9)) AS total_cost,
       currency, unit, is_default
FROM cost_daily
GROUP BY month, cluster, service_account, currency, unit, is_default;
