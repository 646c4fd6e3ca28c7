"""The one card-number detector: every written form is found, honest ids are not, and nothing echoes it."""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path

import pytest
from bench.privacy_corpus import (
    TEST_CARDS,
    adversarial_texts,
    honest_ids,
    is_bare_card_id,
    probe,
    probed_models,
    string_paths,
    wire_example,
)
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from payment_events.errors import PaymentEventsError, SensitiveDataError
from payment_events.events.card_numbers import (
    BRANDS,
    brand_of,
    contains_card_number,
    find_card_numbers,
    is_card_number,
    luhn_valid,
    normalise,
    redact_card_numbers,
)
from payment_events.events.codec import decode
from payment_events.events.privacy import check_text
from payment_events.ops.logs import redact_text

CORPUS = list(adversarial_texts())


@pytest.mark.parametrize(("brand", "card"), [(b, c) for b, cards in TEST_CARDS.items() for c in cards])
def test_every_published_test_card_is_a_card_number_of_its_brand(brand: str, card: str) -> None:
    """Each test card passes Luhn and falls in its own brand's issuer range and length."""
    assert luhn_valid(card)
    assert brand_of(card) == brand
    assert is_card_number(card)


def test_the_whole_adversarial_corpus_is_found_and_redacted() -> None:
    """Every test card in every separator, Unicode digit, context and URL form is found and masked."""
    assert len(CORPUS) > 30_000
    for item in CORPUS:
        assert contains_card_number(item.text), item.form
        redacted = redact_text(item.text)
        assert not contains_card_number(redacted), item.form
        digits = "".join(c for c in normalise(redacted) if c.isdigit())
        assert item.card not in digits, item.form


@pytest.mark.parametrize(
    "text",
    [
        "4111.1111.1111.1111",
        "4111/1111/1111/1111",
        "4111_1111_1111_1111",
        "4111:1111:1111:1111",
        "4111  1111  1111  1111",
        "4111\u00a01111\u00a01111\u00a01111",
        "4111\u20131111\u20131111\u20131111",
        "4111 1111-1111.1111",
        "\u0664\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661",
        "\uff14\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11",
        "pay_4111.1111.1111.1111",
        "https://shop.example/return?ref=4111+1111+1111+1111",
        "https://shop.example/return?ref=4111%201111%201111%201111",
        "https://shop.example/r?ref=%34%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31",
        "https://shop.example/done#4111.1111.1111.1111",
    ],
)
def test_every_form_named_in_issue_13_is_found(text: str) -> None:
    """The sixteen hiding places of issue 13 are all found."""
    assert contains_card_number(text)


@pytest.mark.parametrize(
    "text",
    [
        "pay_01a23343-af61-7513-9311-694808bc2d3f",  # the refused honest id of issue 13
        "ORD-20261201-401288",
        "2026-01-31T12:00:00.123456Z",
        "2026-01-30 03:12:45.123456",
        "41111111111111112",  # 17 digits starting with 4: no Visa is 17 long
        "4111111111111112",  # Luhn-invalid
        "9111111111111111119",  # no brand starts with 9
        "01936f2e-8a4b-7c3d-9e1f-2a3b4c5d6e7f",
        "ord_1234567890123456789abcdef0123456",  # digits inside a hex token
        "+1 415 555 2671",
    ],
)
def test_honest_values_are_not_card_numbers(text: str) -> None:
    """Ids, timestamps, UUIDs and phone numbers that are not card numbers are not refused."""
    assert not contains_card_number(text)


def test_known_limits_are_what_the_docs_say() -> None:
    """A card glued to more digits, or inside a hex token, is not found (documented trade-offs)."""
    assert not contains_card_number("1234111111111111111")
    assert not contains_card_number("cafe4111111111111111")
    assert contains_card_number("ref4111111111111111")  # glued to non-hex letters: found


def test_redaction_masks_only_the_card_and_keeps_the_rest() -> None:
    """The original characters of a card (in any form) are replaced and the text around kept."""
    text = "declined \uff14\uff11\uff11\uff11 1111 1111 1111 at shop"
    assert redact_card_numbers(text) == "declined [REDACTED-PAN] at shop"
    url = "https://x.example/?a=1&ref=4111%201111%201111%201111&b=2"
    assert redact_card_numbers(url) == "https://x.example/?a=1&ref=[REDACTED-PAN]&b=2"
    assert find_card_numbers("no card here 1234") == []


def _card_of(brand_index: int, body: str) -> str:
    """A card number of BRANDS[brand_index]: its lowest prefix, ``body`` digits, and the Luhn digit."""
    brand = BRANDS[brand_index]
    prefix = str(brand.prefixes[0][0])
    length = max(brand.lengths)
    partial = (prefix + body)[: length - 1].ljust(length - 1, "0")
    return next(partial + d for d in "0123456789" if luhn_valid(partial + d))


_SEPARATORS = st.text(
    st.characters(categories=["Zs", "Pd", "Po", "Ps", "Pe", "Sm", "Cf"], exclude_characters="%"),
    min_size=1,
    max_size=3,
)


@given(
    brand_index=st.integers(0, len(BRANDS) - 1),
    body=st.text("0123456789", min_size=18, max_size=18),
    separator=_SEPARATORS,
    zero=st.sampled_from([0x30, 0x660, 0x6F0, 0xFF10, 0x966, 0xE50]),
)
def test_any_card_with_any_separator_run_and_digits_is_found(
    brand_index: int, body: str, separator: str, zero: int
) -> None:
    """A card of any brand, in groups of four with any run of separators, in any script, is found."""
    card = _card_of(brand_index, body)
    written = separator.join(card[i : i + 4] for i in range(0, len(card), 4))
    shown = "".join(chr(zero + int(c)) if c.isdigit() else c for c in written)
    assert contains_card_number(shown)
    assert card not in "".join(c for c in normalise(redact_text(shown)) if c.isdigit())


@settings(max_examples=300)
@given(st.uuids(), st.sampled_from(["pay_", "ord_", "pi_", ""]), st.booleans())
def test_uuid_ids_are_never_refused(value: uuid.UUID, prefix: str, as_hex: bool) -> None:
    """A prefixed UUID, canonical or hex, is never taken for a card number."""
    check_text("paymentId", prefix + (value.hex if as_hex else str(value)))


def test_a_sample_of_honest_ids_has_no_false_refusal() -> None:
    """50,000 realistic ids of every format: none refused, except bare numeric ids that are cards."""
    refused = []
    for name, value in honest_ids(50_000, seed=7):
        try:
            check_text("paymentId", value)
        except SensitiveDataError:
            if not is_bare_card_id(value):
                refused.append((name, value))
    assert refused == []


def test_every_string_field_refuses_a_sample_of_the_corpus_without_echo() -> None:
    """Every string field of every model, built and decoded, refuses card forms and never shows them."""
    rng = random.Random(13)
    sample = rng.sample(CORPUS, 12)
    for model in probed_models():
        for path in string_paths(wire_example(model)):
            for item in sample:
                outcome = probe(model, path, item.text, item.card)
                assert not outcome.accepted, (model.__name__, path, item.form)
                assert not outcome.echoed, (model.__name__, path, item.form)


@pytest.mark.parametrize("event_type", ["4111111111111111", "4111.1111.1111.1111", "A4111111111111111"])
def test_decode_never_quotes_an_unknown_event_type(event_type: str) -> None:
    """decode() names an unknown eventType only when it is a plain name; card-like ones are not shown."""
    value = json.dumps({"eventType": event_type, "schemaVersion": 1}).encode()
    with pytest.raises(PaymentEventsError) as caught:
        decode(value)
    assert "4111" not in str(caught.value)
    no_version = json.dumps({"eventType": event_type}).encode()
    with pytest.raises(PaymentEventsError) as caught:
        decode(no_version)
    assert "4111" not in str(caught.value)


def test_decode_still_names_a_plain_unknown_event_type() -> None:
    """A plain unknown type name is still quoted, so the error stays useful."""
    with pytest.raises(PaymentEventsError, match="'PaymentTeleported'"):
        decode(json.dumps({"eventType": "PaymentTeleported", "schemaVersion": 1}).encode())


def test_dlq_list_and_show_mask_card_numbers(tmp_path: Path) -> None:
    """A dead row holding card data (written before the checks, or by hand) is shown masked."""
    from datetime import UTC, datetime

    import sqlalchemy as sa

    from payment_events.cli import cli
    from payment_events.outbox import migrate
    from payment_events.outbox.table import outbox_table

    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    migrate.upgrade(url)
    now = datetime.now(UTC)
    card = "4111.1111.1111.1111"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            outbox_table.insert().values(
                event_id="019c1427-6d23-7a5e-9c4b-3f2e1d0c9b8a",
                event_type="PaymentSucceeded",
                schema_version=1,
                topic="payment.events",
                key=f"pay_{card}".encode(),
                payload=json.dumps({"note": f"card \u0664\u0661\u0661\u0661 {card[5:]}"}).encode(),
                headers="[]",
                shard=0,
                state="dead",
                attempts=3,
                next_attempt_at=now,
                last_error=f"broker said: bad key pay_{card}",
                created_at=now,
            )
        )
    engine.dispose()
    env = {"PAYMENT_EVENTS_DATABASE_URL": url}
    runner = CliRunner()
    for args in (["dlq", "list"], ["dlq", "list", "--json"], ["dlq", "show", "1", "--payload", "--json"]):
        result = runner.invoke(cli, args, env=env)
        assert result.exit_code == 0, result.output
        assert "REDACTED-PAN" in result.output
        for shown in (card, "1111.1111", "pay_4111", "\u0664\u0661", "\\u0664"):
            assert shown not in result.output, (args, shown)


@settings(max_examples=300)
@given(st.integers(1, 2**128 - 1), st.integers(1, 2**64 - 1))
def test_w3c_traceparents_are_never_refused(trace_id: int, parent_id: int) -> None:
    """A traceparent whose random parent id happens to be a card-like 16-digit number is not refused."""
    check_text("traceparent", f"00-{trace_id:032x}-{parent_id:016x}-01")


def test_a_traceparent_with_an_all_digit_parent_id_is_accepted() -> None:
    """The case Hypothesis found: parent id 4111111111111111 (a Visa test number) in a traceparent."""
    check_text("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-4111111111111111-01")
