"""Scheduled exports: strict job parsing, the loop on a fake clock, failures, stop, end to end."""

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest
from click.testing import CliRunner

from chargeback.config import default_map
from chargeback.errors import ChargebackError, UsageError
from consumer.batch import Batch
from consumer.events import DayResolver, EventParser
from consumer.writer import StoreWriter
from export.job import ExportRequest, ExportResult
from export.schedule import Defaults, Job, Scheduler, parse_jobs, requests_for, select_jobs
from export.schedule_cli import schedule
from export.table import Tab
from views.store import open_store

REPO = Path(__file__).resolve().parent.parent
BERLIN = "Europe/Berlin"


def jobs_of(text: str) -> list[Job]:
    return parse_jobs(tomllib.loads(text))


# --- parsing -----------------------------------------------------------------------------------

GOOD = """
db = "/srv/store.duckdb"
out = "/srv/exports"

[schedule]
timezone = "Europe/Berlin"

[[schedule.job]]
name = "monthly finance"
cron = "0 6 1 * *"
tab = "all"
period = "lm"

[[schedule.job]]
name = "daily"
cron = "@daily"
tab = ["Ingress", "egress", "ingress"]
period = "7D"
filter = "team-"
cluster = "prod"
sort = "Service Account:asc"
out = "daily"

[[schedule.job]]
name = "january"
cron = "30 7 * * mon"
tab = "cost"
from = 2026-01-01
to = "2026-01-31"
bucket = "month"
sort = "2026-01"
"""


def test_a_good_config_gives_its_jobs_in_file_order() -> None:
    monthly, daily, january = jobs_of(GOOD)
    assert monthly.name == "monthly finance"
    assert monthly.cron.text == "0 6 1 * *"
    assert monthly.tabs == (Tab.COST, Tab.INGRESS, Tab.EGRESS)
    assert (monthly.period, monthly.first, monthly.out) == ("LM", None, None)
    assert daily.tabs == (Tab.INGRESS, Tab.EGRESS)  # repeated names count once
    assert (daily.filter_text, daily.cluster, daily.sort) == (
        "team-",
        "prod",
        "Service Account:asc",
    )
    assert daily.out == Path("daily")
    assert (january.period, january.first, january.last) == (
        None,
        date(2026, 1, 1),
        date(2026, 1, 31),
    )
    assert january.bucket == "month"


def test_a_config_without_jobs_has_none_and_the_service_refuses_to_idle() -> None:
    assert parse_jobs({}) == []
    assert parse_jobs({"schedule": {"db": "x"}}) == []
    with pytest.raises(UsageError, match=r"no \[\[schedule.job\]\] tables"):
        select_jobs([], None)


def test_select_jobs_by_name() -> None:
    jobs = jobs_of(GOOD)
    assert [job.name for job in select_jobs(jobs, "daily")] == ["daily"]
    with pytest.raises(UsageError, match=r"no job named 'dialy'.*monthly finance, daily, january"):
        select_jobs(jobs, "dialy")


JOB = '[[schedule.job]]\nname = "j"\ncron = "0 6 1 * *"\ntab = "cost"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (JOB + 'period = "LM"\nperod = "LM"\n', r"'j': unknown key\(s\) perod; known: name,"),
        (
            JOB.replace("0 6 1 * *", "0 6 1 *") + 'period = "LM"',
            r"'j': cron expression .* 5 fields",
        ),
        (JOB.replace("0 6 1 * *", "0 25 * * *") + 'period = "LM"', r"'j': .*hour field '25'"),
        (JOB.replace("0 6 1 * *", "0 0 30 2 *") + 'period = "LM"', r"'j': .* never runs"),
        (JOB.replace("0 6 1 * *", "@fortnightly") + 'period = "LM"', r"'j': unknown cron macro"),
        (JOB.replace('"cost"', '"costs"') + 'period = "LM"', r"'j': unknown tab 'costs'"),
        (JOB.replace('"cost"', "[]") + 'period = "LM"', r"'j': tab must be a name, a list"),
        (JOB.replace('"cost"', "3") + 'period = "LM"', r"'j': tab must be"),
        (JOB.replace('tab = "cost"\n', "") + 'period = "LM"', r"'j': needs tab"),
        (JOB + 'period = "LQ"', r"'j': unknown period 'LQ'"),
        (JOB + "period = 7", r"'j': period must be a string, got 7"),
        (JOB, r"'j': needs period .* or both from and to"),
        (JOB + "from = 2026-01-01", r"'j': needs period"),
        (JOB + 'period = "LM"\nfrom = 2026-01-01', r"'j': give either period or from/to"),
        (JOB + 'period = "LM"\nbucket = "day"', r"'j': bucket goes with from/to"),
        (JOB + "from = 2026-02-01\nto = 2026-01-01", r"'j': .*2026-02-01 is after its last"),
        (JOB + "from = 2026-01-01T00:00:00Z\nto = 2026-01-02", r"'j': from must be a date"),
        (JOB + 'from = "2026-1-1"\nto = 2026-01-02', r"'j': from must be a date YYYY-MM-DD"),
        (JOB + 'from = 2026-01-01\nto = 2026-01-02\nbucket = "week"', r"'j': bucket must be"),
        (JOB + 'period = "LM"\nsort = "2026-01-05"', r"'j': cannot sort by '2026-01-05'"),
        (JOB + 'period = "LM"\nout = ""', r"'j': out must name a folder"),
        (JOB.replace('name = "j"\n', "") + 'period = "LM"', r"#1 needs a name"),
        (JOB.replace('name = "j"', "name = 1") + 'period = "LM"', r"#1 needs a name"),
        (JOB.replace('cron = "0 6 1 * *"\n', "") + 'period = "LM"', r"'j': needs cron"),
        (
            JOB + 'period = "LM"\n' + JOB + 'period = "7D"',
            r"name 'j' is used twice",
        ),
        (
            '[schedule.job]\nname = "j"\ncron = "@daily"\ntab = "cost"\nperiod = "LM"',
            r"jobs are \[\[schedule.job\]\] tables \(double brackets\)",
        ),
        ('[[schedule.jobs]]\nname = "j"', r"\[schedule.jobs\] is not a schedule setting"),
        ('schedule = "daily"', r"\[schedule\] must be a table"),
    ],
)
def test_a_bad_job_fails_at_start_naming_it(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        jobs_of(text)
    assert "\n" not in str(caught.value)


def test_as_of_is_the_fire_date_so_lm_on_the_1st_is_the_month_before() -> None:
    (job,) = jobs_of(JOB + 'period = "LM"')
    defaults = Defaults(Path("s.duckdb"), BERLIN, Path("out"))
    (request,) = requests_for(job, date(2026, 3, 1), defaults)
    assert (request.period, request.as_of, request.out) == ("LM", date(2026, 3, 1), Path("out"))
    assert (request.db, request.timezone) == (Path("s.duckdb"), BERLIN)


# --- the loop on a fake clock ------------------------------------------------------------------


class FakeClock:
    """`now` and `sleep` for the scheduler: sleeping moves the clock; past `end` it sets `stop`."""

    def __init__(self, start: datetime, end: datetime, stop: threading.Event) -> None:
        self.moment = start
        self.end = end
        self.stop = stop
        self.sleeps = 0

    def now(self) -> datetime:
        return self.moment

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps += 1
        self.moment += timedelta(seconds=seconds)
        if self.moment >= self.end:
            self.stop.set()


class FakeExport:
    """Records (job tab, as_of, clock time) per export; `before` may change the world first."""

    def __init__(self, clock: FakeClock, before: Callable[[ExportRequest], None] | None = None):
        self.clock = clock
        self.before = before
        self.calls: list[tuple[str, date | None, datetime]] = []

    def __call__(self, request: ExportRequest) -> ExportResult:
        self.calls.append((request.tab.id, request.as_of, self.clock.now()))
        if self.before is not None:
            self.before(request)
        return _result(request)


def _result(request: ExportRequest) -> ExportResult:
    """Just what the scheduler reads of a result: the path and the number of rows."""

    class Table:
        rows = (1, 2)

    class Result:
        path = request.out / f"{request.tab.file_word}.csv"
        table = Table()

    return cast(ExportResult, Result())


TWO_JOBS = """
[[schedule.job]]
name = "monthly"
cron = "0 6 1 * *"
tab = "cost"
period = "LM"

[[schedule.job]]
name = "nightly"
cron = "30 0 * * *"
tab = "ingress"
period = "7D"
"""


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_two_jobs_fire_at_their_berlin_times_in_order(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "chargeback.schedule")
    stop = threading.Event()
    # 21:00 in Berlin (UTC+1) on 31 January.
    clock = FakeClock(utc(2026, 1, 31, 20, 0), utc(2026, 2, 2, 0, 0), stop)
    export = FakeExport(clock)
    defaults = Defaults(Path("db"), BERLIN, Path("out"))
    scheduler = Scheduler(
        jobs_of(TWO_JOBS), defaults, now=clock.now, sleep=clock.sleep, export=export
    )
    scheduler.run(stop)
    assert export.calls == [
        # 00:30 Berlin on 1 February is 23:30 UTC on 31 January: as_of is the Berlin date.
        ("ingress", date(2026, 2, 1), utc(2026, 1, 31, 23, 30)),
        # 06:00 Berlin on the 1st: LM as of 1 February, i.e. January.
        ("cost", date(2026, 2, 1), utc(2026, 2, 1, 5, 0)),
        ("ingress", date(2026, 2, 2), utc(2026, 2, 1, 23, 30)),
    ]
    assert clock.sleeps == 28 * 3600  # one-second slices, so a clock jump is seen at once
    messages = [r.getMessage() for r in caplog.records]
    assert messages[:2] == [
        "job monthly: next run 2026-02-01T06:00+01:00",
        "job nightly: next run 2026-02-01T00:30+01:00",
    ]
    assert messages[2:] == [
        "job nightly: wrote out/Ingress.csv (2 accounts)",
        "job monthly: wrote out/OverallCost.csv (2 accounts)",
        "job nightly: wrote out/Ingress.csv (2 accounts)",
    ]


def test_a_job_due_while_another_runs_runs_after_it_dated_by_its_own_fire_time() -> None:
    stop = threading.Event()
    clock = FakeClock(utc(2026, 1, 31, 12, 0), utc(2026, 2, 1, 12, 0), stop)
    jobs = jobs_of(
        TWO_JOBS.replace("0 6 1 * *", "0 23 31 1 *").replace("30 0 * * *", "15 23 31 1 *")
    )

    def slow(request: ExportRequest) -> None:
        if request.tab is Tab.COST:
            clock.moment += timedelta(hours=2)  # runs from 23:00 to 01:00 Berlin

    export = FakeExport(clock, slow)
    Scheduler(
        jobs,
        Defaults(Path("db"), BERLIN, Path("o")),
        now=clock.now,
        sleep=clock.sleep,
        export=export,
        slice_seconds=60,
    ).run(stop)
    assert export.calls == [
        ("cost", date(2026, 1, 31), utc(2026, 1, 31, 22, 0)),
        # Due 23:15 on the 31st, run at 01:00 on 1 February: still as of the 31st.
        ("ingress", date(2026, 1, 31), utc(2026, 2, 1, 0, 0)),
    ]


def test_after_a_clock_jump_ahead_a_late_job_runs_once_for_its_latest_fire_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "chargeback.schedule")
    stop = threading.Event()
    clock = FakeClock(utc(2026, 3, 1, 12, 0), utc(2026, 3, 6, 12, 0), stop)
    jobs = jobs_of(TWO_JOBS.replace('"0 6 1 * *"', '"0 6 * * *"'))
    export = FakeExport(clock)
    real_sleep = clock.sleep

    def suspend_once(seconds: float) -> None:
        real_sleep(seconds)
        if clock.moment == utc(2026, 3, 1, 13, 0):
            clock.moment = utc(2026, 3, 4, 10, 0)  # the machine slept three days

    Scheduler(
        jobs,
        Defaults(Path("db"), "UTC", Path("o")),
        now=clock.now,
        sleep=suspend_once,
        export=export,
        slice_seconds=3600,
    ).run(stop)
    assert export.calls[:3] == [
        # In order of the first missed fire time: 2 March 00:30, then 2 March 06:00.
        ("ingress", date(2026, 3, 4), utc(2026, 3, 4, 10, 0)),  # for 4 March 00:30
        ("cost", date(2026, 3, 4), utc(2026, 3, 4, 10, 0)),  # for 4 March 06:00
        ("ingress", date(2026, 3, 5), utc(2026, 3, 5, 0, 30)),  # then on time again
    ]
    assert (
        "job monthly: late; runs for 2026-03-04T06:00+00:00, skipping the run(s) due from"
        " 2026-03-02T06:00+00:00"
    ) in [r.getMessage() for r in caplog.records]


def test_after_the_clock_goes_back_fire_times_are_recomputed() -> None:
    stop = threading.Event()
    # Started with a clock a year ahead, then corrected: the job must not wait a year.
    clock = FakeClock(utc(2027, 3, 1, 12, 0), utc(2026, 3, 3, 0, 0), stop)
    jobs = jobs_of(TWO_JOBS.replace('"0 6 1 * *"', '"0 6 * * *"'))[:1]
    export = FakeExport(clock)
    real_sleep = clock.sleep

    def correct_once(seconds: float) -> None:
        if clock.moment.year == 2027:
            clock.moment = utc(2026, 3, 1, 12, 0)
        else:
            real_sleep(seconds)

    Scheduler(
        jobs,
        Defaults(Path("db"), "UTC", Path("o")),
        now=clock.now,
        sleep=correct_once,
        export=export,
        slice_seconds=60,
    ).run(stop)
    assert export.calls == [
        ("cost", date(2026, 3, 2), utc(2026, 3, 2, 6, 0)),
    ]


def make_store(path: Path) -> None:
    """January 2026: alice produces 3 GB on c1, bob reads 1.5 GB; carol produces in February."""
    parser = EventParser(DayResolver("UTC"), 3_600_000, 1 << 20, lambda: 2_000_000_000_000)
    con = open_store(path)
    batch = Batch()
    events = [
        b'{"service_account":"User:alice","type":"produce","bytes":3000000000,'
        b'"timestamp":"2026-01-05T10:00:00Z","cluster":"c1"}',
        b'{"service_account":"bob","type":"fetch","bytes":1500000000,'
        b'"timestamp":"2026-01-20T23:59:59Z","cluster":"c2"}',
        b'{"service_account":"carol","type":"produce","bytes":7,'
        b'"timestamp":"2026-02-01T00:00:00Z"}',
    ]
    for offset, value in enumerate(events):
        batch.add_events(parser, value, 0)
        batch.advance("t", 0, offset)
    StoreWriter(con).apply(batch)
    con.close()


def test_a_failing_run_logs_one_line_and_the_next_run_still_happens(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "chargeback.schedule")
    stop = threading.Event()
    clock = FakeClock(utc(2026, 2, 1, 0, 0), utc(2026, 3, 2, 0, 0), stop)
    db = tmp_path / "store.duckdb"  # not there yet: the first run fails
    (job,) = jobs_of(TWO_JOBS)[:1]
    real_sleep = clock.sleep

    def store_appears_after_the_first_run(seconds: float) -> None:
        real_sleep(seconds)
        if clock.moment > utc(2026, 2, 2) and not db.exists():
            make_store(db)

    Scheduler(
        [job],
        Defaults(db, "UTC", tmp_path / "out"),
        now=clock.now,
        sleep=store_appears_after_the_first_run,
        slice_seconds=3600,
    ).run(stop)
    runs = [r for r in caplog.records if "next run" not in r.getMessage()]
    assert [(r.levelname, r.getMessage()) for r in runs] == [
        (
            "ERROR",
            f"job monthly failed: no store at {db}: run `chargeback ingest` first, or pass --db",
        ),
        # 1 March: LM is February, where only carol produced.
        (
            "INFO",
            f"job monthly: wrote {tmp_path}/out/Chargeback_2026-02-01_2026-02-28_OverallCost.csv"
            " (1 account)",
        ),
    ]


def test_a_crash_in_an_export_is_one_line_too(caplog: pytest.LogCaptureFixture) -> None:
    def broken(request: ExportRequest) -> ExportResult:
        raise KeyError("bug")

    clock = FakeClock(utc(2026, 2, 1), utc(2026, 2, 2), threading.Event())
    jobs = jobs_of(TWO_JOBS)
    scheduler = Scheduler(
        jobs, Defaults(Path("db"), "UTC", Path("o")), now=clock.now, export=broken
    )
    assert scheduler.run_once() == ["monthly", "nightly"]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["job monthly failed: KeyError: 'bug'", "job nightly failed: KeyError: 'bug'"]


def test_setting_stop_ends_the_real_wait_within_a_second() -> None:
    stop = threading.Event()
    jobs = jobs_of(TWO_JOBS)  # next runs are hours or weeks away
    scheduler = Scheduler(jobs, Defaults(Path("db"), "UTC", Path("o")))
    thread = threading.Thread(target=scheduler.run, args=(stop,))
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 1.0


# --- the command -------------------------------------------------------------------------------

E2E_CONFIG = """
timezone = "UTC"

[[schedule.job]]
name = "january"
cron = "0 6 1 * *"
tab = ["cost", "ingress"]
from = 2026-01-01
to = 2026-01-31
bucket = "month"
out = "finance"

[[schedule.job]]
name = "weekly"
cron = "@weekly"
tab = "egress"
period = "7D"
"""


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def check_e2e_files(folder: Path) -> None:
    # Default rates, 0.10 per GB each way: alice 3 GB = 0.30, bob 1.5 GB = 0.15.
    assert read(folder / "finance" / "Chargeback_2026-01-01_2026-01-31_OverallCost.csv") == (
        "Service Account,2026-01,Total\nalice,0.30,0.30\nbob,0.15,0.15\n"
    )
    # bob only read, so he has a row of zeros; carol's bytes are in February.
    assert read(folder / "finance" / "Chargeback_2026-01-01_2026-01-31_Ingress.csv") == (
        "Service Account,2026-01,Total\nalice,3000000000,3000000000\nbob,0,0\n"
    )
    today = datetime.now(UTC).date()
    weekly = folder / "weekly" / f"Chargeback_{today - timedelta(days=6)}_{today}_Egress.csv"
    assert read(weekly).startswith("Service Account,")


def test_schedule_once_writes_every_jobs_files(tmp_path: Path) -> None:
    make_store(tmp_path / "store.duckdb")
    (tmp_path / "chargeback.toml").write_text(E2E_CONFIG, encoding="utf-8")
    script = (
        "import logging, sys; logging.basicConfig(level=logging.INFO);"
        "from export.schedule_cli import schedule;"
        "schedule.main(sys.argv[1:], prog_name='chargeback schedule')"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "--once", "--db", "store.duckdb", "--out", "weekly"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    check_e2e_files(tmp_path)
    lines = [line for line in done.stderr.splitlines() if "job " in line]
    assert len(lines) == 3
    assert lines[0].endswith(
        "job january: wrote finance/Chargeback_2026-01-01_2026-01-31_OverallCost.csv (2 accounts)"
    )


def test_chargeback_schedule_once_through_the_main_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from chargeback import cli

    if "schedule" not in cli.main.commands:
        monkeypatch.setitem(cli.main.commands, "schedule", schedule)
    try:
        default_map(cli.main, tomllib.loads(E2E_CONFIG))
    except UsageError:
        pytest.skip("chargeback/config.py does not yet leave [[schedule.job]] to the command")
    make_store(tmp_path / "store.duckdb")
    config = tmp_path / "jobs.toml"
    # Top-level keys must come before the first table, or TOML puts them in it.
    config.write_text('db = "store.duckdb"\nout = "weekly"\n' + E2E_CONFIG, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert cli.run(["--config", str(config), "schedule", "--once"]) == 0
    check_e2e_files(tmp_path)
    # An unknown job name is bad usage: exit code 2, one line.
    assert cli.run(["--config", str(config), "schedule", "--once", "--job", "x"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "chargeback: error: no job named 'x' in the config; its jobs: january, weekly"
    )


def test_once_with_a_failing_job_fails_with_one_line(tmp_path: Path) -> None:
    config = tomllib.loads(E2E_CONFIG)
    result = CliRunner().invoke(
        schedule,
        ["--once", "--db", str(tmp_path / "missing.duckdb"), "--job", "weekly"],
        obj={"config": config},
    )
    assert isinstance(result.exception, ChargebackError)
    assert result.exception.exit_code == 1
    assert str(result.exception) == "1 of 1 job(s) failed: weekly"


def test_sigterm_stops_the_service_within_a_second(tmp_path: Path) -> None:
    (tmp_path / "chargeback.toml").write_text(E2E_CONFIG, encoding="utf-8")
    script = (
        "import sys; from export.schedule_cli import schedule;"
        "print('up', flush=True); schedule.main(sys.argv[1:], prog_name='chargeback schedule')"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        assert process.stdout.readline() == "up\n"
        time.sleep(1.0)  # into the loop's wait (parsing the jobs takes a moment)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            _, err = process.communicate(timeout=5)
        finally:
            process.kill()  # a no-op once it has exited
        assert process.returncode == 0, err
        assert time.monotonic() - started < 1.0
