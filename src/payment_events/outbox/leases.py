"""Shard ownership for relay instances: PostgreSQL session advisory locks, or every shard (SQLite).

Each :class:`PostgresShardLeases` holds ONE dedicated database connection. On it it holds:

* a *member* lock ``(namespace, 2**30 + backend pid)``, so instances can count each other in
  ``pg_locks`` without any table or heartbeat;
* one lock ``(namespace, shard)`` per owned shard.

``refresh()`` counts the members, computes the fair share ``ceil(shard_count / members)``, releases
shards above it and tries to lock free shards up to it.

Ownership is also *fenced* (see :mod:`payment_events.outbox.fencing`): on the same connection, while
holding a shard's lock, the instance writes its owner token into ``payment_events_shard_leases`` and
bumps the shard's generation; it clears its owner before unlocking a shard. :attr:`fence` is what the
store checks on every claim and mark, so an instance whose lock connection died can neither claim nor
mark for its former shards, even before its next refresh notices.

Locks are session locks: when an instance dies, its connection closes and PostgreSQL releases
everything at once, so the others take its shards on their next refresh. If this instance's own lock
connection fails, it owns nothing from that moment (``refresh()`` returns an empty set and never raises
for a database error) and reconnects on the next refresh.

A host that vanishes silently (power loss, a partition: no FIN, no RST) would keep its locks until the
server's TCP keepalive gave up -- off by default, about 2 h 11 min. So the lease connection's session
expires unless renewed: ``takeover_seconds`` (default 30) sets the server's ``idle_session_timeout``, its
TCP keepalives and ``tcp_user_timeout`` for that one session, and the same on the client side (libpq
``keepalives_*``, ``tcp_user_timeout``). A live relay renews it with every refresh and with
:meth:`PostgresShardLeases.ping` from a heartbeat thread (``LeaseHeartbeat``), so only a silent one
loses it: the server ends its backend, its locks go, and the others take its shards on their next
refresh, within ``takeover_seconds`` plus one ``lease_refresh_seconds``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import threading
from typing import Any

from sqlalchemy import bindparam, create_engine, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from payment_events.outbox.fencing import DEFAULT_LEASE_NAMESPACE, release_shards, take_shards
from payment_events.outbox.ports import Fence, Takeover, new_owner_token
from payment_events.outbox.postgres import application_name
from payment_events.outbox.sharding import DEFAULT_SHARD_COUNT, validate_shard_count

log = logging.getLogger("payment_events.outbox.leases")

__all__ = ["DEFAULT_LEASE_NAMESPACE", "MEMBER_BASE", "AllShards", "PostgresShardLeases"]
MEMBER_BASE = 1 << 30
"""Member locks use second keys from here on (shards use 0 .. shard_count-1)."""

_KEEPALIVE_ARGS = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}

DEFAULT_TAKEOVER_SECONDS = 30.0
"""How long after a relay goes silent its shards are free for the others (see the module docstring)."""


def client_keepalive_args(takeover_seconds: float | None) -> dict[str, Any]:
    """libpq connection parameters that notice a dead path within about ``takeover_seconds``."""
    args: dict[str, Any] = dict(_KEEPALIVE_ARGS)
    if takeover_seconds is not None:
        args["keepalives_idle"] = max(1, int(takeover_seconds / 3))
        args["keepalives_interval"] = max(1, int(takeover_seconds / 6))
        args["tcp_user_timeout"] = int(takeover_seconds * 1000)
    return args


def session_expiry_sql(takeover_seconds: float) -> list[str]:
    """Statements that make the server end this session once it has been silent ``takeover_seconds``
    (every one is settable by an ordinary role; ``idle_session_timeout`` needs PostgreSQL 14+)."""
    millis = int(takeover_seconds * 1000)
    return [
        f"SET idle_session_timeout = {millis}",
        f"SET tcp_keepalives_idle = {max(1, int(takeover_seconds / 3))}",
        f"SET tcp_keepalives_interval = {max(1, int(takeover_seconds / 6))}",
        "SET tcp_keepalives_count = 3",
        f"SET tcp_user_timeout = {millis}",
    ]


_HELD = text(
    "SELECT objid::bigint AS k FROM pg_locks"
    " WHERE locktype = 'advisory' AND granted AND objsubid = 2"
    " AND classid = CAST(:ns AS bigint)::oid"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
_TRY_MEMBER = text("SELECT pg_try_advisory_lock(:ns, :base + pg_backend_pid()), pg_backend_pid()")
_TRY_SHARDS = text(
    "SELECT s FROM unnest(CAST(:shards AS INTEGER[])) AS s WHERE pg_try_advisory_lock(:ns, s)"
).bindparams(bindparam("shards"))
_UNLOCK_SHARDS = text("SELECT pg_advisory_unlock(:ns, s) FROM unnest(CAST(:shards AS INTEGER[])) AS s")


class AllShards:
    """Every shard, always: the single relay of an SQLite outbox (or of a PostgreSQL outbox run alone)."""

    def __init__(self, shard_count: int = DEFAULT_SHARD_COUNT) -> None:
        self._all = frozenset(range(validate_shard_count(shard_count)))

    def refresh(self) -> frozenset[int]:
        """Every shard."""
        return self._all

    def release_all(self) -> None:
        """Nothing is held."""


class PostgresShardLeases:
    """Shards owned by this relay instance through session advisory locks on one dedicated connection.

    ``engine_or_url``: an Engine (one of its pooled connections is kept checked out) or a URL (a private
    engine with TCP keepalives, so a dead network path is noticed within about half a minute).
    ``namespace`` separates independent relay groups in one database (for example two outbox tables).
    Instances of one group must use the same ``shard_count`` and ``namespace``. ``transactional_id``
    (exactly-once mode) is recorded with every shard taken, so the next owner can fence that producer.
    The lease table (migration 0003) must exist: without it no shard is ever owned.
    """

    def __init__(
        self,
        engine_or_url: Engine | str,
        shard_count: int = DEFAULT_SHARD_COUNT,
        namespace: int = DEFAULT_LEASE_NAMESPACE,
        *,
        rand: random.Random | None = None,
        takeover_seconds: float | None = DEFAULT_TAKEOVER_SECONDS,
        transactional_id: str | None = None,
    ) -> None:
        if takeover_seconds is not None and takeover_seconds < 2:
            raise ValueError(f"takeover_seconds must be at least 2, got {takeover_seconds}")
        self.takeover_seconds = takeover_seconds
        self._lock = threading.RLock()
        self.shard_count = validate_shard_count(shard_count)
        if not 0 <= namespace < 2**31:
            raise ValueError(f"namespace must be between 0 and 2**31-1, got {namespace}")
        self.namespace = namespace
        if isinstance(engine_or_url, Engine):
            self._engine, self._owns_engine = engine_or_url, False
        else:
            options: dict[str, Any] = {"poolclass": NullPool}
            if engine_or_url.startswith("postgresql+psycopg"):
                options["connect_args"] = client_keepalive_args(takeover_seconds)
                name = application_name(engine_or_url, "leases")
                if name is not None:
                    options["connect_args"]["application_name"] = name
            self._engine, self._owns_engine = create_engine(engine_or_url, **options), True
        if self._engine.dialect.name != "postgresql":
            raise ValueError("PostgresShardLeases needs PostgreSQL; use AllShards for SQLite")
        self._rand = rand or random.Random()
        self._conn: Connection | None = None
        self._owned: frozenset[int] = frozenset()
        self._members = 0
        self._pid: int | None = None
        self._owner = new_owner_token()
        self._generations: dict[int, int] = {}
        self.transactional_id = transactional_id
        self.takeovers: list[Takeover] = []
        """Every take since the last :meth:`pop_takeovers` (exactly-once mode reconciles them)."""

    @property
    def owned(self) -> frozenset[int]:
        """The shards owned after the last refresh."""
        return self._owned

    @property
    def members(self) -> int:
        """How many relay instances (lock connections) were counted at the last refresh."""
        return self._members

    @property
    def backend_pid(self) -> int | None:
        """The PostgreSQL backend pid of the lock connection (``None`` while disconnected)."""
        return self._pid if self._conn is not None else None

    @property
    def owner(self) -> str:
        """This instance's owner token on its current lease connection (a new one per connection)."""
        return self._owner

    @property
    def fence(self) -> Fence | None:
        """The fence of the owned shards (``None`` while disconnected or owning nothing)."""
        if self._conn is None or self._pid is None or not self._owned:
            return None
        generations = {s: g for s, g in self._generations.items() if s in self._owned}
        return Fence(self.namespace, self._owner, generations, self._pid)

    def pop_takeovers(self) -> list[Takeover]:
        """The takes since the last call, and forget them."""
        taken, self.takeovers = self.takeovers, []
        return taken

    def refresh(self) -> frozenset[int]:
        """Rebalance towards the fair share and return the shards owned now (empty if the lock
        connection is broken: it is re-opened on the next call)."""
        try:
            with self._lock:
                if self._conn is None:
                    self._connect()
                self._owned = self._rebalance()
        except SQLAlchemyError as exc:
            log.warning(
                "shard lease connection failed; owning no shards until it is back",
                extra={"event": "relay.leases_lost", "error": type(exc).__name__, "shards": len(self._owned)},
            )
            self._drop_connection()
        return self._owned

    def ping(self) -> bool:
        """Renew the session (a ``SELECT 1`` on the lock connection) so the server does not expire it;
        called by a heartbeat thread between refreshes. False (and nothing owned) if the connection is
        gone: the next refresh reconnects."""
        with self._lock:
            conn = self._conn
            if conn is None:
                return False
            try:
                conn.execute(text("SELECT 1"))
            except SQLAlchemyError as exc:
                log.warning(
                    "shard lease connection failed; owning no shards until it is back",
                    extra={
                        "event": "relay.leases_lost", "error": type(exc).__name__, "shards": len(self._owned)
                    },
                )
                self._drop_connection()
                return False
            return True

    def release_all(self) -> None:
        """Release every shard and the member lock by closing the lock connection."""
        with self._lock:
            self._release_all()

    def _release_all(self) -> None:
        conn = self._conn
        if conn is not None and not conn.closed:
            with contextlib.suppress(SQLAlchemyError):  # closing the connection releases them anyway
                release_shards(conn, self.namespace, self._owner, self._owned)
                conn.execute(text("SELECT pg_advisory_unlock_all()"))
        self._drop_connection()

    def abandon(self) -> None:
        """Give up every shard WITHOUT clearing the owner (as if this instance crashed): the next owner
        treats the shards as taken from a crashed relay (exactly-once mode: fences and reconciles)."""
        self._drop_connection()

    def close(self) -> None:
        """Release everything and dispose of a private engine."""
        self.release_all()
        if self._owns_engine:
            self._engine.dispose()

    def __enter__(self) -> PostgresShardLeases:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------------- internals
    def _connect(self) -> None:
        conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            if self.takeover_seconds is not None and (conn.dialect.server_version_info or (0,)) >= (14,):
                for statement in session_expiry_sql(self.takeover_seconds):
                    conn.exec_driver_sql(statement)
            locked, pid = conn.execute(_TRY_MEMBER, {"ns": self.namespace, "base": MEMBER_BASE}).one()
            if not locked:
                # Cannot happen (the backend pid is unique), but never run without being counted.
                raise RuntimeError("member lock is already held by this backend")
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._pid = int(pid)
        self._owner = new_owner_token()  # a new session is a new owner: the old one's fence is dead
        self._generations = {}

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        self._owned = frozenset()
        self._generations = {}
        if conn is not None:
            try:
                conn.invalidate()  # never hand a connection that held locks back to a pool
                conn.close()
            except SQLAlchemyError:
                pass

    def _rebalance(self) -> frozenset[int]:
        conn = self._conn
        assert conn is not None
        held = [int(k) for k in conn.execute(_HELD, {"ns": self.namespace}).scalars()]
        self._members = max(1, sum(1 for k in held if k >= MEMBER_BASE))
        fair = math.ceil(self.shard_count / self._members)
        owned = set(self._owned)
        if len(owned) > fair:
            extra = sorted(owned)[fair:]
            release_shards(conn, self.namespace, self._owner, extra)  # before unlocking: fence ourselves
            conn.execute(_UNLOCK_SHARDS, {"ns": self.namespace, "shards": extra})
            owned.difference_update(extra)
            for shard in extra:
                self._generations.pop(shard, None)
        taken = {k for k in held if k < self.shard_count}
        free = [s for s in range(self.shard_count) if s not in taken and s not in owned]
        self._rand.shuffle(free)  # instances starting together try different shards first
        while len(owned) < fair and free:
            need = fair - len(owned)
            batch, free = free[:need], free[need:]
            locked = conn.execute(_TRY_SHARDS, {"ns": self.namespace, "shards": batch}).scalars()
            got = [int(s) for s in locked]
            if not got:
                continue
            # Holding the locks: write ourselves as owner and bump the generations (the fence).
            takeover = take_shards(
                conn, self.namespace, self._owner, got, transactional_id=self.transactional_id
            )
            self._generations.update(takeover.generations)
            if self.transactional_id is not None:  # only exactly-once mode consumes them
                self.takeovers.append(takeover)
            owned.update(takeover.generations)
        return frozenset(owned)
