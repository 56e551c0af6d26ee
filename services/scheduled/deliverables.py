"""What a finished request leaves behind: the subject's export archive (access requests) and
the compliance record (every finished request).

`finish` runs once per closed request (the deliverables job claims it by key): it seals a
completed access request's staged documents into the archive, discards the staged data of an
access request that was rejected or canceled midway, then makes and stores the record. Each is
audited, and the Slack side is told through the notice outbox (`record.made`, `export.ready`), so
a failed post is retried and never lost.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cryptography.fernet import MultiFernet
from sqlmodel import select

from services import audit, notify
from services.errors import InvalidRequest
from services.export_store import ExportStore
from services.exports import discard_staging, package, subject_readme
from services.labels import People
from services.records import RECORD_ACTOR, ComplianceRecord, ensure_record
from services.requests import find_request
from services.scheduled import dispatch
from services.vocabulary import RequestStatus, RequestType, format_reference
from storage.db import SessionFactory, transaction
from storage.models import DsrRequest, RequestSystem


def unrecorded(sessions: SessionFactory, limit: int = 20) -> list[int]:
    """Closed requests whose record is not made yet, oldest first."""
    with sessions() as session:
        return list(session.exec(select(DsrRequest.id).where(
            DsrRequest.recorded_at.is_(None), DsrRequest.closed_at.is_not(None))
            .order_by(DsrRequest.closed_at).limit(limit)))


def make(sessions: SessionFactory, request_id: int, *, exports: ExportStore, keys: MultiFernet,
         now: datetime, owner: str, lease: timedelta = dispatch.LEASE,
         people: People | None = None) -> bool:
    """`finish` under the request's send-once key, so that replicas and `/dsr report` never
    package or record a request twice. False if it was done (or is being done) elsewhere, or
    failed (logged; the next run retries)."""
    return dispatch.once(sessions, f"record:{format_reference(request_id)}", owner=owner, now=now,
                         request_id=request_id, lease=lease,
                         send=lambda: finish(sessions, request_id, exports=exports, keys=keys, now=now,
                                             people=people))


def record_of(sessions: SessionFactory, ref: str, *, exports: ExportStore, keys: MultiFernet,
              now: datetime, owner: str, people: People | None = None) -> ComplianceRecord:
    """The record of a finished request, as stored at closing; made now if the job has not got
    to it yet. NotFound / InvalidRequest for an unknown or open request."""
    with sessions() as session:
        request = find_request(session, ref)
        request_id, pending = request.id, request.closed_at is not None and request.recorded_at is None
    if pending and not make(sessions, request_id, exports=exports, keys=keys, now=now, owner=owner,
                            people=people):
        raise InvalidRequest(f"The record of {format_reference(request_id)} is being made right now: "
                             "try again in a minute.")
    with transaction(sessions) as session:
        return ensure_record(session, request_id, exports=exports, now=now, people=people)


def finish(sessions: SessionFactory, request_id: int, *, exports: ExportStore, keys: MultiFernet,
           now: datetime, people: People | None = None) -> None:
    with sessions() as session:
        request = session.get(DsrRequest, request_id)
        if request.recorded_at is not None:
            return
        reference, systems = request.reference, sorted(session.exec(
            select(RequestSystem.system).where(RequestSystem.request_id == request_id)))
        is_access = request.type == RequestType.ACCESS
        completed = request.status == RequestStatus.COMPLETED
        packaged = request.export_packaged_at is not None
    made = None
    if is_access and completed and not packaged:
        made = package(exports, reference, keys, at=now, readme=subject_readme(reference, systems, now))
    elif is_access and not completed:
        # An unfinished request leaves no half export. Deleted before the audit event commits
        # (the store writes in transactions of its own): a crash in between leaves nothing staged.
        discarded = discard_staging(exports, reference)
        if discarded is not None:
            with transaction(sessions) as session:
                audit.record(session, action="export.discarded", actor=RECORD_ACTOR, at=now,
                             request_id=request_id, details={"files": discarded})
    with transaction(sessions) as session:  # the archive's mark and the record commit together
        request = session.get(DsrRequest, request_id)
        if made is not None:
            request.export_packaged_at, request.export_bytes = now, made.bytes
            request.export_sha256 = made.sha256
            session.add(request)
            audit.record(session, action="export.packaged", actor=RECORD_ACTOR, at=now,
                         request_id=request_id, details={"files": len(made.files),
                                                         "bytes": made.bytes, "sha256": made.sha256})
            notify.enqueue(session, request_id, "export.ready",
                           f"Export packaged: {len(made.files)} file(s), {made.bytes:,} bytes, "
                           "encrypted at rest; sent to the requester by direct message.", now)
        record = ensure_record(session, request_id, exports=exports, now=now, people=people)
        notify.enqueue(session, request_id, "record.made",
                       f"Compliance record made ({record.outcome}); the trail's hash at closing is "
                       f"`{record.anchor.hash[:16]}…` (event #{record.anchor.seq}).", now)

