"""Free text refuses control and bidi-override characters; `source` is an RFC 3986 URI-reference that a
CloudEvents SDK reads back from our Kafka headers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cloudevents.core.bindings import http
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
from cloudevents.core.formats.json import JSONFormat

from payment_events.errors import InvalidEventError
from payment_events.events import PaymentFailed, PaymentSucceeded, RefundFailed
from payment_events.events.codec import encode
from payment_events.events.examples import example_event, example_fields
from payment_events.events.uri_reference import is_uri_reference


@pytest.mark.parametrize(
    "char",
    ["\x00", "\x1b", "\x7f", "\x85", "\x9b", "\u2028", "\u2029", "\u202a", "\u202b", "\u202d", "\u202e",
     "\u2066", "\u2067", "\u2068", "\u2069"],
)
@pytest.mark.parametrize("model", [PaymentFailed, RefundFailed])
def test_free_text_refuses_control_and_bidi_override_characters(char: str, model: type[Any]) -> None:
    """C0/C1 controls (U+0085 too), line separators and bidi embeddings/overrides/isolates are refused."""
    fields = example_fields(model)
    fields["failure_reason"] = f"declined{char}by issuer"
    with pytest.raises(InvalidEventError, match="failureReason"):
        model(**fields)


@pytest.mark.parametrize(
    "text", ["Carte refusée", "رفضت البطاقة \u200f(51)", "\u05db\u05e8\u05d8\u05d9\u05e1 \u200e"]
)
def test_free_text_keeps_ordinary_and_right_to_left_text(text: str) -> None:
    """Accents, Arabic and Hebrew, with the implicit LRM/RLM marks, are accepted."""
    fields = example_fields(PaymentFailed)
    fields["failure_reason"] = text
    assert PaymentFailed(**fields).failure_reason == text


@pytest.mark.parametrize(
    "source",
    ["payment_service:eu", "9svc:prod", "svc name", "pay_svc:prod:eu", "http://[not-ipv6]/", "%zz", "pay%"],
)
def test_source_must_be_a_uri_reference(source: str) -> None:
    """A source that is not an RFC 3986 URI-reference (bad scheme, ':' in a first segment) is refused."""
    assert not is_uri_reference(source)
    fields = example_fields(PaymentSucceeded)
    fields["source"] = source
    with pytest.raises(InvalidEventError, match="source"):
        PaymentSucceeded(**fields)


@pytest.mark.parametrize(
    "source",
    [
        "payment-service",
        "https://payments.example.com/eu-west-1",
        "urn:example:payment-service:eu",
        "/payments/eu",
        "payments/eu:1",
        "//payments.example.com/eu",
        "http://[2001:db8::1]:8080/p",
        "tag:example.com,2026:payments",
    ],
)
def test_uri_references_are_accepted_as_source(source: str) -> None:
    """Absolute URIs, URNs and relative references are accepted as source."""
    assert is_uri_reference(source)
    fields = example_fields(PaymentSucceeded)
    fields["source"] = source
    assert PaymentSucceeded(**fields).source == source


@pytest.mark.parametrize("source", [None, "https://payments.example.com/eu-west-1"])
def test_cloudevents_sdk_reads_our_kafka_binary_messages(source: str | None) -> None:
    """The CloudEvents Python SDK parses our Kafka headers (binary mode), default or absolute source."""
    fields = example_fields(PaymentSucceeded)
    if source is not None:
        fields["source"] = source
    event = PaymentSucceeded(**fields) if source is not None else example_event(PaymentSucceeded)
    encoded = encode(event)
    message = KafkaMessage(headers=dict(encoded.headers), key=encoded.key, value=encoded.value)
    parsed = from_binary(message, JSONFormat())
    assert parsed.get_source() == (source or "payment-service")
    assert parsed.get_id() == encoded.event_id
    assert parsed.get_type() == "PaymentSucceeded"
    assert parsed.get_specversion() == "1.0"
    data = parsed.get_data()
    assert data is not None
    body = data if isinstance(data, dict) else json.loads(data)
    assert body["paymentId"] == event.payment_id
    # Forwarded over HTTP in structured mode, the SDK reads the same source back.
    forwarded = http.from_http(http.to_structured(parsed, JSONFormat()), JSONFormat())
    assert forwarded.get_source() == parsed.get_source()
