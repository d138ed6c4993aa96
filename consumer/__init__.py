"""The ingestion service: usage events from a Kafka topic into exact daily totals in DuckDB."""
