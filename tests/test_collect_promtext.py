"""The Prometheus text parser on payloads in the real sources' shapes, awkward cases included."""

import math
from pathlib import Path

import pytest

from collect.promtext import PromParseError, parse, parse_timestamp

SAMPLES = Path("/work/shared/samples")

BROKER_QUOTA = """\
# Scraped from one broker's jmx_exporter endpoint; each broker exposes its own series.
# HELP kafka_server_produce_byte_rate Produce byte rate of a client quota entity (bytes/s).
# TYPE kafka_server_produce_byte_rate gauge
kafka_server_produce_byte_rate{user="svc-orders",client_id="orders-api-1",} 125034.5
kafka_server_produce_byte_rate{user="svc-orders",client_id="orders-api-2",} 98211.0
kafka_server_produce_byte_rate{user="CN%3Dreporting%2COU%3Ddata",client_id="rep-1",} 4096.0
kafka_server_produce_byte_rate{user="idle",client_id="x",} NaN
kafka_server_produce_byte_rate{user="hot",client_id="x",} +Inf
kafka_server_produce_byte_rate{user="cold",client_id="x",} -Inf
# HELP kafka_server_fetch_byte_rate Fetch byte rate of a client quota entity (bytes/s).
# TYPE kafka_server_fetch_byte_rate gauge
kafka_server_fetch_byte_rate{user="svc-billing",client_id="billing-consumer",} 512000.0
kafka_server_fetch_byte_rate{user="svc-orders",client_id="orders-api-1",} 1.20025e3
"""

REQ = "confluent_kafka_server_request_bytes"
CCLOUD_EXPORT = (
    f"# HELP {REQ} Request bytes per principal and request type.\n"
    f"# TYPE {REQ} gauge\n"
    f'{REQ}{{kafka_id="lkc-a1b2c3",principal_id="sa-7yq21p",type="Produce"}}'
    " 812345.0 1764460800000\n"
    f'{REQ}{{kafka_id="lkc-a1b2c3",principal_id="sa-7yq21p",type="Metadata"}}'
    " 2210.0 1764460800\n"
    f'{REQ}{{kafka_id="lkc-a1b2c3",principal_id="u-4kd90z",type="Produce",}}'
    " 120 1764460800.25\n"
    "# EOF\n"
)


def test_the_shared_samples_parse() -> None:
    quota = parse((SAMPLES / "broker-quota.prom").read_text())
    assert len(quota.samples) == 5
    assert quota.types == {
        "kafka_server_produce_byte_rate": "gauge",
        "kafka_server_fetch_byte_rate": "gauge",
    }
    export = parse((SAMPLES / "ccloud-export.prom").read_text())
    assert len(export.samples) == 6
    assert {s.timestamp_ms for s in export.samples} == {1764460800000}


def test_jmx_exporter_shape_trailing_commas_specials_and_exponents() -> None:
    payload = parse(BROKER_QUOTA)
    assert not payload.eof
    first = payload.samples[0]
    assert first.name == "kafka_server_produce_byte_rate"
    assert first.labels == (("client_id", "orders-api-1"), ("user", "svc-orders"))
    assert first.value == 125034.5 and first.timestamp_ms is None
    assert payload.samples[2].label("user") == "CN%3Dreporting%2COU%3Ddata"  # decoding is not ours
    assert math.isnan(payload.samples[3].value)
    assert payload.samples[4].value == math.inf and payload.samples[5].value == -math.inf
    assert payload.samples[-1].value == 1200.25


def test_export_shape_timestamps_in_ms_seconds_and_fractional_seconds_with_eof() -> None:
    payload = parse(CCLOUD_EXPORT)
    assert payload.eof
    assert [s.timestamp_ms for s in payload.samples] == [
        1764460800000,
        1764460800000,
        1764460800250,
    ]
    assert payload.samples[2].labels[-1] == ("type", "Produce")


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1764460800000", 1764460800000),  # milliseconds (Prometheus text format)
        ("1764460800", 1764460800000),  # seconds (OpenMetrics)
        ("1764460800.5", 1764460800500),  # fractional seconds
        ("1764460800.123456", 1764460800123),
        ("1.7644608e9", 1764460800000),  # exponent: seconds
        ("0", 0),
        ("99999999999", 99999999999000),  # just below 10^11: seconds
        ("100000000000", 100000000000),  # 10^11 and above: milliseconds
    ],
)
def test_timestamp_units(text: str, ms: int) -> None:
    assert parse_timestamp(text) == ms


def test_escaped_quotes_backslashes_and_newlines_in_label_values() -> None:
    text = r'm{user="a\"b",path="c:\\d",note="x\ny",empty=""} 1' + "\n"
    sample = parse(text).samples[0]
    assert sample.label("user") == 'a"b'
    assert sample.label("path") == "c:\\d"
    assert sample.label("note") == "x\ny"
    assert sample.label("empty") == ""
    assert sample.label("missing", "?") == "?"


def test_spacing_crlf_comments_and_no_labels() -> None:
    text = (
        "# a free comment\r\n"
        "\n"
        "up 1\r\n"
        'm { a = "1" , b="2" , }\t7 1700000000000\r\n'
        "m{} 3\n"
        "# TYPEWRITER lines are free comments\n"
    )
    samples = parse(text).samples
    assert [(s.name, s.value) for s in samples] == [("up", 1.0), ("m", 7.0), ("m", 3.0)]
    assert samples[1].labels == (("a", "1"), ("b", "2"))
    assert samples[1].timestamp_ms == 1700000000000


def test_empty_payload_and_eof_only() -> None:
    assert parse("").samples == []
    assert parse("# EOF\n").eof
    assert parse("# EOF\n\n\n").eof


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('m{user="a} 1', "unterminated label value"),
        (r'm{user="a\tb"} 1', "invalid escape"),
        ("m{user=a} 1", "must be quoted"),
        ('m{user="a",,} 1', "bad label name"),
        ('m{user="a" client="b"} 1', "expected ',' or '}'"),
        ('m{user="a",user="b"} 1', "given twice"),
        ('m{1a="x"} 1', "bad label name"),
        ("m", "expected a space"),
        ('m{a="1"}1', "expected a space"),
        ("m 1 2 3", "expected 'value [timestamp]'"),
        ("m nan", "bad sample value"),  # only NaN spelled so
        ("m inf", "bad sample value"),
        ("m 1_000", "bad sample value"),
        ("m 0x10", "bad sample value"),
        ("m 1 soon", "bad timestamp"),
        ("m 1 -5", "negative timestamp"),
        ("9m 1", "no metric name"),
        ("# TYPE m gauge\n# TYPE m counter", "second TYPE"),
        ("# TYPE m thing", "unknown metric type"),
        ("# HELP", "bad HELP line"),
        ("# EOF\nm 1", "content after # EOF"),
    ],
)
def test_malformed_payloads_are_refused_with_the_line(text: str, message: str) -> None:
    with pytest.raises(PromParseError, match="line ") as raised:
        parse(text)
    assert message in str(raised.value)


def test_error_names_the_line_number() -> None:
    with pytest.raises(PromParseError, match=r"^line 3: "):
        parse("a 1\nb 2\nc{ 3\n")
