"""Scenarios that break the relay processes, the database and the input (the shared broker on 19092 is
used, never stopped). Broker and network faults are in :mod:`tests.chaos.scenarios_broker`."""

from __future__ import annotations

import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from payment_events.events import PaymentSucceeded
from payment_events.events.codec import encode
from payment_events.outbox.publisher import OutboxPublisher
from payment_events.outbox.sharding import shard_for
from payment_events.outbox.table import outbox_table
from tests.chaos.harness import (
    ProgressWatch,
    RelayProcess,
    ScenarioResult,
    Writers,
    hold_transaction,
    make_event,
    relay_options,
    scenario_space,
    verdict,
    wait_drained,
)
from tests.chaos.infra import SHARED_KAFKA, restart_postgres_immediate, terminate_relay_backends
from tests.chaos.scale import Scale

BROKER_MAX_MESSAGE = 1_048_588
"""The shared broker's default ``message.max.bytes``; a poison event is made larger than this."""


def _stop_all(relays: list[RelayProcess]) -> list[int | None]:
    return [relay.terminate() for relay in relays]


def relay_sigkill(scale: Scale) -> ScenarioResult:
    """SIGKILL the relay every few seconds during a steady stream, restarting it each time."""
    result = ScenarioResult("relay-sigkill")
    options = None
    with scenario_space(SHARED_KAFKA) as (url, topic, dlq):
        options = relay_options(dlq)
        relay = RelayProcess("relay-sigkill", url, SHARED_KAFKA, options)
        writers = Writers(
            url,
            topic,
            total=scale.relay_kill_events,
            rate=scale.relay_kill_rate,
            writers=4,
            keys_per_writer=100,
        )
        rnd = random.Random(11)
        startups: list[float] = []
        with ProgressWatch(SHARED_KAFKA, topic) as watch:
            relay.start(wait=True)
            writers.start()
            next_kill: float | None = time.monotonic() + rnd.uniform(*scale.kill_every)
            started_at = 0.0
            while writers.alive:
                time.sleep(0.1)
                now = time.monotonic()
                if next_kill is None and relay.ready:
                    # The next kill is timed from the moment the new process reached its loop: killing a
                    # process still importing its modules would test nothing.
                    startups.append(now - started_at)
                    next_kill = now + rnd.uniform(*scale.kill_every)
                if next_kill is not None and now >= next_kill:
                    relay.kill()
                    relay.start()
                    started_at = time.monotonic()
                    watch.fault_ended()
                    next_kill = None
            writers.join()
            wait_drained(url, scale.drain_timeout, [relay])
        relay.terminate()
        verdict(
            result, url, SHARED_KAFKA, [topic], writers.log, recoveries=watch.recoveries(), relays=[relay]
        )
    bound = relay.kills * int(options["batch_size"])
    result.notes.insert(
        0,
        f"kills={relay.kills}, duplicate bound={bound}, restart to loop max {max(startups, default=0):.1f}s",
    )
    if result.duplicates > bound:
        result.passed = False
        result.notes.append("duplicates above the in-flight bound")
    return result


def several_relays(scale: Scale) -> ScenarioResult:
    """Three relay instances with random kills and restarts: shards move between them. ``recover`` is the
    longest time after a kill until the topic grew again."""
    result = ScenarioResult("several-relays")
    with scenario_space(SHARED_KAFKA) as (url, topic, dlq):
        relays = [RelayProcess(f"relay-multi-{i}", url, SHARED_KAFKA, relay_options(dlq)) for i in range(3)]
        writers = Writers(
            url, topic, total=scale.multi_events, rate=scale.multi_rate, writers=4, keys_per_writer=150
        )
        rnd = random.Random(23)
        down: dict[int, float] = {}
        with ProgressWatch(SHARED_KAFKA, topic) as watch:
            for relay in relays:
                relay.start(wait=True)
            writers.start()
            next_kill = time.monotonic() + rnd.uniform(1.0, 3.0)
            while writers.alive:
                time.sleep(0.1)
                now = time.monotonic()
                for i, back_at in list(down.items()):
                    if now >= back_at:
                        relays[i].start()
                        del down[i]
                if now >= next_kill:
                    # Kill a random instance that reached its loop, keeping another one running: its shards
                    # must move to the survivors (advisory locks freed with its sessions), delivery go on.
                    up = [i for i in range(3) if i not in down and relays[i].ready]
                    if len(up) >= 2:
                        i = rnd.choice(up)
                        relays[i].kill()
                        watch.fault_ended()
                        down[i] = now + rnd.uniform(0.5, 4.0)
                    next_kill = now + rnd.uniform(1.0, 3.0)
            for i in list(down):
                relays[i].start()
            writers.join()
            wait_drained(url, scale.drain_timeout, relays)
        _stop_all(relays)
        verdict(result, url, SHARED_KAFKA, [topic], writers.log, recoveries=watch.recoveries(), relays=relays)
    moves = sum(r.log_count('"relay.shards"') for r in relays) - sum(r.starts for r in relays)
    result.notes.insert(0, f"kills={sum(r.kills for r in relays)}, shard ownership changes={moves}")
    return result


def pg_terminate(scale: Scale) -> ScenarioResult:
    """``pg_terminate_backend`` on every relay session (store, leases, LISTEN) mid-stream, repeatedly."""
    result = ScenarioResult("pg-terminate-backend")
    with scenario_space(SHARED_KAFKA) as (url, topic, dlq):
        relay = RelayProcess("relay-pgterm", url, SHARED_KAFKA, relay_options(dlq))
        writers = Writers(url, topic, total=scale.pg_events, rate=scale.pg_rate, writers=3)
        terminated = 0
        with ProgressWatch(SHARED_KAFKA, topic) as watch:
            relay.start(wait=True)
            writers.start()
            duration = scale.pg_events / scale.pg_rate
            for k in range(scale.pg_faults):
                time.sleep(duration / (scale.pg_faults + 1))
                terminated += terminate_relay_backends(url)
                watch.fault_ended()
                if k == 0 and terminated == 0:
                    result.notes.append("no relay session found to terminate")
            writers.join()
            wait_drained(url, scale.drain_timeout, [relay])
        code = relay.terminate()
        verdict(
            result, url, SHARED_KAFKA, [topic], writers.log, recoveries=watch.recoveries(), relays=[relay]
        )
    result.notes.insert(0, f"sessions terminated={terminated}, relay exit={code}")
    _require_recovery(result, scale, len(watch.fault_ends))
    if terminated == 0 or relay.unexpected_exits:
        result.passed = False
    return result


def pg_restart(scale: Scale) -> ScenarioResult:
    """``pg_ctlcluster ... restart -m immediate`` under load (full suite only: disturbs every user)."""
    result = ScenarioResult("pg-restart-immediate")
    with scenario_space(SHARED_KAFKA) as (url, topic, dlq):
        relay = RelayProcess("relay-pgrestart", url, SHARED_KAFKA, relay_options(dlq))
        writers = Writers(url, topic, total=scale.pg_events, rate=scale.pg_rate, writers=3)
        outages = []
        with ProgressWatch(SHARED_KAFKA, topic) as watch:
            relay.start(wait=True)
            writers.start()
            duration = scale.pg_events / scale.pg_rate
            for _ in range(scale.pg_restarts):
                time.sleep(duration / (scale.pg_restarts + 1))
                outages.append(restart_postgres_immediate())
                watch.fault_ended()
            writers.join()
            wait_drained(url, scale.drain_timeout, [relay])
        code = relay.terminate()
        verdict(
            result, url, SHARED_KAFKA, [topic], writers.log, recoveries=watch.recoveries(), relays=[relay]
        )
    result.notes.insert(
        0, f"restarts={len(outages)} (server down {max(outages, default=0):.1f}s), relay exit={code}"
    )
    _require_recovery(result, scale, len(outages))
    if relay.unexpected_exits:
        result.passed = False
    return result


def _require_recovery(result: ScenarioResult, scale: Scale, faults: int) -> None:
    """PostgreSQL faults: the relay must resume within 10 s of each (checked on full runs only)."""
    if scale.strict_timing and (result.recover_seconds is None or result.recover_seconds > 10.0) and faults:
        result.passed = False
        result.notes.append("did not resume within 10 s")


def visibility_gap(scale: Scale) -> ScenarioResult:
    """Many concurrent writers with random commit delays and one transaction held open: none skipped."""
    result = ScenarioResult("visibility-gap")
    held: dict[str, object] = {}
    with scenario_space(SHARED_KAFKA) as (url, topic, dlq):
        relay = RelayProcess("relay-visibility", url, SHARED_KAFKA, relay_options(dlq))
        writers = Writers(
            url,
            topic,
            total=scale.visibility_events,
            rate=scale.visibility_rate,
            writers=scale.visibility_writers,
            keys_per_writer=10,
            batch=1,
            commit_delay=(0.0, 0.3),
        )
        relay.start(wait=True)
        holder = hold_transaction(url, topic, scale.hold_seconds, held)
        writers.start()
        writers.join()
        holder.join(scale.hold_seconds + 30)
        wait_drained(url, scale.drain_timeout, [relay])
        relay.terminate()
        verdict(result, url, SHARED_KAFKA, [topic], writers.log, relays=[relay])
        engine = sa.create_engine(url)
        t = outbox_table
        try:
            with engine.connect() as conn:
                row = conn.execute(
                    sa.select(t.c.id, t.c.state, t.c.published_at).where(t.c.event_id == held.get("event_id"))
                ).one_or_none()
                committed_at = held.get("committed_at")
                overtook = 0
                if row is not None and isinstance(committed_at, datetime):
                    # Rows with a higher id, published while the held row was still invisible.
                    overtook = conn.execute(
                        sa.select(sa.func.count()).where(
                            t.c.id > row.id, t.c.state == "published", t.c.published_at < committed_at
                        )
                    ).scalar_one()
        finally:
            engine.dispose()
    committed_at = held.get("committed_at")
    after_commit = (
        row is not None
        and row.state == "published"
        and isinstance(committed_at, datetime)
        and row.published_at is not None
        and row.published_at >= committed_at - timedelta(seconds=1)
    )
    result.notes.insert(
        0,
        f"held {scale.hold_seconds:.0f}s; {overtook} later ids published while it was uncommitted; "
        f"held event {'published after its commit' if after_commit else 'NOT published after its commit'}",
    )
    if not (after_commit and overtook > 0):
        result.passed = False
    return result


POISON_KINDS = ("oversized", "bad-headers", "illegal-topic", "empty-payload")


def poison(scale: Scale, kinds: tuple[str, ...] = POISON_KINDS) -> ScenarioResult:
    """Oversized events and malformed rows written by hand: dead-lettered with a reason, nothing held up."""
    result = ScenarioResult("poison-input")
    with scenario_space(SHARED_KAFKA) as (url, topic, dlq):
        relay = RelayProcess("relay-poison", url, SHARED_KAFKA, relay_options(dlq, max_attempts=5))
        writers = Writers(url, topic, total=scale.poison_events, rate=scale.poison_rate, writers=2)
        relay.start(wait=True)
        writers.start()
        time.sleep(1.0)
        poison_ids, followers = _insert_poison(url, topic, kinds)
        writers.join()
        wait_drained(url, min(scale.drain_timeout, 60.0), [relay])  # a blocked relay must not stall the suite
        alive = relay.alive
        relay.terminate()
        writers.log.committed.extend(followers)
        verdict(
            result,
            url,
            SHARED_KAFKA,
            [topic],
            writers.log,
            expected_dead=len([k for k in kinds if k != "illegal-topic"]),
            relays=[relay],
        )
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.select(outbox_table.c.event_id, outbox_table.c.state, outbox_table.c.last_error).where(
                        outbox_table.c.event_id.in_(list(poison_ids))
                    )
                ).all()
        finally:
            engine.dispose()
        from tests.conftest import kcat_read

        dlq_copies = len(kcat_read(SHARED_KAFKA, dlq))
    states = {poison_ids[r.event_id]: (r.state, (r.last_error or "")[:60]) for r in rows}
    result.notes.insert(0, "; ".join(f"{k}: {s} ({e})" for k, (s, e) in sorted(states.items())))
    result.notes.append(f"dlq copies={dlq_copies}, relay restarts needed={0 if alive else 1}")
    all_dead = all(state == "dead" and error for state, error in states.values()) and len(states) == len(
        poison_ids
    )
    if not (all_dead and alive and not relay.unexpected_exits):
        result.passed = False
    return result


def _insert_poison(url: str, topic: str, kinds: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """Insert the poison rows (each on its own key, followed by two good events of that key).
    Returns ``{event_id: kind}`` and the good followers' ids."""
    inserted: dict[str, str] = {}
    followers: list[str] = []
    engine = sa.create_engine(url)
    try:
        for kind in kinds:
            key = f"pay_poison_{kind}_{uuid.uuid4().hex[:6]}"
            base = encode(make_event(PaymentSucceeded, key))
            now = datetime.now(UTC)
            row = {
                "event_id": base.event_id,
                "event_type": base.event_type,
                "schema_version": base.schema_version,
                "topic": topic,
                "key": base.key,
                "payload": base.value,
                "headers": _store_headers(base.headers),
                "shard": shard_for(base.key, 64),
                "next_attempt_at": now,
                "created_at": now,
            }
            if kind == "oversized":
                doc = json.loads(base.value)
                doc["padding"] = "x" * (BROKER_MAX_MESSAGE + 200_000)
                row["payload"] = json.dumps(doc).encode()
            elif kind == "bad-headers":
                row["headers"] = "{not json"
            elif kind == "illegal-topic":
                row["topic"] = "bad topic name!"
            else:
                row["payload"] = b""
            good = [make_event(PaymentSucceeded, key) for _ in range(2)]
            with engine.begin() as conn:
                conn.execute(outbox_table.insert(), row)
                OutboxPublisher(conn, router=lambda _t: topic).publish_many(good)  # type: ignore[arg-type]
            inserted[base.event_id] = kind
            followers.extend(str(e.event_id) for e in good)
    finally:
        engine.dispose()
    return inserted, followers


def _store_headers(headers: tuple[tuple[str, bytes], ...]) -> str:
    """Headers as the outbox stores them (the store's own serialisation)."""
    from payment_events.outbox.headers import dump_headers

    return dump_headers(headers)
