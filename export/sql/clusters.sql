SELECT DISTINCT cluster FROM usage_daily ORDER BY cluster;
