"""A deterministic, seeded simulation of the relay under every fault production brings (issue 11).

One :class:`Simulation` drives the *real* relay loop (:class:`~payment_events.relay.loop.Relay`, its
decisions, the topic guard and the dead-letter copier) over the in-memory outbox
(:class:`~payment_events.testing.InMemoryOutboxStore`) and the simulated world of
:mod:`tests.simulation.world`. Each step does one thing chosen by the seeded RNG: a writer begins,
writes or commits/rolls back a transaction (a row becomes claimable only at its commit); a relay runs
one cycle under a fault plan (outage, partition cut with persisted-but-failed messages, fatal error,
a crash at any point: mid-produce, before or after the marks); shards move between relays (takeover);
a relay dies and a fresh one is built from the store; a topic appears; the dead-letter topic goes down
or comes back; the dead-letter copier runs; time passes. After every step the invariants of the design
are checked (see :class:`Checker`); the first violation stops the run with the seed and step, and the
same seed replays it exactly.

Toggles bring back what issue 11 fixed, so the simulation shows it finds those defects:
``guard=False`` (no topic guard: batch size errors, missing-topic stalls), ``key_lock=False`` (writers
of one key take ids in insert order but commit in any order), ``dlq_in_loop=True`` (dead-letter copies
made inside the relay's cycle).
"""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from payment_events.kafka.guard import GuardedProducer
from payment_events.outbox.ports import DEAD, PENDING, PUBLISHED
from payment_events.relay.dead_letter_copies import DeadLetterCopier
from payment_events.relay.loop import Relay
from payment_events.relay.settings import RelayConfig
from payment_events.testing import InMemoryOutboxStore, InMemoryTransaction
from tests.simulation.world import (
    Crash,
    Plan,
    SimBroker,
    SimCatalog,
    SimClock,
    SimLeases,
    SimProducer,
    Topic,
)

SHARDS = 4
SLOTS = 2
TOPICS = ("pay.a", "pay.b", "pay.late")
DLQ = "pay.dlq"
LIMIT = 4096
POISON_SIZE = 6000
STALL_SECONDS = 1.0
"""A clean cycle (no broker-wide fault) taking longer than this was held up by someone else's trouble."""


class Violation(AssertionError):
    """An invariant failed; the message names it, the seed and the step."""


@dataclass
class Options:
    """What the run does and which fixes are on."""

    seed: int = 1
    steps: int = 100_000
    keys: int = 10
    guard: bool = True
    key_lock: bool = True
    dlq_in_loop: bool = False
    late_topic: bool = True
    """Route some keys to a topic that does not exist until a random step."""
    check_every_step: bool = True


@dataclass
class Stats:
    """What happened (printed at the end)."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, n: int = 1) -> None:
        """Count one thing."""
        self.counts[name] = self.counts.get(name, 0) + n


class RecordingStore(InMemoryOutboxStore):
    """The in-memory outbox, remembering which rows each resolve touched, with injectable crashes."""

    def __init__(self, clock: SimClock) -> None:
        super().__init__(shard_count=SHARDS, clock=clock.now)
        self.changed: list[int] = []
        self.crash: str | None = None

    def resolve(self, published: Any, retries: Any, dead: Any) -> None:
        """Apply the marks (unless a crash comes first) and remember the ids."""
        if self.crash == "before_marks":
            self.crash = None
            raise Crash("the relay died before its marks committed")
        super().resolve(published, retries, dead)
        self.changed.extend(p.id for p in published)
        self.changed.extend(d.id for d in dead)
        if self.crash == "after_marks":
            self.crash = None
            raise Crash("the relay died right after its marks committed")


@dataclass
class Written:
    """What the sim knows about an event it wrote."""

    event_id: str
    key: bytes
    topic: str
    poison: bool
    row_id: int


class Simulation:
    """See the module docstring."""

    def __init__(self, options: Options) -> None:
        self.o = options
        self.rng = random.Random(options.seed)
        self.clock = SimClock()
        self.stats = Stats()
        self.broker = SimBroker(self.clock, random.Random(self.rng.random()))
        self.broker.topics = {
            "pay.a": Topic(limit=LIMIT),
            "pay.b": Topic(limit=LIMIT // 2),
            "pay.late": Topic(exists=not options.late_topic, limit=LIMIT),
            DLQ: Topic(limit=LIMIT * 4),
        }
        self.store = RecordingStore(self.clock)
        self.table = dict.fromkeys(range(SHARDS), 0)
        for shard in range(SHARDS):
            self.table[shard] = shard % SLOTS
        self.relays: list[Relay | None] = [None] * SLOTS
        self.copiers: list[DeadLetterCopier | None] = [None] * SLOTS
        self.open: list[tuple[InMemoryTransaction, list[Written]]] = []
        self.written: dict[str, Written] = {}
        self.by_row: dict[int, Written] = {}
        self.checker = Checker(self)
        self.step_no = 0
        self.late_created_at = float("-inf")
        if not options.guard:
            self.broker.propagation_seconds = 30.0  # librdkafka's default topic.metadata.propagation.max.ms

    # ------------------------------------------------------------------------------ building
    def relay(self, slot: int) -> Relay:
        """The relay of ``slot``, built from the store's state if the slot has none (start or crash)."""
        existing = self.relays[slot]
        if existing is not None:
            return existing
        config = RelayConfig(
            batch_size=1000,
            max_attempts=None,  # only an event's own permanent fault may park it (invariant 7)
            backoff_base_seconds=0.05,
            backoff_cap_seconds=2.0,
            delivery_timeout_seconds=30.0,
            dlq_topic=DLQ,
            shard_count=SHARDS,
            overlap_marks=self.rng.random() < 0.5,
        )
        live = SimProducer(self.broker)
        producer: Any = GuardedProducer(live, SimCatalog(self.broker), clock=self.clock.monotonic) if (
            self.o.guard
        ) else live
        copier: DeadLetterCopier | None = None
        if not self.o.dlq_in_loop:
            dlq_producer = SimProducer(self.broker, dead_letter=True)
            copier = DeadLetterCopier(
                GuardedProducer(dlq_producer, SimCatalog(self.broker), clock=self.clock.monotonic),
                timeout=5.0,
                clock=self.clock.monotonic,
                rand=self.rng.random,
            )
        relay = Relay(
            self.store,
            producer,
            config,
            leases=SimLeases(self.table, slot),
            clock=self.clock.now,
            rand=self.rng.random,
            dead_letters=copier,
        )
        relay._sim_live = live  # type: ignore[attr-defined]  # the sim reads the time its calls took
        self.relays[slot] = relay
        self.copiers[slot] = copier
        return relay

    def kill(self, slot: int) -> None:
        """The relay of ``slot`` dies: nothing of it survives but what the store and broker hold."""
        relay = self.relays[slot]
        if relay is None:
            return
        marker = getattr(relay, "_marker", None)
        if marker is not None:
            marker.shutdown(wait=True)
        self.relays[slot] = None
        self.copiers[slot] = None
        self.stats.add("relay_deaths")

    # ------------------------------------------------------------------------------ steps
    def run(self) -> Stats:
        """Run every step (raising :class:`Violation` at the first broken invariant), then heal the
        world and check that everything committed arrived."""
        quiet = logging.getLogger("payment_events")
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)  # millions of injected faults: their log lines are not the point
        try:
            for step_no in range(1, self.o.steps + 1):
                self.step_no = step_no
                self.step()
                if self.o.check_every_step or self.step_no % 100 == 0:
                    self.checker.after_step()
                if self.step_no % 500 == 0:
                    self.retire()
            self.heal()
        finally:
            quiet.setLevel(level)
        return self.stats

    def step(self) -> None:
        """One random action."""
        r = self.rng.random()
        if r < 0.22:
            self.write()
        elif r < 0.42:
            self.commit()
        elif r < 0.80:
            self.cycle(self.rng.randrange(SLOTS))
        elif r < 0.83:
            self.takeover()
        elif r < 0.85:
            self.kill(self.rng.randrange(SLOTS))
        elif r < 0.86:
            self.world_event()
        elif r < 0.92:
            self.pump_dead_letters()
        else:
            self.clock.advance(self.rng.choice((0.01, 0.1, 0.5, 2.0)))

    def write(self) -> None:
        """A writer begins a transaction and inserts one or two events of one key (the key lock makes
        a second writer of a key wait: it does nothing this step)."""
        key = f"key-{self.rng.randrange(self.o.keys)}".encode()
        if self.o.key_lock and any(w.key == key for _, ws in self.open for w in ws):
            self.stats.add("writer_waited_for_key_lock")
            return
        tx = self.store.begin()
        events = []
        for _ in range(1 if self.rng.random() < 0.8 else 2):
            poison = self.rng.random() < 0.01
            topic = TOPICS[sum(key) % len(TOPICS)]
            event_id = str(uuid.UUID(int=self.rng.getrandbits(128)))
            payload = b"p" * (POISON_SIZE if poison else self.rng.randint(100, 700))
            headers = (("ce_id", event_id.encode()),)
            row_id = tx.add_raw(key, payload, event_id=event_id, topic=topic, headers=headers)
            events.append(Written(event_id, key, topic, poison, row_id))
        self.open.append((tx, events))

    def commit(self) -> None:
        """A random open transaction commits (90 %) or rolls back; commit order is recorded."""
        if not self.open:
            return
        tx, events = self.open.pop(self.rng.randrange(len(self.open)))
        if self.rng.random() < 0.1:
            tx.rollback()
            self.stats.add("rollbacks")
            return
        tx.commit()
        for w in events:
            self.written[w.event_id] = w
            self.by_row[w.row_id] = w
            self.checker.committed(w)
        self.stats.add("events_committed", len(events))

    def cycle(self, slot: int) -> None:
        """One relay cycle under a random fault plan; a crash kills the relay."""
        relay = self.relay(slot)
        plan = self.plan()
        self.broker.plan = plan
        live: SimProducer = relay._sim_live  # type: ignore[attr-defined]
        before = live.charged
        eligible = self.checker.eligible(slot) if plan.kind == "clean" else set()
        self.store.changed = []
        try:
            relay.drain(max_cycles=1)
        except Crash:
            self.stats.add("crashes")
            self.kill(slot)
            self.checker.resolved(self.store.changed)
            return
        finally:
            self.broker.plan = Plan()
            self.store.crash = None
        self.stats.add(f"cycles_{plan.kind}")
        self.checker.resolved(self.store.changed)
        took = live.charged - before
        if plan.kind == "clean":
            self.checker.clean_cycle(slot, eligible, took)

    def plan(self) -> Plan:
        """The broker's behaviour for the next cycle."""
        r = self.rng.random()
        if r < 0.62:
            return Plan()
        if r < 0.70:
            return Plan("outage")
        if r < 0.80:
            return Plan("cut")
        if r < 0.84:
            return Plan("fatal")
        if r < 0.92:
            return Plan("crash", crash_after=self.rng.randrange(0, 20))
        self.store.crash = "before_marks" if r < 0.96 else "after_marks"
        return Plan("clean_then_crash")

    def takeover(self) -> None:
        """A shard changes hands between cycles (the old owner's session lock is gone)."""
        shard = self.rng.randrange(SHARDS)
        self.table[shard] = self.rng.randrange(SLOTS)
        self.stats.add("takeovers")

    def world_event(self) -> None:
        """A topic is created, the dead-letter topic goes down or comes back."""
        r = self.rng.random()
        if r < 0.3 and not self.broker.topics["pay.late"].exists:
            self.broker.topics["pay.late"].exists = True
            self.late_created_at = self.clock.seconds
            self.stats.add("topic_created")
        elif r < 0.65:
            self.broker.topics[DLQ].down = not self.broker.topics[DLQ].down
            self.stats.add("dlq_toggled")

    def pump_dead_letters(self) -> None:
        """The dead-letter copiers' threads get to run."""
        for copier in self.copiers:
            if copier is not None:
                copier.pump()

    def retire(self) -> None:
        """Purge published rows the checker has verified (the relay's retention purge), so the run
        stays fast; the checker keeps what it needs."""
        self.store.purge_published(self.clock.now() + timedelta(days=1), 100_000)

    def heal(self) -> None:
        """The end: every fault gone, the late topic created, the dead-letter topic up, all writers
        committed; relays run until nothing is pending. Then nothing committed may be missing."""
        self.broker.topics["pay.late"].exists = True
        self.broker.topics[DLQ].down = False
        while self.open:
            self.commit()
        for _ in range(200):
            self.clock.advance(3.0)
            for slot in range(SLOTS):
                self.cycle_clean(slot)
            self.checker.after_step()
            if not any(r.state == PENDING for r in self.store.rows):
                break
        self.checker.final()
        for row in self.store.rows:
            self.stats.add(f"rows_{row.state}_at_end")
        outcomes = [v[0] for v in self.checker.resolved_ids.values()]
        self.stats.add("events_published", outcomes.count(PUBLISHED))
        self.stats.add("events_dead", outcomes.count(DEAD))
        copies = sum(len(log) for (topic, _), log in self.broker.logs.items() if topic == DLQ)
        self.stats.add("dead_letter_copies", copies)

    def cycle_clean(self, slot: int) -> None:
        """A cycle with a healthy broker."""
        self.broker.plan = Plan()
        self.store.changed = []
        self.relay(slot).drain(max_cycles=1)
        self.checker.resolved(self.store.changed)


class Checker:
    """The invariants of the design, checked incrementally after every step.

    1. Nothing committed is lost: every committed row is in the outbox (or was published and purged),
       a published row's partition/offset holds that very event, and at the end every valid event is
       on its topic.
    2. A key's rows are marked published in commit order: never while an earlier-committed row of the
       key is unresolved, and with increasing offsets.
    3. Consumers see a key's events in commit order: the first copy of each event on the topic comes
       after the first copies of every earlier-committed valid event of its key.
    4. A valid event is never dead-lettered (only the too-large-by-itself "poison" events may be).
    5. One key's or topic's trouble delays no other key beyond one cycle: a clean cycle takes no
       longer than :data:`STALL_SECONDS` of broker time and resolves every key head that was due on
       its shards at its start.
    """

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.commit_order: dict[bytes, list[str]] = {}
        self.position: dict[str, int] = {}
        self.resolved_pointer: dict[bytes, int] = {}
        self.appeared: set[str] = set()
        self.appear_pointer: dict[bytes, int] = {}
        self.resolved_ids: dict[str, tuple[str, int | None, int | None]] = {}
        self.max_offset: dict[bytes, int] = {}
        self.log_seen: dict[tuple[str, int], int] = {}

    def fail(self, what: str) -> None:
        """Stop the run."""
        o = self.sim.o
        raise Violation(
            f"{what} (seed {o.seed}, step {self.sim.step_no}; replay: python -m tests.simulation "
            f"--seed {o.seed} --steps {self.sim.step_no}{'' if o.guard else ' --no-guard'}"
            f"{'' if o.key_lock else ' --no-key-lock'}{' --dlq-in-loop' if o.dlq_in_loop else ''}"
            f"{'' if o.late_topic else ' --no-late-topic'})"
        )

    def committed(self, w: Written) -> None:
        """A row became visible."""
        ids = self.commit_order.setdefault(w.key, [])
        self.position[w.event_id] = len(ids)
        ids.append(w.event_id)

    def resolved(self, row_ids: list[int]) -> None:
        """Rows a resolve touched: check invariants 1, 2 and 4 for each, in commit order per key."""
        sim = self.sim
        rows = {rid: sim.store.get(rid) for rid in set(row_ids)}
        position = self.position
        for rid, row in sorted(rows.items(), key=lambda kv: position[sim.by_row[kv[0]].event_id]):
            w = sim.by_row[rid]
            if row is None or row.state == PENDING or w.event_id in self.resolved_ids:
                continue
            if row.state == DEAD:
                if not w.poison:
                    self.fail(f"valid event {w.event_id} of key {w.key!r} dead-lettered: {row.last_error}")
                self.resolved_ids[w.event_id] = (DEAD, None, None)
                self._advance(w.key)
                continue
            assert row.state == PUBLISHED
            log = sim.broker.logs.get((w.topic, row.kafka_partition or 0), [])
            offset = row.kafka_offset if row.kafka_offset is not None else -1
            if not 0 <= offset < len(log) or log[offset].event_id != w.event_id:
                self.fail(f"row {rid} marked published at an offset that does not hold its event")
            pointer = self._advance(w.key)
            if pointer != position[w.event_id]:
                earlier = self.commit_order[w.key][pointer]
                self.fail(f"key {w.key!r}: {w.event_id} published while earlier {earlier} is unresolved")
            if offset <= self.max_offset.get(w.key, -1):
                self.fail(f"key {w.key!r}: {w.event_id} marked at an offset before an earlier event's")
            self.max_offset[w.key] = offset
            self.resolved_ids[w.event_id] = (PUBLISHED, row.kafka_partition, offset)
            self._advance(w.key)

    def _advance(self, key: bytes) -> int:
        """Move the key's pointer past every resolved event; return it (the first unresolved one)."""
        ids = self.commit_order[key]
        pointer = self.resolved_pointer.get(key, 0)
        while pointer < len(ids) and ids[pointer] in self.resolved_ids:
            pointer += 1
        self.resolved_pointer[key] = pointer
        return pointer

    def after_step(self) -> None:
        """New messages on the logs keep invariant 3; no committed row vanished."""
        for where, log in self.sim.broker.logs.items():
            seen = self.log_seen.get(where, 0)
            for message in log[seen:]:
                if message.event_id in self.appeared:
                    continue
                self.appeared.add(message.event_id)
                w = self.sim.written.get(message.event_id)
                if w is None:
                    self.fail(f"event {message.event_id} on {where[0]} before its transaction committed")
                    return
                if where[0] == DLQ:
                    continue
                ids = self.commit_order[w.key]
                written = self.sim.written
                pointer = self.appear_pointer.get(w.key, 0)
                while pointer < len(ids) and (ids[pointer] in self.appeared or written[ids[pointer]].poison):
                    pointer += 1
                self.appear_pointer[w.key] = pointer
                if pointer < self.position[w.event_id]:
                    self.fail(
                        f"key {w.key!r}: consumers see {w.event_id} before earlier-committed {ids[pointer]}"
                    )
            self.log_seen[where] = len(log)

    def eligible(self, slot: int) -> set[int]:
        """Key heads due now on ``slot``'s shards whose topic exists (what a clean cycle must resolve)."""
        sim = self.sim
        shards = {s for s, owner in sim.table.items() if owner == slot}
        now = sim.clock.now()
        heads: dict[bytes, Any] = {}
        for row in sim.store.rows:
            if row.state == PENDING and row.key not in heads:
                heads[row.key] = row
        return {
            row.id
            for row in heads.values()
            if row.shard in shards
            and row.next_attempt_at <= now
            and sim.broker.topics[row.topic].exists
            # the guard re-reads the metadata of a missing topic every 10 s: a topic created just now is
            # seen within that (its rows' own delay, not another key's)
            and not (row.topic == "pay.late" and sim.clock.seconds - sim.late_created_at < 12.0)
            and not sim.by_row[row.id].poison
        }

    def clean_cycle(self, slot: int, eligible: set[int], took: float) -> None:
        """Invariant 5 for a cycle whose broker calls had no injected fault."""
        if took > STALL_SECONDS:
            self.fail(f"a clean cycle of relay {slot} took {took:.1f} s of broker time: held up by another "
                      "topic's or key's trouble")
        for rid in eligible:
            row = self.sim.store.get(rid)
            if row is not None and row.state == PENDING:
                self.fail(f"row {rid} was due at the head of its key and still pending after a clean cycle")

    def final(self) -> None:
        """After healing: every committed valid event published and on its topic."""
        for event_id, w in self.sim.written.items():
            if w.poison:
                continue
            if self.resolved_ids.get(event_id, ("",))[0] != PUBLISHED:
                self.fail(f"committed event {event_id} was never published")
            if event_id not in self.appeared:
                self.fail(f"committed event {event_id} is not on its topic")


def run(options: Options) -> Stats:
    """Run one simulation."""
    return Simulation(options).run()
