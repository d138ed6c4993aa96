-- The views SQL users query (PRODUCT.md §2). Their names and columns are part of the contract;
-- they are recreated on every open, so a view's definition can change without a migration.

CREATE OR REPLACE VIEW usage_detail AS
SELECT t.day, s.cluster, s.service_account, s.client_id, s.topic,
       t.produced_bytes, t.consumed_bytes, t.event_count
FROM usage_totals AS t
JOIN series AS s USING (series_id);

CREATE OR REPLACE VIEW usage_daily AS
SELECT day, cluster, service_account,
       sum(produced_bytes) AS produced_bytes,
       sum(consumed_bytes) AS consumed_bytes
FROM usage_detail
GROUP BY day, cluster, service_account;

CREATE OR REPLACE VIEW usage_monthly AS
SELECT CAST(date_trunc('month', day) AS DATE) AS month, cluster, service_account,
       sum(produced_bytes) AS produced_bytes,
       sum(consumed_bytes) AS consumed_bytes
FROM usage_detail
GROUP BY month, cluster, service_account;

CREATE OR REPLACE VIEW rejected_events AS
SELECT received_at, topic, "partition", "offset", reason, payload
FROM rejections;
