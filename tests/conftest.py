"""Shared fixtures. Storage and service tests run on SQLite and on PostgreSQL.

PostgreSQL comes from DSR_TEST_POSTGRES_URL (a role allowed to CREATE DATABASE). Each test gets
a database of its own, copied from a template migrated once per run, so tests never share data.
Without the variable the PostgreSQL variants are skipped with a reason; under CI (CI=true or
DSR_REQUIRE_POSTGRES=1) a missing variable is an error instead.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from services.export_store import DatabaseStore, ExportStore, FolderStore
from storage import migrate
from storage.db import SessionFactory, make_engine, make_session_factory

POSTGRES_URL = os.environ.get("DSR_TEST_POSTGRES_URL", "")
POSTGRES_REQUIRED = os.environ.get("CI") == "true" or os.environ.get("DSR_REQUIRE_POSTGRES") == "1"
SKIP_REASON = "DSR_TEST_POSTGRES_URL is not set: PostgreSQL variant not run"

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


HERMETIC_KEEP = {"DSR_TEST_POSTGRES_URL", "DSR_REQUIRE_POSTGRES"}


def child_env(*dropped: str) -> dict[str, str]:
    """This environment for a process a test starts, without the settings named by `dropped`
    prefixes (the test sets its own), but with the run's export key."""
    return {k: v for k, v in os.environ.items() if not k.startswith(dropped) or k == "DSR_EXPORT_KEY"}


def pytest_sessionstart(session: pytest.Session) -> None:
    # Tests never see a developer's real credentials or database: only what they set.
    for name in list(os.environ):
        if name.startswith(("SLACK_", "GENESYS_", "ZENDESK_", "DSR_", "DATABASE_URL")) \
                and name not in HERMETIC_KEEP:
            del os.environ[name]
    # One export key for the run (processes started by tests inherit it).
    os.environ["DSR_EXPORT_KEY"] = Fernet.generate_key().decode()
    if POSTGRES_REQUIRED and not POSTGRES_URL:
        raise pytest.UsageError(
            "CI needs PostgreSQL: set DSR_TEST_POSTGRES_URL (see .ci/run)."
        )


class _Postgres:
    """Creates and drops databases on the test server."""

    def __init__(self, url: str) -> None:
        self.url = sa.make_url(url)
        self.admin = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")

    def url_for(self, name: str) -> str:
        return self.url.set(database=name).render_as_string(hide_password=False)

    def create(self, name: str, template: str | None = None) -> str:
        suffix = f' TEMPLATE "{template}"' if template else ""
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"{suffix}')
        return self.url_for(name)

    def drop(self, name: str) -> None:
        for attempt in range(10):
            try:
                with self.admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                return
            except sa.exc.DBAPIError:
                if attempt == 9:
                    raise
                time.sleep(0.5)  # a background worker (autovacuum) is still in it


@pytest.fixture(scope="session")
def postgres() -> Iterator[_Postgres]:
    if not POSTGRES_URL:
        pytest.skip(SKIP_REASON)
    server = _Postgres(POSTGRES_URL)
    yield server
    server.admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "migrated.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_template(postgres: _Postgres) -> Iterator[str]:
    name = f"dsr_tpl_{uuid.uuid4().hex[:10]}"
    engine = make_engine(postgres.create(name))
    migrate.upgrade(engine)
    engine.dispose()
    yield name
    postgres.drop(name)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a fresh, migrated database of the parametrized backend."""
    with fresh_database(backend, tmp_path, request) as url:
        yield url


@contextmanager
def fresh_database(backend: str, folder: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, migrated database of `backend` (SQLite: a file in `folder`), dropped after."""
    if backend == "sqlite":
        target = folder / "dsr.sqlite3"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), target)
        yield f"sqlite:///{target}"
        return
    postgres: _Postgres = request.getfixturevalue("postgres")
    name = f"dsr_t_{uuid.uuid4().hex[:12]}"
    url = postgres.create(name, template=request.getfixturevalue("postgres_template"))
    try:
        yield url
    finally:
        postgres.drop(name)


@pytest.fixture
def empty_database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of an empty database (no migrations) of the parametrized backend."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    postgres: _Postgres = request.getfixturevalue("postgres")
    name = f"dsr_e_{uuid.uuid4().hex[:12]}"
    yield postgres.create(name)
    postgres.drop(name)


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine: sa.Engine) -> SessionFactory:
    return make_session_factory(engine)


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 3, 2, 9, 30, tzinfo=UTC))


STORES = ["folder", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=STORES)
def export_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ExportStore]:
    """Each export store: a local folder, and the database on SQLite and on PostgreSQL."""
    if request.param == "folder":
        yield FolderStore(tmp_path / "exports")
        return
    with fresh_database(request.param, tmp_path, request) as url:
        engine = make_engine(url)
        yield DatabaseStore(make_session_factory(engine))
        engine.dispose()
