"""The outbox store port: what the relay needs from the database, independent of the engine.

Adapters: ``payment_events.outbox.store`` (PostgreSQL and SQLite through SQLAlchemy Core) and an in-memory
fake in ``payment_events.testing``. One abstract contract test suite runs against all of them.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

PENDING = "pending"
PUBLISHED = "published"
DEAD = "dead"

LAST_ERROR_MAX_CHARS = 1000
"""The longest ``last_error`` a row keeps: a reason, not a log."""


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """One claimed outbox row, everything needed to produce it to Kafka."""

    id: int
    event_id: str
    event_type: str
    schema_version: int
    topic: str
    key: bytes
    payload: bytes
    headers: tuple[tuple[str, bytes], ...]
    shard: int
    attempts: int
    created_at: datetime
    defect: str | None = None
    """Why this row cannot be produced as stored (e.g. its headers column is not valid JSON, its payload
    is empty), or ``None`` for a sound row. A store sets it instead of failing the whole claim; the
    relay dead-letters such a row without producing it. A short fixed text, never the row's content."""


def row_defect(key: bytes, payload: bytes, headers_problem: str | None = None) -> str | None:
    """What is wrong with a stored row, if anything: every store applies the same rules.

    ``headers_problem`` is what parsing the headers found (see
    :func:`payment_events.outbox.headers.parse_headers`). Returns ``None`` for a producible row.
    """
    if key and payload and headers_problem is None:
        return None  # the common case, first and cheap
    problems = []
    if not key:
        problems.append("key is empty")
    if not payload:
        problems.append("payload is empty")
    if headers_problem is not None:
        problems.append(headers_problem)
    return "; ".join(problems)


@dataclass(frozen=True, slots=True)
class Published:
    """The broker acknowledged row ``id`` at ``partition``/``offset``."""

    id: int
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Retry:
    """Row ``id`` failed transiently; try again at ``next_attempt_at``. ``error`` is a short, safe reason."""

    id: int
    next_attempt_at: datetime
    error: str


@dataclass(frozen=True, slots=True)
class Dead:
    """Row ``id`` is given up on: moved to the dead-letter state with ``reason``."""

    id: int
    reason: str


@dataclass(frozen=True, slots=True)
class BacklogStats:
    """What an operator asks first: how much waits, how old is the oldest, what is stuck."""

    pending: int
    in_retry: int
    dead: int
    oldest_pending_age_seconds: float
    published_last_minute: int


class OutboxStore(Protocol):
    """Claims, resolves and reports outbox rows. Every method is its own short transaction."""

    def claim(self, shards: Collection[int] | None, limit: int, now: datetime) -> list[OutboxRecord]:
        """Pending rows that may be produced now, in id order, at most ``limit``.

        A row is returned only if it is pending, due (``next_attempt_at <= now``), in one of ``shards``
        (``None`` means all), and no earlier pending row of the same key is waiting for a retry: a key
        whose head is in backoff is skipped entirely so its order holds. Claiming is by state, never by
        a cursor over ids, so a transaction that commits late is still found.
        """
        ...

    def resolve(self, published: Sequence[Published], retries: Sequence[Retry], dead: Sequence[Dead]) -> None:
        """Record delivery outcomes in one transaction: published rows with partition and offset,
        retries with their next attempt time and last error (attempts + 1), dead rows with the reason."""
        ...

    def backlog(self, now: datetime) -> BacklogStats:
        """Counts for metrics, alerts and `outbox status`."""
        ...

    def purge_published(self, older_than: datetime, batch_size: int) -> int:
        """Delete up to ``batch_size`` published rows published before ``older_than``; return how many."""
        ...


@runtime_checkable
class ExcludingClaim(Protocol):
    """An optional store capability: a claim that skips given rows (the relay's overlapped marks).

    While the marks of batch N are committed in the background, the relay claims batch N+1; batch N's
    rows are still ``pending`` until that commit, so the claim must skip them. Stores without this
    method are simply resolved before the next claim.
    """

    def claim_excluding(
        self, shards: Collection[int] | None, limit: int, now: datetime, busy: Collection[int]
    ) -> list[OutboxRecord]:
        """Exactly :meth:`OutboxStore.claim`, as if the rows with ids in ``busy`` did not exist."""
        ...


@runtime_checkable
class PendingBacklog(Protocol):
    """An optional store capability: only what the relay reports every ``backlog_interval_seconds``.

    :meth:`OutboxStore.backlog` also counts retries and the rows published in the last minute, which
    ``outbox status`` shows but the relay never reports; during a fast drain the last count
    alone walks hundreds of thousands of index entries (issue 16). Stores without this method are asked
    for the full :meth:`OutboxStore.backlog`.
    """

    def pending_backlog(self, now: datetime) -> tuple[int, float, int]:
        """``(pending rows, age in seconds of the oldest pending row, dead rows)``, as in
        :class:`BacklogStats`."""
        ...


class ShardLeases(Protocol):
    """Which shards this relay instance may publish. PostgreSQL: session advisory locks; SQLite: all."""

    def refresh(self) -> frozenset[int]:
        """Acquire free shards up to a fair share, release extras, and return the shards owned now.

        Ownership ends by itself when the instance's connection dies, so another instance takes over.
        """
        ...

    def release_all(self) -> None:
        """Give up every shard (graceful shutdown)."""
        ...


def utc_now() -> datetime:
    """The current time, aware, in UTC: the default clock of every port that needs one."""
    return datetime.now(UTC)


def truncate_error(error: str) -> str:
    """``error`` cut to what the ``last_error`` column holds (a reason, not a log)."""
    if len(error) <= LAST_ERROR_MAX_CHARS:
        return error
    return error[: LAST_ERROR_MAX_CHARS - 3] + "..."


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead row as listed for an operator: no payload, only what identifies it and why it died."""

    id: int
    event_id: str
    event_type: str
    key: bytes
    attempts: int
    last_error: str | None
    created_at: datetime
    topic: str = ""


@dataclass(frozen=True, slots=True)
class DeadFilter:
    """Which dead rows an operator asks about; every given criterion must hold (``None``: any)."""

    event_type: str | None = None
    topic: str | None = None
    reason: str | None = None
    """A case-insensitive fragment of ``last_error`` (``too_large``, ``authorization``)."""
    key: str | None = None
    """The exact partition key (a payment id, a user id)."""
    since: datetime | None = None
    """Committed at or after this instant."""
    until: datetime | None = None
    """Committed before this instant."""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One outbox row in full, any state (``dlq show``)."""

    id: int
    event_id: str
    event_type: str
    schema_version: int
    topic: str
    key: bytes
    payload: bytes
    headers: tuple[tuple[str, bytes], ...]
    shard: int
    state: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    published_at: datetime | None
    kafka_partition: int | None
    kafka_offset: int | None


# ------------------------------------------------------------- lease fencing (see outbox.fencing)
def new_owner_token() -> str:
    """A token naming one lease holder (one lease connection): host, pid and a random part."""
    host = socket.gethostname()[:100]
    return f"{host}:{os.getpid()}:{uuid.uuid4().hex[:16]}"


@dataclass(frozen=True, slots=True)
class Fence:
    """What a relay holds for its shards: checked by every fenced claim and mark.

    ``lease_pid`` (PostgreSQL) is the backend pid of the connection that holds the advisory locks: a
    fenced claim also checks that this backend still holds each shard's lock.
    """

    namespace: int
    owner: str
    generations: Mapping[int, int]
    lease_pid: int | None = None

    @property
    def shards(self) -> frozenset[int]:
        """The shards this fence covers."""
        return frozenset(self.generations)

    def pairs(self) -> tuple[list[int], list[int]]:
        """Shards and their generations as two parallel lists, in shard order."""
        shards = sorted(self.generations)
        return shards, [self.generations[s] for s in shards]


@dataclass(frozen=True, slots=True)
class PreviousOwner:
    """Who held a shard before it was taken (for exactly-once takeover: whose producer to fence)."""

    owner: str | None
    """``None`` when the shard was released cleanly (nothing can be in flight for it)."""
    transactional_id: str | None
    settled_at: datetime | None = None
    """Exactly-once mode: every record of this shard produced before this instant (by its owners'
    clocks) is marked or was reconciled; ``None``: unknown (read from the oldest pending row)."""


@dataclass(frozen=True, slots=True)
class Takeover:
    """The result of taking shards: their new generations and who held them before."""

    generations: dict[int, int]
    previous: dict[int, PreviousOwner] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """A pending row as reconciliation needs it: which event, where it goes, since when."""

    id: int
    event_id: str
    topic: str
    created_at: datetime
