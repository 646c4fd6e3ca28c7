"""JSON Schema artefacts: committed files match the models, validate real events, and evolve compatibly."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from payment_events.errors import SchemaCompatibilityError
from payment_events.events import PaymentFailed, PaymentFailedV1, PaymentSucceeded
from payment_events.events.codec import encode
from payment_events.events.examples import example_event
from payment_events.events.registry import DEFAULT_REGISTRY, EventRegistry
from payment_events.events.schemas import (
    JSON_SCHEMA_DIALECT,
    Incompatibility,
    assert_compatible,
    check_all,
    check_compatibility,
    event_schema,
    export_schemas,
    generate_schemas,
    load_schemas,
    render_schema,
    schema_path,
    stale_schema_files,
)

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "schemas"
KEYS = sorted(generate_schemas())


def test_committed_schemas_match_the_models() -> None:
    """schemas/ holds exactly what the models generate; regenerate with `payment-events schemas export`."""
    problems = stale_schema_files(COMMITTED)
    assert problems == [], (
        "The committed JSON Schemas differ from the models. If the change is intended, run "
        "`payment-events schemas export` (or python -c \"from payment_events.events.schemas import "
        "export_schemas; export_schemas('schemas')\"), then `payment-events schemas check`, "
        "and commit schemas/.\n"
        + "\n".join(problems)
    )


def test_every_registered_version_has_a_file() -> None:
    """Nine files: eight event types, PaymentFailed in two versions."""
    assert sorted(load_schemas(COMMITTED)) == KEYS
    assert len(KEYS) == 9
    assert ("PaymentFailed", 1) in KEYS
    assert ("PaymentFailed", 2) in KEYS


@pytest.mark.parametrize("key", KEYS, ids=lambda key: f"{key[0]}-v{key[1]}")
def test_schema_is_valid_draft_2020_12(key: tuple[str, int]) -> None:
    """Each schema is itself valid JSON Schema 2020-12 with $schema, $id, title and descriptions."""
    schema = load_schemas(COMMITTED)[key]
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == JSON_SCHEMA_DIALECT
    assert schema["$id"] == f"urn:payment-events:schema:{key[0]}:v{key[1]}"
    assert schema["title"] == f"{key[0]} v{key[1]}"
    assert schema["additionalProperties"] is False
    assert {"eventId", "eventType", "schemaVersion", "eventTimestamp", "source"} <= set(schema["required"])
    for name, field in schema["properties"].items():
        assert field.get("description"), f"{name} has no description"


def test_schemas_document_money_and_privacy() -> None:
    """The descriptions state the money and privacy rules where they apply."""
    succeeded = load_schemas(COMMITTED)[("PaymentSucceeded", 1)]
    assert "minor units" in succeeded["properties"]["amountPaid"]["description"]
    assert "never a float" in succeeded["description"]
    assert "ISO 4217" in succeeded["properties"]["currency"]["description"]
    assert succeeded["properties"]["amountPaid"]["type"] == "integer"
    failed = load_schemas(COMMITTED)[("PaymentFailed", 2)]
    assert "500 characters" in failed["properties"]["failureReason"]["description"]
    assert failed["properties"]["failureReason"]["maxLength"] == 500
    method = load_schemas(COMMITTED)[("PaymentMethodAdded", 1)]
    assert method["x-partition-key"] == "userId"


def _validator(key: tuple[str, int]) -> jsonschema.Draft202012Validator:
    schema = load_schemas(COMMITTED)[key]
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    return jsonschema.Draft202012Validator(schema, format_checker=checker)


@pytest.mark.parametrize(
    "model", DEFAULT_REGISTRY.models(), ids=lambda m: f"{m.EVENT_TYPE}-v{m.SCHEMA_VERSION}"
)
def test_encoded_events_validate_against_their_schema(model: type[PaymentSucceeded]) -> None:
    """A consumer validating our bytes with the committed schema accepts them."""
    value = json.loads(encode(example_event(model)).value)
    _validator((model.EVENT_TYPE, model.SCHEMA_VERSION)).validate(value)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"amountPaid": 19.99}, "is not of type 'integer'"),
        ({"amountPaid": 0}, "less than or equal to the minimum"),
        ({"extra": 1}, "Additional properties are not allowed"),
        ({"schemaVersion": 2}, "1 was expected"),
        ({"paymentId": "has spaces"}, "does not match"),
    ],
)
def test_schema_refuses_what_the_model_refuses(change: dict[str, Any], problem: str) -> None:
    """The schema encodes the same rules as the model for types, ranges, closedness and patterns."""
    value = {**json.loads(encode(example_event(PaymentSucceeded)).value), **change}
    errors = list(_validator(("PaymentSucceeded", 1)).iter_errors(value))
    assert any(problem in error.message for error in errors), [e.message for e in errors]


def test_export_writes_every_schema(tmp_path: Path) -> None:
    """export_schemas writes one file per registered version and returns their paths."""
    written = export_schemas(tmp_path)
    assert written == [schema_path(tmp_path, event_type, version) for event_type, version in KEYS]
    assert stale_schema_files(tmp_path) == []
    text = (tmp_path / "PaymentFailed" / "v2.json").read_text(encoding="utf-8")
    assert text == render_schema(event_schema(PaymentFailed))
    assert text.endswith("}\n")


def test_export_is_deterministic(tmp_path: Path) -> None:
    """Exporting twice gives byte-identical files."""
    first = {path: path.read_bytes() for path in export_schemas(tmp_path / "a")}
    second = {path: path.read_bytes() for path in export_schemas(tmp_path / "b")}
    assert list(first.values()) == list(second.values())


def test_stale_files_are_reported(tmp_path: Path) -> None:
    """A changed, a missing and an orphan file are each reported with its path."""
    export_schemas(tmp_path)
    changed = tmp_path / "PaymentSucceeded" / "v1.json"
    changed.write_text(changed.read_text(encoding="utf-8").replace("minor units", "cents"), encoding="utf-8")
    (tmp_path / "RefundFailed" / "v1.json").unlink()
    orphan = tmp_path / "PaymentSucceeded" / "v9.json"
    orphan.write_text("{}", encoding="utf-8")
    problems = stale_schema_files(tmp_path)
    assert problems == [
        f"{changed} differs from the PaymentSucceeded v1 model",
        f"{tmp_path / 'RefundFailed' / 'v1.json'} is missing",
        f"{orphan} has no registered model: a published version must stay registered",
    ]


def test_unreadable_schema_file_is_our_error(tmp_path: Path) -> None:
    """A schema file that is not JSON raises SchemaCompatibilityError naming it."""
    (tmp_path / "PaymentSucceeded").mkdir()
    (tmp_path / "PaymentSucceeded" / "v1.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(SchemaCompatibilityError, match="cannot read schema file"):
        load_schemas(tmp_path)


def test_all_versions_are_compatible() -> None:
    """The models and the committed files pass the compatibility check."""
    assert check_all() == []
    assert check_all(COMMITTED) == []
    assert_compatible(COMMITTED)


def test_payment_failed_v2_is_compatible_with_v1() -> None:
    """PaymentFailed v2 only adds an optional field: compatible."""
    schemas = generate_schemas()
    assert check_compatibility(schemas[("PaymentFailed", 1)], schemas[("PaymentFailed", 2)]) == []


def test_going_back_from_v2_to_v1_would_remove_a_field() -> None:
    """Dropping retryable again is refused, naming the field."""
    schemas = generate_schemas()
    found = check_compatibility(schemas[("PaymentFailed", 2)], schemas[("PaymentFailed", 1)])
    assert [(item.path, item.kind) for item in found] == [("retryable", "removed")]
    assert str(found[0]) == (
        "PaymentFailed v2 -> PaymentFailed v1: field 'retryable' was removed: consumers of the previous "
        "version read it"
    )


def v1() -> dict[str, Any]:
    """A fresh copy of PaymentFailed v1's schema, to break in a test."""
    return copy.deepcopy(event_schema(PaymentFailedV1))


def _set(schema: dict[str, Any], field: str, **changes: Any) -> dict[str, Any]:
    schema["properties"][field].update(changes)
    return schema


def _with_new_field(required: bool) -> dict[str, Any]:
    schema = v1()
    schema["properties"]["declineCode"] = {"type": "string", "description": "new"}
    if required:
        schema["required"].append("declineCode")
    return schema


def _nested_removal() -> tuple[dict[str, Any], dict[str, Any]]:
    from payment_events.events import PaymentRequiresAction

    old = event_schema(PaymentRequiresAction)
    new = copy.deepcopy(old)
    del new["$defs"]["ActionRequiredDetails"]["properties"]["expiresAt"]
    return old, new


def _required_nested() -> tuple[dict[str, Any], dict[str, Any]]:
    old, new = _nested_removal()
    new = copy.deepcopy(old)
    new["$defs"]["ActionRequiredDetails"]["required"].append("redirectUrl")
    return old, new


def _drop(schema: dict[str, Any], field: str) -> dict[str, Any]:
    del schema["properties"][field]
    schema["required"] = [name for name in schema["required"] if name != field]
    return schema


def _nullable(schema: dict[str, Any], field: str) -> dict[str, Any]:
    old = schema["properties"][field]
    schema["properties"][field] = {"anyOf": [old, {"type": "null"}], "description": old["description"]}
    return schema


def _not_nullable(schema: dict[str, Any], field: str) -> dict[str, Any]:
    schema["properties"][field] = schema["properties"][field]["anyOf"][0]
    return schema


def _require(schema: dict[str, Any], field: str) -> dict[str, Any]:
    schema["required"].append(field)
    return schema


def _enum_pair(old: list[str] | None, new: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    before: dict[str, Any] = {"type": "object", "properties": {"kind": {"type": "string"}}}
    if old is not None:
        before["properties"]["kind"]["enum"] = old
    after = {"type": "object", "properties": {"kind": {"type": "string", "enum": new}}}
    return before, after


def _closed_pair() -> tuple[dict[str, Any], dict[str, Any]]:
    old = v1()
    del old["additionalProperties"]
    return old, v1()


BREAKS: list[tuple[str, Any, str, str, str]] = [
    ("removed field", lambda: (v1(), _drop(v1(), "gatewayErrorCode")), "gatewayErrorCode", "removed",
     "field 'gatewayErrorCode' was removed"),
    ("retyped field", lambda: (v1(), _set(v1(), "amount", type="string")), "amount", "retyped",
     "field 'amount' changed type from integer to string"),
    ("integer to number", lambda: (v1(), _set(v1(), "amount", type="number")), "amount", "retyped",
     "changed type from integer to number"),
    ("became nullable", lambda: (v1(), _nullable(v1(), "orderId")), "orderId", "retyped",
     "field 'orderId' changed type from string to null|string"),
    ("no longer nullable", lambda: (v1(), _not_nullable(v1(), "userId")), "userId", "retyped",
     "field 'userId' changed type from null|string to string"),
    ("new required field", lambda: (v1(), _with_new_field(required=True)), "declineCode", "new-required",
     "field 'declineCode' is new and required"),
    ("optional became required", lambda: (v1(), _require(v1(), "userId")), "userId", "new-required",
     "field 'userId' became required"),
    ("enum narrowed", lambda: _enum_pair(["a", "b", "c"], ["a", "b"]), "kind", "enum-narrowed",
     "field 'kind' no longer allows 'c'"),
    ("enum imposed", lambda: _enum_pair(None, ["a"]), "kind", "enum-narrowed",
     "field 'kind' is now restricted"),
    ("const changed", lambda: (v1(), _set(v1(), "eventType", const="PaymentRejected")), "eventType",
     "const-changed", "field 'eventType' changed its constant value"),
    ("maxLength tightened", lambda: (v1(), _set(v1(), "failureReason", maxLength=200)), "failureReason",
     "tightened", "field 'failureReason' maxLength tightened from 500 to 200"),
    ("minimum raised", lambda: (v1(), _set(v1(), "amount", exclusiveMinimum=100)), "amount", "tightened",
     "field 'amount' exclusiveMinimum tightened from 0 to 100"),
    ("pattern changed", lambda: (v1(), _set(v1(), "currency", pattern="^(EUR|USD)$")), "currency",
     "pattern-changed", "field 'currency' has a different pattern"),
    ("format changed", lambda: (v1(), _set(v1(), "failedAt", format="date")), "failedAt", "format-changed",
     "field 'failedAt' has a different format"),
    ("closed object", _closed_pair, "", "closed", "no longer allows additional fields"),
    ("nested removal", _nested_removal, "actionRequiredDetails.expiresAt", "removed",
     "field 'actionRequiredDetails.expiresAt' was removed"),
    ("nested now required", _required_nested, "actionRequiredDetails.redirectUrl", "new-required",
     "field 'actionRequiredDetails.redirectUrl' became required"),
]


@pytest.mark.parametrize(("name", "make", "path", "kind", "message"), BREAKS, ids=[b[0] for b in BREAKS])
def test_each_kind_of_break_is_refused(name: str, make: Any, path: str, kind: str, message: str) -> None:
    """Each breaking change is reported once, with its kind and a message naming the field."""
    old, new = make()
    found = check_compatibility(old, new)
    assert [(item.path, item.kind) for item in found] == [(path, kind)], (name, found)
    assert message in found[0].message


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("optional field added", lambda: (v1(), _with_new_field(required=False))),
        ("enum widened", lambda: _enum_pair(["a"], ["a", "b"])),
        ("maxLength loosened", lambda: (v1(), _set(v1(), "failureReason", maxLength=1000))),
        ("description changed", lambda: (v1(), _set(v1(), "amount", description="other words"))),
        ("schemaVersion bumped", lambda: (v1(), _set(v1(), "schemaVersion", const=2, default=2))),
        ("identical", lambda: (v1(), v1())),
    ],
)
def test_compatible_changes_are_accepted(name: str, make: Any) -> None:
    """Additive and documentation-only changes pass the check."""
    old, new = make()
    assert check_compatibility(old, new) == [], name


def test_check_all_compares_consecutive_committed_versions(tmp_path: Path) -> None:
    """A breaking v3 file next to v1 and v2 is found, and assert_compatible raises naming it."""
    export_schemas(tmp_path)
    v3 = _drop(event_schema(PaymentFailed), "failureReason")
    v3["title"] = "PaymentFailed v3"
    (tmp_path / "PaymentFailed" / "v3.json").write_text(render_schema(v3), encoding="utf-8")
    found = check_all(tmp_path)
    assert found == [
        Incompatibility(
            "PaymentFailed v2 -> PaymentFailed v3",
            "failureReason",
            "removed",
            "field 'failureReason' was removed: consumers of the previous version read it",
        )
    ]
    with pytest.raises(SchemaCompatibilityError, match=r"(?s)1 incompatible schema change.*'failureReason'"):
        assert_compatible(tmp_path)


def test_version_gaps_are_reported(tmp_path: Path) -> None:
    """Versions must be numbered 1, 2, 3 without gaps."""
    export_schemas(tmp_path)
    (tmp_path / "PaymentFailed" / "v2.json").rename(tmp_path / "PaymentFailed" / "v4.json")
    kinds = [(item.schema, item.kind) for item in check_all(tmp_path)]
    assert ("PaymentFailed", "version-gap") in kinds


def test_missing_upcaster_is_reported() -> None:
    """A registry with two versions and no upcaster between them fails the check."""
    registry = EventRegistry()
    registry.register(PaymentFailedV1)
    registry.register(PaymentFailed)
    found = check_all(registry=registry)
    assert [(item.kind, item.message) for item in found] == [
        ("no-upcaster", "PaymentFailed v1 has no upcaster to v2")
    ]
