"""The `chargeback` command line: one click group; every error is one line and an exit code."""

import logging
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from chargeback.config import default_map, load_config
from chargeback.errors import ChargebackError, UsageError
from localkafka.cli import kafka


def env(name: str) -> str:
    """The environment variable that sets option `name` (shared by every command that has it)."""
    return "CHARGEBACK_" + name.upper()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar=env("config"),
    help="TOML config file [default: ./chargeback.toml when it exists].",
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, verbose: bool) -> None:
    """kafka-chargeback: who produces and consumes how many bytes on your Kafka, and the cost."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        stream=sys.stderr,
    )
    ctx.default_map = default_map(main, load_config(config_path))


def parse_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            f"unknown time zone {value!r}: use an IANA name such as Europe/Berlin"
        ) from None
    return value


def parse_kafka_options(items: tuple[str, ...]) -> dict[str, str]:
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--kafka-option takes KEY=VALUE, got {item!r}")
        options[key.strip()] = value
    return options


@main.command()
@click.option(
    "--bootstrap-servers",
    default="127.0.0.1:9092",
    show_default=True,
    envvar=env("bootstrap_servers"),
    help="Kafka bootstrap servers, HOST:PORT[,…].",
)
@click.option(
    "--topic",
    default="chargeback.usage",
    show_default=True,
    envvar=env("topic"),
    help="The usage-event topic.",
)
@click.option(
    "--group",
    default="chargeback",
    show_default=True,
    envvar=env("group"),
    help="Consumer group id.",
)
@click.option(
    "--db",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("data/chargeback.duckdb"),
    show_default=True,
    envvar=env("db"),
    help="The DuckDB store file.",
)
@click.option(
    "--timezone",
    default="UTC",
    show_default=True,
    envvar=env("timezone"),
    help="Reporting time zone (IANA name): an event's day is its date there.",
)
@click.option(
    "--max-future",
    type=click.IntRange(min=0),
    default=3600,
    show_default=True,
    envvar=env("max_future"),
    help="Seconds an event's timestamp may be ahead of the clock before it is rejected.",
)
@click.option(
    "--max-record-bytes",
    type=click.IntRange(min=1),
    default=1024 * 1024,
    show_default=True,
    envvar=env("max_record_bytes"),
    help="Records larger than this are rejected unparsed.",
)
@click.option(
    "--batch-records",
    type=click.IntRange(min=1),
    default=200_000,
    show_default=True,
    envvar=env("batch_records"),
    help="Most records applied in one transaction.",
)
@click.option(
    "--batch-seconds",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    envvar=env("batch_seconds"),
    help="Longest a record waits in memory before its batch is applied.",
)
@click.option(
    "--log-interval",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    envvar=env("log_interval"),
    help="Seconds between progress lines (0: none).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    envvar=env("metrics_port"),
    help="Serve /metrics and /healthz here (0: off).",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    envvar=env("metrics_host"),
    help="Address the metrics endpoint binds to.",
)
@click.option(
    "--kafka-option",
    "kafka_option",
    multiple=True,
    envvar=env("kafka_option"),
    help="Extra librdkafka consumer setting KEY=VALUE (SASL, TLS …); repeatable.",
)
def ingest(**options: Any) -> None:
    """The always-on ingestion service: usage events from Kafka into daily totals in DuckDB."""
    from consumer.service import IngestService, IngestSettings

    settings = IngestSettings(
        bootstrap_servers=options["bootstrap_servers"],
        topic=options["topic"],
        group=options["group"],
        db=options["db"],
        timezone=parse_timezone(options["timezone"]),
        max_future_seconds=options["max_future"],
        max_record_bytes=options["max_record_bytes"],
        batch_max_records=options["batch_records"],
        batch_max_seconds=options["batch_seconds"],
        log_interval=options["log_interval"],
        metrics_port=options["metrics_port"],
        metrics_host=options["metrics_host"],
        kafka_config=parse_kafka_options(options["kafka_option"]),
    )
    IngestService(settings).run()


main.add_command(kafka)


def run(args: list[str] | None = None) -> int:
    """Run the command and return its exit code: errors become one line on stderr."""
    try:
        main.main(args=args, prog_name="chargeback", standalone_mode=False)
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.Abort:
        click.echo("chargeback: aborted", err=True)
        return 1
    except click.ClickException as error:
        hint = " (see --help)" if isinstance(error, click.UsageError) else ""
        click.echo(f"chargeback: error: {error.format_message()}{hint}", err=True)
        return error.exit_code
    except ChargebackError as error:
        click.echo(f"chargeback: error: {error}", err=True)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


def main_entry() -> None:
    sys.exit(run())
