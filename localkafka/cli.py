"""``chargeback kafka start|stop|status``: the local single-node Kafka from the command line.

Errors are raised as ``chargeback.errors.ChargebackError``; the main CLI turns them into one
line and an exit code. ``python -m localkafka.cli`` runs this group on its own.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from chargeback.errors import ChargebackError
from chargeback.options import check_folder
from localkafka import broker

_DIR_OPTION = click.option(
    "--dir",
    "dir_",
    default="data/kafka",
    show_default=True,
    envvar="CHARGEBACK_KAFKA_DIR",
    callback=check_folder,
    help="Directory holding the broker's config, data, logs and pid file.",
)


def _progress(message: str) -> None:
    click.echo(message, err=True)


@click.group("kafka")
def kafka() -> None:
    """A local single-node Apache Kafka (KRaft) for the demo and the tests."""


@kafka.command("start")
@_DIR_OPTION
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=broker.DEFAULT_PORT,
    show_default=True,
    envvar="CHARGEBACK_KAFKA_PORT",
    help="Client port on 127.0.0.1; 0 picks a free one.",
)
def start_cmd(dir_: Path, port: int) -> None:
    """Start the broker in the background; print its bootstrap address last."""
    running = broker.status(dir_)
    if running is not None:
        asked = port not in (0, broker.DEFAULT_PORT) and not running.endswith(f":{port}")
        moved = f", not on --port {port}: stop it first to move it" if asked else ""
        _progress(f"Kafka already running in {dir_} at {running}{moved}")
        click.echo(running)
        return
    address = broker.start(dir_, port, progress=_progress)
    _progress("Kafka is serving")
    click.echo(address)


@kafka.command("stop")
@_DIR_OPTION
def stop_cmd(dir_: Path) -> None:
    """Stop the broker (SIGTERM, then SIGKILL after 30 s)."""
    if broker.stop(dir_):
        click.echo("stopped")
    else:
        click.echo("not running")


@kafka.command("status")
@_DIR_OPTION
@click.pass_context
def status_cmd(ctx: click.Context, dir_: Path) -> None:
    """Print the bootstrap address and exit 0 if running; print "not running", exit 1."""
    address = broker.status(dir_)
    if address is None:
        click.echo("not running")
        ctx.exit(1)
    click.echo(address)


def main() -> None:
    """Run the ``kafka`` group on its own, errors as one line."""
    try:
        kafka(prog_name="kafka")
    except ChargebackError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
