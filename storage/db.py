"""Engines and sessions for SQLite (embedded default) and PostgreSQL (production, replicas)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

SessionFactory = sessionmaker[Session]
WRITE_OPTION = "dsr_writes"
# A connection with this option runs each statement as its own transaction (SQLite: no BEGIN, so
# the write lock is held inside that one statement, never while Python runs between statements).
SINGLE_STATEMENT_OPTION = "dsr_single_statements"


def sqlite_file(url: str | sa.URL) -> Path | None:
    """The file of a SQLite database URL; None for other databases and in-memory ones."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def make_engine(url: str, **kwargs: object) -> sa.Engine:
    """An engine for `url`; SQLite gets WAL, foreign keys and write-locking transactions."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True, **kwargs)

    if (path := sqlite_file(parsed)) is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30}, **kwargs)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # Take transaction control from pysqlite so that BEGIN below is ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        # A unit of work (`transaction()`) takes the write lock up front with IMMEDIATE, so a
        # transaction that reads, then writes, never fails half-way with "database is locked".
        # Plain reads begin DEFERRED and never wait for writers (WAL).
        options = connection.get_execution_options()
        if options.get(SINGLE_STATEMENT_OPTION):
            return
        connection.exec_driver_sql("BEGIN IMMEDIATE" if options.get(WRITE_OPTION) else "BEGIN")

    return engine


def make_session_factory(engine: sa.Engine) -> SessionFactory:
    return sessionmaker(engine, class_=Session, expire_on_commit=False)


@contextmanager
def single_statements(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection whose statements each commit on their own (see SINGLE_STATEMENT_OPTION)."""
    with engine.connect() as connection:
        connection.execution_options(**{SINGLE_STATEMENT_OPTION: True})
        yield connection
        connection.commit()  # PostgreSQL: the one statement's transaction; SQLite: nothing open


@contextmanager
def transaction(factory: SessionFactory) -> Iterator[Session]:
    """One unit of work: commits when the block ends, rolls back if it raises."""
    with factory() as session, session.begin():
        session.connection(execution_options={WRITE_OPTION: True})
        yield session
