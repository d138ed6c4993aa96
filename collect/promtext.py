"""A small, strict parser of the Prometheus text exposition format (and its OpenMetrics cousin).

What it accepts, per line:
- empty lines; ``# HELP name text``, ``# TYPE name type``, other ``#`` comments; ``# EOF``, after
  which only empty lines may follow;
- samples ``name{label="value",…} value [timestamp]``: label values with the escapes ``\\\\``,
  ``\\"`` and ``\\n`` (any other escape is an error), a trailing comma in the label set, values in
  decimal or exponent notation or ``NaN``, ``+Inf``, ``-Inf``, ``Inf``.

Timestamps: the Prometheus text format writes integer milliseconds, OpenMetrics seconds (possibly
fractional). An integer below 10^11 is taken as seconds (10^11 ms is March 1973, 10^11 s the year
5138), anything with a fraction or an exponent as seconds, other integers as milliseconds. They
come back as integer epoch milliseconds.

Anything else raises ``PromParseError`` naming the line: a payload that does not parse is refused
whole, since a partly read scrape would look like series that vanished.
"""

import math
import re
from decimal import Decimal, InvalidOperation
from typing import NamedTuple

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_SPECIAL = {"NaN": math.nan, "+Inf": math.inf, "Inf": math.inf, "-Inf": -math.inf}
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}
_SECONDS_BELOW = 10**11
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped", "unknown", "info", "stateset"}
_TYPES |= {"gaugehistogram"}


class PromParseError(ValueError):
    """The payload is not valid exposition text; the message names the line."""


class Sample(NamedTuple):
    name: str
    labels: tuple[tuple[str, str], ...]  # sorted by label name
    value: float
    timestamp_ms: int | None

    def label(self, name: str, default: str = "") -> str:
        for key, value in self.labels:
            if key == name:
                return value
        return default


class Payload(NamedTuple):
    samples: list[Sample]
    types: dict[str, str]
    eof: bool


def parse(text: str) -> Payload:
    samples: list[Sample] = []
    types: dict[str, str] = {}
    eof = False
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r")
        if eof:
            if line.strip():
                raise PromParseError(f"line {number}: content after # EOF")
            continue
        if not line.strip():
            continue
        try:
            if line.startswith("#"):
                eof = _comment(line, types)
            else:
                samples.append(_sample(line))
        except PromParseError as error:
            raise PromParseError(f"line {number}: {error}") from None
    return Payload(samples, types, eof)


def _comment(line: str, types: dict[str, str]) -> bool:
    if line.rstrip() == "# EOF":
        return True
    parts = line[1:].strip().split(None, 2)
    if parts and parts[0] in ("HELP", "TYPE"):
        if len(parts) < 2 or not _NAME.fullmatch(parts[1]):
            raise PromParseError(f"bad {parts[0]} line {line!r}")
        if parts[0] == "TYPE":
            kind = parts[2].strip() if len(parts) == 3 else ""
            if kind not in _TYPES:
                raise PromParseError(f"unknown metric type {kind!r}")
            if parts[1] in types:
                raise PromParseError(f"second TYPE line for {parts[1]}")
            types[parts[1]] = kind
    return False


def _sample(line: str) -> Sample:
    match = _NAME.match(line)
    if match is None:
        raise PromParseError(f"no metric name in {line!r}")
    name, at = match.group(), match.end()
    labels: dict[str, str] = {}
    brace = _skip_spaces(line, at)  # `name {…}` is allowed, as in Prometheus' own parser
    if line[brace : brace + 1] == "{":
        at = _labels(line, brace + 1, labels)
    rest = line[at:]
    if not rest[:1].isspace():
        raise PromParseError(f"expected a space before the value in {line!r}")
    fields = rest.split()
    if not 1 <= len(fields) <= 2:
        raise PromParseError(f"expected 'value [timestamp]' in {line!r}")
    value = parse_value(fields[0])
    stamp = parse_timestamp(fields[1]) if len(fields) == 2 else None
    return Sample(name, tuple(sorted(labels.items())), value, stamp)


def _labels(line: str, at: int, labels: dict[str, str]) -> int:
    """Read `name="value",…}` from `at`; return the index after the closing brace."""
    while True:
        at = _skip_spaces(line, at)
        if at < len(line) and line[at] == "}":
            return at + 1
        match = _LABEL_NAME.match(line, at)
        if match is None:
            raise PromParseError(f"bad label name at column {at + 1}")
        key = match.group()
        at = _skip_spaces(line, match.end())
        if line[at : at + 1] != "=":
            raise PromParseError(f"expected '=' after label {key}")
        at = _skip_spaces(line, at + 1)
        if line[at : at + 1] != '"':
            raise PromParseError(f"label {key}: value must be quoted")
        value, at = _quoted(line, at + 1)
        if key in labels:
            raise PromParseError(f"label {key} given twice")
        labels[key] = value
        at = _skip_spaces(line, at)
        if line[at : at + 1] == ",":
            at += 1
        elif line[at : at + 1] != "}":
            raise PromParseError(f"expected ',' or '}}' after label {key}")


def _quoted(line: str, at: int) -> tuple[str, int]:
    out: list[str] = []
    while at < len(line):
        char = line[at]
        if char == '"':
            return "".join(out), at + 1
        if char == "\\":
            escaped = line[at + 1 : at + 2]
            if escaped not in _ESCAPES:
                raise PromParseError(f"invalid escape \\{escaped} in a label value")
            out.append(_ESCAPES[escaped])
            at += 2
            continue
        out.append(char)
        at += 1
    raise PromParseError("unterminated label value")


def _skip_spaces(line: str, at: int) -> int:
    while at < len(line) and line[at] in " \t":
        at += 1
    return at


def parse_value(text: str) -> float:
    if text in _SPECIAL:
        return _SPECIAL[text]
    if not _NUMBER.fullmatch(text):
        raise PromParseError(f"bad sample value {text!r}")
    return float(text)


def parse_timestamp(text: str) -> int:
    """Epoch milliseconds from seconds, fractional seconds or milliseconds (see the module doc)."""
    if not _NUMBER.fullmatch(text):
        raise PromParseError(f"bad timestamp {text!r}")
    try:
        number = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the regex admits only valid decimals
        raise PromParseError(f"bad timestamp {text!r}") from None
    if number.is_signed() and number != 0:
        raise PromParseError(f"negative timestamp {text!r}")
    is_integer = "." not in text and "e" not in text.lower()
    if is_integer and number >= _SECONDS_BELOW:
        return int(number)
    return int((number * 1000).to_integral_value())
