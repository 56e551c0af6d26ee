"""Retention: exported data is deleted, and closed requests' subject identifiers are reduced to
their masked form, once their periods have passed; each is recorded in the audit trail."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, select

from services import audit
from services.export_store import ExportStore
from services.exports import export_folder
from services.subjects import Identifier, mask
from services.vocabulary import RequestType, format_reference
from storage.db import SessionFactory, transaction
from storage.models import AuditEvent, DsrRequest, RequestSystem, SubjectIdentifier

ACTOR = "dsr-desk:retention"


def purge_exports(sessions: SessionFactory, exports: ExportStore, *, now: datetime, days: int,
                  batch: int = 200) -> list[int]:
    """Delete the exports of access requests closed more than `days` ago from the export store;
    returns the requests that had data deleted."""
    cutoff = now - timedelta(days=days)
    with sessions() as session:
        due = list(session.exec(select(DsrRequest.id).where(
            DsrRequest.closed_at < cutoff, DsrRequest.exports_purged_at.is_(None),
            DsrRequest.recorded_at.is_not(None),  # the record keeps the manifest's hashes first
            DsrRequest.type == RequestType.ACCESS).order_by(DsrRequest.id).limit(batch)))
    purged: list[int] = []
    for request_id in due:
        folder = export_folder(format_reference(request_id))
        files = list(exports.list(folder))  # after packaging: the archive and its manifest
        size = sum(exports.size(path) for path in files)
        # Deleted before the mark commits (the store writes in transactions of its own): if the
        # mark fails, the next run retries; deleting again is harmless.
        exports.delete(folder)
        with transaction(sessions) as session:
            request = session.get(DsrRequest, request_id)
            if request.exports_purged_at is not None:
                continue  # another replica was quicker
            request.exports_purged_at = now
            session.add(request)
            if files:
                audit.record(session, action="export.purged", actor=ACTOR, at=now,
                             request_id=request_id,
                             details={"files": len(files), "bytes": size, "retention_days": days})
                purged.append(request_id)
    return purged


def reduce_identifiers(sessions: SessionFactory, *, now: datetime, days: int,
                       batch: int = 200) -> int:
    """Replace the identifiers (and confirmed records) of requests closed more than `days` ago
    with their masked form; returns how many requests were reduced."""
    cutoff = now - timedelta(days=days)
    with sessions() as session:
        due = list(session.exec(select(DsrRequest.id).where(
            DsrRequest.closed_at < cutoff, DsrRequest.identifiers_reduced_at.is_(None),
            DsrRequest.recorded_at.is_not(None))
            .order_by(DsrRequest.id).limit(batch)))
    reduced = 0
    for request_id in due:
        with transaction(sessions) as session:
            updated = session.execute(
                sa.update(DsrRequest)
                .where(DsrRequest.id == request_id, DsrRequest.identifiers_reduced_at.is_(None))
                .values(identifiers_reduced_at=now).execution_options(synchronize_session=False))
            if updated.rowcount != 1:
                continue
            rows = list(session.exec(select(SubjectIdentifier)
                                     .where(SubjectIdentifier.request_id == request_id)))
            for row in rows:
                row.value = mask(Identifier(row.kind, row.value, row.system))
                session.add(row)
            for covered in session.exec(select(RequestSystem)
                                        .where(RequestSystem.request_id == request_id)):
                if covered.confirmed_records:
                    covered.confirmed_records = [{"record_id": r["record_id"]}
                                                 for r in covered.confirmed_records]
                    session.add(covered)
            audit.record(session, action="identifiers.reduced", actor=ACTOR, at=now,
                         request_id=request_id,
                         details={"identifiers": len(rows), "retention_days": days})
            reduced += 1
    return reduced


def delivered_files(session: Session, request_id: int) -> list[str]:
    """The Slack file ids the request's export was delivered as (from the audit trail)."""
    events = session.exec(select(AuditEvent.details).where(AuditEvent.request_id == request_id,
                                                          AuditEvent.action == "export.delivered"))
    return [details["slack_file"] for details in events if details.get("slack_file")]
