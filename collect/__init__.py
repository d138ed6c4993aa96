"""Collectors: usage events (PRODUCT.md §1) from real metric sources.

- ``collect.confluent_cloud``: the Confluent Cloud Metrics API v2 query endpoint;
- ``collect.prometheus``: a Prometheus text endpoint (jmx_exporter quota byte rates, or the
  Confluent Cloud export endpoint's one-minute deltas), parsed by ``collect.promtext``.

Both write to the usage topic through ``collect.emit`` and keep their progress in a small state
file (``collect.state``) written only after the producer acknowledged the events. See
docs/collectors.md.
"""
