"""Send-once: a message's key is claimed in the database before it is sent.

`once(sessions, key, ...)` runs `send` only if no replica has sent (or is sending) the same key.
A failed send releases the claim, so the next run tries again; a claim left by a process that
died mid-send expires after `lease` and is taken over. So a message is never lost and is sent
twice only if a process dies between Slack accepting it and the mark being written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from storage.db import SessionFactory, transaction
from storage.models import Dispatch

log = logging.getLogger(__name__)
LEASE = timedelta(minutes=10)


def once(sessions: SessionFactory, key: str, send: Callable[[], object], *, owner: str,
         now: datetime, request_id: int | None = None, lease: timedelta = LEASE) -> bool:
    """True if this call sent the message."""
    if not _claim(sessions, key, owner, now, request_id, lease):
        return False
    try:
        send()
    except Exception as exc:  # noqa: BLE001 - released so that a later run retries; no data logged
        log.error("could not send %s: %s", key.split(":", 1)[0], type(exc).__name__)
        with transaction(sessions) as session:
            session.execute(sa.delete(Dispatch).where(Dispatch.key == key,
                                                      Dispatch.claimed_by == owner))
        return False
    with transaction(sessions) as session:  # sent is sent, even if our claim was taken over
        session.execute(sa.update(Dispatch).where(Dispatch.key == key, Dispatch.sent_at.is_(None))
                        .values(sent_at=now).execution_options(synchronize_session=False))
    return True


def _claim(sessions: SessionFactory, key: str, owner: str, now: datetime,
           request_id: int | None, lease: timedelta) -> bool:
    with transaction(sessions) as session:
        dialect = session.get_bind().dialect.name
        insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(Dispatch)
        inserted = session.execute(
            insert.values(key=key, request_id=request_id, claimed_by=owner, claimed_at=now)
            .on_conflict_do_nothing(index_elements=["key"]).returning(Dispatch.id)).first()
        if inserted is not None:
            return True
        taken_over = session.execute(
            sa.update(Dispatch)
            .where(Dispatch.key == key, Dispatch.sent_at.is_(None), Dispatch.claimed_at < now - lease)
            .values(claimed_by=owner, claimed_at=now).execution_options(synchronize_session=False))
        return taken_over.rowcount == 1

