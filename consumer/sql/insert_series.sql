INSERT INTO series (series_id, cluster, service_account, client_id, topic)
SELECT series_id, cluster, service_account, client_id, topic
FROM batch_series;
