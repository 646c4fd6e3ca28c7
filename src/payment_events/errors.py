"""Every exception payment-events raises on purpose derives from :class:`PaymentEventsError`.

The tree, one subtree per concern::

    PaymentEventsError
    ├── ContractError                 an event or value breaks its contract (also a ValueError)
    │   ├── SensitiveDataError        a field looks like card data or a secret; the value is never echoed
    │   ├── UnknownEventTypeError     no (eventType, schemaVersion) in the registry
    │   └── InvalidEventError         an event's fields break its model (types, ranges, missing, extra)
    ├── SerializationError            bytes that cannot be decoded into an event
    ├── SchemaCompatibilityError      a new schema version would break consumers of the previous one
    ├── ConfigurationError            a setting is missing or malformed; names the option
    ├── StoreError                    the outbox database failed (adapters translate driver errors)
    │   ├── MigrationRequiredError    the outbox table is missing or older than this code
    │   └── LeaseLostError            this relay no longer owns a shard it tried to claim or mark for
    ├── PublishError                  the broker did not take an event
    │   ├── TransientPublishError     retry later: broker down, timeout, leader change
    │   └── PermanentPublishError     retrying cannot help: too large, not authorized, bad topic
    └── AuditError                    the audit could not read the ledger or the topics in time

Messages say what was wrong and what to do, and never contain card data, secrets or full payloads.
Adapters translate driver exceptions (SQLAlchemy, confluent-kafka) into these types.
"""

from __future__ import annotations


class PaymentEventsError(Exception):
    """Root of every error payment-events raises on purpose."""


class ContractError(PaymentEventsError, ValueError):
    """An event or a value in it breaks the event contract."""


class SensitiveDataError(ContractError):
    """A field holds what looks like card data or a secret. The message names the field, not the value."""


class UnknownEventTypeError(ContractError):
    """The (eventType, schemaVersion) pair is not in the event registry."""


class SerializationError(PaymentEventsError):
    """Bytes or headers that cannot be turned back into an event."""


class SchemaCompatibilityError(PaymentEventsError):
    """A schema version would break consumers of the version before it."""


class ConfigurationError(PaymentEventsError, ValueError):
    """A setting is missing or malformed. The message names the option and the expected form."""


class StoreError(PaymentEventsError):
    """The outbox store (database) failed."""


class MigrationRequiredError(StoreError):
    """The outbox table does not exist or is older than this code: run `payment-events db upgrade`."""


class LeaseLostError(StoreError):
    """Another relay took (or this relay released) a shard this relay tried to mark for: those rows were
    left alone (the new owner publishes them), the marks of the shards still owned were committed. The
    relay refreshes its leases before its next claim."""


class PublishError(PaymentEventsError):
    """The broker did not take an event."""


class TransientPublishError(PublishError):
    """Publishing failed for a reason that may pass: retry with backoff."""


class PermanentPublishError(PublishError):
    """Publishing failed for a reason that retrying cannot fix: dead-letter the event."""


class InvalidEventError(ContractError):
    """An event could not be built: wrong types, missing or unknown fields, values out of range.

    ``problems`` lists one ``"field: what is wrong"`` line per problem; no input value is ever included.
    """

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


class AuditError(PaymentEventsError):
    """The audit could not read what it needs (a topic's partitions, the ledger) within its time limit."""
