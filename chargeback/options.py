"""Options shared by several commands, so each is spelled, defaulted and checked once."""

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


def bootstrap_option(help: str, default: str | None = "127.0.0.1:9092") -> Callable[[F], F]:
    return click.option(
        "--bootstrap-servers",
        default=default,
        show_default=default is not None,
        envvar=env("bootstrap_servers"),
        help=help,
    )


def topic_option(help: str) -> Callable[[F], F]:
    return click.option(
        "--topic",
        default="chargeback.usage",
        show_default=True,
        envvar=env("topic"),
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


def out_option(help: str) -> Callable[[F], F]:
    """The folder CSV files go to."""
    return click.option(
        "--out",
        type=click.Path(path_type=Path, file_okay=False),
        default=Path("exports"),
        show_default=True,
        envvar=env("out"),
        help=help,
    )
