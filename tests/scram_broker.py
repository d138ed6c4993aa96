"""A second local Apache Kafka broker for the quota-mode test: SASL/SCRAM users, a user-level
default quota, and jmx_exporter's Java agent serving the quota byte rates.

Listeners: PLAINTEXT (unauthenticated, for the test's own admin work; no authorizer is set, so
ANONYMOUS may do anything), SASL_PLAINTEXT with SCRAM-SHA-512 (the clients being billed) and
CONTROLLER. The agent's rules are the ones docs/collectors.md documents, read from that page,
plus one test-only rule for the broker's own per-topic byte counters (the reference).
"""

import re
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

# The admin package re-exports these, but its stubs do not say so (as with NewTopic).
from confluent_kafka.admin._scram import (
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from localkafka import broker
from localkafka.jars import java_executable, jmx_exporter_agent, kafka_classpath

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "collectors.md"
SASL = "SASL_PLAINTEXT"

# Test-only: BytesInPerSec / BytesOutPerSec per topic, their cumulative Count (record bytes the
# broker appended / sent in fetch responses), as gauges.
REFERENCE_PATTERN = (
    "kafka.server<type=BrokerTopicMetrics, name=(Bytes(?:In|Out)PerSec), topic=(.+)><>Count"
)
REFERENCE_RULE = f"""\
  - pattern: '{REFERENCE_PATTERN}'
    name: kafka_server_brokertopicmetrics_$1_count
    type: GAUGE
    labels:
      topic: "$2"
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def documented_rules() -> str:
    """The jmx_exporter configuration shown in docs/collectors.md (quota mode)."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    (block,) = [b for b in blocks if "kafka_server_$1_byte_rate" in b]
    return re.sub(r"^   ", "", block, flags=re.MULTILINE)  # the doc indents it in a list item


def agent_config() -> str:
    include = (
        "includeObjectNames:\n"
        '  - "kafka.server:type=Produce,*"\n'
        '  - "kafka.server:type=Fetch,*"\n'
        '  - "kafka.server:type=BrokerTopicMetrics,*"\n'
    )
    return include + documented_rules() + REFERENCE_RULE


@dataclass
class ScramBroker:
    dir: Path
    bootstrap: str  # PLAINTEXT: the test's admin work
    sasl_bootstrap: str  # SASL_PLAINTEXT, SCRAM-SHA-512: the billed clients
    metrics_url: str  # jmx_exporter

    @classmethod
    def start(cls, dir: Path) -> "ScramBroker":
        dir.mkdir(parents=True, exist_ok=True)
        sasl_port, agent_port = free_port(), free_port()
        config = dir / "jmx-exporter.yml"
        config.write_text(agent_config(), encoding="utf-8")
        agent = f"-javaagent:{jmx_exporter_agent()}=127.0.0.1:{agent_port}:{config}"
        jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        bootstrap = broker.start(
            dir,
            port=0,
            extra_listeners={SASL: (SASL, sasl_port)},
            extra_properties={
                "sasl.enabled.mechanisms": "SCRAM-SHA-512",
                "listener.name.sasl_plaintext.sasl.enabled.mechanisms": "SCRAM-SHA-512",
                "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": jaas,
            },
            jvm_options=[agent],
        )
        return cls(
            dir, bootstrap, f"127.0.0.1:{sasl_port}", f"http://127.0.0.1:{agent_port}/metrics"
        )

    def stop(self) -> None:
        broker.stop(self.dir)

    def add_scram_users(self, passwords: dict[str, str]) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
        upserts: list[UserScramCredentialAlteration] = [
            UserScramCredentialUpsertion(user, info, password.encode())
            for user, password in passwords.items()
        ]
        for future in admin.alter_user_scram_credentials(upserts).values():
            future.result(timeout=30)

    def set_default_user_quota(self, bytes_per_second: int) -> str:
        """`kafka-configs --entity-type users --entity-default`, with Kafka's own ConfigCommand
        (confluent-kafka's AdminClient has no client-quota calls)."""
        classpath = ":".join(str(jar) for jar in kafka_classpath())
        rate = str(bytes_per_second)
        command = [
            java_executable(), "-Xmx256m", "-cp", classpath,
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.dir / 'tool-logs'}",
            "kafka.admin.ConfigCommand", "--bootstrap-server", self.bootstrap,
            "--alter", "--entity-type", "users", "--entity-default", "--add-config",
            f"producer_byte_rate={rate},consumer_byte_rate={rate}",
        ]  # fmt: skip
        result = subprocess.run(
            command,
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def client_config(self, user: str, password: str) -> dict[str, str]:
        return {
            "bootstrap.servers": self.sasl_bootstrap,
            "security.protocol": SASL,
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": user,
            "sasl.password": password,
        }
