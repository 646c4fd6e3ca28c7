"""docs/events.md stays true: its example payloads are exactly what the models produce."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from payment_events.events import CURRENT_EVENT_CLASSES, BaseEvent
from payment_events.events.examples import example_payload

DOC = Path(__file__).resolve().parents[3] / "docs" / "events.md"
EXAMPLE = re.compile(r"<!-- example:(\w+):v(\d+) -->\n```json\n(.*?)\n```", re.DOTALL)


def documented_examples() -> dict[tuple[str, int], str]:
    """The example payloads in docs/events.md, keyed by (eventType, schemaVersion)."""
    text = DOC.read_text(encoding="utf-8")
    return {(name, int(version)): body for name, version, body in EXAMPLE.findall(text)}


def test_every_current_event_is_documented_with_an_example() -> None:
    """Each of the eight current event versions has an example block in the docs."""
    assert sorted(documented_examples()) == sorted(
        (model.EVENT_TYPE, model.SCHEMA_VERSION) for model in CURRENT_EVENT_CLASSES
    )


@pytest.mark.parametrize("model", CURRENT_EVENT_CLASSES, ids=lambda m: m.EVENT_TYPE)
def test_documented_example_is_what_the_model_produces(model: type[BaseEvent]) -> None:
    """The documented payload equals the model's example encoding (regenerate the block if not)."""
    assert documented_examples()[(model.EVENT_TYPE, model.SCHEMA_VERSION)] == example_payload(model)
