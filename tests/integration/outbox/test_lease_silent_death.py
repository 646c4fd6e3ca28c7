"""A relay whose network path goes silent (no FIN, no RST) loses its shards within the configured
takeover time (issue 11, defect 5): the lease connection goes through a TCP proxy that blackholes it."""

from __future__ import annotations

import time

from sqlalchemy.engine import make_url

from payment_events.outbox import migrate
from payment_events.outbox.leases import PostgresShardLeases
from tests.brokers import free_port
from tests.chaos.proxy import FaultProxy


def test_shards_of_a_silently_partitioned_relay_are_taken_over_within_the_takeover_time(pg_url: str) -> None:
    """Relay A's lease connection is blackholed; relay B owns every shard within takeover_seconds plus
    a refresh, instead of waiting for the server's TCP keepalive (hours by default)."""
    migrate.upgrade(pg_url)  # the leases write their generations into the lease table (fencing)
    url = make_url(pg_url)
    proxy = FaultProxy(free_port(), (url.host or "127.0.0.1", url.port or 5432)).start()
    proxied = url.set(host="127.0.0.1", port=proxy.listen_port).render_as_string(hide_password=False)
    a = PostgresShardLeases(proxied, shard_count=8, takeover_seconds=4.0)
    b = PostgresShardLeases(pg_url, shard_count=8, takeover_seconds=4.0)
    try:
        assert len(a.refresh()) == 8
        assert len(b.refresh()) == 0
        a.refresh()
        b.refresh()
        proxy.blackhole("both")
        started = time.monotonic()
        while len(b.refresh()) < 8:
            assert time.monotonic() - started < 20, f"B owns {sorted(b.owned)} after 20 s"
            time.sleep(0.5)
        took = time.monotonic() - started
        assert took >= 1.0  # A's locks were held until its session expired, not dropped at once
    finally:
        proxy.heal()
        b.close()
        a.close()
        proxy.stop()
