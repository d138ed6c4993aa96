"""The command line as a whole: every command documented and configurable, one-line errors."""

import re
import socket
import subprocess
import sys
from pathlib import Path

import click
import duckdb
import pytest

from chargeback.cli import main, run
from consumer.batch import Batch
from consumer.writer import StoreWriter
from tests.ingest_harness import REPO
from tests.test_store import add
from views.store import open_store

README = (REPO / "README.md").read_text(encoding="utf-8")


def commands(group: click.Group, prefix: str = "chargeback") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        found.append((path, command))
        if isinstance(command, click.Group):
            found += commands(command, path)
    return found


@pytest.mark.parametrize(("path", "command"), commands(main), ids=lambda v: str(v))
def test_every_command_is_in_the_readme(path: str, command: click.Command) -> None:
    *parents, name = path.split(" ")
    # `chargeback kafka start|stop|status` documents three at once
    pattern = re.escape(" ".join(parents)) + r" (?:[a-z]+\|)*" + re.escape(name) + r"\b"
    assert re.search(pattern, README), f"README does not mention `{path}`"


@pytest.mark.parametrize(("path", "command"), commands(main), ids=lambda v: str(v))
def test_every_option_can_come_from_the_environment(path: str, command: click.Command) -> None:
    for param in command.params:
        if isinstance(param, click.Option) and param.name not in ("help", "verbose"):
            assert isinstance(param.envvar, str) and param.envvar.startswith("CHARGEBACK_"), (
                f"{path} {param.opts[0]} has no CHARGEBACK_* variable"
            )


@pytest.mark.parametrize(("path", "command"), commands(main), ids=lambda v: str(v))
def test_every_command_has_help(path: str, command: click.Command) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chargeback", *path.split(" ")[1:], "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0 and "Usage:" in result.stdout, result.stderr
    assert command.help


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["nonsense"], "No such command 'nonsense'"),
        (["export", "--tab"], "Option '--tab' requires an argument"),
        (["export", "--tab", "cost", "--period", "9D"], "unknown period '9D'"),
        (["ingest", "--metrics-port", "99999"], "--metrics-port"),
        (["ingest", "--timezone", "Moon/Base"], "unknown time zone 'Moon/Base'"),
        (["ingest", "--kafka-option", "nokey"], "--kafka-option takes KEY=VALUE"),
        (["--config", "/nonexistent.toml", "export"], "config file /nonexistent.toml does not"),
        (["export", "--tab", "cost", "--period", "30D", "--bucket", "month"], "--bucket goes with"),
        (
            ["collect", "prometheus", "--mode", "quota", "--url", "not-a-url", "--once"],
            "--url must be an http(s) URL",
        ),
        (["ingest", "--publish-interval", "inf"], "'inf' is not a finite number"),
        (["ingest", "--batch-seconds", "nan"], "'nan' is not a finite number"),
        (["ingest", "--memory-limit", "lots"], "--memory-limit 'lots' is not a size such as"),
        (["ingest", "--group", ""], "Invalid value for '--group': must not be empty"),
        (["ingest", "--bootstrap-servers", "127.0.0.1:99999"], "with a port 1-65535"),
        (["ingest", "--bootstrap-servers", "kafka-1"], "'kafka-1' is not HOST:PORT"),
        (["kafka", "start", "--dir", ""], "Invalid value for '--dir': must name a folder"),
        (["export", "--tab", "cost", "--period", "7D", "--out", ""], "'--out': must name a folder"),
        (["export", "--tab", "cost", "--period", "7D", "--db", ""], "must name the store's file"),
        (["rates", "set", "--ingress", "1", "--egress", "1", "--db", ""], "must name the store's"),
        (["demo", "--rate", "nan"], "'nan' is not a finite number"),
        (["ingest", "--topic", "bad topic!"], "'bad topic!' is not a Kafka topic name"),
        (["ingest", "--topic", ".."], "'..' is not a Kafka topic name"),
        (["--config", "tests/data/not-utf8.toml", "export"], "is not valid TOML: it is not UTF-8"),
        (["--config", "tests/data/typo-table.toml", "export"], "[exprot] is not a command's table"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(args: list[str], expected: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chargeback", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def chargeback(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chargeback", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )


def test_a_duckdb_file_that_is_not_a_store_is_refused_by_every_reader_and_the_writer(
    tmp_path: Path,
) -> None:
    other = tmp_path / "other.duckdb"
    with duckdb.connect(str(other)) as con:
        con.execute("CREATE TABLE invoices (id INTEGER)")
    for args in (
        ["export", "--tab", "cost", "--period", "7D", "--db", str(other)],
        ["ingest", "--db", str(other)],
    ):
        done = chargeback(tmp_path, *args)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "not a kafka-chargeback store" in done.stderr
    with duckdb.connect(str(other), read_only=True) as con:  # left as it was
        assert con.execute("SELECT table_name FROM duckdb_tables()").fetchall() == [("invoices",)]


def test_a_store_from_a_newer_release_is_refused_by_the_export(tmp_path: Path) -> None:
    db = tmp_path / "chargeback.duckdb"
    open_store(db).close()
    with duckdb.connect(str(db)) as con:
        con.execute("INSERT INTO schema_version VALUES (99, now())")
    done = chargeback(tmp_path, "export", "--tab", "ingress", "--period", "7D", "--db", str(db))
    assert done.returncode == 1 and "schema version 99, newer than" in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1


def test_a_setting_librdkafka_refuses_is_a_usage_error(tmp_path: Path) -> None:
    done = chargeback(tmp_path, "ingest", "--kafka-option", "foo.bar=1")
    assert done.returncode == 2
    assert done.stderr == 'chargeback: error: kafka: No such configuration property: "foo.bar"\n'
    assert not (tmp_path / "data" / "chargeback.duckdb").exists()  # a failed start makes no store


def test_a_memory_limit_duckdb_cannot_keep_is_a_usage_error(tmp_path: Path) -> None:
    done = chargeback(tmp_path, "ingest", "--memory-limit", "1KB")
    assert done.returncode == 2
    assert done.stderr.startswith("chargeback: error: --memory-limit 1KB: Out of Memory Error")
    assert done.stderr.count("\n") == 1
    assert not (tmp_path / "data" / "chargeback.duckdb").exists()  # a failed start makes no store
    # on an existing store, a failed start records no time zone: another one may still come
    db = tmp_path / "kept.duckdb"
    open_store(db).close()
    assert chargeback(tmp_path, "ingest", "--memory-limit", "1KB", "--db", str(db)).returncode == 2
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("FROM store_settings").fetchall() == []


def test_a_metrics_port_in_use_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = chargeback(tmp_path, "ingest", "--metrics-port", str(port))
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        f"chargeback: error: --metrics-host 127.0.0.1 --metrics-port {port}: Address already in use"
    )
    assert "Traceback" not in done.stderr


def test_flag_beats_environment_beats_config_file_beats_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "chargeback.duckdb"
    con = open_store(db)
    batch = Batch()
    add(batch, 0, 0, b'{"service_account":"a","type":"produce","bytes":1,"timestamp":0}')
    StoreWriter(con).apply(batch)
    con.close()
    config = tmp_path / "chargeback.toml"
    config.write_text(f'db = "{db}"\n[export]\nout = "{tmp_path / "from-file"}"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHARGEBACK_OUT", raising=False)
    export = ["export", "--tab", "ingress", "--from", "1970-01-01", "--to", "1970-01-01"]
    name = "Chargeback_1970-01-01_1970-01-01_Ingress.csv"

    assert run(export) == 0  # ./chargeback.toml is read by default
    assert (tmp_path / "from-file" / name).exists()
    monkeypatch.setenv("CHARGEBACK_OUT", str(tmp_path / "from-env"))
    assert run(export) == 0
    assert (tmp_path / "from-env" / name).exists()
    assert run([*export, "--out", str(tmp_path / "from-flag")]) == 0
    assert (tmp_path / "from-flag" / name).exists()
    config.unlink()
    monkeypatch.delenv("CHARGEBACK_OUT")
    assert run([*export, "--db", str(db)]) == 0
    assert (tmp_path / "exports" / name).exists()  # the default


def test_the_last_month_there_is_exports_without_overflow(tmp_path: Path) -> None:
    db = tmp_path / "chargeback.duckdb"
    open_store(db).close()
    out = tmp_path / "out"
    args = ["--db", str(db), "--out", str(out), "--tab", "cost"]
    assert (
        run(["export", *args, "--from", "9999-11-01", "--to", "9999-12-31", "--bucket", "month"])
        == 0
    )
    assert run(["export", *args, "--period", "YTD", "--as-of", "9999-12-31"]) == 0
    header = (out / "Chargeback_9999-11-01_9999-12-31_OverallCost.csv").read_text().splitlines()[0]
    assert header == "Service Account,9999-11,9999-12,Total"
