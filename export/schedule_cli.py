"""`chargeback schedule`: the always-on process that runs the config file's export jobs."""

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import click

from chargeback.config import load_config
from chargeback.errors import ChargebackError
from chargeback.options import db_option, env, out_option, timezone_option
from export.schedule import Defaults, Scheduler, parse_jobs, select_jobs

log = logging.getLogger("chargeback.schedule")


@click.command()
@db_option("The DuckDB store (its published copy is read while the service runs).")
@timezone_option("Reporting time zone: cron times are read there, and it dates each run.")
@out_option("Folder for jobs that name none.")
@click.option(
    "--once",
    is_flag=True,
    envvar=env("once"),
    help="Run the jobs now, one after another, and exit (1 if any failed).",
)
@click.option("--job", "job_name", metavar="NAME", envvar=env("job"), help="Only this job.")
@click.pass_context
def schedule(
    ctx: click.Context, db: Path, timezone: str, out: Path, once: bool, job_name: str | None
) -> None:
    """Run the export jobs of the config's [[schedule.job]] tables on their cron schedules."""
    jobs = select_jobs(parse_jobs(raw_config(ctx)), job_name)
    scheduler = Scheduler(jobs, Defaults(db=db, timezone=timezone, out=out))
    if once:
        failed = scheduler.run_once()
        if failed:
            raise ChargebackError(
                f"{len(failed)} of {len(jobs)} job(s) failed: {', '.join(failed)}"
            )
        return
    stop = threading.Event()
    with stop_on_signals(stop):
        scheduler.run(stop)
    log.info("schedule stopped")


def raw_config(ctx: click.Context) -> dict[str, Any]:
    """The parsed config file: from the main group when it keeps it, else loaded again."""
    root = ctx.find_root()
    if isinstance(root.obj, dict) and isinstance(root.obj.get("config"), dict):
        return root.obj["config"]  # type: ignore[no-any-return]
    # The group reads --config / CHARGEBACK_CONFIG into this parameter; run standalone it is
    # absent, and load_config(None) reads ./chargeback.toml as the group would.
    path = root.params.get("config_path")
    return load_config(path if isinstance(path, Path) else None)


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set `stop` (the loop's sleep wakes at once), then handlers go back."""

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()  # only this: logging from a signal handler can deadlock on its lock

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
