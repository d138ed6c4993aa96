"""``chargeback collect confluent-cloud|prometheus``: always-on collectors (or --once)."""

import base64
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import click

from chargeback.errors import ChargebackError, UsageError
from chargeback.options import (
    FiniteRange,
    bootstrap_option,
    env,
    kafka_option_option,
    parse_kafka_options,
    topic_option,
)

log = logging.getLogger("chargeback.collect")


class Collector(Protocol):
    stop: threading.Event  # set on SIGTERM: the collector ends after the chunk in hand

    def run_once(self) -> bool: ...


def _kafka_options(func: Any) -> Any:
    func = kafka_option_option(
        "Extra librdkafka producer setting KEY=VALUE (SASL, TLS …); repeatable."
    )(func)
    func = topic_option("The usage-event topic written to.")(func)
    return bootstrap_option("Kafka bootstrap servers of the usage topic, HOST:PORT[,…].")(func)


def check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--url must be an http(s) URL, got {value!r}")
    return value


def _basic_auth(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _producer(options: dict[str, Any]) -> Any:
    from collect.emit import UsageProducer

    return UsageProducer(
        options["bootstrap_servers"], options["topic"], parse_kafka_options(options["kafka_option"])
    )


def run_loop(collector: Collector, interval: float, once: bool) -> None:
    """One cycle (--once), or a cycle every `interval` seconds until SIGTERM or Ctrl-C."""
    stop = collector.stop
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    while True:
        started = time.monotonic()
        try:
            ok = collector.run_once()
        except ChargebackError as error:
            log.error("cycle failed: %s; state kept, retried next cycle", error)
            ok = False
        if once:
            if not ok:
                raise ChargebackError("the cycle did not complete; see the log above")
            return
        if stop.wait(max(0.0, interval - (time.monotonic() - started))):
            log.info("stopped")
            return


@click.group()
def collect() -> None:
    """Collectors: usage events from real metric sources into the usage topic."""


@collect.command("confluent-cloud")
@click.option(
    "--cluster",
    multiple=True,
    required=True,
    envvar=env("ccloud_cluster"),
    help="Kafka cluster id (lkc-…); repeatable.",
)
@click.option(
    "--granularity",
    type=click.Choice(["PT1M", "PT5M", "PT1H"]),
    default="PT1M",
    show_default=True,
    envvar=env("ccloud_granularity"),
    help="Interval length of the data points.",
)
@click.option(
    "--settle",
    type=FiniteRange(min=0),
    default=300.0,
    show_default=True,
    envvar=env("ccloud_settle"),
    help="Seconds after an interval's end before it is read (the source's settling delay).",
)
@click.option(
    "--interval",
    type=FiniteRange(min=0.1),
    default=60.0,
    show_default=True,
    envvar=env("ccloud_interval"),
    help="Seconds between polls.",
)
@click.option(
    "--url",
    default="https://api.telemetry.confluent.cloud",
    show_default=True,
    envvar=env("ccloud_url"),
    callback=lambda _ctx, _param, value: check_url(value),
    help="Base URL of the Metrics API.",
)
@click.option(
    "--state",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("data/collect-confluent-cloud.json"),
    show_default=True,
    envvar=env("ccloud_state"),
    help="Watermark file (one per cluster).",
)
@click.option(
    "--since",
    envvar=env("ccloud_since"),
    help="RFC 3339 time to start a cluster without a watermark from [default: the last closed"
    " interval].",
)
@_kafka_options
@click.option("--once", is_flag=True, envvar=env("ccloud_once"), help="Catch up once, then exit.")
def confluent_cloud(**options: Any) -> None:
    """Produce/fetch bytes per principal from the Confluent Cloud Metrics API.

    Credentials come from CONFLUENT_CLOUD_API_KEY and CONFLUENT_CLOUD_API_SECRET only.
    """
    from collect.confluent_cloud import ConfluentCloud, parse_time
    from collect.fetch import Http

    key = os.environ.get("CONFLUENT_CLOUD_API_KEY", "")
    secret = os.environ.get("CONFLUENT_CLOUD_API_SECRET", "")
    if not key or not secret:
        raise UsageError("set CONFLUENT_CLOUD_API_KEY and CONFLUENT_CLOUD_API_SECRET")
    since_ms = None
    if options["since"]:
        try:
            since_ms = parse_time(options["since"])
        except ValueError:
            raise UsageError(f"--since {options['since']!r} is not an RFC 3339 time") from None
    collector = ConfluentCloud(
        clusters=list(dict.fromkeys(options["cluster"])),
        producer=_producer(options),
        http=Http(headers=_basic_auth(key, secret)),
        state_path=options["state"],
        granularity=options["granularity"],
        settle=options["settle"],
        url=options["url"],
        since_ms=since_ms,
    )
    run_loop(collector, options["interval"], options["once"])


@collect.command("prometheus")
@click.option(
    "--url",
    multiple=True,
    required=True,
    envvar=env("prometheus_url"),
    callback=lambda _ctx, _param, values: tuple(check_url(v) for v in values),
    help="Endpoint to scrape (one per broker in quota mode); repeatable.",
)
@click.option(
    "--mode",
    type=click.Choice(["quota", "delta"]),
    required=True,
    envvar=env("prometheus_mode"),
    help="quota: jmx_exporter byte-rate gauges; delta: Confluent Cloud export deltas.",
)
@click.option(
    "--interval",
    type=FiniteRange(min=0.1),
    default=15.0,
    show_default=True,
    envvar=env("prometheus_interval"),
    help="Seconds between scrapes.",
)
@click.option(
    "--max-gap",
    type=FiniteRange(min=0),
    default=60.0,
    show_default=True,
    envvar=env("prometheus_max_gap"),
    help="quota: longest span between two points of a series that is integrated.",
)
@click.option(
    "--cluster",
    envvar=env("prometheus_cluster"),
    help="Cluster name on the events [default: the kafka_id label (delta), else 'default'].",
)
@click.option(
    "--produce-metric",
    envvar=env("prometheus_produce_metric"),
    help="Produce metric name [default: kafka_server_produce_byte_rate (quota),"
    " confluent_kafka_server_request_bytes (delta)].",
)
@click.option(
    "--fetch-metric",
    envvar=env("prometheus_fetch_metric"),
    help="Fetch metric name [default: kafka_server_fetch_byte_rate (quota),"
    " confluent_kafka_server_response_bytes (delta)].",
)
@click.option(
    "--state",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("data/collect-prometheus.json"),
    show_default=True,
    envvar=env("prometheus_state"),
    help="Last points and carries (quota) or samples counted (delta).",
)
@_kafka_options
@click.option("--once", is_flag=True, envvar=env("prometheus_once"), help="Scrape once, then exit.")
def prometheus(**options: Any) -> None:
    """Produce/fetch bytes per principal from Prometheus text endpoints.

    Basic auth from CHARGEBACK_SCRAPE_USERNAME / CHARGEBACK_SCRAPE_PASSWORD when set; in delta
    mode otherwise from CONFLUENT_CLOUD_API_KEY / CONFLUENT_CLOUD_API_SECRET.
    """
    from collect.fetch import Http
    from collect.prometheus import ACCEPT, Prometheus

    headers = {"Accept": ACCEPT}
    user = os.environ.get("CHARGEBACK_SCRAPE_USERNAME", "")
    password = os.environ.get("CHARGEBACK_SCRAPE_PASSWORD", "")
    if not user and options["mode"] == "delta":
        user = os.environ.get("CONFLUENT_CLOUD_API_KEY", "")
        password = os.environ.get("CONFLUENT_CLOUD_API_SECRET", "")
    if user:
        headers.update(_basic_auth(user, password))
    collector = Prometheus(
        urls=list(dict.fromkeys(options["url"])),
        mode=options["mode"],
        producer=_producer(options),
        http=Http(headers=headers, attempts=3),
        state_path=options["state"],
        max_gap=options["max_gap"],
        cluster=options["cluster"],
        produce_metric=options["produce_metric"] or "",
        fetch_metric=options["fetch_metric"] or "",
    )
    run_loop(collector, options["interval"], options["once"])
