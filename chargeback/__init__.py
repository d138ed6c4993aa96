"""The `chargeback` command: one click group over consumer, views, export and localkafka."""
