"""A local single-node Apache Kafka (KRaft, combined broker + controller) in one directory.

Layout of ``dir``: ``server.properties`` (remembers the ports), ``log4j2.properties``,
``data/`` (the log dir), ``logs/`` (``server.log``, ``server.out``), ``kafka.pid``.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path

from chargeback.errors import KafkaUnavailableError, UsageError
from localkafka.jars import KAFKA_VERSION, cache_dir, java_executable, kafka_classpath

HOST = "127.0.0.1"
DEFAULT_PORT = 9092
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0

Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    pass


def start(
    dir: Path,
    port: int = DEFAULT_PORT,
    *,
    progress: Progress = _quiet,
    timeout: float = START_TIMEOUT_S,
    extra_listeners: Mapping[str, tuple[str, int]] | None = None,
    extra_properties: Mapping[str, str] | None = None,
    jvm_options: Sequence[str] = (),
) -> str:
    """Start the broker kept in ``dir`` unless it runs already; return its bootstrap address.

    ``port=0`` picks a free port (the one used last time, if still free). Returns only once
    the broker answers a metadata request (on the PLAINTEXT listener).

    For tests that need more than the plain broker: ``extra_listeners`` maps a listener name
    to (security protocol, port), e.g. ``{"SASL_PLAINTEXT": ("SASL_PLAINTEXT", 19094)}``,
    added beside PLAINTEXT and CONTROLLER (and advertised on 127.0.0.1); ``extra_properties``
    are written into ``server.properties`` over the defaults; ``jvm_options`` go to the
    broker's JVM only (not to the storage format run), e.g. a ``-javaagent:`` option.
    """
    dir = dir.resolve()
    dir.mkdir(parents=True, exist_ok=True)
    with _lock(dir):
        running = status(dir)
        if running is not None:
            return running
        _pid_file(dir).unlink(missing_ok=True)

        previous = _read_properties(dir / "server.properties")
        broker_port = _choose_port(port, _port_of(previous.get("listeners"), "PLAINTEXT"))
        controller_port = _choose_port(
            0, _port_of(previous.get("listeners"), "CONTROLLER"), avoid=broker_port
        )
        _write_config(
            dir, broker_port, controller_port, extra_listeners or {}, extra_properties or {}
        )
        address = f"{HOST}:{broker_port}"

        java = java_executable()
        if not _kafka_jars_cached():
            progress(f"fetching Apache Kafka {KAFKA_VERSION} jars with Maven (first run only)")
        classpath = os.pathsep.join(str(jar) for jar in kafka_classpath())

        if not (dir / "data" / "meta.properties").exists():
            progress(f"formatting storage in {dir / 'data'}")
            _format_storage(dir, java, classpath)

        progress(f"starting Apache Kafka {KAFKA_VERSION} on {address} (logs in {dir / 'logs'})")
        pid = _spawn(dir, java, classpath, jvm_options)
        _write_pid(dir, pid)
        try:
            _wait_serving(address, timeout, dir=dir, pid=pid)
        except BaseException:
            _terminate(pid, grace=5.0)
            _pid_file(dir).unlink(missing_ok=True)
            raise
        return address


def stop(dir: Path) -> bool:
    """Stop the broker kept in ``dir``; False if it was not running. SIGTERM, then SIGKILL."""
    dir = dir.resolve()
    pid = _running_pid(dir)
    if pid is None:
        _pid_file(dir).unlink(missing_ok=True)
        return False
    _terminate(pid, grace=STOP_TIMEOUT_S)
    _pid_file(dir).unlink(missing_ok=True)
    return True


def status(dir: Path) -> str | None:
    """The bootstrap address of the broker kept in ``dir`` if its process runs, else None."""
    dir = dir.resolve()
    if _running_pid(dir) is None:
        return None
    port = _port_of(_read_properties(dir / "server.properties").get("listeners"), "PLAINTEXT")
    return None if port is None else f"{HOST}:{port}"


def wait_serving(bootstrap: str, timeout: float = START_TIMEOUT_S) -> None:
    """Return once the broker at ``bootstrap`` answers a metadata request; raise after timeout."""
    _wait_serving(bootstrap, timeout, dir=None, pid=None)


# --- configuration ---------------------------------------------------------------------------


def _server_properties(dir: Path, broker_port: int, controller_port: int) -> dict[str, str]:
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{broker_port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{broker_port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(dir / "data"),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # 2 MiB records plus batch overhead; clients default to 1 MiB and must raise theirs.
        "message.max.bytes": str(8 * 1024 * 1024),
        "replica.fetch.max.bytes": str(8 * 1024 * 1024),
        "socket.request.max.bytes": str(100 * 1024 * 1024),
    }


def _write_config(
    dir: Path,
    broker_port: int,
    controller_port: int,
    extra_listeners: Mapping[str, tuple[str, int]],
    extra_properties: Mapping[str, str],
) -> None:
    (dir / "data").mkdir(exist_ok=True)
    (dir / "logs").mkdir(exist_ok=True)
    props = _server_properties(dir, broker_port, controller_port)
    for name, (protocol, listener_port) in extra_listeners.items():
        props["listeners"] += f",{name}://{HOST}:{listener_port}"
        props["advertised.listeners"] += f",{name}://{HOST}:{listener_port}"
        props["listener.security.protocol.map"] += f",{name}:{protocol}"
    props.update(extra_properties)
    text = "# Written by localkafka (kafka-chargeback); rewritten on every start.\n"
    text += "".join(f"{key}={value}\n" for key, value in props.items())
    _atomic_write(dir / "server.properties", text)
    log4j = resources.files("localkafka").joinpath("log4j2.properties").read_text("utf-8")
    _atomic_write(dir / "log4j2.properties", log4j)


def _read_properties(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return {}
    props: dict[str, str] = {}
    for line in lines:
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, _, value = line.partition("=")
            props[key.strip()] = value.strip()
    return props


def _port_of(listeners: str | None, name: str) -> int | None:
    """The port of listener ``name`` in a ``listeners`` value like ``NAME://host:port,...``."""
    for listener in (listeners or "").split(","):
        prefix, sep, rest = listener.strip().partition("://")
        if sep and prefix == name:
            with contextlib.suppress(ValueError):
                return int(rest.rpartition(":")[2])
    return None


def _choose_port(requested: int, previous: int | None, avoid: int | None = None) -> int:
    if requested:
        if not _port_free(requested):
            raise UsageError(
                f"port {requested} on {HOST} is already in use; pick another with --port "
                "(0 picks a free one)"
            )
        return requested
    if previous is not None and previous != avoid and _port_free(previous):
        return previous
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        if port != avoid:
            return port


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _cluster_id() -> str:
    """A Kafka ``Uuid`` string: 16 random bytes, URL-safe base64 without padding."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):
            return text


def _kafka_jars_cached() -> bool:
    return bool(os.environ.get("KAFKA_HOME")) or (cache_dir() / "libs").is_dir()


# --- processes -------------------------------------------------------------------------------


def _jvm_args(dir: Path, classpath: str) -> list[str]:
    return [
        f"-Dlog4j2.configurationFile={dir / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={dir / 'logs'}",
        "-Djava.awt.headless=true",
        "-cp",
        classpath,
    ]


def _format_storage(dir: Path, java: str, classpath: str) -> None:
    out = dir / "logs" / "format.out"
    # Kafka 4.x: static controller.quorum.voters needs neither --standalone nor
    # --initial-controllers; --ignore-formatted makes a re-run harmless.
    cmd = [
        java,
        "-Xmx256m",
        *_jvm_args(dir, classpath),
        "kafka.tools.StorageTool",
        "format",
        "--cluster-id",
        _cluster_id(),
        "--config",
        str(dir / "server.properties"),
        "--ignore-formatted",
    ]
    pid = _spawn_raw(cmd, out)
    _, wait_status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(wait_status)
    if code != 0:
        raise KafkaUnavailableError(f"formatting Kafka storage failed (exit {code}): {_tail(out)}")


def _spawn(dir: Path, java: str, classpath: str, jvm_options: Sequence[str] = ()) -> int:
    out = dir / "logs" / "server.out"
    cmd = [
        java,
        "-Xms256m",
        "-Xmx1g",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExplicitGCInvokesConcurrent",
        *jvm_options,
        *_jvm_args(dir, classpath),
        "kafka.Kafka",
        str(dir / "server.properties"),
    ]
    with out.open("a", encoding="utf-8") as fh:
        fh.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting kafka.Kafka\n")
    return _spawn_raw(cmd, out)


def _spawn_raw(cmd: list[str], out: Path) -> int:
    """Run ``cmd`` in a new session, stdin from /dev/null, stdout+stderr appended to ``out``.

    posix_spawn rather than subprocess.Popen: the broker outlives this process, and a
    Popen object dropped while its child runs warns (an error under pytest's settings).
    """
    try:
        return os.posix_spawn(
            cmd[0],
            cmd,
            dict(os.environ),
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, str(out), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
            setsid=True,
        )
    except OSError as exc:
        raise KafkaUnavailableError(f"cannot run {cmd[0]}: {exc}") from exc


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child: ask the kernel below
    else:
        if waited == pid:
            return False  # our child, now reaped
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _terminate(pid: int, grace: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_gone(pid, grace):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not _wait_gone(pid, 10.0):
        raise KafkaUnavailableError(f"Kafka broker (pid {pid}) did not exit after SIGKILL")


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _pid_file(dir: Path) -> Path:
    return dir / "kafka.pid"


def _write_pid(dir: Path, pid: int) -> None:
    _atomic_write(_pid_file(dir), f"{pid}\n")


def _running_pid(dir: Path) -> int | None:
    """The pid in ``dir/kafka.pid`` if that process is alive and is this dir's broker."""
    try:
        pid = int(_pid_file(dir).read_text(encoding="ascii").strip())
    except (FileNotFoundError, ValueError):
        return None
    if pid <= 0 or not _alive(pid):
        return None
    cmdline = Path("/proc") / str(pid) / "cmdline"
    if Path("/proc/self/cmdline").exists():  # Linux: make sure the pid was not reused
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            return None  # gone between the two checks
        if str(dir / "server.properties").encode() not in args:
            return None
    return pid


@contextlib.contextmanager
def _lock(dir: Path) -> Iterator[None]:
    """Serialise starts on one dir (two at once would launch two brokers)."""
    with (dir / ".lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


# --- readiness -------------------------------------------------------------------------------


def _wait_serving(bootstrap: str, timeout: float, *, dir: Path | None, pid: int | None) -> None:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    host, _, port_text = bootstrap.rpartition(":")
    port = int(port_text)
    deadline = time.monotonic() + timeout
    admin: AdminClient | None = None
    while True:
        if pid is not None and not _alive(pid):
            where = f" (see {dir / 'logs'})" if dir is not None else ""
            detail = _tail(dir / "logs" / "server.out") if dir is not None else ""
            raise KafkaUnavailableError(
                f"Kafka broker exited during start-up{where}: {detail or 'no output'}"
            )
        if _port_open(host, port):
            if admin is None:
                # log_level 0: librdkafka's connection-refused chatter stays off our terminal.
                admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
            try:
                metadata = admin.list_topics(timeout=2.0)
            except KafkaException:
                pass
            else:
                if metadata.brokers:
                    return
        if time.monotonic() >= deadline:
            raise KafkaUnavailableError(
                f"Kafka broker at {bootstrap} did not answer within {timeout:.0f} s"
            )
        time.sleep(0.25)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 3) -> str:
    """The last few meaningful lines of ``path`` joined into one line."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    kept: list[str] = []
    for line in text.splitlines():
        if line.startswith("--- "):
            kept = []  # only this run's output counts
        elif line.strip() and not line.startswith("\tat "):
            kept.append(line.strip())
    return " | ".join(kept[-lines:])[:500]
