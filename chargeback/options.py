"""Options shared by several commands, so each is spelled, defaulted and checked once."""

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from chargeback.errors import UsageError

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_DB = Path("data/chargeback.duckdb")


def env(name: str) -> str:
    """The environment variable of option `name`, shared by every command that has it."""
    return "CHARGEBACK_" + name.upper()


class FiniteRange(click.FloatRange):
    """click.FloatRange that also refuses inf and nan, which a plain range check lets through."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


MEMORY_SIZE = re.compile(r"[0-9]+(\.[0-9]+)? ?(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)


def check_memory_size(value: str | None) -> str | None:
    """A size DuckDB's memory_limit takes: a number and a unit, e.g. 512MB, 1.5GiB."""
    if value is None:
        return None
    text = value.strip()
    if not MEMORY_SIZE.fullmatch(text):
        raise UsageError(f"--memory-limit {value!r} is not a size such as 512MB or 2GiB")
    return text


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin"
        ) from None
    return name


def db_option(help: str) -> Callable[[F], F]:
    return click.option(
        "--db",
        type=click.Path(path_type=Path, dir_okay=False),
        default=DEFAULT_DB,
        show_default=True,
        envvar=env("db"),
        callback=check_db_path,
        help=help,
    )


def timezone_option(help: str) -> Callable[[F], F]:
    return click.option(
        "--timezone",
        default="UTC",
        show_default=True,
        envvar=env("timezone"),
        callback=lambda _ctx, _param, value: check_timezone(value),
        help=help,
    )


def check_bootstrap(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """HOST:PORT[,HOST:PORT…] with ports in range: librdkafka wraps 99999 round to 34463."""
    if value is None:
        return None
    for server in value.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise click.BadParameter(f"{server.strip()!r} is not HOST:PORT with a port 1-65535")
    return value


def bootstrap_option(help: str, default: str | None = "127.0.0.1:9092") -> Callable[[F], F]:
    return click.option(
        "--bootstrap-servers",
        default=default,
        show_default=default is not None,
        envvar=env("bootstrap_servers"),
        callback=check_bootstrap,
        help=help,
    )


def check_db_path(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    if not value.name:  # "" (click makes it ".") or a path ending in a folder
        raise click.BadParameter("must name the store's file, e.g. data/chargeback.duckdb")
    return value


def check_not_empty(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None and not str(value).strip():
        raise click.BadParameter("must not be empty")
    return value


# Kafka's own rule for topic names: a name outside it can never exist, so waiting for it is moot.
TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]{1,249}")


def check_topic(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not TOPIC_NAME.fullmatch(value) or value in (".", ".."):
        raise click.BadParameter(
            f"{value!r} is not a Kafka topic name (1-249 of the letters a-z A-Z, digits, '.',"
            " '_' and '-'; not '.' or '..')"
        )
    return value


def topic_option(help: str) -> Callable[[F], F]:
    return click.option(
        "--topic",
        default="chargeback.usage",
        show_default=True,
        envvar=env("topic"),
        callback=check_topic,
        help=help,
    )


def kafka_option_option(help: str) -> Callable[[F], F]:
    return click.option(
        "--kafka-option", "kafka_option", multiple=True, envvar=env("kafka_option"), help=help
    )


def parse_kafka_options(items: tuple[str, ...]) -> dict[str, str]:
    """`--kafka-option KEY=VALUE` pairs as a librdkafka config dict."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--kafka-option takes KEY=VALUE, got {item!r}")
        options[key.strip()] = value
    return options


def check_folder(ctx: click.Context, param: click.Parameter, value: str | Path) -> Path:
    """A folder option's value; an empty one is refused (click would read it as '.')."""
    if not str(value).strip():
        raise click.BadParameter("must name a folder ('.' for this one)")
    folder = Path(value)
    if folder.is_file():
        raise click.BadParameter(f"{folder} is a file, not a folder")
    return folder


def out_option(help: str) -> Callable[[F], F]:
    """The folder CSV files go to."""
    return click.option(
        "--out",
        default="exports",
        show_default=True,
        envvar=env("out"),
        callback=check_folder,
        help=help,
    )
