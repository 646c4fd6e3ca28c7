"""The README's Python examples run as written (the front door must stay true)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from payment_events.outbox.migrate import upgrade

README = Path(__file__).resolve().parents[2] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


class _Base(DeclarativeBase):
    pass


class Payment(_Base):
    """A stand-in for the application's own payment model."""

    __tablename__ = "payments"
    id: Mapped[str] = mapped_column(primary_key=True)
    status: Mapped[str]


def test_readme_examples_run_and_write_one_outbox_row(tmp_path: Path) -> None:
    """The event example round-trips; the outbox example commits exactly one pending outbox row."""
    blocks = _python_blocks()
    assert len(blocks) == 2
    namespace: dict[str, Any] = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102 - our own README

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    try:
        upgrade(engine)
        _Base.metadata.create_all(engine)
        with Session(engine) as session, session.begin():
            session.add(Payment(id="pay_01HQZ8K2", status="pending"))
        namespace.update(Session=Session, engine=engine, Payment=Payment, payment_id="pay_01HQZ8K2")
        exec(compile(blocks[1], "README.md", "exec"), namespace)  # noqa: S102 - our own README

        with engine.connect() as conn:
            status = conn.execute(sa.text("select status from payments")).scalar_one()
            rows = conn.execute(sa.text("select event_type, state from payment_events_outbox")).all()
        assert status == "succeeded"
        assert [tuple(r) for r in rows] == [("PaymentSucceeded", "pending")]
    finally:
        engine.dispose()
