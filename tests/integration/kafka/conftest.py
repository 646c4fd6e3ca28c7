"""The private secure broker (TLS and SASL_SSL/SCRAM listeners) the security tests share: one per session."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.brokers import LIB, SecureBroker


@pytest.fixture(scope="session")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """A broker with an SSL and a SASL_SSL (SCRAM-SHA-512) listener, certificates made at start-up.

    Missing tools (java, openssl, kcat, the Kafka jars) fail the test under CI and skip it otherwise,
    like every server-backed test; a broker that does not start always fails.
    """
    missing = [tool for tool in ("java", "openssl", "kcat") if shutil.which(tool) is None]
    if not (LIB.is_dir() and any(LIB.glob("kafka_2.13-*.jar"))):
        missing.append("the Kafka jars")
    if missing:
        message = f"the secure broker needs {', '.join(missing)}; run `scripts/services up` first"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    broker = SecureBroker(tmp_path_factory.mktemp("secure-kafka"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
