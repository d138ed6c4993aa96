"""docker-compose.yml, the Dockerfile and .dockerignore, checked without Docker.

No engine is needed: the files are read as data and checked against what they must agree with,
so a renamed option, a typo in a CHARGEBACK_* name, a Kafka upgrade or a changed listener fails
here instead of in someone's `docker compose up`:

- each chargeback service's command is a subcommand of the click group `chargeback.cli.main`,
  and click itself parses its flags and its CHARGEBACK_* environment (values included);
- every CHARGEBACK_* name set is the envvar of an option of that subcommand (or of the group,
  i.e. CHARGEBACK_CONFIG): click silently ignores unknown variables, so this is checked by name;
- the Kafka image is the version localkafka pins, its listeners are consistent, and every
  bootstrap address a container uses is one the broker advertises to containers;
- ports, volumes, the config mount, the image's entrypoint and what the build context leaves out.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml  # PyYAML, a test extra

from chargeback.cli import main
from localkafka.jars import KAFKA_VERSION

ROOT = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
KAFKA = "kafka"
EXPECTED_SERVICES = {"kafka", "topic-init", "ingest", "schedule", "demo-traffic"}
# Subcommands written at the same time as this file: skipped (with this note) until they exist.
NEWER_SUBCOMMANDS = {"demo", "schedule"}


# --- reading the files ----------------------------------------------------------------------------


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict, from either of compose's two spellings."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = (item.partition("=") for item in raw)
        return {key: value for key, _, value in pairs}
    return {key: "" if value is None else str(value) for key, value in raw.items()}


def words(value: str | list[Any] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(item) for item in value]


def chargeback_services() -> list[str]:
    """Services that run the project's image: built from the Dockerfile here."""
    return sorted(name for name, service in SERVICES.items() if "build" in service)


def kafka_images() -> dict[str, str]:
    return {
        name: service["image"]
        for name, service in SERVICES.items()
        if str(service.get("image", "")).startswith("apache/kafka")
    }


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    result = []
    for line in lines:
        instruction, _, arguments = line.partition(" ")
        result.append((instruction.upper(), arguments.strip()))
    return result


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


def dockerfile_env() -> dict[str, str]:
    """The final stage's ENV, both `ENV K=V K2=V2` and the legacy `ENV K V`."""
    result: dict[str, str] = {}
    for op, arguments in final_stage():
        if op != "ENV":
            continue
        if "=" not in arguments.split()[0]:
            key, _, value = arguments.partition(" ")
            result[key] = value.strip()
            continue
        for item in shlex.split(arguments):
            key, _, value = item.partition("=")
            result[key] = value
    return result


def exec_form(op: str) -> list[str]:
    found = [arguments for name, arguments in final_stage() if name == op]
    assert found, f"the Dockerfile's final stage has no {op}"
    value = json.loads(found[-1])  # exec form: a JSON array, so signals reach the process
    assert isinstance(value, list)
    return [str(item) for item in value]


def volume_mounts(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) of each mount, from the short or the long syntax."""
    mounts = []
    for item in service.get("volumes") or []:
        if isinstance(item, str):
            parts = item.split(":")
            if len(parts) == 1:
                mounts.append(("", parts[0], False))
            else:
                mode = parts[2].split(",") if len(parts) > 2 else []
                mounts.append((parts[0], parts[1], "ro" in mode))
        else:
            mounts.append(
                (str(item.get("source", "")), str(item["target"]), bool(item.get("read_only")))
            )
    return mounts


def published_ports(service: dict[str, Any]) -> list[tuple[int, int]]:
    """(host port, container port) of each published port, short or long syntax."""
    result = []
    for item in service.get("ports") or []:
        if isinstance(item, dict):
            result.append((int(item["published"]), int(item["target"])))
            continue
        text = str(item).split("/")[0]  # drop /tcp
        parts = text.rsplit(":", 2)
        if len(parts) == 1:
            continue  # container port only: a random host port
        result.append((int(parts[-2]), int(parts[-1])))
    return result


def listeners(text: str) -> dict[str, tuple[str, int]]:
    """`NAME://host:port,…` as {NAME: (host, port)}."""
    result = {}
    for item in text.split(","):
        name, _, address = item.strip().partition("://")
        host, _, port = address.rpartition(":")
        result[name] = (host, int(port))
    return result


def flag_value(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


# --- the CLI --------------------------------------------------------------------------------------


def subcommand(name: str) -> click.Command | None:
    with click.Context(main) as ctx:
        return main.get_command(ctx, name)


def require_subcommand(name: str) -> click.Command:
    command = subcommand(name)
    if command is None:
        if name in NEWER_SUBCOMMANDS:
            pytest.skip(f"`chargeback {name}` is not a subcommand of chargeback.cli.main yet")
        pytest.fail(f"`chargeback {name}` is not a subcommand of chargeback.cli.main")
    return command


def envvars(command: click.Command) -> set[str]:
    """The environment variables the command's own parameters read."""
    names: set[str] = set()
    for param in command.params:
        envvar = getattr(param, "envvar", None)
        if isinstance(envvar, str):
            names.add(envvar)
        elif envvar:
            names.update(envvar)
    return names


def all_commands(command: click.Command) -> Iterator[click.Command]:
    yield command
    if isinstance(command, click.Group):
        with click.Context(command) as ctx:
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                if sub is not None:
                    yield from all_commands(sub)


def service_command(name: str) -> list[str]:
    service = SERVICES[name]
    entrypoint = words(service.get("entrypoint")) or exec_form("ENTRYPOINT")
    assert entrypoint == ["chargeback"], f"{name}: the entrypoint must be chargeback"
    return words(service.get("command")) or exec_form("CMD")


# --- the compose file -----------------------------------------------------------------------------


def test_the_services_and_volumes_are_there() -> None:
    assert set(SERVICES) >= EXPECTED_SERVICES
    assert "store" in (COMPOSE.get("volumes") or {})
    for name, service in SERVICES.items():
        for source, _target, _ro in volume_mounts(service):
            if source and not source.startswith((".", "/", "~", "$")):
                assert source in COMPOSE["volumes"], f"{name}: volume {source} is not declared"
    # Every other chargeback service runs the very image ingest builds.
    images = {SERVICES[name].get("image") for name in chargeback_services()}
    assert len(images) == 1, f"chargeback services use different images: {images}"


@pytest.mark.parametrize("name", chargeback_services())
def test_each_command_parses_with_its_environment(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """click parses the service's argv and environment as the container would: flags, values."""
    args = service_command(name)
    command = require_subcommand(args[0])
    for key in list(os.environ):
        if key.startswith("CHARGEBACK_"):
            monkeypatch.delenv(key)
    for key, value in {**dockerfile_env(), **environment(SERVICES[name])}.items():
        monkeypatch.setenv(key, value)
    try:
        # The group's own options (--config, i.e. CHARGEBACK_CONFIG) and then the subcommand's,
        # resolved and converted as `chargeback ARGS…` would, without running either.
        with (
            main.make_context("chargeback", args[:1]) as group_ctx,
            command.make_context(args[0], args[1:], parent=group_ctx),
        ):
            pass
    except click.ClickException as error:
        pytest.fail(f"{name}: `chargeback {shlex.join(args)}` fails: {error.format_message()}")


@pytest.mark.parametrize("name", chargeback_services())
def test_every_chargeback_variable_is_an_option_of_the_command(name: str) -> None:
    command = require_subcommand(service_command(name)[0])
    known = envvars(command) | envvars(main)
    used = {key for key in environment(SERVICES[name]) if key.startswith("CHARGEBACK_")}
    unknown = used - known
    assert not unknown, (
        f"{name}: {sorted(unknown)} set, but `chargeback {command.name}` reads none of them"
        f" (it reads {sorted(known)})"
    )


def test_only_chargeback_services_get_chargeback_variables() -> None:
    for name, service in SERVICES.items():
        if name not in chargeback_services():
            assert not [key for key in environment(service) if key.startswith("CHARGEBACK_")]


def test_the_dockerfile_variables_are_options() -> None:
    known = set().union(*(envvars(command) for command in all_commands(main)))
    used = {key for key in dockerfile_env() if key.startswith("CHARGEBACK_")}
    assert "CHARGEBACK_DB" in used
    assert used <= known, f"the Dockerfile sets {sorted(used - known)}, which no option reads"


def test_kafka_is_the_pinned_version() -> None:
    images = kafka_images()
    assert {KAFKA, "topic-init"} <= set(images)
    for name, image in images.items():
        assert image == f"apache/kafka:{KAFKA_VERSION}", f"{name}: {image}"


def kafka_env() -> dict[str, str]:
    return environment(SERVICES[KAFKA])


def test_the_kafka_listeners_are_consistent() -> None:
    env = kafka_env()
    bound = listeners(env["KAFKA_LISTENERS"])
    advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert set(bound) <= set(protocols), "a listener has no security protocol"
    assert controller in bound and controller not in advertised
    assert env.get("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT") in advertised
    for name, (_host, port) in advertised.items():
        assert name in bound, f"{name} is advertised but not listened on"
        assert bound[name][1] == port, f"{name}: advertised port {port}, bound {bound[name][1]}"
    # Single-node quorum: this node, on the controller listener.
    voter_id, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert voter_id == env["KAFKA_NODE_ID"]
    assert int(voter.rpartition(":")[2]) == bound[controller][1]
    # Replication factors of one (one broker), no topic made by accident.
    for key, value in env.items():
        if key.endswith(("_REPLICATION_FACTOR", "_MIN_ISR")):
            assert value == "1", f"{key}={value} on a single broker"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    # The listener advertised to the host is published on the same port.
    container_names = container_hostnames()
    for_host = {name: a for name, a in advertised.items() if a[0] not in container_names}
    assert for_host, "no listener is advertised to the host"
    published = published_ports(SERVICES[KAFKA])
    for name, (_host, port) in for_host.items():
        assert (port, bound[name][1]) in published, f"{name} (:{port}) is not published as such"
    assert any(host_port == 9092 for host_port, _ in published)


def container_hostnames() -> set[str]:
    """The names other containers reach the broker by."""
    service = SERVICES[KAFKA]
    names = {KAFKA, str(service.get("hostname", KAFKA))}
    if service.get("container_name"):
        names.add(str(service["container_name"]))
    return names


def bootstrap_addresses() -> dict[str, list[str]]:
    """Every host:port a container bootstraps from, by where it was found."""
    found: dict[str, list[str]] = {}
    for name in chargeback_services():
        value = environment(SERVICES[name]).get("CHARGEBACK_BOOTSTRAP_SERVERS")
        flag = flag_value(words(SERVICES[name].get("command")), "--bootstrap-servers")
        for text in (value, flag):
            if text:
                found.setdefault(name, []).extend(text.split(","))
    for name in kafka_images():
        service = SERVICES[name]
        health = words((service.get("healthcheck") or {}).get("test"))
        args = words(service.get("command")) + [w for h in health for w in shlex.split(h)]
        value = flag_value(args, "--bootstrap-server")
        if value:
            found.setdefault(name, []).extend(value.split(","))
    return found


def test_containers_bootstrap_from_a_listener_advertised_to_containers() -> None:
    advertised = listeners(kafka_env()["KAFKA_ADVERTISED_LISTENERS"])
    for_containers = {
        f"{host}:{port}" for host, port in advertised.values() if host in container_hostnames()
    }
    assert for_containers, "no listener is advertised under the kafka service's name"
    found = bootstrap_addresses()
    assert {"ingest", "topic-init", "demo-traffic"} <= set(found)
    for name, addresses in found.items():
        for address in addresses:
            assert address in for_containers, (
                f"{name} bootstraps from {address}; the broker advertises {sorted(for_containers)}"
                " to containers"
            )


def test_the_topic_is_created_once_kafka_is_healthy_and_before_ingest() -> None:
    init = SERVICES["topic-init"]
    args = words(init.get("entrypoint")) + words(init.get("command"))
    assert args[0].endswith("kafka-topics.sh") and "--create" in args
    assert "--if-not-exists" in args  # a second `up` must not fail
    topic = flag_value(args, "--topic")
    assert int(flag_value(args, "--partitions") or 1) > 1
    for name in ("ingest", "demo-traffic"):
        assert environment(SERVICES[name]).get("CHARGEBACK_TOPIC") == topic, name
        assert SERVICES[name]["depends_on"]["topic-init"] == {
            "condition": "service_completed_successfully"
        }
    assert init["depends_on"][KAFKA] == {"condition": "service_healthy"}
    assert str(init.get("restart", "no")) == "no"
    healthcheck = words(SERVICES[KAFKA]["healthcheck"]["test"])
    assert any(
        "kafka-broker-api-versions.sh" in part or "kafka-topics.sh" in part for part in healthcheck
    )


def test_ingest_serves_metrics_on_the_published_port() -> None:
    ingest = SERVICES["ingest"]
    env = environment(ingest)
    port = int(env["CHARGEBACK_METRICS_PORT"])
    assert env["CHARGEBACK_METRICS_HOST"] == "0.0.0.0"  # reachable through the published port
    assert (port, port) in published_ports(ingest)
    health = " ".join(words(ingest["healthcheck"]["test"]))
    assert f":{port}/healthz" in health and "urllib" in health  # no curl in the slim image
    assert ingest["stop_signal"] == "SIGTERM"
    assert re.fullmatch(r"\d+s", str(ingest["stop_grace_period"]))
    assert int(str(ingest["stop_grace_period"])[:-1]) >= 10
    assert ingest["restart"] == "unless-stopped"


def test_the_store_is_one_volume_mounted_where_the_db_lives() -> None:
    image_db = dockerfile_env()["CHARGEBACK_DB"]
    for name in ("ingest", "schedule"):
        db = environment(SERVICES[name]).get("CHARGEBACK_DB", image_db)
        mounts = {target: (source, ro) for source, target, ro in volume_mounts(SERVICES[name])}
        folder = posixpath.dirname(db)
        assert mounts.get(folder, ("", False))[0] == "store", f"{name}: store not at {folder}"
        # The writer needs it writable; readers only read (the published copy, rates.toml).
        assert mounts[folder][1] is (name != "ingest"), f"{name}: wrong read-only flag on store"


def test_the_config_file_is_mounted_where_chargeback_config_points() -> None:
    for name in chargeback_services():
        config = environment(SERVICES[name]).get("CHARGEBACK_CONFIG")
        if config is None:
            continue
        mounts = {target: (source, ro) for source, target, ro in volume_mounts(SERVICES[name])}
        assert config in mounts, f"{name}: nothing is mounted at {config}"
        assert mounts[config] == ("./chargeback.toml", True), name
    assert "CHARGEBACK_CONFIG" in environment(SERVICES["schedule"])


def test_schedule_writes_its_csvs_to_the_host_exports_folder() -> None:
    schedule = SERVICES["schedule"]
    out = environment(schedule)["CHARGEBACK_OUT"]
    mounts = {target: (source, ro) for source, target, ro in volume_mounts(schedule)}
    assert mounts.get(out) == ("./exports", False)
    assert service_command("schedule") == ["schedule"]


def test_demo_traffic_only_produces_and_only_on_request() -> None:
    demo = SERVICES["demo-traffic"]
    assert demo.get("profiles") == ["demo"]
    assert service_command("demo-traffic") == ["demo", "--traffic-only"]
    assert not demo.get("volumes"), "traffic only: it needs no store"


# --- the image ------------------------------------------------------------------------------------


def test_the_image_runs_chargeback_as_a_non_root_user_on_slim_python() -> None:
    stage = final_stage()
    assert stage[0] == ("FROM", "python:3.11-slim")
    users = [arguments for op, arguments in stage if op == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert exec_form("ENTRYPOINT") == ["chargeback"]
    default = exec_form("CMD")
    assert default == ["ingest"] and subcommand(default[0]) is not None
    db = dockerfile_env()["CHARGEBACK_DB"]
    folder = posixpath.dirname(db)
    assert ("WORKDIR", folder) in stage
    volumes = [arguments for op, arguments in stage if op == "VOLUME"]
    assert any(folder in arguments for arguments in volumes)


def test_the_image_installs_the_project_without_test_extras() -> None:
    runs = " && ".join(arguments for op, arguments in dockerfile_instructions() if op == "RUN")
    # `pip install .`, or the same in two steps: `pip wheel … .` then `pip install` of the wheel.
    direct = re.search(r"pip install\b[^&;]*\s\.(\s|$)", runs)
    wheel = re.search(r"pip wheel\b[^&;]*\s\.(\s|$)", runs) and re.search(
        r"pip install\b[^&;]*\.whl", runs
    )
    assert direct or wheel, "the Dockerfile does not pip-install the project from the context"
    assert "[test]" not in runs and "-e " not in runs
    assert "COPY . ." in " ".join(f"{op} {a}" for op, a in dockerfile_instructions())


def dockerignore() -> set[str]:
    entries = set()
    for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")):
            entries.add(line.removeprefix("/").removeprefix("**/").rstrip("/"))
    return entries


def test_the_build_context_leaves_out_local_state_but_not_the_sources() -> None:
    ignored = dockerignore()
    assert {".venv", "data", "exports", ".git"} <= ignored
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    needed = {"pyproject.toml", pyproject["project"]["readme"]}
    needed |= set(pyproject["tool"]["setuptools"]["packages"])
    assert not needed & ignored, f"the build needs {sorted(needed & ignored)}"


# --- the docs -------------------------------------------------------------------------------------


def test_the_docs_describe_every_service() -> None:
    docs = (ROOT / "docs" / "docker.md").read_text(encoding="utf-8")
    for name in SERVICES:
        assert f"`{name}`" in docs, f"docs/docker.md does not mention `{name}`"
    assert "chargeback.toml.example" in docs and "--profile demo" in docs
    assert "chargeback.read.duckdb" in docs
