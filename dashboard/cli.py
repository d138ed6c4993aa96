"""`chargeback serve`: the Chargeback page in a browser (docs/dashboard.md)."""

from pathlib import Path

import click

from chargeback.options import db_option, env, timezone_option


@click.command("serve")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar=env("host"),
    help="Address to bind; anything but loopback needs --token.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    envvar=env("port"),
    help="Port to bind (0: any free port).",
)
@db_option("The DuckDB store (its published copy is read while the service runs).")
@timezone_option("Reporting time zone: what 'today' is.")
@click.option(
    "--token",
    envvar=env("token"),
    help="Bearer token that changing rates requires (the page asks for it).",
)
def serve(host: str, port: int, db: Path, timezone: str, token: str | None) -> None:
    """Serve the Chargeback page: tabs, periods, chart, table, rates, CSV export."""
    from dashboard.api import Settings
    from dashboard.server import serve as run_server

    settings = Settings(db=db, timezone=timezone, token=token or None)
    run_server(host, port, settings, say=lambda line: click.echo(line, err=True))
