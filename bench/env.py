"""Where the numbers come from: the machine, the versions and the services, recorded with every result."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SERVICES_SCRIPT = ROOT / "scripts" / "services"


def services_up() -> None:
    """Start (or confirm) the real PostgreSQL and Kafka through the project's services script."""
    subprocess.run([str(SERVICES_SCRIPT), "up"], check=True, cwd=ROOT)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _kafka_version() -> str:
    lib = ROOT / "infra" / "kafka" / "lib"
    for jar in sorted(lib.glob("kafka-clients-*.jar")):
        return jar.name.removeprefix("kafka-clients-").removesuffix(".jar")
    for jar in sorted(lib.glob("kafka_*.jar")):
        return jar.name
    return "unknown"


def _postgres_version(admin_url: str) -> str:
    import sqlalchemy as sa

    engine = sa.create_engine(admin_url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(sa.text("show server_version")).scalar_one())
    finally:
        engine.dispose()


def _postgres_settings(admin_url: str) -> dict[str, str]:
    import sqlalchemy as sa

    names = ("synchronous_commit", "fsync", "wal_sync_method", "shared_buffers", "max_wal_size")
    engine = sa.create_engine(admin_url)
    try:
        with engine.connect() as conn:
            return {name: str(conn.execute(sa.text(f"show {name}")).scalar_one()) for name in names}
    finally:
        engine.dispose()


def _first(value: object) -> str:
    """``version()`` is a string in some confluent-kafka releases and a (string, int) tuple in others."""
    if isinstance(value, tuple):
        return str(value[0])
    return str(value)


def machine_record(admin_url: str, bootstrap: str) -> dict[str, Any]:
    """Cores, memory, CPU model, load, and every version that shapes the numbers."""
    import confluent_kafka
    import psutil
    import psycopg
    import sqlalchemy

    load1, load5, load15 = os.getloadavg()
    return {
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "cpu_model": _cpu_model(),
        "logical_cores": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_mb": round(psutil.virtual_memory().total / 2**20),
        "load_average_at_start": [round(load1, 2), round(load5, 2), round(load15, 2)],
        "kernel": platform.release(),
        "shared_machine": "PostgreSQL, the Kafka broker, the relay and the load generators share these cores",
        "versions": {
            "python": sys.version.split()[0],
            "confluent_kafka": _first(confluent_kafka.version()),
            "librdkafka": confluent_kafka.libversion()[0],
            "kafka_broker": _kafka_version(),
            "postgresql": _postgres_version(admin_url),
            "sqlalchemy": sqlalchemy.__version__,
            "psycopg": psycopg.__version__,
        },
        "postgresql_settings": _postgres_settings(admin_url),
        "kafka_bootstrap": bootstrap,
    }
