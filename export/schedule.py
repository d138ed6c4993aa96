"""Scheduled exports: the config file's `[[schedule.job]]` tables, run on their cron times.

A job is parsed strictly when the service starts, so a typo fails the start, not the first run
a month later. Semantics (docs/schedule.md):

- Cron times are wall-clock times in the reporting time zone (`--timezone`).
- A run's `as_of` is the date there at the *scheduled* fire time, not when the run began: the
  monthly `period = "LM"` job on `0 6 1 * *` always exports the month before the 1st it fired on.
- A run that is late (another job was running, the clock jumped ahead) runs once, for the most
  recent fire time that has passed; older passed ones are skipped, and fire times while the
  process was down are never replayed.
- A failing run logs one line; the job's next run happens as usual.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

from chargeback.errors import ChargebackError, UsageError
from export.cron import CronSchedule
from export.job import ExportRequest, ExportResult, run_export
from export.periods import BUCKETS, Bucket, custom_period, parse_date, resolve_period
from export.table import NAME_COLUMN, TOTAL_COLUMN, Tab, parse_sort
from views.store import first_line

log = logging.getLogger("chargeback.schedule")

JOB_KEYS = (
    "name",
    "cron",
    "tab",
    "period",
    "from",
    "to",
    "bucket",
    "filter",
    "cluster",
    "sort",
    "out",
)

# Sleeping in slices this long bounds how late a clock jump is noticed.
SLICE_SECONDS = 1.0
# A clock going back more than this (an NTP step, a fixed wrong clock) makes every job's next fire
# time be recomputed; smaller steps only delay a run by as much.
CLOCK_JUMP = timedelta(seconds=60)


@dataclass(frozen=True)
class Job:
    """One `[[schedule.job]]` table, checked: a named period, or a fixed from..to range."""

    name: str
    cron: CronSchedule
    tabs: tuple[Tab, ...]
    period: str | None = None  # upper case, one of PERIOD_NAMES
    first: date | None = None
    last: date | None = None
    bucket: Bucket = "day"
    filter_text: str | None = None
    cluster: str | None = None
    sort: str | None = None
    out: Path | None = None  # None: the schedule's --out


@dataclass(frozen=True)
class Defaults:
    """What the `schedule` command's options give every job: store, time zone, output folder."""

    db: Path
    timezone: str
    out: Path


def requests_for(job: Job, as_of: date, defaults: Defaults) -> list[ExportRequest]:
    """The exports of one run of `job` (one per tab), as `chargeback export --as-of` asks."""
    return [
        ExportRequest(
            tab=tab,
            period=job.period,
            as_of=as_of if job.period else None,
            first=job.first,
            last=job.last,
            bucket=job.bucket,
            filter_text=job.filter_text,
            cluster=job.cluster,
            sort=job.sort,
            out=job.out or defaults.out,
            db=defaults.db,
            timezone=defaults.timezone,
        )
        for tab in job.tabs
    ]


# --- parsing -----------------------------------------------------------------------------------


def parse_jobs(config: Mapping[str, Any]) -> list[Job]:
    """The jobs of a parsed config file, in file order; any problem is one UsageError line."""
    table = config.get("schedule", {})
    if not isinstance(table, dict):
        raise UsageError("config: [schedule] must be a table")
    for key, value in table.items():
        # config.default_map checks the plain options of [schedule]; nested tables are ours.
        if key != "job" and (isinstance(value, dict) or _is_table_array(value)):
            raise UsageError(
                f"config: [schedule.{key}] is not a schedule setting: jobs are [[schedule.job]]"
            )
    entries = table.get("job", [])
    if not _is_table_array(entries) and entries != []:
        raise UsageError(
            "config: schedule jobs are [[schedule.job]] tables (double brackets), one per job"
        )
    jobs: list[Job] = []
    for index, entry in enumerate(cast(list[dict[str, Any]], entries), start=1):
        job = _parse_job(entry, index)
        if any(job.name == other.name for other in jobs):
            raise UsageError(f"config: [[schedule.job]] name {job.name!r} is used twice")
        jobs.append(job)
    return jobs


def select_jobs(jobs: Sequence[Job], name: str | None) -> list[Job]:
    """All jobs, or the one called `name`; none at all is an error, not an idle service."""
    if not jobs:
        raise UsageError(
            "the config has no [[schedule.job]] tables: nothing to schedule (docs/schedule.md)"
        )
    if name is None:
        return list(jobs)
    chosen = [job for job in jobs if job.name == name]
    if not chosen:
        names = ", ".join(job.name for job in jobs)
        raise UsageError(f"no job named {name!r} in the config; its jobs: {names}")
    return chosen


def _is_table_array(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _parse_job(entry: dict[str, Any], index: int) -> Job:
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise UsageError(f"config: [[schedule.job]] #{index} needs a name (a non-empty string)")
    where = f"config: [[schedule.job]] {name!r}"
    unknown = sorted(set(entry) - set(JOB_KEYS))
    if unknown:
        raise UsageError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(JOB_KEYS)}"
        )
    try:
        return _build_job(name, entry)
    except UsageError as error:
        raise UsageError(f"{where}: {error}") from None


def _build_job(name: str, entry: dict[str, Any]) -> Job:
    cron_text = _text(entry, "cron")
    if cron_text is None:
        raise UsageError('needs cron, e.g. cron = "0 6 1 * *" (06:00 on the 1st)')
    cron = CronSchedule.parse(cron_text)
    tabs = _tabs(entry.get("tab"))
    period = _text(entry, "period")
    first, last = _date(entry, "from"), _date(entry, "to")
    bucket = entry.get("bucket", "day")
    if period is not None:
        if first is not None or last is not None:
            raise UsageError("give either period or from/to, not both")
        if "bucket" in entry:
            raise UsageError("bucket goes with from/to; a period has its own buckets")
        period = resolve_period(period, date(2000, 1, 1)).name  # checks and upper-cases the name
        # A relative period's bucket columns move from run to run: sorting by one cannot last.
        header = [NAME_COLUMN, TOTAL_COLUMN]
    elif first is not None and last is not None:
        if bucket not in BUCKETS:
            raise UsageError(f"bucket must be 'day' or 'month', got {bucket!r}")
        fixed = custom_period(first, last, bucket)
        header = [NAME_COLUMN, *map(fixed.bucket_label, fixed.buckets()), TOTAL_COLUMN]
    else:
        raise UsageError("needs period (7D, 30D, 6M, 12M, YTD, LM) or both from and to")
    sort = _text(entry, "sort")
    parse_sort(sort, header)
    out = _text(entry, "out")
    if out == "":
        raise UsageError("out must name a folder")
    return Job(
        name=name,
        cron=cron,
        tabs=tabs,
        period=period,
        first=first,
        last=last,
        bucket=cast(Bucket, bucket),
        filter_text=_text(entry, "filter") or None,
        cluster=_text(entry, "cluster") or None,
        sort=sort or None,
        out=None if out is None else Path(out),
    )


def _text(entry: dict[str, Any], key: str) -> str | None:
    value = entry.get(key)
    if value is not None and not isinstance(value, str):
        raise UsageError(f"{key} must be a string, got {value!r}")
    return value


def _tabs(value: object) -> tuple[Tab, ...]:
    """`tab`: one name, a list of names, or "all"; repeated names count once."""
    if value is None:
        raise UsageError('needs tab: cost, ingress, egress, a list of them, or "all"')
    if isinstance(value, str) and value.strip().lower() == "all":
        return tuple(Tab)
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise UsageError(f'tab must be a name, a list of names, or "all", got {value!r}')
    return tuple(dict.fromkeys(Tab.parse(n) for n in names))


def _date(entry: dict[str, Any], key: str) -> date | None:
    """A TOML date (`2026-01-01`) or the same as a string; a date-time is refused."""
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return parse_date(value, key)
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    raise UsageError(f"{key} must be a date YYYY-MM-DD, got {value!r}")


# --- running -----------------------------------------------------------------------------------


def _utc_now() -> datetime:
    return datetime.now(UTC)


def describe(error: BaseException) -> str:
    """One line for the log: our errors speak for themselves, others are named by type."""
    if isinstance(error, ChargebackError):
        return first_line(error)
    return f"{type(error).__name__}: {first_line(error)}"


class Scheduler:
    """Runs jobs on their cron times. `now`, `sleep` and `export` are injectable for tests.

    `sleep` defaults to waiting on the stop event, so a signal ends the wait at once; a test's
    fake `sleep` advances a fake `now`.
    """

    def __init__(
        self,
        jobs: Sequence[Job],
        defaults: Defaults,
        *,
        now: Callable[[], datetime] = _utc_now,
        sleep: Callable[[float], object] | None = None,
        export: Callable[[ExportRequest], ExportResult] = run_export,
        slice_seconds: float = SLICE_SECONDS,
    ) -> None:
        self.jobs = tuple(jobs)
        self.defaults = defaults
        self.zone = ZoneInfo(defaults.timezone)
        self._now = now
        self._sleep = sleep
        self._export = export
        self._slice = slice_seconds

    def run_job(self, job: Job, fire: datetime) -> bool:
        """One run, as of `fire`'s date in the reporting zone; False (and one line) on failure."""
        as_of = fire.astimezone(self.zone).date()
        try:
            for request in requests_for(job, as_of, self.defaults):
                result = self._export(request)
                count = len(result.table.rows)
                log.info(
                    "job %s: wrote %s (%d account%s)",
                    job.name,
                    result.path,
                    count,
                    "" if count == 1 else "s",
                )
        except Exception as error:  # any failure loses this run only; the schedule goes on
            log.error("job %s failed: %s", job.name, describe(error))
            log.debug("job %s failure detail", job.name, exc_info=True)
            return False
        return True

    def run_once(self) -> list[str]:
        """Run every job now, one after another; the names of those that failed."""
        fire = self._now()
        return [job.name for job in self.jobs if not self.run_job(job, fire)]

    def next_fire(self, job: Job, after: datetime) -> datetime:
        """The job's first fire time strictly after `after`, in UTC.

        Cron is matched in the reporting zone, but the loop compares in UTC: aware datetimes of one
        zone compare by wall clock, which is wrong in a fall-back hour.
        """
        return job.cron.next_after(after.astimezone(self.zone)).astimezone(UTC)

    def latest_fire(self, job: Job, due: datetime, now: datetime) -> datetime:
        """The most recent fire time in [due, now]: a late job runs once, for the newest one."""
        found = due
        # Look back in growing steps for a fire time near `now`, then walk forward to the last;
        # a plain walk from `due` would take ages for a minutely job after a long suspend.
        span = timedelta(minutes=1)
        while now - span > due:
            candidate = self.next_fire(job, now - span)
            if candidate <= now:
                found = candidate
                break
            span *= 2
        while (following := self.next_fire(job, found)) <= now:
            found = following
        return found

    def run(self, stop: threading.Event) -> None:
        """Run jobs on their schedules until `stop` is set (checked between slices and runs)."""
        sleep = self._sleep or stop.wait
        now = self._now().astimezone(UTC)
        due = {job.name: self.next_fire(job, now) for job in self.jobs}
        for job in self.jobs:
            log.info("job %s: next run %s", job.name, self._local(due[job.name]))
        last_seen = now
        while not stop.is_set():
            now = self._now().astimezone(UTC)
            if now < last_seen - CLOCK_JUMP:
                # Fire times computed from a later clock could be far off now; a run repeated
                # because of this rewrites the same file, so recomputing is safe.
                log.warning("the clock went back from %s to %s", last_seen, now)
                due = {job.name: self.next_fire(job, now) for job in self.jobs}
            last_seen = now
            ready = sorted(
                (due[job.name], index)
                for index, job in enumerate(self.jobs)
                if due[job.name] <= now
            )
            if not ready:
                earliest = min(due.values())
                sleep(min((earliest - now).total_seconds(), self._slice))
                continue
            for scheduled, index in ready:
                if stop.is_set():
                    return
                job = self.jobs[index]
                fire = self.latest_fire(job, scheduled, now)
                if fire != scheduled:
                    log.warning(
                        "job %s: late; runs for %s, skipping the run(s) due from %s",
                        job.name,
                        self._local(fire),
                        self._local(scheduled),
                    )
                self.run_job(job, fire)
                due[job.name] = self.next_fire(job, now)  # fire <= now: times passed are done

    def _local(self, moment: datetime) -> str:
        return moment.astimezone(self.zone).isoformat(timespec="minutes")
