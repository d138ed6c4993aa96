"""The `chargeback` command line: one click group; every error is one line and an exit code."""

import contextlib
import logging
import sys
from datetime import date
from pathlib import Path
from typing import Any

import click
import duckdb
from confluent_kafka import KafkaError, KafkaException

from chargeback.config import default_map, load_config
from chargeback.errors import ChargebackError, UsageError
from chargeback.options import (
    FiniteRange,
    bootstrap_option,
    check_memory_size,
    check_not_empty,
    db_option,
    env,
    kafka_option_option,
    out_option,
    parse_kafka_options,
    timezone_option,
    topic_option,
)
from collect.cli import collect
from dashboard.cli import serve
from export.schedule_cli import schedule
from localkafka.cli import kafka
from views.rates_cli import rates
from views.store import first_line


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
    config = load_config(config_path)
    ctx.obj = {"config": config}  # `schedule` reads its jobs from it
    ctx.default_map = default_map(main, config)


@main.command()
@bootstrap_option("Kafka bootstrap servers, HOST:PORT[,…].")
@topic_option("The usage-event topic.")
@click.option(
    "--group",
    default="chargeback",
    show_default=True,
    envvar=env("group"),
    callback=check_not_empty,
    help="Consumer group id.",
)
@db_option("The DuckDB store file.")
@timezone_option("Reporting time zone (IANA name): an event's day is its date there.")
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
    type=FiniteRange(min=0.01),
    default=1.0,
    show_default=True,
    envvar=env("batch_seconds"),
    help="Longest a record waits in memory before its batch is applied.",
)
@click.option(
    "--log-interval",
    type=FiniteRange(min=0),
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
    "--publish-interval",
    type=FiniteRange(min=0),
    default=10.0,
    show_default=True,
    envvar=env("publish_interval"),
    help="Seconds the published read copy may lag behind the store (0: no copy).",
)
@click.option(
    "--memory-limit",
    default=None,
    envvar=env("memory_limit"),
    callback=lambda _ctx, _param, value: check_memory_size(value),
    help="DuckDB's memory limit for the store, e.g. 1GB [default: DuckDB's, 80% of RAM].",
)
@kafka_option_option("Extra librdkafka consumer setting KEY=VALUE (SASL, TLS …); repeatable.")
def ingest(**options: Any) -> None:
    """The always-on ingestion service: usage events from Kafka into daily totals in DuckDB."""
    from consumer.service import IngestService, IngestSettings

    settings = IngestSettings(
        bootstrap_servers=options["bootstrap_servers"],
        topic=options["topic"],
        group=options["group"],
        db=options["db"],
        timezone=options["timezone"],
        max_future_seconds=options["max_future"],
        max_record_bytes=options["max_record_bytes"],
        batch_max_records=options["batch_records"],
        batch_max_seconds=options["batch_seconds"],
        log_interval=options["log_interval"],
        metrics_port=options["metrics_port"],
        metrics_host=options["metrics_host"],
        publish_interval=options["publish_interval"],
        memory_limit=options["memory_limit"],
        kafka_config=parse_kafka_options(options["kafka_option"]),
    )
    IngestService(settings).run()


@main.command()
@click.option("--tab", required=True, envvar=env("tab"), help="cost, ingress or egress.")
@click.option("--period", envvar=env("period"), help="7D, 30D, 6M, 12M, YTD or LM.")
@click.option(
    "--as-of",
    envvar=env("as_of"),
    help="The period's last day, YYYY-MM-DD [default: today in --timezone].",
)
@click.option("--from", "first", envvar=env("from"), help="A custom range's first day.")
@click.option("--to", "last", envvar=env("to"), help="A custom range's last day.")
@click.option(
    "--bucket",
    type=click.Choice(["day", "month"]),
    envvar=env("bucket"),
    help="Bucket size of a custom range [default: day].",
)
@click.option(
    "--filter",
    "filter_text",
    envvar=env("filter"),
    help="Only service accounts containing this text (any case).",
)
@click.option("--cluster", envvar=env("cluster"), help="Only this cluster.")
@click.option(
    "--sort",
    envvar=env("sort"),
    help="COLUMN[:asc|:desc]: 'Service Account', a bucket, or Total [default: Total:desc].",
)
@out_option("Folder the CSV is written to.")
@db_option("The DuckDB store (its published copy is read while the service runs).")
@timezone_option("Reporting time zone: what 'today' is.")
def export(**options: Any) -> None:
    """Write Chargeback_<first>_<last>_<Tab>.csv for a tab and period; prints its path last."""
    from export.job import ExportRequest, run_export
    from export.periods import parse_date
    from export.table import Tab

    def date_option(name: str, flag: str) -> date | None:
        text = options[name]
        return None if text is None else parse_date(text, flag)

    if options["bucket"] and options["period"]:
        raise UsageError("--bucket goes with --from/--to; a named period has its own buckets")
    request = ExportRequest(
        tab=Tab.parse(options["tab"]),
        period=options["period"],
        as_of=date_option("as_of", "--as-of"),
        first=date_option("first", "--from"),
        last=date_option("last", "--to"),
        bucket=options["bucket"] or "day",
        filter_text=options["filter_text"],
        cluster=options["cluster"],
        sort=options["sort"],
        out=options["out"],
        db=options["db"],
        timezone=options["timezone"],
    )
    result = run_export(request)
    rates = result.table.rates
    click.echo(
        f"{len(result.table.rows)} service accounts, read from {result.source}"
        f" (data as of {result.data_time_text})",
        err=True,
    )
    if request.tab.id == "cost" and rates.is_default:
        click.echo(
            "note: priced with the default rates; set yours with `chargeback rates set`", err=True
        )
    click.echo(str(result.path))


@main.command()
@bootstrap_option("Use this Kafka instead of starting a local one.", default=None)
@topic_option("The usage-event topic.")
@click.option(
    "--partitions",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    envvar=env("partitions"),
    help="Partitions of the topic, if it is created.",
)
@click.option(
    "--accounts",
    type=click.IntRange(1, 100_000),
    default=40,
    show_default=True,
    envvar=env("accounts"),
    help="Service accounts in the traffic.",
)
@click.option(
    "--events",
    type=click.IntRange(0),
    default=300_000,
    show_default=True,
    envvar=env("events"),
    help="Records in the backfill.",
)
@click.option(
    "--days",
    type=click.IntRange(1, 3660),
    default=400,
    show_default=True,
    envvar=env("days"),
    help="Days the backfill spans, ending now.",
)
@click.option(
    "--rate",
    type=FiniteRange(0, 100_000),
    default=50.0,
    show_default=True,
    envvar=env("rate"),
    help="Live events per second after the backfill.",
)
@click.option(
    "--seed",
    type=int,
    default=2026,
    show_default=True,
    envvar=env("seed"),
    help="The same seed gives the same traffic.",
)
@db_option("The DuckDB store file.")
@out_option("Folder for the CSV exports.")
@click.option(
    "--kafka-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("data/kafka"),
    show_default=True,
    envvar=env("kafka_dir"),
    help="Where the local Kafka keeps its data.",
)
@timezone_option("Reporting time zone (IANA name).")
@click.option(
    "--traffic-only",
    is_flag=True,
    envvar=env("traffic_only"),
    help="Only produce the traffic: no service, no exports (for docker compose).",
)
@click.option(
    "--live/--no-live",
    default=True,
    show_default=True,
    envvar=env("live"),
    help="Keep feeding live traffic until Ctrl-C.",
)
def demo(**options: Any) -> None:
    """The whole thing on this machine: Kafka, traffic, the service, every export, a summary."""
    from demo.run import DemoSettings, run_demo

    settings = DemoSettings(
        bootstrap_servers=options["bootstrap_servers"],
        topic=options["topic"],
        partitions=options["partitions"],
        accounts=options["accounts"],
        events=options["events"],
        days=options["days"],
        rate=options["rate"],
        seed=options["seed"],
        db=options["db"],
        out=options["out"],
        kafka_dir=options["kafka_dir"],
        timezone=options["timezone"],
        traffic_only=options["traffic_only"],
        live=options["live"],
    )
    run_demo(settings, say=say_quietly_failing)


def say_quietly_failing(line: str) -> None:
    """Progress on stderr; a closed pipe (`… | head`, a dead `tee`) must not stop the clean-up."""
    with contextlib.suppress(OSError):
        click.echo(line, err=True)


main.add_command(collect)
main.add_command(kafka)
main.add_command(rates)
main.add_command(schedule)
main.add_command(serve)


def run(args: list[str] | None = None) -> int:
    """Run the command and return its exit code: errors become one line on stderr."""
    try:
        result = main.main(args=args, prog_name="chargeback", standalone_mode=False)
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
    except (duckdb.Error, KafkaException, OSError) as error:
        # Unexpected, but still one line; -v logs the traceback for a bug report.
        logging.getLogger("chargeback").debug("failure", exc_info=True)
        message, code = failure_line(error)
        click.echo(f"chargeback: error: {message}", err=True)
        return code
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # a bug: still one line for the user, the traceback with -v
        logging.getLogger("chargeback").debug("internal error", exc_info=True)
        click.echo(
            f"chargeback: internal error: {type(error).__name__}: {first_line(error)}"
            " (run with -v for details, and please report it)",
            err=True,
        )
        return 1
    # Without standalone mode click returns ctx.exit()'s code instead of exiting with it.
    return result if isinstance(result, int) else 0


def failure_line(error: duckdb.Error | KafkaException | OSError) -> tuple[str, int]:
    """The one line and exit code for a failure no command turned into a ChargebackError."""
    if isinstance(error, KafkaException) and error.args and isinstance(error.args[0], KafkaError):
        kafka_error = error.args[0]
        # librdkafka refuses a setting when the client is made: a bad --kafka-option.
        code = 2 if kafka_error.code() == KafkaError._INVALID_ARG else 1
        return f"kafka: {kafka_error.str()}", code
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or first_line(error)}", 1
    return f"{type(error).__name__}: {first_line(error)}", 1


def main_entry() -> None:
    sys.exit(run())
