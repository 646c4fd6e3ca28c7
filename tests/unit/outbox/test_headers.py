"""Headers in the outbox's JSON column: exact round trip for any bytes, readable text when UTF-8."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payment_events.errors import SerializationError
from payment_events.outbox.headers import dump_headers, load_headers

header_lists = st.lists(st.tuples(st.text(max_size=20), st.binary(max_size=40)), max_size=8).map(tuple)


@given(header_lists)
def test_any_headers_round_trip_exactly(headers: tuple[tuple[str, bytes], ...]) -> None:
    """Names, values, order and repeated names survive the JSON column unchanged."""
    assert load_headers(dump_headers(headers)) == headers


def test_utf8_values_are_stored_as_readable_text() -> None:
    """UTF-8 values are plain JSON strings; other bytes are marked base64."""
    text = dump_headers((("ce_type", b"PaymentSucceeded"), ("bin", b"\xff\x00")))
    assert json.loads(text) == [["ce_type", "PaymentSucceeded"], ["bin", "/wA=", "base64"]]


@pytest.mark.parametrize(
    "bad",
    [
        "not json",
        "[[1]]",
        '[["a", "b", "hex"]]',
        '[["a", "!!", "base64"]]',
        "5",
        '[[1, "v"]]',
        '[["a", 2]]',
        "{}",
        '{"a": "b"}',
    ],
)
def test_malformed_header_text_is_a_serialization_error(bad: str) -> None:
    """A corrupted headers column raises SerializationError, without echoing the column."""
    with pytest.raises(SerializationError) as info:
        load_headers(bad)
    assert bad not in str(info.value)
