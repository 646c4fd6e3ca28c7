"""The contracts need pydantic alone: a consumer that decodes events loads no relay dependency."""

from __future__ import annotations

import subprocess
import sys
import textwrap

RELAY_PACKAGES = ["sqlalchemy", "confluent_kafka", "psycopg", "alembic", "click", "prometheus_client"]

PROGRAM = textwrap.dedent(
    """
    import importlib.abc, sys

    BLOCKED = {blocked!r}

    class Absent(importlib.abc.MetaPathFinder):
        '''Behave as if the relay's dependencies were not installed.'''
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, Absent())
    import payment_events, payment_events.events, payment_events.events.codec, payment_events.events.schemas
    from payment_events import PaymentSucceeded, decode, encode
    from payment_events.events.examples import example_event

    event = example_event(PaymentSucceeded)
    message = encode(event)
    assert decode(message.value, message.headers) == event
    assert {{"PaymentSucceeded", "OutboxPublisher", "Relay"}} <= set(payment_events.__all__)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED + ["opentelemetry", "django"])
    print(",".join(loaded))
    """
)


def test_contracts_import_and_round_trip_without_relay_dependencies() -> None:
    """With sqlalchemy, confluent_kafka, psycopg, alembic, click and prometheus_client unimportable,
    `import payment_events.events, payment_events.events.codec` works, an event round-trips, and none of them
    (nor opentelemetry or django) is loaded."""
    proc = subprocess.run(
        [sys.executable, "-c", PROGRAM.format(blocked=RELAY_PACKAGES)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_io_exports_stay_reachable_when_the_relay_extra_is_installed() -> None:
    """The lazy names of the public API still resolve (here the relay extra is installed)."""
    proc = subprocess.run(
        [sys.executable, "-c", "import payment_events as p; print(p.OutboxPublisher.__name__, "
         "p.AsyncOutboxPublisher.__name__, p.DirectPublisher.__name__, p.Relay.__name__)"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["OutboxPublisher", "AsyncOutboxPublisher", "DirectPublisher", "Relay"]
