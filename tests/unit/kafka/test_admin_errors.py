"""Broker errors for operators (issue 11, defect 12): an authentication failure points at the
authentication settings, not at bootstrap.servers."""

from __future__ import annotations

from payment_events.kafka.admin import broker_error_text


def test_a_sasl_failure_names_the_authentication_settings() -> None:
    """librdkafka's SASL failure text is kept, and the hint names the SASL options."""
    text = broker_error_text(
        "_AUTHENTICATION", "SASL authentication error: Authentication failed: Invalid username or password"
    )
    assert "Invalid username or password" in text
    assert "kafka_sasl_password" in text
    assert "bootstrap.servers" not in text


def test_an_unreachable_broker_keeps_the_address_hint_and_the_clients_words() -> None:
    """A transport failure keeps the client's own message and the bootstrap.servers hint."""
    text = broker_error_text("_TRANSPORT", "Connect to ipv4#127.0.0.1:1 failed: Connection refused")
    assert "Connection refused" in text
    assert "bootstrap.servers" in text
