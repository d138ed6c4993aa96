"""Collectors without a broker: rate integration (and its measured accuracy), delta dedup, state."""

import itertools
import math
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from collect.confluent_cloud import integer_bytes, parse_time
from collect.emit import DeliveryError
from collect.fetch import retry_after
from collect.prometheus import Prometheus, QuotaIntegrator


class FakeProducer:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.fail = False

    def send(self, events: list[dict[str, Any]]) -> int:
        if self.fail:
            raise DeliveryError("broker away")
        self.events += events
        return len(events)

    def totals(self) -> Counter[tuple[str, str, str]]:
        out: Counter[tuple[str, str, str]] = Counter()
        for e in self.events:
            out[(e["service_account"], e["type"], e.get("client_id", ""))] += e["bytes"]
        return out


class FakeHttp:
    def __init__(self) -> None:
        self.pages: dict[str, str] = {}

    def request(self, url: str, body: bytes | None = None, content_type: str = "") -> bytes:
        from collect.fetch import SourceError

        if url not in self.pages:
            raise SourceError(f"{url} answered HTTP 503")
        return self.pages[url].encode()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def quota_line(user: str, client: str, rate: str, kind: str = "produce") -> str:
    return f'kafka_server_{kind}_byte_rate{{user="{user}",client_id="{client}",}} {rate}\n'


def make(tmp_path: Path, mode: str, clock: Clock, **kw: Any) -> tuple[Prometheus, FakeHttp, Any]:
    http, producer = FakeHttp(), FakeProducer()
    collector = Prometheus(
        urls=kw.pop("urls", ["http://b1/metrics", "http://b2/metrics"]),
        mode=mode,
        producer=producer,  # type: ignore[arg-type]
        http=http,  # type: ignore[arg-type]
        state_path=tmp_path / "state.json",
        clock=clock,
        **kw,
    )
    return collector, http, producer


# -- the integrator ------------------------------------------------------------------------------


def test_trapezoid_between_points_nothing_before_the_first() -> None:
    integ = QuotaIntegrator(max_gap_s=60)
    assert integ.add("s", 0, 100.0) == 0
    assert integ.add("s", 10_000, 300.0) == 2000  # (100 + 300) / 2 * 10 s
    assert integ.add("s", 10_000, 999.0) == 0  # no time passed: ignored
    assert integ.add("s", 5_000, 999.0) == 0  # older: ignored
    assert integ.add("s", 20_000, 300.0) == 3000


def test_fractions_are_carried_so_nothing_is_lost_to_rounding() -> None:
    integ = QuotaIntegrator(max_gap_s=60)
    integ.add("s", 0, 0.3)
    got = [integ.add("s", t * 1000, 0.3) for t in range(1, 11)]  # 0.3 bytes a second
    assert sum(got) == 3 and got[:3] == [0, 0, 0]
    assert integ.series["s"]["carry"] == pytest.approx(0.0, abs=1e-9)


def test_no_integration_across_a_gap_longer_than_max_gap() -> None:
    integ = QuotaIntegrator(max_gap_s=30)
    integ.add("s", 0, 100.0)
    assert integ.add("s", 30_000, 100.0) == 3000  # exactly max-gap: integrated
    assert integ.add("s", 60_001, 100.0) == 0  # 30.001 s: new segment
    assert integ.add("s", 70_001, 100.0) == 1000


def test_series_silent_for_a_day_are_forgotten_by_sample_time() -> None:
    integ = QuotaIntegrator(max_gap_s=60)
    integ.add("old", 0, 1.0)
    integ.add("new", 1000, 1.0)
    integ.prune()
    assert set(integ.series) == {"old", "new"}
    integ.add("new", 24 * 3600 * 1000 + 1, 1.0)
    integ.prune()
    assert set(integ.series) == {"new"}


# -- accuracy on known synthetic curves ----------------------------------------------------------

WINDOW_S = 11.0  # Kafka's quota rate: 11 one-second samples (quota.window.num x .size.seconds)


def sine_bytes(t: float) -> float:
    """Antiderivative of r(t) = 40 kB/s + 25 kB/s sin(2 pi t/300) + 10 kB/s sin(2 pi t/47)."""
    return (
        40_000 * t
        - 25_000 * 300 / (2 * math.pi) * math.cos(2 * math.pi * t / 300)
        - 10_000 * 47 / (2 * math.pi) * math.cos(2 * math.pi * t / 47)
    )


def burst_bytes(t: float) -> float:
    """Antiderivative of a burst: 100 kB/s for 20 s, then idle for 47 s, repeating."""
    n, rest = divmod(t, 67.0)
    return n * 20 * 100_000 + min(rest, 20.0) * 100_000


def measured_error(
    antiderivative: Callable[[float], float], step: float, seed: int, rule: str
) -> float:
    """Relative error of one hour collected from the broker's windowed-average gauge."""
    rnd = random.Random(seed)

    def gauge(t: float) -> float:  # what the broker reports: the mean rate of the last window
        return (antiderivative(t) - antiderivative(t - WINDOW_S)) / WINDOW_S

    times = [1000.0]
    while times[-1] < 1000 + 3600:
        times.append(times[-1] + step + rnd.uniform(-1, 1))  # scrapes are never exactly on time
    if rule == "trapezoid":
        integ = QuotaIntegrator(max_gap_s=4 * step)
        collected = sum(
            integ.add("s", round(t * 1000), gauge(round(t * 1000) / 1000)) for t in times
        )
    else:
        collected = sum(gauge(a) * (b - a) for a, b in itertools.pairwise(times))
    true = antiderivative(times[-1]) - antiderivative(times[0])
    return (collected - true) / true


@pytest.mark.parametrize(
    ("curve", "step", "bound"),
    [
        (sine_bytes, 10, 0.0012),
        (sine_bytes, 15, 0.0015),
        (sine_bytes, 60, 0.0030),
        (burst_bytes, 10, 0.006),
        (burst_bytes, 15, 0.02),
        (burst_bytes, 60, 0.12),
    ],
)
def test_integration_error_on_known_curves(
    curve: Callable[[float], float], step: float, bound: float
) -> None:
    trapezoid = [abs(measured_error(curve, step, seed, "trapezoid")) for seed in range(20)]
    left = [abs(measured_error(curve, step, seed, "left")) for seed in range(20)]
    print(
        f"{curve.__name__} every {step}s: worst trapezoid {max(trapezoid):.3%},"
        f" left rectangle {max(left):.3%}"
    )
    assert max(trapezoid) < bound
    if curve is sine_bytes:
        assert max(trapezoid) < max(left)  # why the trapezoid


# -- quota mode ----------------------------------------------------------------------------------


def test_quota_sums_brokers_decodes_principals_and_drops_bad_samples(tmp_path: Path) -> None:
    clock = Clock(1_000_000.0)
    collector, http, producer = make(tmp_path, "quota", clock)
    rates = {"b1": ["100", "NaN", "300"], "b2": ["50", "+Inf", "-1"]}
    for i in range(3):
        for broker in ("b1", "b2"):
            http.pages[f"http://{broker}/metrics"] = (
                quota_line("CN%3Dreporting%2COU%3Ddata", "rep-1", rates[broker][i])
                + quota_line("svc-billing", "bc", "1000", "fetch")
                + quota_line("", "anonymous-client", "5")
            )
        assert collector.run_once()
        clock.now += 10
    # b1: 100 at t0, NaN dropped at t1, 300 at t2 -> (100+300)/2 * 20 s = 4000
    # b2: 50 at t0, then nothing usable -> 0; fetch: 1000 B/s on both brokers for 20 s = 40000
    assert producer.totals() == {
        ("CN=reporting,OU=data", "produce", "rep-1"): 4000,
        ("svc-billing", "fetch", "bc"): 40_000,
    }
    assert {e["cluster"] for e in producer.events} == {"default"}


def test_series_that_vanish_and_come_back(tmp_path: Path) -> None:
    clock = Clock(2_000_000.0)
    collector, http, producer = make(tmp_path, "quota", clock, urls=["http://b1/m"], max_gap=25)
    script = ["100", "100", None, "100", None, None, None, "100", "100"]  # every 10 s
    for rate in script:
        http.pages["http://b1/m"] = quota_line("a", "c", rate) if rate else "# nothing\n"
        collector.run_once()
        clock.now += 10
    # 0-10: 1000; 10..30 (absent at 20, back at 30, 20 s <= 25): 2000; 30..70 is 40 s > 25: new
    # segment, nothing; 70-80: 1000
    assert producer.totals() == {("a", "produce", "c"): 4000}


def test_quota_restart_carries_points_and_fractions_over(tmp_path: Path) -> None:
    clock = Clock(3_000_000.0)
    totals: Counter[tuple[str, str, str]] = Counter()
    for _run in range(5):  # a new process for every scrape, as with --once from cron
        collector, http, producer = make(tmp_path, "quota", clock, urls=["http://b1/m"])
        http.pages["http://b1/m"] = quota_line("a", "c", "0.25")
        collector.run_once()
        totals += producer.totals()
        clock.now += 10
    assert totals == {("a", "produce", "c"): 10}  # 0.25 B/s for 40 s: 2.5 per span, carried


def test_failed_delivery_keeps_the_spans_for_the_next_cycle(tmp_path: Path) -> None:
    clock = Clock(4_000_000.0)
    collector, http, producer = make(tmp_path, "quota", clock, urls=["http://b1/m"])
    http.pages["http://b1/m"] = quota_line("a", "c", "100")
    collector.run_once()
    clock.now += 10
    producer.fail = True
    with pytest.raises(DeliveryError):
        collector.run_once()
    producer.fail = False
    clock.now += 10
    collector.run_once()
    assert producer.totals() == {("a", "produce", "c"): 2000}


def test_a_failed_scrape_is_a_gap_not_an_error_for_the_others(tmp_path: Path) -> None:
    clock = Clock(5_000_000.0)
    collector, http, producer = make(tmp_path, "quota", clock)
    http.pages["http://b1/metrics"] = quota_line("a", "c", "10")
    http.pages["http://b2/metrics"] = "not { prometheus"
    assert not collector.run_once()
    clock.now += 10
    assert not collector.run_once()
    assert producer.totals() == {("a", "produce", "c"): 100}


# -- delta mode ----------------------------------------------------------------------------------


def delta_line(principal: str, kind: str, value: str, stamp: str, metric: str = "request") -> str:
    return (
        f"confluent_kafka_server_{metric}_bytes"
        f'{{kafka_id="lkc-1",principal_id="{principal}",type="{kind}",}} {value} {stamp}\n'
    )


def test_delta_counts_each_sample_once_across_scrapes_and_restarts(tmp_path: Path) -> None:
    clock = Clock(1_764_461_000.0)
    minute = [1764460800000, 1764460860000, 1764460920000]
    scrapes = [
        delta_line("sa-1", "Produce", "100", str(minute[0]))
        + delta_line("sa-1", "Metadata", "7", str(minute[0])),
        # the same sample again (in seconds this time), and the next minute
        delta_line("sa-1", "Produce", "100.0", str(minute[0] // 1000))
        + delta_line("sa-1", "Produce", "250", f"{minute[1] / 1000:.3f}")
        + delta_line("sa-2", "Fetch", "4e3", str(minute[1]), "response"),
        delta_line("sa-1", "Produce", "250", str(minute[1]))
        + delta_line("sa-2", "Fetch", "10", str(minute[2]), "response")
        + delta_line("sa-2", "Fetch", "12.5", str(minute[2] + 1), "response")  # not whole
        + delta_line("sa-2", "Fetch", "NaN", str(minute[2] + 2), "response")
        + delta_line("sa-2", "Fetch", "-3", str(minute[2] + 3), "response")
        + delta_line("sa-3", "Produce", "5", "")  # no timestamp: cannot be deduplicated
        + delta_line("sa-3", "Fetch", "5", str(minute[2]))  # Fetch on the request metric
        + "# EOF\n",
    ]
    totals: Counter[tuple[str, str, str]] = Counter()
    for text in scrapes:  # a restart between every scrape; two URLs serving the same data
        collector, http, producer = make(tmp_path, "delta", clock)
        http.pages["http://b1/metrics"] = http.pages["http://b2/metrics"] = text
        assert collector.run_once()
        totals += producer.totals()
        assert {e["cluster"] for e in producer.events} <= {"lkc-1"}
    assert totals == {("sa-1", "produce", ""): 350, ("sa-2", "fetch", ""): 4010}


def test_delta_cluster_flag_overrides_the_label(tmp_path: Path) -> None:
    collector, http, producer = make(tmp_path, "delta", Clock(0), urls=["u"], cluster="prod")
    http.pages["u"] = delta_line("sa-1", "Produce", "1", "1764460800000")
    collector.run_once()
    assert [e["cluster"] for e in producer.events] == ["prod"]


def test_state_of_one_mode_is_refused_by_the_other(tmp_path: Path) -> None:
    collector, http, _ = make(tmp_path, "delta", Clock(0), urls=["u"])
    http.pages["u"] = ""
    collector.run_once()
    from chargeback.errors import ChargebackError

    with pytest.raises(ChargebackError, match="belongs to --mode delta"):
        make(tmp_path, "quota", Clock(0), urls=["u"])


# -- small pieces --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5, 5),
        (5.0, 5),
        (0, 0),
        (2**53, 2**53),
        (2**53 + 1, None),
        (5.5, None),
        (-1, None),
        (True, None),
        ("5", None),
        (None, None),
        (math.nan, None),
        (math.inf, None),
    ],
)
def test_integer_bytes(value: object, expected: int | None) -> None:
    assert integer_bytes(value) == expected


def test_parse_time_and_retry_after() -> None:
    assert parse_time("2026-11-30T01:00:00Z") == 1796000400000
    assert parse_time("2026-11-30T02:00:00+01:00") == 1796000400000
    with pytest.raises(ValueError):
        parse_time("2026-11-30T01:00:00")
    assert retry_after("7") == 7.0
    assert retry_after(None) is None and retry_after("soon") is None
    assert retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=lambda: 1445412480.0) == 10.0


def test_collector_options_come_from_the_config_file_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from chargeback.cli import run

    (tmp_path / "chargeback.toml").write_text(
        '[collect.confluent-cloud]\ncluster = ["lkc-x"]\nsince = "not a time"\n'
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONFLUENT_CLOUD_API_KEY", "fake-key")
    monkeypatch.setenv("CONFLUENT_CLOUD_API_SECRET", "fake-secret")
    assert run(["collect", "confluent-cloud", "--once"]) == 2
    assert "--since 'not a time' is not an RFC 3339 time" in capsys.readouterr().err
