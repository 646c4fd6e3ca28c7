"""No transient resource error ends the relay (issue 11, defect 6): the LISTEN waker survives an
``OSError`` such as EMFILE (too many open files) and falls back to polling."""

from __future__ import annotations

import errno

import psycopg
import pytest

from payment_events.relay.wakeup import PostgresNotifyWaker


def test_waker_survives_a_descriptor_shortage_and_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """psycopg.connect raising OSError(EMFILE) at start and at reconnect: the waker polls instead."""

    def no_descriptors(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(psycopg, "connect", no_descriptors)
    waker = PostgresNotifyWaker("postgresql+psycopg://u:p@127.0.0.1:1/db", "chan", reconnect_seconds=0.0)
    assert waker.wait(0.01) is False
    assert waker.wait(0.01) is False
    waker.close()
