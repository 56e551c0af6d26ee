"""Deliverables in Slack: the compliance record in the request's thread, the export archive in
a direct message to the person who may hand it to the subject (never in a channel).

The archive is decrypted on the fly and streamed to Slack's upload URL (files.getUploadURLExternal,
then files.completeUploadExternal, as files_upload_v2 does, but without reading the whole file
into memory); its SHA-256 is checked against the one recorded at packaging before it is shared.
"""

from __future__ import annotations

from datetime import date, timedelta

import httpx
from slack_sdk import WebClient

from bot.settings import Settings
from bot.wiring import export_store
from services import audit
from services.clock import Clock
from services.errors import InvalidRequest
from services.exports import archive_chunks, archive_path
from services.labels import People
from services.policy import Policy
from services.records import ComplianceRecord, record_json
from services.requests import find_request
from services.scheduled.deliverables import record_of
from storage.db import SessionFactory, transaction
from storage.models import DsrRequest

UPLOAD_TIMEOUT = httpx.Timeout(30.0, write=300.0)


class Deliveries:
    def __init__(self, client: WebClient, sessions: SessionFactory, settings: Settings,
                 clock: Clock, policy: Policy, owner: str, people: People | None = None) -> None:
        self.client, self.clock, self.policy, self.owner = client, clock, policy, owner
        self.people = people
        self.sessions = sessions
        self.settings = settings
        self.exports = export_store(settings, sessions)  # by default the database: any replica sends

    def record(self, reference: str) -> ComplianceRecord:
        return record_of(self.sessions, reference, exports=self.exports,
                         keys=self.settings.export_keys, now=self.clock.now(), owner=self.owner,
                         people=self.people)

    def post_record(self, request: DsrRequest) -> None:
        """The record as PDF and JSON in the request's thread (masked: fit for the channel)."""
        if request.channel_id and request.thread_ts:
            self._upload_record(self.record(request.reference), request.channel_id,
                                thread_ts=request.thread_ts)

    def send_record(self, reference: str, user: str) -> None:
        self.policy.require(self.policy.is_requester(user), "read compliance records")
        channel = self.client.conversations_open(users=user)["channel"]["id"]
        self._upload_record(self.record(reference), channel)

    def _upload_record(self, record: ComplianceRecord, channel: str,
                       thread_ts: str | None = None) -> None:
        # Imported here: fpdf2 and matplotlib (its fonts) are 0.6 s of start-up that the
        # processes answering Slack never need.
        from services.record_pdf import render_pdf

        ref = record.reference
        self.client.files_upload_v2(
            channel=channel, thread_ts=thread_ts,
            initial_comment=f":page_facing_up: Compliance record of {ref} ({record.outcome}), for "
                            "auditors: `dsr-desk audit verify --record FILE.json` checks it against "
                            "the audit trail.",
            file_uploads=[
                {"content": render_pdf(record), "filename": f"{ref}-compliance-record.pdf",
                 "title": f"{ref} compliance record"},
                {"content": record_json(record), "filename": f"{ref}-compliance-record.json",
                 "title": f"{ref} compliance record (JSON)"},
            ])

    def export_until(self, request: DsrRequest) -> date | None:
        """The day the retention job deletes the export; None if there is none to send."""
        if request.export_packaged_at is None or request.exports_purged_at is not None:
            return None
        closed = request.closed_at or request.export_packaged_at
        return (closed + timedelta(days=self.settings.export_retention_days)).astimezone(
            self.settings.zone).date()

    def send_export(self, reference: str, user: str, *, actor: str | None = None) -> str:
        """Stream the decrypted archive into `user`'s direct messages; returns the file id."""
        with self.sessions() as session:
            request = find_request(session, reference)
        self.policy.require(user == request.requester_slack_id or self.policy.is_manager(user),
                            "receive this export (only its requester and managers may)")
        until = self.export_until(request)
        if until is None:
            raise InvalidRequest(f"{request.reference} has no export to send (none was made, or "
                                 "retention deleted it).")
        ref = request.reference
        name = f"{ref}-export.zip"
        upload = self.client.files_getUploadURLExternal(filename=name, length=request.export_bytes)
        chunks = archive_chunks(self.exports, archive_path(ref), self.settings.export_keys,
                                sha256=request.export_sha256)
        with httpx.Client(timeout=UPLOAD_TIMEOUT) as http:
            http.post(upload["upload_url"], content=chunks,
                      headers={"Content-Type": "application/zip",
                               "Content-Length": str(request.export_bytes)}).raise_for_status()
        channel = self.client.conversations_open(users=user)["channel"]["id"]
        marker = " (simulation: stand-in data)" if request.simulation else ""
        self.client.files_completeUploadExternal(
            files=[{"id": upload["file_id"], "title": f"{ref} personal data export{marker}"}],
            channel_id=channel,
            initial_comment=(
                f":package: The export of {ref}{marker}: a zip with each system's data as JSON, a "
                "README for the subject and a manifest of SHA-256 hashes. Check it, then send it "
                "to the subject by a secure route. DSR Desk deletes its copy and this file on "
                f"{until:%d %b %Y}; until then `/dsr show {ref}` sends it again."))
        with transaction(self.sessions) as session:
            audit.record(session, action="export.delivered", actor=actor or user,
                         at=self.clock.now(), request_id=request.id,
                         details={"to": user, "slack_file": upload["file_id"],
                                  "sha256": request.export_sha256})
        return upload["file_id"]

