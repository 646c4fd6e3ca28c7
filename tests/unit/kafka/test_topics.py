"""TopicRouter: default aggregate topic, per-type routes, and clear errors for bad topic names."""

from __future__ import annotations

import pytest

from payment_events.errors import ConfigurationError
from payment_events.kafka.topics import TopicRouter, parse_routing, validate_topic_name
from payment_events.outbox.inserts import DEFAULT_TOPIC


def test_every_event_goes_to_the_aggregate_topic_by_default() -> None:
    """Without routes every event type maps to payment.events."""
    router = TopicRouter()
    assert router.topic_for("PaymentSucceeded") == DEFAULT_TOPIC == "payment.events"
    assert router.topics == ("payment.events",)


def test_routes_send_chosen_types_elsewhere() -> None:
    """A routed type goes to its topic, the rest to the default; topics lists each once, sorted."""
    router = TopicRouter(routes={"PaymentFailed": "payment.failed", "RefundFailed": "payment.failed"})
    assert router.topic_for("PaymentFailed") == "payment.failed"
    assert router.topic_for("PaymentSucceeded") == "payment.events"
    assert router.topics == ("payment.events", "payment.failed")


def test_parse_routing_reads_the_flag_syntax() -> None:
    """The 'Type=topic,Type=topic' form used by flags and environment variables builds the same router."""
    spec = " PaymentFailed = payment.failed , RefundProcessed=refunds "
    router = TopicRouter("payments", parse_routing(spec))
    expected = {"PaymentFailed": "payment.failed", "RefundProcessed": "refunds"}
    assert router == TopicRouter("payments", expected)
    assert hash(router) == hash(TopicRouter("payments", router.routes))


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "non-empty"),
        ("a" * 250, "longer than 249"),
        ("..", "cannot be"),
        ("payment events", "may only contain"),
        ("payments/1", "may only contain"),
    ],
)
def test_invalid_topic_names_are_refused_with_a_reason(name: str, fragment: str) -> None:
    """Kafka's topic-name rules are checked up front, with a message that says which rule broke."""
    with pytest.raises(ConfigurationError, match=fragment):
        validate_topic_name(name)


def test_valid_topic_names_pass() -> None:
    """Letters, digits, dots, underscores and dashes up to 249 characters are fine."""
    assert validate_topic_name("payment.events_v2-eu") == "payment.events_v2-eu"
    assert validate_topic_name("a" * 249) == "a" * 249


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("PaymentFailed", "EventType=topic.name"),
        ("PaymentFailed=a,PaymentFailed=b", "given twice"),
        ("payment-failed=a", "must be an event type"),
        ("PaymentFailed=bad topic", "may only contain"),
    ],
)
def test_bad_route_specs_are_refused(spec: str, fragment: str) -> None:
    """Malformed routes fail at start with a message naming the problem."""
    with pytest.raises(ConfigurationError, match=fragment):
        TopicRouter(DEFAULT_TOPIC, parse_routing(spec))


def test_unknown_event_type_routes_are_refused_when_types_are_known() -> None:
    """A route for a misspelt event type is an error, not a silent no-op."""
    with pytest.raises(ConfigurationError, match="unknown event type 'PaymentFailled'"):
        TopicRouter(routes={"PaymentFailled": "x"}, known_event_types={"PaymentFailed"})


def test_topics_colliding_in_kafka_metrics_are_refused() -> None:
    """'a.b' and 'a_b' cannot coexist in Kafka, so the router refuses the pair."""
    with pytest.raises(ConfigurationError, match="differ only by"):
        TopicRouter("payment.events", {"PaymentFailed": "payment_events"})
