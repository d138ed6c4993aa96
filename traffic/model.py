"""A seeded model of a platform team's Kafka usage, as a stream of §1 usage events.

Same seed and arguments, same records, byte for byte. The shape of the traffic:

- about `accounts` service accounts on three clusters, with names that look real; some records
  carry the `User:` principal prefix, which the parser strips;
- heavy-tailed volumes: account sizes follow a Zipf law, so a few accounts carry most bytes;
- a daily rhythm (peak mid-afternoon, local to each cluster), quieter weekends, growth over the
  year, and some accounts starting or stopping part-way through the range;
- several client ids and topics per account; produce and fetch, fetch usually larger (fan-out);
- timestamps both as RFC 3339 strings with offsets and as epoch milliseconds.

Optionally a fraction of late events (timestamps hours or days behind the stream) and of bad
records (each of the kinds in `BAD_KINDS`, all of which the service must reject).

Speed matters (a million records in a few seconds): everything fixed per account, client and topic
is pre-rendered into JSON fragments, random draws are made in bulk per hour, and timestamps are
assembled from cached per-hour prefixes rather than formatted with datetime per event.
"""

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
YEAR_MS = 365 * DAY_MS

# (name, share of traffic, UTC offset in hours of its users, weekend factor). Staging is quiet at
# weekends; production keeps a good part of its load (batch jobs, customers).
CLUSTERS: tuple[tuple[str, float, int, float], ...] = (
    ("prod-eu", 0.45, 1, 0.45),
    ("prod-us", 0.40, -5, 0.5),
    ("staging", 0.15, 0, 0.15),
)

# Kinds of bad record the model can make; every one of them is a §1 rejection.
BAD_KINDS = (
    "not_json",
    "negative_bytes",
    "fractional_bytes",
    "bytes_string",
    "unknown_type",
    "empty_account",
    "missing_account",
)

_DOMAINS = (
    "orders", "payments", "inventory", "checkout", "search-indexer", "analytics-etl",
    "fraud-detection", "notifications", "billing", "clickstream", "user-profile",
    "recommendations", "shipping", "audit-log", "metrics-collector", "cdc-postgres",
    "debezium-connect", "ksql", "flink-jobs", "spark-streaming", "data-lake-sink",
    "s3-sink", "elasticsearch-sink", "mirrormaker", "pricing", "catalog", "ledger",
    "session-tracker", "email-sender", "sms-gateway", "geo-enricher", "ad-events",
    "risk-scoring", "identity", "reporting", "feature-store", "ml-training", "log-shipper",
    "warehouse-loader", "returns",
)  # fmt: skip
_VARIANTS = ("v2", "batch", "replica", "backfill", "canary", "legacy", "eu", "us", "etl", "api")
_EVENTS = ("events", "created", "updated", "changes", "commands", "dlq", "snapshots", "v1", "v2")
_OFFSETS = ((0, "Z"), (0, "+00:00"), (1, "+01:00"), (2, "+02:00"), (-5, "-05:00"), (-4, "-04:00"))
_NOISE_BITS = 12  # size of the table of per-event size multipliers: 4096 entries
_PICK_BITS = 6  # size of each unit's template lookup table: 64 entries

# A record template: what is fixed for one (account, cluster, client, topic, type).
# prefix + str(bytes) + middle + timestamp + tail is the record; fields is for the bad variants.
_Template = tuple[str, str, str, str, float, int | None, bool, dict[str, object]]
# key, prefix, middle, tail, mean bytes, UTC offset in hours (None: epoch ms), with ms?, fields


@dataclass
class _Account:
    name: str
    weight: float  # its share of bytes, before time effects (Zipf)
    growth: float  # yearly growth factor of its traffic
    starts: float  # position in the range (0..1) where it first appears
    stops: float  # position in the range (0..1) after which it is gone


@dataclass
class _Unit:
    """One account's traffic on one cluster."""

    account: int
    cluster: int
    rate: float  # relative number of events
    templates: list[_Template]
    table: list[int]  # 2**_PICK_BITS template indices, in proportion to the templates' weights


class TrafficModel:
    """The fixed part of the traffic (accounts, clients, topics, sizes), made from the seed."""

    def __init__(self, seed: int, accounts: int = 40) -> None:
        if accounts < 1:
            raise ValueError("accounts must be at least 1")
        self.seed = seed
        rng = random.Random(f"traffic-model:{seed}")
        self.accounts = _make_accounts(rng, accounts)
        self.units = _make_units(rng, self.accounts)
        # Log-normal size noise with mean 1, drawn once: a table lookup per event is much cheaper
        # than a lognormvariate() call.
        noise = [rng.lognormvariate(0.0, 0.8) for _ in range(1 << _NOISE_BITS)]
        mean = sum(noise) / len(noise)
        self.noise = [n / mean for n in noise]

    @property
    def account_names(self) -> list[str]:
        return [a.name for a in self.accounts]

    def records(
        self,
        rng: random.Random,
        start_ms: int,
        end_ms: int,
        count: int,
        *,
        late_fraction: float = 0.0,
        bad_fraction: float = 0.0,
        lifecycle: bool = True,
        bytes_scale: float = 1.0,
    ) -> Iterator[tuple[str, bytes]]:
        """`count` records spread over [start_ms, end_ms) in time order, apart from late ones.

        With `lifecycle`, accounts start and stop at their places in this range; without it
        (live traffic) every account is active.
        """
        if end_ms <= start_ms:
            raise ValueError("end must be after start")
        if count < 0:
            raise ValueError("count must not be negative")
        span = end_ms - start_ms
        bucket = min(HOUR_MS, span)
        buckets = list(range(start_ms, end_ms, bucket))
        days = _DayTables(self, start_ms, span, lifecycle)
        # Each bucket's weight per cluster, then an exact split of `count` by cumulative rounding.
        weights = [self._cluster_weights(days, b, min(bucket, end_ms - b)) for b in buckets]
        totals = [sum(w) for w in weights]
        grand = sum(totals)
        if grand <= 0:
            raise ValueError("no account is active in the range")
        running, placed, counts = 0.0, 0, []
        for total in totals:
            running += total
            upto = min(count, round(count * running / grand))
            counts.append(upto - placed)
            placed = upto
        counts[-1] += count - placed

        noise, pick_bits, noise_bits = self.noise, _PICK_BITS, _NOISE_BITS
        getrandbits, uniform = rng.getrandbits, rng.random
        prefixes: dict[tuple[int, int], str] = {}
        cluster_ids = list(range(len(CLUSTERS)))
        for b_start, n, cluster_weights in zip(buckets, counts, weights, strict=True):
            if not n:
                continue
            b_len = min(bucket, end_ms - b_start)
            units_by_cluster, cum_by_cluster = days.tables(b_start)
            sequence = rng.choices(cluster_ids, weights=cluster_weights, k=n)
            picks = [
                iter(rng.choices(units, cum_weights=cum, k=sequence.count(c)) if cum else [])
                for c, (units, cum) in enumerate(zip(units_by_cluster, cum_by_cluster, strict=True))
            ]
            times = sorted([uniform() for _ in range(n)])
            for c, r in zip(sequence, times, strict=True):
                unit = next(picks[c])
                t = unit.templates[unit.table[getrandbits(pick_bits)]]
                moment = b_start + int(r * b_len)
                if late_fraction and uniform() < late_fraction:
                    moment = max(0, moment - _lateness(rng))
                size = int(t[4] * bytes_scale * noise[getrandbits(noise_bits)])
                offset = t[5]
                if offset is None:
                    stamp = str(moment)
                else:  # inlined RFC 3339: this loop runs once per event
                    hour, within = divmod(moment, HOUR_MS)
                    prefix = prefixes.get((hour, offset)) or _hour_prefix(hour, offset, prefixes)
                    second, milli = divmod(within, 1000)
                    stamp = prefix + _MINUTE_SECOND[second] + (_MILLIS[milli] if t[6] else "")
                if bad_fraction and uniform() < bad_fraction:
                    yield t[0], _bad_record(rng, t, size, moment)
                else:
                    yield t[0], (t[1] + str(size) + t[2] + stamp + t[3]).encode()

    def _cluster_weights(self, days: "_DayTables", at_ms: int, length_ms: int) -> list[float]:
        masses = days.masses(at_ms)
        weights = []
        for (_, share, offset, weekend_factor), mass in zip(CLUSTERS, masses, strict=True):
            local = at_ms + offset * HOUR_MS
            hour = (local % DAY_MS) / HOUR_MS
            weekday = (local // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday: 0 is Monday
            # Peak mid-afternoon local time, a tenth of it at 2 a.m.
            rhythm = 0.55 + 0.45 * math.cos(2 * math.pi * (hour - 14.0) / 24)
            if weekday >= 5:
                rhythm *= weekend_factor
            weights.append(share * rhythm * mass * length_ms / HOUR_MS)
        return weights


class _DayTables:
    """Per day and cluster: the active units and their cumulative weights (growth, lifecycle)."""

    def __init__(self, model: TrafficModel, start_ms: int, span_ms: int, lifecycle: bool) -> None:
        self.model = model
        self.start_ms = start_ms
        self.span_ms = span_ms
        self.lifecycle = lifecycle
        self.cache: dict[int, tuple[list[list[_Unit]], list[list[float]]]] = {}

    def tables(self, at_ms: int) -> tuple[list[list[_Unit]], list[list[float]]]:
        day = at_ms // DAY_MS
        found = self.cache.get(day)
        if found is None:
            found = self._build(day)
            self.cache[day] = found
        return found

    def masses(self, at_ms: int) -> list[float]:
        return [cum[-1] if cum else 0.0 for cum in self.tables(at_ms)[1]]

    def _build(self, day: int) -> tuple[list[list[_Unit]], list[list[float]]]:
        noon = day * DAY_MS + DAY_MS // 2
        position = (noon - self.start_ms) / self.span_ms
        years = max(0.0, (noon - self.start_ms) / YEAR_MS)
        accounts = self.model.accounts
        units: list[list[_Unit]] = [[] for _ in CLUSTERS]
        cums: list[list[float]] = [[] for _ in CLUSTERS]
        for unit in self.model.units:
            account = accounts[unit.account]
            if self.lifecycle and not account.starts <= position < account.stops:
                continue
            weight = unit.rate * account.growth**years
            cum = cums[unit.cluster]
            units[unit.cluster].append(unit)
            cum.append((cum[-1] if cum else 0.0) + weight)
        return units, cums


def _lateness(rng: random.Random) -> int:
    """How far behind the stream a late event is: mostly hours, sometimes days."""
    if rng.random() < 0.7:
        return rng.randrange(1, 48) * HOUR_MS + rng.randrange(HOUR_MS)
    return rng.randrange(2, 10) * DAY_MS + rng.randrange(DAY_MS)


_MINUTE_SECOND = [f"{s // 60:02d}:{s % 60:02d}" for s in range(3600)]
_MILLIS = [f".{m:03d}" for m in range(1000)]


def _hour_prefix(hour: int, offset: int, prefixes: dict[tuple[int, int], str]) -> str:
    """`YYYY-MM-DDTHH:` of epoch hour `hour` at UTC offset `offset` hours, cached in `prefixes`.

    Offsets are whole hours, so minutes and seconds are those of UTC: one datetime per hour and
    offset, not per event.
    """
    local = datetime(1970, 1, 1) + timedelta(hours=hour + offset)
    prefix = local.strftime("%Y-%m-%dT%H:")
    prefixes[(hour, offset)] = prefix
    return prefix


def _bad_record(rng: random.Random, t: _Template, size: int, moment: int) -> bytes:
    fields = dict(t[7])
    fields["timestamp"] = moment
    kind = rng.choice(BAD_KINDS)
    return bad_value(kind, fields, size)


def bad_value(kind: str, fields: dict[str, object], size: int) -> bytes:
    """A record of bad `kind` (one of BAD_KINDS) made from a good event's fields."""
    doc = {**fields, "bytes": size}
    if kind == "not_json":
        return orjson.dumps(doc)[: -len(str(size)) - 12]  # cut off mid-record
    if kind == "negative_bytes":
        doc["bytes"] = -max(size, 1)
    elif kind == "fractional_bytes":
        doc["bytes"] = size + 0.5
    elif kind == "bytes_string":
        doc["bytes"] = str(size)
    elif kind == "unknown_type":
        doc["type"] = "replicate"
    elif kind == "empty_account":
        doc["service_account"] = "User:"  # empty once the principal prefix is stripped
    elif kind == "missing_account":
        del doc["service_account"]
    else:
        raise ValueError(f"unknown bad record kind {kind!r}")
    return orjson.dumps(doc)


def _make_accounts(rng: random.Random, count: int) -> list[_Account]:
    names = _account_names(rng, count)
    # Zipf sizes over a shuffled rank: which names are the big ones depends on the seed.
    ranks = list(range(1, count + 1))
    rng.shuffle(ranks)
    accounts = []
    for name, rank in zip(names, ranks, strict=True):
        starts, stops = 0.0, 1.0
        fate = rng.random()
        if fate < 0.15:
            starts = rng.uniform(0.1, 0.85)  # a new service launched during the range
        elif fate < 0.25:
            stops = rng.uniform(0.15, 0.9)  # a service retired during the range
        # Most accounts grow (the platform grows ~60% a year), some shrink.
        growth = max(0.5, rng.gauss(1.6, 0.5))
        accounts.append(_Account(name, rank**-1.3, growth, starts, stops))
    return accounts


def _account_names(rng: random.Random, count: int) -> list[str]:
    styles = ("svc-{}", "{}", "{}-service", "sa-{}")
    names: list[str] = []
    seen: set[str] = set()
    domains = list(_DOMAINS)
    rng.shuffle(domains)
    round_ = 0
    while len(names) < count:
        for domain in domains:
            if round_ == 0:
                base = domain
            elif round_ <= len(_VARIANTS):
                base = f"{domain}-{_VARIANTS[(round_ - 1 + len(domain)) % len(_VARIANTS)]}"
            else:
                base = f"{domain}-{round_:02d}"
            name = rng.choice(styles).format(base)
            if name not in seen:
                seen.add(name)
                names.append(name)
            if len(names) == count:
                break
        round_ += 1
    return names


def _make_units(rng: random.Random, accounts: list[_Account]) -> list[_Unit]:
    # Topics owned by producing accounts; consumers read from this pool (fan-out).
    roles = [rng.choices(("producer", "consumer", "processor"), (4, 3, 3))[0] for _ in accounts]
    # The largest accounts are stream processors and sinks that read and write: where the big
    # consumers are, fetch outweighs produce, as on real clusters.
    heaviest = sorted(range(len(accounts)), key=lambda i: -accounts[i].weight)[:3]
    for i in heaviest:
        roles[i] = "processor"
    owned: list[list[str]] = []
    for account, role in zip(accounts, roles, strict=True):
        domain = _domain_of(account.name)
        topics = [f"{domain}.{e}" for e in rng.sample(_EVENTS, rng.randint(1, 3))]
        owned.append(topics if role != "consumer" else [])
    pool = [topic for topics in owned for topic in topics] or ["events"]

    units = []
    for index, (account, role, topics) in enumerate(zip(accounts, roles, owned, strict=True)):
        domain = _domain_of(account.name)
        # Event rate and event size each carry half of the Zipf weight, so small accounts still
        # report regularly but with small numbers.
        rate = math.sqrt(account.weight)
        mean = 40e6 * math.sqrt(account.weight)  # bytes per report of the largest account
        fanout = rng.uniform(1.5, 4.0)
        prefixed = rng.random() < 0.35  # this account's clients report the `User:` principal
        homes = [0, 1] if rng.random() < 0.5 else [rng.randrange(2)]
        if rng.random() < 0.7:
            homes.append(2)  # most services also run in staging, with little traffic
        for cluster in homes:
            cluster_rate = rate * (0.05 if cluster == 2 else 1.0)
            # Client ids as teams leave them: instance names, worker names, librdkafka's default.
            clients = [
                rng.choice(("{d}-{i}", "{d}-{i}", "{d}-w{i}", "rdkafka")).format(d=domain, i=i + 1)
                for i in range(rng.randint(1, 3))
            ]
            clients = list(dict.fromkeys(clients))  # "rdkafka" may come twice
            streams: list[tuple[str, str, float]] = []  # type, topic, mean bytes
            if role != "consumer":
                streams += [("produce", topic, mean) for topic in topics]
            if role != "producer":
                read = rng.sample(pool, min(len(pool), rng.randint(1, 3)))
                streams += [("fetch", topic, mean * fanout) for topic in read]
            elif rng.random() < 0.5:
                streams.append(("fetch", f"{domain}.config", mean * 0.01))
            templates: list[_Template] = []
            weights: list[float] = []
            for kind, topic, size in streams:
                for client in clients:
                    account_field = f"User:{account.name}" if prefixed else account.name
                    # A third of clients send epoch milliseconds, the rest RFC 3339.
                    style = rng.choice((None, None, None, *_OFFSETS))
                    offset, suffix = style if style is not None else (None, "")
                    templates.append(
                        _template(
                            account.name,
                            {"service_account": account_field, "type": kind},
                            {"cluster": CLUSTERS[cluster][0], "client_id": client, "topic": topic},
                            size * (0.3 if cluster == 2 else 1.0),
                            offset,
                            suffix,
                            rng.random() < 0.5,
                        )
                    )
                    weights.append(rng.uniform(0.2, 1.0))
            units.append(_Unit(index, cluster, cluster_rate, templates, _pick_table(weights)))
    return units


def _template(
    key: str,
    head: dict[str, object],
    rest: dict[str, object],
    mean: float,
    offset: int | None,
    suffix: str,
    millis: bool,
) -> _Template:
    # orjson renders the fixed fragments so names are escaped exactly as JSON wants them.
    prefix = orjson.dumps(head).decode()[:-1] + ',"bytes":'
    tail = "," + orjson.dumps(rest).decode()[1:]
    if offset is None:
        middle = ',"timestamp":'
    else:
        middle = ',"timestamp":"'
        tail = suffix + '"' + tail
    return key, prefix, middle, tail, mean, offset, millis, {**head, **rest}


def _pick_table(weights: list[float]) -> list[int]:
    """2**_PICK_BITS indices into `weights`, each appearing in proportion to its weight."""
    slots = 1 << _PICK_BITS
    total = sum(weights)
    table: list[int] = []
    running = 0.0
    for index, weight in enumerate(weights):
        running += weight
        table += [index] * (max(1, round(slots * running / total)) - len(table))
    return (table + [len(weights) - 1] * slots)[:slots]


def _domain_of(name: str) -> str:
    for prefix in ("svc-", "sa-"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name.removesuffix("-service")


def _epoch_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def events(
    seed: int,
    start: datetime,
    end: datetime,
    count: int,
    accounts: int = 40,
    late_fraction: float = 0.0,
    bad_fraction: float = 0.0,
) -> Iterator[tuple[str, bytes]]:
    """`count` (key, value) records over [start, end): key the service account, value §1 JSON.

    In time order apart from the late ones; bad records are part of `count`.
    """
    model = TrafficModel(seed, accounts)
    rng = random.Random(f"traffic-events:{seed}")
    return model.records(
        rng,
        _epoch_ms(start),
        _epoch_ms(end),
        count,
        late_fraction=late_fraction,
        bad_fraction=bad_fraction,
    )


def live_events(
    seed: int,
    now: datetime,
    per_second: float,
    accounts: int = 40,
    bad_fraction: float = 0.0,
    bytes_scale: float = 1.0,
) -> Iterator[list[tuple[str, bytes]]]:
    """Endless traffic from `now` on: one list of records per second of event time.

    List i holds the events of [now + i s, now + i + 1 s), about `per_second` of them (fractions
    carry over). The caller paces: send list i once that second has come. `bytes_scale`
    multiplies every event's bytes, so many small reports can carry a day's usual volume.
    """
    if per_second < 0:
        raise ValueError("per_second must not be negative")
    model = TrafficModel(seed, accounts)
    rng = random.Random(f"traffic-live:{seed}")
    moment = _epoch_ms(now)
    owed = 0.0
    while True:
        owed += per_second
        n = int(owed)
        owed -= n
        yield list(
            model.records(
                rng,
                moment,
                moment + 1000,
                n,
                bad_fraction=bad_fraction,
                lifecycle=False,
                bytes_scale=bytes_scale,
            )
        )
        moment += 1000
