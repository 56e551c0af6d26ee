from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import select

from services import audit
from storage.db import transaction
from storage.models import AuditEvent
from tests.factories import tamper_with_audit

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def _append(session_factory, count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        with transaction(session_factory) as session:
            audit.record(
                session, action=f"test.event_{n}", actor="U_TESTER",
                at=T0 + timedelta(minutes=n), details={"n": n, "note": "Ünïcode ok"},
            )


def _verify(session_factory) -> audit.Verification:
    with session_factory() as session:
        return audit.verify(session)


def test_intact_chain_verifies(session_factory) -> None:
    _append(session_factory, 5)
    result = _verify(session_factory)
    assert result.ok, result.problem
    assert result.checked == 5
    with session_factory() as session:
        events = session.exec(select(AuditEvent).order_by(AuditEvent.seq)).all()
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == audit.GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in zip(events, events[1:], strict=False))
    assert result.last_hash == events[-1].hash


def test_empty_chain_verifies(session_factory) -> None:
    assert _verify(session_factory).ok


def test_altered_event_is_named(engine, session_factory) -> None:
    _append(session_factory, 5)
    tamper_with_audit(engine, """UPDATE audit_event SET actor = 'U_SOMEONE_ELSE' WHERE seq = 3""")
    result = _verify(session_factory)
    assert not result.ok
    assert result.problem.startswith("audit event #3 (test.event_2 at")
    assert "altered" in result.problem
    assert result.checked == 2


def test_altered_details_are_caught(engine, session_factory) -> None:
    _append(session_factory, 3)
    with session_factory() as session:
        original = session.get(AuditEvent, 2).details
    assert original == {"n": 1, "note": "Ünïcode ok"}
    tamper_with_audit(engine,
                      """UPDATE audit_event SET details = '{"n": 1, "note": "edited"}' WHERE seq = 2""")
    assert _verify(session_factory).problem.startswith("audit event #2 ")


def test_deleted_event_is_named(engine, session_factory) -> None:
    _append(session_factory, 5)
    tamper_with_audit(engine, "DELETE FROM audit_event WHERE seq = 4")
    result = _verify(session_factory)
    assert result.problem == "audit event #4 is missing (deleted)"


def test_deleted_tail_is_caught(engine, session_factory) -> None:
    _append(session_factory, 5)
    tamper_with_audit(engine, "DELETE FROM audit_event WHERE seq = 5")
    result = _verify(session_factory)
    assert result.problem.startswith("audit event #5 is missing")


def test_reordered_events_are_named(engine, session_factory) -> None:
    _append(session_factory, 5)
    # Swap events 2 and 3 by renumbering them (through a free number, as the key is unique).
    tamper_with_audit(
        engine,
        "UPDATE audit_event SET seq = 1000 WHERE seq = 2",
        "UPDATE audit_event SET seq = 2 WHERE seq = 3",
        "UPDATE audit_event SET seq = 3 WHERE seq = 1000",
    )
    result = _verify(session_factory)
    assert result.problem.startswith("audit event #2 (test.event_2 at")
    assert "does not follow event #1" in result.problem


def test_database_refuses_update_and_delete(engine, session_factory) -> None:
    _append(session_factory, 2)
    for statement in ("UPDATE audit_event SET actor = 'x' WHERE seq = 1",
                      "DELETE FROM audit_event WHERE seq = 2"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine.begin() as conn:
            conn.exec_driver_sql(statement)
    assert _verify(session_factory).checked == 2


def test_concurrent_appenders_never_fork_the_chain(session_factory) -> None:
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            _append(session_factory, 10, start=offset)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i * 100,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    result = _verify(session_factory)
    assert result.ok, result.problem
    assert result.checked == 40


def test_rolled_back_event_leaves_no_trace(session_factory) -> None:
    _append(session_factory, 1)
    with pytest.raises(RuntimeError), transaction(session_factory) as session:
        audit.record(session, action="test.lost", actor="U", at=T0)
        raise RuntimeError
    _append(session_factory, 1, start=1)
    result = _verify(session_factory)
    assert result.ok and result.checked == 2


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_the_chain_head_is_locked_when_the_transaction_commits_only(session_factory) -> None:
    """A transaction that recorded an event and goes on to lock other rows does not hold the
    head meanwhile: holding it caused deadlocks with transactions that lock rows, then record
    (PostgreSQL; on SQLite a writing transaction holds the whole database anyway)."""
    with transaction(session_factory) as first:
        audit.record(first, action="test.first", actor="U", at=T0)
        with transaction(session_factory) as second:  # another connection, committed meanwhile
            second.connection().exec_driver_sql("SET LOCAL lock_timeout = '5s'")
            audit.record(second, action="test.second", actor="U", at=T0)
    with session_factory() as session:
        actions = session.exec(select(AuditEvent.action).order_by(AuditEvent.seq)).all()
    assert actions == ["test.second", "test.first"]  # chained in the order they committed
    assert _verify(session_factory).ok
