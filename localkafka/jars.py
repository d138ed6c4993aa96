"""The Apache Kafka jars the local broker runs on.

Either an existing installation (``$KAFKA_HOME/libs``) or a per-user cache filled once from
Maven Central with ``mvn dependency:copy-dependencies``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from chargeback.errors import KafkaUnavailableError

KAFKA_VERSION = "4.1.1"
SCALA_VERSION = "2.13"
# The newest jmx_exporter Java agent on Maven Central: from 1.1.0 on the agent jar is published
# on GitHub Releases only (Maven Central carries just the `collector` library).
JMX_EXPORTER_VERSION = "1.0.1"

_FETCH_TIMEOUT_S = 900


def java_executable() -> str:
    """The ``java`` to run the broker with: ``$JAVA_HOME/bin/java`` or ``java`` on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise KafkaUnavailableError(
            "java not found: install Java 17+ (or set JAVA_HOME) to run the local Kafka broker"
        )
    return found


def cache_dir() -> Path:
    """Where fetched jars live: ``${XDG_CACHE_HOME:-~/.cache}/kafka-chargeback/kafka-<version>``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kafka-chargeback" / f"kafka-{KAFKA_VERSION}"


def kafka_classpath() -> list[Path]:
    """The jar files needed by ``kafka.Kafka`` and ``kafka.tools.StorageTool``, sorted.

    Uses ``$KAFKA_HOME/libs`` when ``KAFKA_HOME`` is set; otherwise the per-user cache,
    fetching it with Maven the first time.
    """
    kafka_home = os.environ.get("KAFKA_HOME")
    if kafka_home:
        libs = Path(kafka_home) / "libs"
        jars = sorted(libs.glob("*.jar"))
        if not jars:
            raise KafkaUnavailableError(f"KAFKA_HOME is set but {libs} holds no jar files")
        return jars
    libs = cache_dir() / "libs"
    if not libs.is_dir():
        _fetch(libs, _pom_text(), "kafka_*.jar", f"Apache Kafka {KAFKA_VERSION}")
    jars = sorted(libs.glob("*.jar"))
    if not jars:
        raise KafkaUnavailableError(f"{libs} holds no jar files; delete it and try again")
    return jars


def jmx_exporter_agent() -> Path:
    """``io.prometheus.jmx:jmx_prometheus_javaagent`` (JMX_EXPORTER_VERSION), for ``-javaagent:``.

    Kept beside the Kafka jars in the per-user cache, fetched with Maven the first time.
    """
    name = f"jmx_prometheus_javaagent-{JMX_EXPORTER_VERSION}.jar"
    jar = cache_dir().parent / f"jmx-exporter-{JMX_EXPORTER_VERSION}" / name
    if not jar.is_file():
        pom = _JMX_POM.replace("@JMX_EXPORTER_VERSION@", JMX_EXPORTER_VERSION)
        _fetch(jar.parent, pom, name, f"jmx_exporter {JMX_EXPORTER_VERSION}")
    return jar


_JMX_POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.kafka-chargeback</groupId>
  <artifactId>localkafka-jmx-exporter</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>io.prometheus.jmx</groupId>
      <artifactId>jmx_prometheus_javaagent</artifactId>
      <version>@JMX_EXPORTER_VERSION@</version>
    </dependency>
  </dependencies>
  <build>
    <pluginManagement>
      <plugins>
        <plugin>
          <groupId>org.apache.maven.plugins</groupId>
          <artifactId>maven-dependency-plugin</artifactId>
          <version>3.8.1</version>
        </plugin>
      </plugins>
    </pluginManagement>
  </build>
</project>
"""


def _pom_text() -> str:
    template = resources.files("localkafka").joinpath("pom.xml").read_text(encoding="utf-8")
    return template.replace("@KAFKA_VERSION@", KAFKA_VERSION)


def _fetch(libs: Path, pom: str, expected: str, what: str) -> None:
    """Download ``pom``'s runtime jars into ``libs``: into a temp folder beside it, then one
    rename. ``expected``: a glob one of them must match; ``what``: its name for messages."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaUnavailableError(
            f"mvn not found: install Maven to fetch {what}"
            + (", or set KAFKA_HOME to an unpacked Kafka distribution" if "Kafka" in what else "")
        )
    java_executable()  # mvn needs it too; fail with the clearer message
    parent = libs.parent
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".fetch-", dir=parent))
    try:
        (work / "pom.xml").write_text(pom, encoding="utf-8")
        out = work / "libs"
        cmd = [
            mvn,
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(work / "pom.xml"),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={out}",
        ]
        try:
            proc = subprocess.run(
                cmd,
                cwd=work,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=_FETCH_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise KafkaUnavailableError(
                f"fetching {what} with mvn took over {_FETCH_TIMEOUT_S} s"
            ) from exc
        if proc.returncode != 0 or not any(out.glob(expected)):
            raise KafkaUnavailableError(
                f"fetching {what} with mvn failed "
                f"(exit {proc.returncode}): {_last_line(proc.stdout + proc.stderr)}"
            )
        try:
            out.rename(libs)
        except OSError:
            # Another process finished the same fetch first; theirs is as good as ours.
            if not libs.is_dir():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _last_line(text: str) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR" in line]
    chosen = errors[0] if errors else (lines[-1] if lines else "no output")
    return chosen[:300]
