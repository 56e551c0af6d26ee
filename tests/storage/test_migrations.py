from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel, select

import storage.models  # noqa: F401
from storage import migrate
from storage.db import make_engine, make_session_factory, transaction
from storage.models import AuditChainHead, Jurisdiction

TABLES = {
    "plan_item", "match_candidate",
    "alembic_version", "jurisdiction", "dsr_request", "subject_identifier", "request_system",
    "approval", "execution_step", "step_attempt", "dispatch", "notice", "audit_event", "audit_chain_head",
    "slack_event", "compliance_record", "vendor_budget", "export_file", "export_chunk", "inbox",
    "data_system",
}


@pytest.fixture
def empty_engine(empty_database_url):
    engine = make_engine(empty_database_url)
    yield engine
    engine.dispose()


def test_upgrade_creates_everything_on_an_empty_database(empty_engine) -> None:
    assert sa.inspect(empty_engine).get_table_names() == []
    assert not migrate.is_current(empty_engine)

    migrate.upgrade(empty_engine)

    assert set(sa.inspect(empty_engine).get_table_names()) == TABLES
    assert migrate.is_current(empty_engine)
    with make_session_factory(empty_engine)() as session:
        codes = {j.code for j in session.exec(select(Jurisdiction))}
        head = session.get(AuditChainHead, 1)
    assert {"GDPR", "UK_GDPR", "CCPA", "LGPD", "US_VA", "US_UT"} <= codes
    assert (head.last_seq, head.last_hash) == (0, "0" * 64)


def test_upgrade_twice_is_harmless_and_downgrade_round_trips(empty_engine) -> None:
    migrate.upgrade(empty_engine)
    migrate.upgrade(empty_engine)
    from alembic import command

    config = migrate.alembic_config(empty_engine.url.render_as_string(hide_password=False))
    with empty_engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert set(sa.inspect(empty_engine).get_table_names()) == {"alembic_version"}
    migrate.upgrade(empty_engine)
    assert set(sa.inspect(empty_engine).get_table_names()) == TABLES


# SQLite's reflection cannot read expression indexes; test_open_deadline_index checks that one.
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
def test_models_and_migrations_agree(engine) -> None:
    """A model changed without a migration shows up here as a difference."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, SQLModel.metadata)
    assert differences == []


def test_sqlite_runs_in_wal_mode_with_foreign_keys(sqlite_template) -> None:
    engine = make_engine(f"sqlite:///{sqlite_template}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_foreign_keys_are_enforced(session_factory) -> None:
    from storage.models import SubjectIdentifier

    with pytest.raises(sa.exc.IntegrityError), transaction(session_factory) as session:
        session.add(SubjectIdentifier(request_id=999, kind="email", purpose="identifies", value="x"))


def test_times_come_back_aware_utc(session_factory) -> None:
    from services import audit

    local = datetime(2026, 3, 2, 10, 30, 0, 123456).astimezone()  # the machine's zone
    with transaction(session_factory) as session:
        audit.record(session, action="test", actor="U", at=local)
    with session_factory() as session:
        stored = session.get(storage.models.AuditEvent, 1).occurred_at
    assert stored.tzinfo is UTC
    assert stored == local
    with session_factory() as session:
        assert audit.verify(session).ok  # hashed in UTC, as stored


def test_naive_times_are_refused(session_factory) -> None:
    from storage.models import DsrRequest

    with pytest.raises(sa.exc.StatementError, match="naive datetime"), \
            transaction(session_factory) as session:
        session.add(DsrRequest(type="access", status="received", jurisdiction_code="GDPR",
                               received_at=datetime(2026, 3, 2), due_on=datetime(2026, 4, 2).date(),
                               requester_slack_id="U"))
