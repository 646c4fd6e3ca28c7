"""Scenarios that break the broker side: a throw-away single broker killed with SIGKILL, partition leaders
killed on the 3-node cluster, and network faults through :class:`~tests.chaos.proxy.FaultProxy`."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from confluent_kafka.admin import AdminClient

from tests.chaos.harness import (
    ProgressWatch,
    RelayProcess,
    ScenarioResult,
    Writers,
    relay_options,
    scenario_space,
    verdict,
    wait_drained,
)
from tests.chaos.infra import Cluster, ThrowawayBroker, free_port, partition_leaders
from tests.chaos.proxy import FaultProxy
from tests.chaos.scale import Scale


@contextlib.contextmanager
def proxied_broker() -> Iterator[tuple[ThrowawayBroker, FaultProxy]]:
    """A throw-away broker advertising the fault proxy's port (every client goes through the proxy)."""
    broker_port, controller_port, proxy_port = free_port(), free_port(), free_port()
    proxy = FaultProxy(proxy_port, ("127.0.0.1", broker_port)).start()
    broker = ThrowawayBroker(broker_port, controller_port, advertised_port=proxy_port)
    try:
        broker.start()
        yield broker, proxy
    finally:
        broker.close()
        proxy.stop()


def broker_kill(scale: Scale, broker: ThrowawayBroker) -> ScenarioResult:
    """kill -9 the (single, throw-away) broker under load, restart it after a while: nothing lost."""
    result = ScenarioResult("broker-kill-9")
    bootstrap = broker.bootstrap
    boot = 0.0
    with scenario_space(bootstrap, partitions=6) as (url, topic, dlq):
        relay = RelayProcess("relay-brokerkill", url, bootstrap, relay_options(dlq))
        writers = Writers(url, topic, total=scale.broker_events, rate=scale.broker_rate, writers=4)
        with ProgressWatch(bootstrap, topic) as watch:
            relay.start(wait=True)
            writers.start()
            duration = scale.broker_events / scale.broker_rate
            time.sleep(duration / 3)
            broker.kill()
            time.sleep(scale.broker_down_seconds)
            broker.start(wait=False)
            boot = broker.wait_ready()
            watch.fault_ended()
            writers.join()
            wait_drained(url, scale.drain_timeout, [relay])
        relay.terminate()
        verdict(result, url, bootstrap, [topic], writers.log, recoveries=watch.recoveries(), relays=[relay])
    result.notes.insert(0, f"broker down {scale.broker_down_seconds + boot:.1f}s (boot {boot:.1f}s)")
    if relay.unexpected_exits:
        result.passed = False
    return result


def network_faults(scale: Scale, proxy: FaultProxy, broker: ThrowawayBroker) -> ScenarioResult:
    """Latency, connection resets and a blackhole of the broker's answers longer than both the relay's
    delivery wait and the producer's message timeout (outcome "possibly persisted": the rows must be
    retried, duplicates allowed). The relay requires message.timeout.ms > its delivery wait."""
    result = ScenarioResult("network-faults")
    bootstrap = broker.bootstrap
    wait_s = scale.message_timeout_seconds
    timeout_ms = int((wait_s + 4) * 1000)
    options = relay_options(
        "",
        delivery_timeout_seconds=wait_s,
        producer_overrides={"message.timeout.ms": timeout_ms, "request.timeout.ms": 5000},
    )
    with scenario_space(bootstrap, partitions=6) as (url, topic, dlq):
        options["dlq_topic"] = dlq
        relay = RelayProcess("relay-network", url, bootstrap, options)
        writers = Writers(url, topic, total=scale.network_events, rate=scale.network_rate, writers=3)
        resets = 0
        with ProgressWatch(bootstrap, topic) as watch:
            relay.start(wait=True)
            writers.start()
            time.sleep(3)
            proxy.set_latency(0.3)
            time.sleep(5)
            proxy.set_latency(0.0)
            watch.fault_ended()
            for _ in range(3):
                time.sleep(2)
                resets += proxy.reset_connections()
                watch.fault_ended()
            time.sleep(2)
            proxy.blackhole("responses")
            time.sleep(scale.blackhole_seconds)
            proxy.heal()
            watch.fault_ended()
            writers.join()
            wait_drained(url, scale.drain_timeout, [relay])
        relay.terminate()
        verdict(result, url, bootstrap, [topic], writers.log, recoveries=watch.recoveries(), relays=[relay])
    result.notes.insert(
        0,
        f"latency 300ms 5s, {resets} connections reset, responses blackholed "
        f"{scale.blackhole_seconds:.0f}s > delivery wait {wait_s:.0f}s, message.timeout.ms {timeout_ms}",
    )
    if relay.unexpected_exits:
        result.passed = False
    return result


def _full_isr(bootstrap: str, topic: str, timeout: float = 60.0) -> bool:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            meta = admin.list_topics(topic=topic, timeout=5).topics[topic]
            if all(len(p.isrs) == 3 and p.leader >= 0 for p in meta.partitions.values()):
                return True
        time.sleep(0.5)
    return False


def leader_failover(scale: Scale) -> ScenarioResult:
    """On the 3-broker cluster (RF 3, min ISR 2, no unclean election): SIGKILL the broker leading most
    partitions under load, restart it, repeat: nothing lost, order holds."""
    result = ScenarioResult("leader-failover")
    cluster = Cluster()
    started_here = not cluster.running()
    cluster.up()
    try:
        return _failover(scale, cluster, result)
    finally:
        if started_here:
            cluster.down()  # leave the machine as we found it


def _failover(scale: Scale, cluster: Cluster, result: ScenarioResult) -> ScenarioResult:
    bootstrap = cluster.bootstrap
    killed: list[int] = []
    config = {"min.insync.replicas": "2", "unclean.leader.election.enable": "false"}
    with scenario_space(bootstrap, partitions=6, replication=3, topic_config=config) as (url, topic, dlq):
        relay = RelayProcess("relay-failover", url, bootstrap, relay_options(dlq))
        writers = Writers(url, topic, total=scale.failover_events, rate=scale.failover_rate, writers=4)
        with ProgressWatch(bootstrap, topic) as watch:
            relay.start(wait=True)
            writers.start()
            duration = scale.failover_events / scale.failover_rate
            for _ in range(scale.failover_kills):
                time.sleep(duration / (scale.failover_kills + 2))
                _full_isr(bootstrap, topic)
                leaders = list(partition_leaders(bootstrap, topic).values())
                victim = max(set(leaders), key=leaders.count)
                cluster.kill(victim)
                killed.append(victim)
                watch.fault_ended()  # leadership moves at once: progress must resume without the node
                time.sleep(4)
                cluster.start(victim)
            writers.join()
            wait_drained(url, scale.drain_timeout, [relay])
        relay.terminate()
        verdict(result, url, bootstrap, [topic], writers.log, recoveries=watch.recoveries(), relays=[relay])
    result.notes.insert(0, f"leaders killed: nodes {killed}")
    if relay.unexpected_exits:
        result.passed = False
    return result
