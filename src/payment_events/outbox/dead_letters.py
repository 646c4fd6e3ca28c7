"""Dead-letter administration: list, inspect and replay dead outbox rows (behind ``payment-events dlq``).

Replay moves dead rows back to ``pending`` *in place*: same ``id``, same ``event_id``, ``attempts = 0``,
due now. Why in place rather than re-inserting at the tail with a new id:

* the row is the ledger of that event (``event_id`` is unique): a copy would need the original deleted or
  renamed, and the history of why it died (``last_error``) would be split across two rows;
* dead rows of one key replayed together keep their relative order, and they go out before any later
  event of the same key that is still pending, which is the order the writers intended.

What consumers see: later events of the key that were published while this one was dead already reached
the topic, so the replayed event arrives *after* them. A consumer that cares about per-key order must
treat a replayed event by its own timestamp and ``eventId`` (events are facts with ``occurredAt``; it
must not assume arrival order equals occurrence order after an operator replay), and deduplicate by
``eventId`` as always. Replay never touches pending or published rows.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select, update
from sqlalchemy.engine import Engine, Row

from payment_events.outbox.dberrors import translated
from payment_events.outbox.headers import parse_headers
from payment_events.outbox.ports import PENDING, DeadFilter, DeadLetter, OutboxRow
from payment_events.outbox.table import IS_DEAD, outbox_table

_o = outbox_table


def _dead_conditions(filters: DeadFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [IS_DEAD]
    if filters.event_type is not None:
        conditions.append(_o.c.event_type == filters.event_type)
    if filters.topic is not None:
        conditions.append(_o.c.topic == filters.topic)
    if filters.reason is not None:
        conditions.append(_o.c.last_error.icontains(filters.reason, autoescape=True))
    if filters.key is not None:
        conditions.append(_o.c.key == filters.key.encode())
    if filters.since is not None:
        conditions.append(_o.c.created_at >= filters.since)
    if filters.until is not None:
        conditions.append(_o.c.created_at < filters.until)
    return conditions


def _dead_query(limit: int, filters: DeadFilter) -> Select[Any]:
    query = select(
        _o.c.id, _o.c.event_id, _o.c.event_type, _o.c.key, _o.c.attempts, _o.c.last_error, _o.c.created_at,
        _o.c.topic,
    ).where(*_dead_conditions(filters))
    return query.order_by(_o.c.id).limit(limit)


def count_dead(engine: Engine, filters: DeadFilter | None = None, ids: Collection[int] | None = None) -> int:
    """How many dead rows match ``filters`` (and are among ``ids`` when given): ``dlq list``'s total and
    what ``dlq replay --dry-run`` would move."""
    conditions = _dead_conditions(filters or DeadFilter())
    if ids is not None:
        conditions.append(_o.c.id.in_(sorted(set(ids))))
    with translated("dead-letter count"), engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(_o).where(*conditions)).scalar_one())


def list_dead(
    engine: Engine, limit: int = 100, event_type: str | None = None, *, filters: DeadFilter | None = None
) -> list[DeadLetter]:
    """Up to ``limit`` dead rows, oldest first, matching ``filters`` (or only ``event_type``)."""
    if limit <= 0:
        return []
    chosen = filters if filters is not None else DeadFilter(event_type=event_type)
    with translated("dead-letter list"), engine.connect() as conn:
        rows = conn.execute(_dead_query(limit, chosen)).all()
    return [
        DeadLetter(
            id=r.id,
            event_id=r.event_id,
            event_type=r.event_type,
            key=bytes(r.key),
            attempts=r.attempts,
            last_error=r.last_error,
            created_at=r.created_at,
            topic=r.topic,
        )
        for r in rows
    ]


def row_from_db(r: Row[Any]) -> OutboxRow:
    """An :class:`OutboxRow` from a full ``payment_events_outbox`` row.

    A malformed headers column (a row the relay dead-lettered as ``MALFORMED_ROW``) shows as no headers,
    so ``dlq show`` can still display the row it is asked about; ``last_error`` says what was wrong.
    """
    headers, _problem = parse_headers(r.headers)
    return OutboxRow(
        id=r.id,
        event_id=r.event_id,
        event_type=r.event_type,
        schema_version=r.schema_version,
        topic=r.topic,
        key=bytes(r.key),
        payload=bytes(r.payload),
        headers=headers,
        shard=r.shard,
        state=r.state,
        attempts=r.attempts,
        next_attempt_at=r.next_attempt_at,
        last_error=r.last_error,
        created_at=r.created_at,
        published_at=r.published_at,
        kafka_partition=r.kafka_partition,
        kafka_offset=r.kafka_offset,
    )


def get(engine: Engine, row_id: int) -> OutboxRow | None:
    """The row with outbox id ``row_id`` (any state), or ``None``."""
    with translated("row lookup"), engine.connect() as conn:
        row = conn.execute(select(_o).where(_o.c.id == row_id)).first()
    return None if row is None else row_from_db(row)


def replay(
    engine: Engine,
    ids: Collection[int] | None = None,
    *,
    event_type: str | None = None,
    all_dead: bool = False,
    now: datetime | None = None,
) -> int:
    """Move dead rows back to pending (in place, ``attempts = 0``, due ``now``); return how many moved.

    Select the rows with exactly one of: ``ids`` (dead rows among them), ``event_type`` (every dead row
    of that type) or ``all_dead=True``. Rows that are not dead are left alone. One transaction.
    """
    chosen = [ids is not None, event_type is not None, all_dead]
    if sum(chosen) != 1:
        raise ValueError("replay needs exactly one of: ids, event_type, all_dead=True")
    statement = (
        update(_o)
        .where(IS_DEAD)
        .values(state=PENDING, attempts=0, next_attempt_at=now or datetime.now(UTC))
    )
    if ids is not None:
        wanted: Sequence[int] = sorted(set(ids))
        if not wanted:
            return 0
        statement = statement.where(_o.c.id.in_(wanted))
    elif event_type is not None:
        statement = statement.where(_o.c.event_type == event_type)
    with translated("dead-letter replay"), engine.begin() as conn:
        result = conn.execute(statement)
    return int(result.rowcount)
