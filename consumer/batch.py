"""A batch of consumed records, added up in memory before one transaction writes it."""

from dataclasses import dataclass, field
from datetime import datetime

from consumer.events import EventParser, Rejected, TotalsKey


@dataclass(frozen=True, slots=True)
class Rejection:
    received_at: datetime
    topic: str
    partition: int
    offset: int
    reason: str
    kind: str
    payload: str | None


@dataclass
class Batch:
    """Everything one transaction applies: totals, rejections and each partition's next offset."""

    totals: dict[TotalsKey, list[int]] = field(default_factory=dict)  # [produced, consumed, events]
    rejections: list[Rejection] = field(default_factory=list)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    records: int = 0
    events: int = 0

    def __len__(self) -> int:
        return self.records

    def add_events(
        self,
        parser: EventParser,
        value: bytes | None,
        record_ms: int,
        horizon_ms: int | None = None,
    ) -> None:
        """Parse one record and add its events; raises Rejected, leaving the totals untouched."""
        totals = self.totals
        for key, produced, consumed in parser.parse_keyed(value, record_ms, horizon_ms):
            sums = totals.get(key)
            if sums is None:
                totals[key] = [produced, consumed, 1]
            else:
                sums[0] += produced
                sums[1] += consumed
                sums[2] += 1
            self.events += 1

    def add_rejection(
        self,
        rejected: Rejected,
        value: bytes | None,
        where: tuple[str, int, int],
        received_at: datetime,
        payload_limit: int,
    ) -> None:
        topic, partition, offset = where
        payload = None if value is None else value[:payload_limit].decode("utf-8", "replace")
        self.rejections.append(
            Rejection(
                received_at, topic, partition, offset, rejected.reason, rejected.kind, payload
            )
        )

    def advance(self, topic: str, partition: int, offset: int, records: int = 1) -> None:
        """Record that every offset up to `offset` of the partition is in this batch, `records`
        more records in all."""
        self.records += records
        self.next_offsets[(topic, partition)] = offset + 1
