"""Parsing of usage events (PRODUCT.md §1): strict, a reason for every rejection, never raising.

A record is the unit of acceptance: a JSON array record whose any element is bad is rejected whole,
so a record is either counted completely or not at all, and its one rejection row explains why.
"""

import re
import unicodedata
from collections.abc import Callable
from datetime import date, datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo

import orjson

MAX_BYTES = 2**53
MAX_ACCOUNT_CHARS = 256
MAX_NAME_CHARS = 256  # cluster, client_id, topic: same bound as the account, for the same reason
# Names end up in CSV files and terminals: a NUL, a newline or the start of a terminal escape
# (C0, DEL and C1, which includes NEL and CSI) is never part of a real name.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Nor is a character that shows nothing, or changes how the rest is shown: Unicode's format
# characters (zero-width spaces and joiners, bidirectional marks and overrides, the soft hyphen,
# tags), line and paragraph separators, and the other default-ignorable code points (variation
# selectors, the combining grapheme joiner, Hangul fillers). Names are checked once each (the
# fast path remembers them), so a look at every character's category costs nothing per event.
HIDDEN_CATEGORIES = frozenset({"Cf", "Zl", "Zp"})
IGNORABLE = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u3164\ufe00-\ufe0f\uffa0"
    "\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)


def has_hidden(text: str) -> bool:
    """Control, format or otherwise invisible characters in a name."""
    if CONTROL.search(text):
        return True
    if text.isascii():
        return False
    return bool(IGNORABLE.search(text)) or any(
        unicodedata.category(char) in HIDDEN_CATEGORIES for char in text
    )


# RFC 3339 date-time: full date, 'T' or space, full time, optional fraction, mandatory offset.
# Digits are ASCII ones only ([0-9], not \d, which takes any Unicode digit).
RFC3339 = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))\Z"
)
_EPOCH = datetime(1970, 1, 1).date()
_QUARTER_HOUR_MS = 15 * 60 * 1000  # today's offsets are whole quarter hours; older ones not all

# The common timestamp shapes are read by table look-ups instead of the regex (see
# _simple_rfc3339_ms): two-digit fields, and every offset suffix "Z", "z" or "+hh:mm"/"-hh:mm".
_TWO_DIGITS = {f"{n:02d}": n for n in range(60)}
_HOURS = {text: n for text, n in _TWO_DIGITS.items() if n <= 23}
_OFFSETS: dict[str, int] = {
    "Z": 0,
    "z": 0,
    **{
        f"{sign}{hh:02d}:{mm:02d}": factor * (hh * 3600 + mm * 60) * 1000
        for sign, factor in (("+", 1), ("-", -1))
        for hh in range(24)
        for mm in range(60)
    },
}
_ASCII_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_SIMPLE_DATES: dict[str, int] = {}  # "YYYY-MM-DD" (ASCII digits, a real date) -> epoch ms at 00:00Z


class Event(NamedTuple):
    """One accepted usage report, its day already resolved in the reporting time zone."""

    day: date
    cluster: str
    service_account: str
    client_id: str
    topic: str
    produced: int
    consumed: int


TotalsKey = tuple[date, str, str, str, str]  # day, cluster, service_account, client_id, topic
KeyedSizes = tuple[TotalsKey, int, int]  # the key, bytes produced, bytes consumed


class Rejected(Exception):
    """Why a record was not counted.

    `reason` is the sentence stored in rejected_events; `kind` is a short fixed label for metrics.
    """

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class DayResolver:
    """Maps epoch milliseconds to the calendar day in one IANA zone, cached per quarter hour.

    A quarter hour is cached only when it lies within one local day: past offsets such as
    Monrovia's -0:44:30, or St. John's changes at 00:01, put a midnight inside some quarter
    hours, and there each moment is looked up on its own.
    """

    def __init__(self, zone: str) -> None:
        self.zone = ZoneInfo(zone)
        self.by_quarter: dict[int, date] = {}  # epoch quarter hour -> day; read by the hot path

    def day_of(self, epoch_ms: int) -> date:
        bucket = epoch_ms // _QUARTER_HOUR_MS
        day = self.by_quarter.get(bucket)
        if day is None:
            start = bucket * _QUARTER_HOUR_MS
            day = self._exact(start)
            if self._exact(start + _QUARTER_HOUR_MS - 1) != day:  # a midnight inside
                return self._exact(epoch_ms)
            if len(self.by_quarter) > 200_000:  # a bounded cache; a year of quarter hours is 35k
                self.by_quarter.clear()
            self.by_quarter[bucket] = day
        return day

    def _exact(self, epoch_ms: int) -> date:
        # Whole seconds suffice: no offset has ever had a fraction of a second.
        return datetime.fromtimestamp(epoch_ms // 1000, self.zone).date()


def parse_rfc3339_ms(text: str) -> int:
    """Epoch milliseconds of an RFC 3339 timestamp with offset; raises Rejected otherwise.

    Integer arithmetic throughout: a float would round 23:59:59.999 to the next day. Fractions
    beyond milliseconds are cut, not rounded, for the same reason.
    """
    match = RFC3339.match(text) if len(text) <= 40 else None
    if match is None:
        raise Rejected("timestamp is not RFC 3339 with an offset", "bad_timestamp")
    day_text, hh, mm, ss, fraction, zulu, sign, offset_h, offset_m = match.groups()
    days = _day_number(day_text)
    hour, minute, second = int(hh), int(mm), int(ss)
    if hour > 23 or minute > 59 or second > 59:
        raise Rejected("timestamp is not a valid date-time", "bad_timestamp")
    offset = 0
    if zulu is None:
        if int(offset_h) > 23 or int(offset_m) > 59:
            raise Rejected("timestamp is not a valid date-time", "bad_timestamp")
        offset = int(offset_h) * 3600 + int(offset_m) * 60
        if sign == "-":
            offset = -offset
    millis = int((fraction + "00")[:3]) if fraction else 0
    return (days * 86_400 + hour * 3600 + minute * 60 + second - offset) * 1000 + millis


_DAY_NUMBERS: dict[str, int] = {}


def _day_number(day_text: str) -> int:
    """Days from 1970-01-01 to a YYYY-MM-DD date, cached: most events share a few dates."""
    days = _DAY_NUMBERS.get(day_text)
    if days is None:
        try:
            days = (date.fromisoformat(day_text) - _EPOCH).days
        except ValueError:
            raise Rejected("timestamp is not a valid date-time", "bad_timestamp") from None
        if len(_DAY_NUMBERS) > 100_000:
            _DAY_NUMBERS.clear()
        _DAY_NUMBERS[day_text] = days
    return days


def _simple_rfc3339_ms(text: str) -> int:
    """parse_rfc3339_ms for the shapes producers send, by table look-ups; negative otherwise.

    "YYYY-MM-DD", "T"/"t"/" ", "hh:mm:ss", an optional "." and 1-9 digits, then "Z"/"z" or
    "+hh:mm"/"-hh:mm", ASCII digits only. Whatever this declines, the regex decides, so both
    agree on every text this accepts (tests/test_events.py checks it). Times before 1970 come
    out negative too: the full checks reject them.
    """
    midnight = _SIMPLE_DATES.get(text[:10])
    if midnight is None:
        midnight = _simple_date_ms(text[:10])
        if midnight < 0:
            return -1
    hour = _HOURS.get(text[11:13])
    minute = _TWO_DIGITS.get(text[14:16])
    second = _TWO_DIGITS.get(text[17:19])
    if (
        hour is None
        or minute is None
        or second is None
        or text[10:11] not in _DATE_TIME_SEPARATORS
        or text[13:14] != ":"
        or text[16:17] != ":"
    ):
        return -1
    clock = midnight + hour * 3_600_000 + minute * 60_000 + second * 1000
    offset = _OFFSETS.get(text[19:])
    if offset is not None:
        return clock - offset
    if text[19:20] != ".":
        return -1
    zone = text[-1:] if text[-1:] in _ZULU else text[-6:]
    offset = _OFFSETS.get(zone)
    fraction = text[20 : len(text) - len(zone)]
    if (
        offset is None
        or not 1 <= len(fraction) <= 9
        or not (fraction.isascii() and fraction.isdigit())
    ):
        return -1
    return clock - offset + int((fraction + "00")[:3])


_DATE_TIME_SEPARATORS = frozenset("Tt ")
_ZULU = frozenset("Zz")


def _simple_date_ms(day_text: str) -> int:
    if not _ASCII_DATE.match(day_text):
        return -1
    try:
        midnight = _day_number(day_text) * 86_400_000
    except Rejected:
        return -1
    if len(_SIMPLE_DATES) > 100_000:
        _SIMPLE_DATES.clear()
    _SIMPLE_DATES[day_text] = midnight
    return midnight


# What the checks made of a record's names, keyed by the values as sent: (service_account, type,
# cluster, client_id, topic) -> (cluster, account, client_id, topic, is a produce event)
NamesSeen = dict[tuple[object, ...], tuple[str, str, str, str, bool]]


class EventParser:
    """Turns one record value into events, or raises Rejected with the reason.

    `max_future_ms` bounds how far ahead of the wall clock an event may claim to be.
    """

    def __init__(
        self,
        days: DayResolver,
        max_future_ms: int,
        max_record_bytes: int,
        now_ms: Callable[[], int],
    ) -> None:
        self.days = days
        self.max_future_ms = max_future_ms
        self.max_record_bytes = max_record_bytes
        self.now_ms = now_ms
        self.names_seen: NamesSeen = {}

    def horizon_ms(self) -> int:
        """The latest event time accepted now."""
        return self.now_ms() + self.max_future_ms

    def parse(self, value: bytes | None, record_ms: int) -> list[Event]:
        """The record's events; raises Rejected."""
        return [
            Event(*key, produced, consumed)
            for key, produced, consumed in self.parse_keyed(value, record_ms)
        ]

    def parse_keyed(
        self, value: bytes | None, record_ms: int, horizon_ms: int | None = None
    ) -> list[KeyedSizes]:
        """The record's events as (totals key, produced, consumed): what a batch adds up.

        The hot path of the service: no Event objects, one call per record. `horizon_ms` lets a
        caller read the clock once per poll instead of once per record.
        """
        if value is None:
            raise Rejected("empty record (no value)", "not_json")
        if len(value) > self.max_record_bytes:
            raise Rejected(
                f"record too large ({len(value)} bytes > {self.max_record_bytes})", "too_large"
            )
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise Rejected("not JSON (or not UTF-8)", "not_json") from None
        horizon = self.horizon_ms() if horizon_ms is None else horizon_ms
        if type(doc) is dict:
            return [self._event(doc, record_ms, horizon)]
        if type(doc) is list:
            if not doc:
                raise Rejected("empty array", "not_object")
            events = []
            for index, item in enumerate(doc):
                if type(item) is not dict:
                    raise Rejected(f"element {index}: not a JSON object", "not_object")
                try:
                    events.append(self._event(item, record_ms, horizon))
                except Rejected as bad:
                    raise Rejected(f"element {index}: {bad.reason}", bad.kind) from None
            return events
        raise Rejected("not a JSON object or array", "not_object")

    def _event(self, doc: dict[str, object], record_ms: int, horizon_ms: int) -> KeyedSizes:
        """The fast path: names already checked once, a plain size and a simple timestamp.

        Anything else goes through every check in _checked_event, so the result, or the reason
        for a rejection, is always the one those checks give.
        """
        get = doc.get
        try:
            names = self.names_seen.get(
                (
                    get("service_account"),
                    get("type"),
                    get("cluster"),
                    get("client_id"),
                    get("topic"),
                )
            )
        except TypeError:  # an unhashable value (a list, an object): never a valid name
            names = None
        size = get("bytes")
        if names is not None and type(size) is int and 0 <= size <= MAX_BYTES:
            stamp = get("timestamp")
            if type(stamp) is str:
                epoch_ms = _simple_rfc3339_ms(stamp)
            elif type(stamp) is int:
                epoch_ms = stamp
            else:
                epoch_ms = record_ms if stamp is None else -1
            if 0 <= epoch_ms <= horizon_ms:
                day = self.days.by_quarter.get(epoch_ms // _QUARTER_HOUR_MS)
                if day is None:
                    day = self.days.day_of(epoch_ms)
                cluster, account, client_id, topic, produce = names
                key = (day, cluster, account, client_id, topic)
                return (key, size, 0) if produce else (key, 0, size)
        return self._checked_event(doc, record_ms, horizon_ms)

    def _checked_event(self, doc: dict[str, object], record_ms: int, horizon_ms: int) -> KeyedSizes:
        get = doc.get
        account = get("service_account")
        if type(account) is not str:
            raise Rejected("service_account missing or not a string", "bad_account")
        if account.startswith("User:"):
            account = account[5:]
        if not account or len(account) > MAX_ACCOUNT_CHARS:
            raise Rejected("service_account must be 1-256 characters", "bad_account")
        if account.isspace():  # a row no one could tell apart in the CSV or the dashboard
            raise Rejected("service_account is only white space", "bad_account")
        kind = get("type")
        if kind != "produce" and kind != "fetch":
            raise Rejected("type must be 'produce' or 'fetch'", "bad_type")
        size = get("bytes")
        if type(size) is not int:  # bool is an int subclass, so compare the exact type
            raise Rejected(_not_an_integer("bytes", size), "bad_bytes")
        if size < 0:
            raise Rejected("bytes is negative", "bad_bytes")
        if size > MAX_BYTES:
            raise Rejected("bytes exceeds 2^53", "bad_bytes")
        stamp = get("timestamp")
        if stamp is None:
            epoch_ms = record_ms
        elif type(stamp) is int:
            epoch_ms = stamp
        elif type(stamp) is str:
            epoch_ms = parse_rfc3339_ms(stamp)
        elif type(stamp) is float and stamp >= 2**64:  # an integer past 64 bits, as orjson reads it
            raise Rejected("timestamp too far in the future", "future_timestamp")
        else:
            raise Rejected(
                "timestamp must be an RFC 3339 string or integer epoch milliseconds",
                "bad_timestamp",
            )
        if epoch_ms < 0:
            raise Rejected("timestamp before 1970", "bad_timestamp")
        if epoch_ms > horizon_ms:
            raise Rejected("timestamp too far in the future", "future_timestamp")
        cluster = get("cluster")
        client_id = get("client_id")
        topic = get("topic")
        # The common case (plain strings) costs one test each; anything else gets the full check.
        if type(cluster) is not str or len(cluster) > MAX_NAME_CHARS:
            cluster = _optional_name(doc, "cluster", "default")
        if type(client_id) is not str or len(client_id) > MAX_NAME_CHARS:
            client_id = _optional_name(doc, "client_id", "")
        if type(topic) is not str or len(topic) > MAX_NAME_CHARS:
            topic = _optional_name(doc, "topic", "")
        if has_hidden(account + cluster + client_id + topic):
            raise Rejected(_control_reason(account, cluster, client_id, topic), "bad_field")
        self._remember_names(doc, (cluster, account, client_id, topic, kind == "produce"))
        key = (self.days.day_of(epoch_ms), cluster, account, client_id, topic)
        return (key, size, 0) if kind == "produce" else (key, 0, size)

    def _remember_names(
        self, doc: dict[str, object], names: tuple[str, str, str, str, bool]
    ) -> None:
        get = doc.get
        sent = (get("service_account"), get("type"), get("cluster"), get("client_id"), get("topic"))
        if len(self.names_seen) >= 100_000:  # bounded: names are few, but a flood must not grow it
            self.names_seen.clear()
        self.names_seen[sent] = names


def _control_reason(account: str, cluster: str, client_id: str, topic: str) -> str:
    names = {"service_account": account, "cluster": cluster, "client_id": client_id}
    field = next((f for f, v in names.items() if has_hidden(v)), "topic")
    value = names.get(field, topic)
    return f"{field} contains {'control' if CONTROL.search(value) else 'invisible'} characters"


def _optional_name(doc: dict[str, object], field: str, default: str) -> str:
    value = doc.get(field)
    if value is None:
        return default
    if not isinstance(value, str):
        raise Rejected(f"{field} must be a string", "bad_field")
    if len(value) > MAX_NAME_CHARS:
        raise Rejected(f"{field} longer than {MAX_NAME_CHARS} characters", "bad_field")
    return value


def _not_an_integer(field: str, value: object) -> str:
    if isinstance(value, float):
        if value < 0:
            return f"{field} is negative"
        if value > MAX_BYTES:
            return f"{field} exceeds 2^53"
        if not value.is_integer():
            return f"{field} is fractional"
        return f"{field} must be a JSON integer (no decimal point or exponent)"
    if value is None:
        return f"{field} is missing"
    return f"{field} must be an integer"
