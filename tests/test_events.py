"""Event parsing (PRODUCT.md §1): valid events, every rejection reason, and never an exception."""

import json
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer import events as events_module
from consumer.events import DayResolver, Event, EventParser, Rejected, parse_rfc3339_ms

NOW_MS = 1_780_000_000_000  # 2026-05-28T20:26:40Z, a fixed "now"
RECORD_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def parser(zone: str = "UTC") -> EventParser:
    return EventParser(
        DayResolver(zone), max_future_ms=3_600_000, max_record_bytes=65_536, now_ms=lambda: NOW_MS
    )


def parse(doc: object, zone: str = "UTC") -> list[Event]:
    return parser(zone).parse(orjson.dumps(doc), RECORD_MS)


def reason(value: bytes | None) -> str:
    with pytest.raises(Rejected) as caught:
        parser().parse(value, RECORD_MS)
    return caught.value.reason


def test_a_minimal_event_takes_the_documented_defaults() -> None:
    [event] = parse({"service_account": "sa-1", "type": "produce", "bytes": 10})
    assert event == Event(date(2026, 1, 1), "default", "sa-1", "", "", 10, 0)


def test_fetch_counts_as_consumed_and_user_prefix_is_stripped() -> None:
    [event] = parse(
        {
            "service_account": "User:alice",
            "type": "fetch",
            "bytes": 7,
            "cluster": "c1",
            "client_id": "app",
            "topic": "orders",
            "extra": [1],
        }
    )
    assert event == Event(date(2026, 1, 1), "c1", "alice", "app", "orders", 0, 7)


@pytest.mark.parametrize(
    ("stamp", "zone", "day"),
    [
        ("2026-03-01T23:59:59.999Z", "UTC", date(2026, 3, 1)),
        ("2026-03-02T00:00:00Z", "UTC", date(2026, 3, 2)),
        # 23:59:59.999 at -05:00 is 04:59:59.999 UTC the next day
        ("2026-03-01T23:59:59.999-05:00", "UTC", date(2026, 3, 2)),
        ("2026-03-01T23:59:59.999999999+00:00", "UTC", date(2026, 3, 1)),
        ("2026-03-01 12:00:00+00:00", "UTC", date(2026, 3, 1)),
        # 22:30 UTC is 04:00 the next day in Kolkata (+05:30)
        ("2026-03-01T22:30:00Z", "Asia/Kolkata", date(2026, 3, 2)),
        ("2026-03-01T18:29:59.999Z", "Asia/Kolkata", date(2026, 3, 1)),
        # 1772409599999 ms = 2026-03-01T23:59:59.999Z
        (1_772_409_599_999, "UTC", date(2026, 3, 1)),
        (1_772_409_600_000, "UTC", date(2026, 3, 2)),
        # New York in summer is -04:00: 03:59:59.999Z on 2025-07-02 is 23:59:59.999 on 07-01
        ("2025-07-02T03:59:59.999Z", "America/New_York", date(2025, 7, 1)),
        ("2025-07-02T04:00:00Z", "America/New_York", date(2025, 7, 2)),
    ],
)
def test_the_day_is_the_date_in_the_reporting_zone(stamp: object, zone: str, day: date) -> None:
    [event] = parse(
        {"service_account": "a", "type": "produce", "bytes": 1, "timestamp": stamp}, zone
    )
    assert event.day == day


def test_without_a_timestamp_the_record_time_is_used() -> None:
    record_ms = 1_772_409_599_999  # 2026-03-01T23:59:59.999Z
    [event] = parser().parse(b'{"service_account":"a","type":"fetch","bytes":3}', record_ms)
    assert event.day == date(2026, 3, 1)


def test_an_array_record_gives_all_its_events() -> None:
    events = parse(
        [
            {"service_account": "a", "type": "produce", "bytes": 1},
            {"service_account": "b", "type": "fetch", "bytes": 2},
        ]
    )
    assert [(e.service_account, e.produced, e.consumed) for e in events] == [
        ("a", 1, 0),
        ("b", 0, 2),
    ]


def test_bytes_at_the_bounds() -> None:
    assert parse({"service_account": "a", "type": "produce", "bytes": 0})[0].produced == 0
    assert parse({"service_account": "a", "type": "produce", "bytes": 2**53})[0].produced == 2**53


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "empty record (no value)"),
        (b"", "not JSON (or not UTF-8)"),
        (b"not json", "not JSON (or not UTF-8)"),
        (b'{"service_account": "\xff", "type": "produce", "bytes": 1}', "not JSON (or not UTF-8)"),
        (b"42", "not a JSON object or array"),
        (b"[]", "empty array"),
        (b"[1]", "element 0: not a JSON object"),
        (b'{"type": "produce", "bytes": 1}', "service_account missing or not a string"),
        (
            b'{"service_account": 5, "type": "produce", "bytes": 1}',
            "service_account missing or not a string",
        ),
        (
            b'{"service_account": "", "type": "produce", "bytes": 1}',
            "service_account must be 1-256 characters",
        ),
        (
            b'{"service_account": "User:", "type": "produce", "bytes": 1}',
            "service_account must be 1-256 characters",
        ),
        (
            b'{"service_account": "' + b"x" * 257 + b'", "type": "produce", "bytes": 1}',
            "service_account must be 1-256 characters",
        ),
        (
            b'{"service_account": "a", "type": "Produce", "bytes": 1}',
            "type must be 'produce' or 'fetch'",
        ),
        (b'{"service_account": "a", "bytes": 1}', "type must be 'produce' or 'fetch'"),
        (b'{"service_account": "a", "type": "fetch"}', "bytes is missing"),
        (b'{"service_account": "a", "type": "fetch", "bytes": "1"}', "bytes must be an integer"),
        (b'{"service_account": "a", "type": "fetch", "bytes": true}', "bytes must be an integer"),
        (b'{"service_account": "a", "type": "fetch", "bytes": -1}', "bytes is negative"),
        (b'{"service_account": "a", "type": "fetch", "bytes": 1.5}', "bytes is fractional"),
        (
            b'{"service_account": "a", "type": "fetch", "bytes": 2.0}',
            "bytes must be a JSON integer (no decimal point or exponent)",
        ),
        (
            b'{"service_account": "a", "type": "fetch", "bytes": 9007199254740993}',
            "bytes exceeds 2^53",
        ),
        (b'{"service_account": "a", "type": "fetch", "bytes": 1e300}', "bytes exceeds 2^53"),
        (
            b'{"service_account": "a", "type": "fetch", "bytes": 1, "timestamp": "2026-01-01"}',
            "timestamp is not RFC 3339 with an offset",
        ),
        (
            b'{"service_account": "a", "type": "fetch", "bytes": 1,'
            b' "timestamp": "2026-01-01T00:00:00"}',
            "timestamp is not RFC 3339 with an offset",
        ),
        (
            b'{"service_account": "a", "type": "fetch", "bytes": 1,'
            b' "timestamp": "2026-02-30T00:00:00Z"}',
            "timestamp is not a valid date-time",
        ),
        (
            b'{"service_account": "a", "type": "fetch", "bytes": 1, "timestamp": 1.5}',
            "timestamp must be an RFC 3339 string or integer epoch milliseconds",
        ),
        (
            b'{"service_account": "a", "type": "fetch", "bytes": 1,'
            b' "timestamp": 100000000000000000000}',  # an integer past 64 bits
            "timestamp too far in the future",
        ),
        (
            b'{"service_account": "a", "type": "fetch", "bytes": 1, "timestamp": -1}',
            "timestamp before 1970",
        ),
        # NOW_MS + 1 h + 1 ms is just past the bound
        (
            b'{"service_account": "a", "type": "fetch", "bytes": 1, "timestamp": 1780003600001}',
            "timestamp too far in the future",
        ),
        (
            b'{"service_account": "a", "type": "fetch", "bytes": 1,'
            b' "timestamp": "2999-01-01T00:00:00Z"}',
            "timestamp too far in the future",
        ),
        (
            b'{"service_account": "a", "type": "fetch", "bytes": 1, "cluster": 3}',
            "cluster must be a string",
        ),
        (
            b'[{"service_account": "a", "type": "fetch", "bytes": 1},'
            b' {"service_account": "a", "type": "fetch", "bytes": -1}]',
            "element 1: bytes is negative",
        ),
        (b" " * 65_537, "record too large (65537 bytes > 65536)"),
        (
            b'{"service_account": "a\\u0000b", "type": "fetch", "bytes": 1}',
            "service_account contains control characters",
        ),
        (
            b'{"service_account": "a", "type": "fetch", "bytes": 1, "topic": "t\\nx"}',
            "topic contains control characters",
        ),
        (  # C1: NEL, a Unicode newline, and CSI, the start of a terminal escape
            b'{"service_account": "a\\u0085", "type": "fetch", "bytes": 1}',
            "service_account contains control characters",
        ),
        (
            b'{"service_account": "a", "type": "fetch", "bytes": 1, "cluster": "\\u009b31m"}',
            "cluster contains control characters",
        ),
        (  # invisible: a zero-width space, a right-to-left override (reorders what is shown)
            b'{"service_account": "a\\u200bb", "type": "fetch", "bytes": 1}',
            "service_account contains invisible characters",
        ),
        (
            b'{"service_account": "a", "type": "fetch", "bytes": 1, "client_id": "\\u202egnp"}',
            "client_id contains invisible characters",
        ),
        (
            b'{"service_account": "User: \\u00a0 ", "type": "fetch", "bytes": 1}',
            "service_account is only white space",
        ),
        # Digits are ASCII digits: Arabic-Indic ones in the hour, the fraction or the offset (or
        # the date) make the text something other than RFC 3339.
        *[
            (
                b'{"service_account": "a", "type": "fetch", "bytes": 1, "timestamp": "'
                + stamp.encode()
                + b'"}',
                "timestamp is not RFC 3339 with an offset",
            )
            for stamp in (
                "2026-12-01T\u0661\u0660:00:00Z",
                "2026-12-01T10:00:00.\u0665Z",
                "2026-12-01T10:00:00+\u0660\u0665:30",
                "\u0662\u0660\u0662\u0666-12-01T10:00:00Z",
            )
        ],
    ],
)
def test_bad_records_are_rejected_with_their_reason(value: bytes | None, expected: str) -> None:
    assert reason(value) == expected


HIDDEN = [
    "\u00ad",  # soft hyphen: "c-x\u00ady" looks like "c-xy"
    "\u034f",  # combining grapheme joiner
    "\u061c",  # Arabic letter mark (bidirectional)
    "\u115f",  # Hangul choseong filler
    "\u17b4",  # Khmer vowel inherent aq
    "\u180e",  # Mongolian vowel separator
    "\u200b",  # zero-width space
    "\u202e",  # right-to-left override
    "\u2028",  # line separator
    "\u2029",  # paragraph separator
    "\u2061",  # function application
    "\u2064",  # invisible plus
    "\u206a",  # inhibit symmetric swapping
    "\u3164",  # Hangul filler
    "\ufe0f",  # variation selector 16
    "\ufeff",  # BOM / zero-width no-break space
    "\ufff9",  # interlinear annotation anchor
    "\U000e0041",  # tag latin capital letter A
]


@pytest.mark.parametrize("char", HIDDEN, ids=lambda c: f"U+{ord(c):04X}")
def test_names_with_invisible_characters_are_refused(char: str) -> None:
    doc = {"service_account": f"c-x{char}y", "type": "fetch", "bytes": 1}
    assert reason(orjson.dumps(doc)) == "service_account contains invisible characters"


@pytest.mark.parametrize("name", ["zürich-ingest", "東京-etl", "café", "Ωmega", "naïve😀"])
def test_names_in_other_scripts_are_fine(name: str) -> None:
    [event] = parse({"service_account": name, "type": "fetch", "bytes": 1})
    assert event.service_account == name


def test_the_future_bound_is_inclusive() -> None:
    value = b'{"service_account": "a", "type": "fetch", "bytes": 1, "timestamp": 1780003600000}'
    assert len(parser().parse(value, RECORD_MS)) == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=12,
)
event_like = st.fixed_dictionaries(
    {
        "service_account": st.one_of(st.text(max_size=300), st.integers()),
        "type": st.sampled_from(["produce", "fetch", "other"]),
        "bytes": st.one_of(st.integers(-5, 2**54), st.floats(allow_nan=False)),
    },
    optional={
        "timestamp": st.one_of(
            st.integers(-(2**40), 2**45),
            st.text(max_size=40),
            st.datetimes().map(lambda d: d.isoformat() + "Z"),
        ),
        "cluster": json_values,
        "client_id": json_values,
        "topic": st.text(),
    },
)


def _parses_or_rejects(value: bytes) -> None:
    try:
        events = parser("Europe/Berlin").parse(value, RECORD_MS)
    except Rejected as rejected:
        assert rejected.reason and rejected.kind
        return
    assert events
    for event in events:
        assert 1 <= len(event.service_account) <= 256
        assert 0 <= event.produced + event.consumed <= 2**53


@settings(max_examples=400)
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_are_rejected(value: bytes) -> None:
    _parses_or_rejects(value)


@settings(max_examples=400)
@given(st.one_of(json_values, event_like, st.lists(event_like, max_size=4)))
def test_any_json_parses_or_is_rejected(doc: object) -> None:
    _parses_or_rejects(json.dumps(doc).encode())


@settings(max_examples=300)
@given(
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(-(23 * 60 + 59), 23 * 60 + 59),
    st.integers(0, 999_999_999),
    st.sampled_from(["T", "t", " "]),
)
def test_rfc3339_agrees_with_datetime_arithmetic(
    moment: datetime, offset_minutes: int, nanos: int, separator: str
) -> None:
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    text = (
        f"{moment:%Y-%m-%d}{separator}{moment:%H:%M:%S}.{nanos:09d}{sign}{hours:02d}:{minutes:02d}"
    )
    aware = moment.replace(microsecond=0, tzinfo=timezone(timedelta(minutes=offset_minutes)))
    whole_seconds = (aware - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(seconds=1)
    assert parse_rfc3339_ms(text) == whole_seconds * 1000 + nanos // 1_000_000


# --- the fast paths agree with the full checks -------------------------------------------------
# A long-lived parser reads most records through caches (names already checked, timestamps read
# by table look-ups); every answer must be the one a fresh parser, with empty caches, gives.

stamp_like = st.one_of(
    st.builds(
        lambda d, sep, frac, zone: f"{d:%Y-%m-%d}{sep}{d:%H:%M:%S}{frac}{zone}",
        st.datetimes(min_value=datetime(1969, 12, 30), max_value=datetime(9999, 12, 30)),
        st.sampled_from(["T", "t", " ", "x", ""]),
        st.one_of(st.just(""), st.from_regex(r"\.[0-9]{0,11}", fullmatch=True)),
        st.one_of(
            st.sampled_from(["Z", "z", "", "+00:00", "-05:00", "+23:59", "+24:00", "-00:60"]),
            st.from_regex(r"[+-][0-9]{2}:[0-9]{2}", fullmatch=True),
        ),
    ),
    st.from_regex(
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}.{0,12}", fullmatch=True
    ),
    st.text(max_size=36),
)


def _outcome(p: EventParser, value: bytes) -> object:
    try:
        return p.parse(value, RECORD_MS)
    except Rejected as rejected:
        return (rejected.reason, rejected.kind)


@settings(max_examples=500)
@given(stamp_like)
def test_simple_timestamps_read_as_the_regex_reads_them(text: str) -> None:
    fast = events_module._simple_rfc3339_ms(text)
    if (
        fast >= 0
    ):  # the fast reading declines with -1 (or any negative time) and leaves it to the regex
        assert parse_rfc3339_ms(text) == fast


@settings(max_examples=300)
@given(
    st.lists(
        st.one_of(
            event_like,
            st.fixed_dictionaries(
                {
                    "service_account": st.sampled_from(["a", "User:a", "b\x00", "", "c" * 257]),
                    "type": st.sampled_from(["produce", "fetch", "x"]),
                    "bytes": st.one_of(st.integers(-2, 2**53 + 1), st.booleans(), st.just(1.0)),
                },
                optional={
                    "timestamp": st.one_of(stamp_like, st.integers(-2, NOW_MS + 3_600_001)),
                    "cluster": st.sampled_from(["c1", None, 5, ["c1"], "x" * 257]),
                    "client_id": st.sampled_from(["app", None, "app\n"]),
                    "topic": st.sampled_from(["t", None, {"t": 1}]),
                },
            ),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_a_warm_parser_answers_as_a_fresh_one(docs: list[dict[str, object]]) -> None:
    warm = parser("Asia/Kolkata")
    for doc in docs:
        # First a record with the same names and a plain size and time, so that the names are
        # in the warm parser's cache when the record itself comes (if they are valid at all).
        _outcome(warm, json.dumps({**doc, "bytes": 1, "timestamp": RECORD_MS}).encode())
        value = json.dumps(doc).encode()
        assert _outcome(warm, value) == _outcome(parser("Asia/Kolkata"), value)


@pytest.mark.parametrize(
    ("zone", "utc", "day"),
    [
        # St. John's moved its clocks at 00:01 local until 2011: 02:32Z was 23:02 the day before.
        ("America/St_Johns", datetime(2010, 11, 7, 2, 32), date(2010, 11, 6)),
        ("America/St_Johns", datetime(2010, 11, 7, 2, 30), date(2010, 11, 7)),
        # Monrovia kept -0:44:30 until 1972: local midnight was 00:44:30Z.
        ("Africa/Monrovia", datetime(1971, 5, 1, 0, 44, 29), date(1971, 4, 30)),
        ("Africa/Monrovia", datetime(1971, 5, 1, 0, 44, 30), date(1971, 5, 1)),
    ],
)
def test_days_in_zones_whose_midnight_falls_inside_a_quarter_hour(
    zone: str, utc: datetime, day: date
) -> None:
    days = DayResolver(zone)
    epoch_ms = int(utc.replace(tzinfo=UTC).timestamp()) * 1000
    days.day_of(epoch_ms - 60_000)  # a neighbour first, so that a cached quarter would be used
    assert days.day_of(epoch_ms) == day


@settings(max_examples=300)
@given(
    st.sampled_from(["America/St_Johns", "Africa/Monrovia", "Asia/Kolkata", "Europe/Berlin"]),
    st.lists(st.integers(0, 4_102_444_800_000), min_size=1, max_size=20),
)
def test_the_cached_day_is_the_local_date(zone: str, moments: list[int]) -> None:
    days = DayResolver(zone)
    for epoch_ms in moments + [m + 1 for m in moments]:
        expected = datetime.fromtimestamp(epoch_ms // 1000, ZoneInfo(zone)).date()
        assert days.day_of(epoch_ms) == expected
