"""Realistic usage-event traffic for the demo and the benchmarks.

`traffic.model` makes seeded, deterministic streams of §1 usage events (same seed, same bytes);
`traffic.produce` writes them to a Kafka topic quickly.
"""
