"""The envelope every event shares, the field types events are built from, and the privacy scan.

Every event is a frozen pydantic v2 model with ``extra="forbid"``: Python uses snake_case names, the wire
uses camelCase aliases. Constructing an event that breaks its contract raises
:class:`~payment_events.errors.InvalidEventError` (or :class:`~payment_events.errors.SensitiveDataError`
for card data and secrets), both :class:`~payment_events.errors.ContractError`; input values are never
echoed, not even in the chained pydantic ``ValidationError`` (``hide_input_in_errors``).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

from payment_events.errors import InvalidEventError, SensitiveDataError
from payment_events.events.field_scan import scan_fields, scan_raw
from payment_events.events.ids import is_uuid7, uuid7
from payment_events.events.privacy import check_text, might_be_sensitive
from payment_events.events.uri_reference import is_uri_reference

__all__ = [
    "DEFAULT_SOURCE",
    "ENVELOPE_FIELDS",
    "FREE_TEXT_PATTERN",
    "UUID7_PATTERN",
    "BaseEvent",
    "Code",
    "ContractModel",
    "FreeText",
    "Identifier",
    "UtcDatetime",
    "contract_error",
    "scan_raw",
]

#: The producing service written into ``source`` (and the CloudEvents ``ce_source``) by default.
DEFAULT_SOURCE = "payment-service"

#: Wire names of the envelope fields, present in every event of every type and version.
ENVELOPE_FIELDS = (
    "eventId",
    "eventType",
    "schemaVersion",
    "eventTimestamp",
    "source",
    "correlationId",
    "traceparent",
)
#: What a UUIDv7 looks like in text (lower case, as the codec writes it); documented in the JSON Schema.
UUID7_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
_ALWAYS_PRESENT = ("eventId", "eventType", "schemaVersion", "eventTimestamp", "source")


_NUMBER_TEXT = re.compile(r"\s*[+-]?[0-9]+(?:\.[0-9]*)?\s*")


def _only_datetime_or_text(value: object) -> object:
    # pydantic would otherwise read numbers (and digit strings) as Unix timestamps; an event time is
    # never a bare number, and a digit string may be a card number that must not be turned into a date.
    if isinstance(value, datetime) or (isinstance(value, str) and not _NUMBER_TEXT.fullmatch(value)):
        return value
    msg = "expected an ISO 8601 / RFC 3339 timestamp with a UTC offset, e.g. 2026-01-31T12:00:00Z"
    raise ValueError(msg)


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        msg = "naive datetime: pass a timezone-aware UTC datetime, e.g. datetime.now(UTC) or '...Z'"
        raise ValueError(msg)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        msg = "timestamp out of range: it cannot be expressed in UTC"
        raise ValueError(msg) from None


#: A timezone-aware instant, normalised to UTC; naive datetimes and numbers are refused.
UtcDatetime = Annotated[
    datetime,
    BeforeValidator(_only_datetime_or_text),
    AfterValidator(_to_utc),
    Field(examples=["2026-01-31T12:00:00.123456Z"]),
]

#: An opaque identifier: 1-128 characters of letters, digits and ``_ . : -``, starting alphanumeric.
Identifier = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$"),
]

#: A short machine-readable code (gateway names, error codes): 1-64 of letters, digits and ``_ . : -``.
Code = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$"),
]

#: What free text may not hold: C0 and C1 control characters (U+0000-001F, U+007F-009F, so also U+0085
#: NEXT LINE), the line and paragraph separators U+2028/U+2029 (they break log lines and JSON-in-JS), and
#: the bidirectional embeddings, overrides and isolates U+202A-202E and U+2066-2069 (they reorder what a
#: person reads: "Trojan Source"). The implicit marks U+200E/U+200F/U+061C stay allowed: right-to-left
#: text needs them and they cannot reorder text on their own.
FREE_TEXT_PATTERN = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]+$"

#: Human-readable text for people, not machines: 1-500 characters, no control or bidi-override characters.
FreeText = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=500, pattern=FREE_TEXT_PATTERN),
]

_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_log = logging.getLogger("payment_events.events")


def _check_traceparent(value: str) -> str:
    match = _TRACEPARENT.fullmatch(value)
    if match is None or match.group(1) == "0" * 32 or match.group(2) == "0" * 16:
        msg = (
            "not a W3C traceparent: expected '00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>', "
            "lower case, ids not all zero"
        )
        raise ValueError(msg)
    return value


def _check_source(value: str) -> str:
    if not is_uri_reference(value):
        msg = (
            "source must be an RFC 3986 URI-reference (CloudEvents): e.g. https://payments.example.com/eu "
            "or urn:example:payment-service:eu; a scheme starts with a letter and holds only letters, "
            "digits, + - . (not _), and a relative reference's first segment has no ':'"
        )
        raise ValueError(msg)
    return value


def _drop_malformed_traceparent(value: object) -> object:
    """A traceparent is tracing metadata, not part of the payment: one that is not W3C ``00-...`` (an
    inbound header from a broken client, say) is dropped with a warning instead of failing the event."""
    if value is None:
        return None
    if isinstance(value, str):
        match = _TRACEPARENT.fullmatch(value)
        if match is not None and match.group(1) != "0" * 32 and match.group(2) != "0" * 16:
            return value
    _log.warning(
        "malformed traceparent dropped; the event is published without one",
        extra={"event": "event.traceparent_dropped", "length": len(str(value))},
    )
    return None


def _check_uuid7(value: UUID) -> UUID:
    if not is_uuid7(value):
        msg = "eventId must be a UUIDv7 (RFC 9562): use payment_events.uuid7() or leave it to default"
        raise ValueError(msg)
    return value


def _envelope_required(schema: JsonDict, cls: type[Any]) -> None:
    # The envelope fields have Python defaults, but every message on the wire carries them: say so.
    required = schema.setdefault("required", [])
    assert isinstance(required, list)
    properties = schema.get("properties")
    assert isinstance(properties, dict)
    for name in _ALWAYS_PRESENT:
        if name in properties and name not in required:
            required.append(name)


def _problem_lines(exc: ValidationError) -> tuple[str, ...]:
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        parts = [str(part) for part in error["loc"]]
        # Name fields as on the wire (camelCase) whichever way they were given; an unknown field keeps
        # the name it was given.
        known = parts if error["type"] != "extra_forbidden" else parts[:-1]
        parts = [to_camel(part) if "_" in part else part for part in known] + parts[len(known) :]
        location = ".".join(parts) or "(event)"
        lines.append(f"{location}: {error['msg']}")
    return tuple(lines)


def contract_error(
    name: str, exc: ValidationError, raw: object = None, model: type[BaseModel] | None = None
) -> InvalidEventError | SensitiveDataError:
    """Translate a pydantic ``ValidationError`` into ours, without any input value in the message.

    When the raw input is given, it is scanned first: a card number or secret anywhere in it is reported
    as :class:`SensitiveDataError` even if a pattern or type check refused that field first.
    """
    for error in exc.errors(include_url=False, include_input=False):
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, SensitiveDataError):
            return cause
    if raw is not None:
        try:
            scan_raw("", raw, model)
        except SensitiveDataError as sensitive:
            return sensitive
    problems = _problem_lines(exc)
    return InvalidEventError(f"invalid {name}: " + "; ".join(problems), problems)


_known_name_sets: dict[type[BaseModel], frozenset[str]] = {}


def _known_names(model: type[BaseModel]) -> frozenset[str]:
    """Python and wire names of ``model``'s fields."""
    names = _known_name_sets.get(model)
    if names is None:
        names = frozenset(model.model_fields) | {
            info.alias for info in model.model_fields.values() if info.alias is not None
        }
        _known_name_sets[model] = names
    return names


class ContractModel(BaseModel):
    """Base of every model on the wire: frozen, closed (``extra="forbid"``), camelCase aliases."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        hide_input_in_errors=True,
        use_attribute_docstrings=True,
        allow_inf_nan=False,
        field_title_generator=lambda name, _info: to_camel(name),
    )

    def __init__(self, /, **data: Any) -> None:
        """Validate ``data``; raise :class:`InvalidEventError` or :class:`SensitiveDataError` on failure."""
        try:
            super().__init__(**data)
        except ValidationError as exc:
            error = contract_error(type(self).__name__, exc, data, type(self))
            if isinstance(error, SensitiveDataError):
                # The pydantic error may hold the sensitive text (e.g. as a field name): do not chain it.
                raise error from None
            raise error from exc

    # Tell pydantic this __init__ only wraps the base one: without it, model_validate would call it and
    # validate everything twice.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]


class BaseEvent(ContractModel):
    """The envelope: what every payment event carries, whatever its type and version.

    Subclasses set ``EVENT_TYPE``, ``SCHEMA_VERSION`` and ``PARTITION_KEY_FIELD`` (the snake_case name
    of the field whose value becomes the Kafka key), and narrow ``event_type``/``schema_version`` to
    ``Literal`` so the JSON Schema pins them.
    """

    model_config = ConfigDict(json_schema_extra=_envelope_required)

    EVENT_TYPE: ClassVar[str]
    SCHEMA_VERSION: ClassVar[int]
    PARTITION_KEY_FIELD: ClassVar[str]

    event_id: Annotated[UUID, AfterValidator(_check_uuid7)] = Field(
        default_factory=uuid7, json_schema_extra={"pattern": UUID7_PATTERN}
    )
    """Unique id of this event, a UUIDv7 (time-ordered). Consumers deduplicate on it: a redelivered
    event has the same eventId."""

    event_type: str
    """The event's type name; with schemaVersion it selects the schema."""

    schema_version: int
    """Version of this event type's schema. Every change to the payload bumps it."""

    event_timestamp: UtcDatetime = Field(default_factory=lambda: datetime.now(UTC))
    """When the event occurred, RFC 3339 in UTC with a Z suffix and microseconds."""

    source: Annotated[
        str,
        StringConstraints(strict=True, min_length=1, max_length=128),
        AfterValidator(_check_source),
        Field(json_schema_extra={"format": "uri-reference"}),
    ] = DEFAULT_SOURCE
    """The producing service (also the CloudEvents `source`): an RFC 3986 URI-reference. Recommended: an
    absolute URI naming the service and its deployment, e.g. https://payments.example.com/eu-west-1 or
    urn:example:payment-service:eu; the default payment-service is a valid relative reference."""

    correlation_id: Identifier | None = None
    """Optional id tying this event to the request or saga that caused it."""

    # A malformed traceparent is dropped with a warning (event.traceparent_dropped), never an error.
    traceparent: Annotated[
        Annotated[
            str,
            StringConstraints(strict=True, pattern=r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"),
            AfterValidator(_check_traceparent),
        ]
        | None,
        BeforeValidator(_drop_malformed_traceparent),
    ] = None
    """Optional W3C Trace Context traceparent (version 00) of the operation that produced the event."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Check at class creation that a concrete event's class variables agree with its fields."""
        super().__pydantic_init_subclass__(**kwargs)
        if "EVENT_TYPE" not in cls.__dict__:
            return
        fields = cls.model_fields
        if fields["event_type"].default != cls.EVENT_TYPE:
            msg = f"{cls.__name__}: event_type default must equal EVENT_TYPE"
            raise TypeError(msg)
        if fields["schema_version"].default != cls.SCHEMA_VERSION:
            msg = f"{cls.__name__}: schema_version default must equal SCHEMA_VERSION"
            raise TypeError(msg)
        if cls.PARTITION_KEY_FIELD not in fields:
            msg = f"{cls.__name__}: PARTITION_KEY_FIELD names no field"
            raise TypeError(msg)

    @model_validator(mode="before")
    @classmethod
    def _refuse_sensitive_field_names(cls, data: Any) -> Any:
        # pydantic names unknown fields in its errors ("<name>: Extra inputs are not permitted"), so a
        # card number used as a field name would be echoed: refuse it first.
        if isinstance(data, dict):
            for key in data.keys() - _known_names(cls):
                if isinstance(key, str) and might_be_sensitive(key):
                    check_text("(a field name)", key)
        return data

    @model_validator(mode="after")
    def _refuse_sensitive_strings(self) -> BaseEvent:
        # Every string the event holds, whatever its field; on a validation failure the raw input is
        # scanned too (see contract_error), so a card number is reported as such even where a pattern
        # check refused the field first.
        scan_fields("", self)
        return self

    @property
    def partition_key(self) -> str:
        """The Kafka key: all events with the same key land on one partition, in order."""
        value = getattr(self, self.PARTITION_KEY_FIELD)
        assert isinstance(value, str)
        return value
