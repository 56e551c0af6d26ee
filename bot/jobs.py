"""The scheduled jobs of one process, each run once per call: by APScheduler (`bot.scheduler`)
or by an operator (`dsr-desk jobs run-once <job>`).

Every job claims its work in the database (steps by lease, notices by claim, messages by key),
so any number of replicas can run all of them: nothing runs or is posted twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, time

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.settings import Settings
from bot.wiring import export_store
from handlers.views.common import as_dicts
from handlers.views.reports import digest_blocks, digest_text, escalation_blocks
from services import audit, audit_anchor, notify
from services.clock import Clock
from services.engine import Worker
from services.labels import People
from services.notify import Notifier
from services.scheduled import deliverables, digest, dispatch, reminders, retention
from storage.db import SessionFactory, transaction

log = logging.getLogger("dsr_desk.jobs")
NOTICE_LEASE_SECONDS = 300.0
MAX_ROUNDS = 50  # execute: claim rounds per run, so one run cannot starve the other jobs


@dataclass(frozen=True)
class JobSpec:
    name: str
    every_seconds: float
    what: str


SPECS = {spec.name: spec for spec in (
    JobSpec("execute", 2, "run due steps and poll vendor jobs (also right after an approval)"),
    JobSpec("status_updates", 5, "post progress in request threads, batched; refresh their messages"),
    JobSpec("reminders", 900, "deadline reminders (DSR_REMINDER_DAYS) and acknowledgement reminders"),
    JobSpec("escalation", 300, "overdue requests to the managers' channel, daily at DSR_DIGEST_TIME"),
    JobSpec("digest", 300, "the managers' daily digest at DSR_DIGEST_TIME"),
    JobSpec("deliverables", 10, "seal finished access requests' exports; make compliance records"),
    JobSpec("retention", 3600, "delete expired exports; reduce old closed requests' identifiers"),
    # Hourly: events cut off the end since the last anchor go unseen, so this bounds what can be
    # cut to about an hour's events, for 24 short lines a day. Not claimed like the digest: each
    # replica anchors to its own file, and a duplicate line is harmless.
    JobSpec("audit_anchor", 3600, "append the audit chain's head to DSR_AUDIT_ANCHOR_FILE"),
)}


class Jobs:
    def __init__(self, *, settings: Settings, sessions: SessionFactory, worker: Worker,
                 notifier: Notifier, client: WebClient | None, clock: Clock,
                 people: People | None = None) -> None:
        self.settings = settings
        self.sessions = sessions
        self.exports = export_store(settings, sessions)
        self.worker = worker
        self.notifier = notifier
        self.client = client
        self.clock = clock
        self.people = people  # names the people in compliance records
        # Leases are wall-clock spans: on a rehearsal clock running N times faster they last
        # N times longer in its time, so a slow post is not taken for a dead process.
        speed = getattr(clock, "speed", 1.0)
        self.lease = dispatch.LEASE * speed
        self.notice_lease_seconds = NOTICE_LEASE_SECONDS * speed

    @property
    def owner(self) -> str:
        return self.worker.id

    def run(self, name: str) -> str:
        """Run job `name` once; returns what it did, in words."""
        job: Callable[[], str] = getattr(self, name)
        return job()

    def execute(self) -> str:
        ran = 0
        for _ in range(MAX_ROUNDS):
            claimed = self.worker.run_once()
            ran += claimed
            if not claimed:
                break
        posted = self.status_updates() if ran else ""
        return f"ran {ran} step(s)" + (f"; {posted}" if posted else "")

    def status_updates(self) -> str:
        posted = notify.deliver(self.sessions, self.notifier, owner=self.owner,
                                now=self.clock.now(), lease_seconds=self.notice_lease_seconds)
        return f"posted {posted} update(s)"

    def reminders(self) -> str:
        now = self.clock.now()
        sent = reminders.sweep(
            self.sessions, lambda event: self.notifier.publish([event]),
            today=now.astimezone(self.settings.zone).date(),
            offsets=self.settings.reminder_offsets, ack_days=self.settings.ack_reminder_days,
            owner=self.owner, now=now, lease=self.lease)
        return f"sent {sent} reminder(s)"

    def escalation(self) -> str:
        now = self.clock.now()
        channel, day = self.settings.digest_channel, self._report_day()
        if not (channel and day and self.client):
            return self._not_due("escalation", channel)
        today = now.astimezone(self.settings.zone).date()
        with self.sessions() as session:
            count, shown = reminders.overdue(session, today=today)
        if not count:
            return "nothing overdue"
        blocks = as_dicts(escalation_blocks(count, shown, sorted(self.settings.role_ids("managers"))))
        sent = dispatch.once(
            self.sessions, f"escalation:{channel}:{day}", owner=self.owner, now=now, lease=self.lease,
            send=lambda: self.client.chat_postMessage(
                channel=channel, blocks=blocks, text=f"{count} DSR request(s) past the deadline"))
        return f"escalated {count} overdue request(s)" if sent else "escalation already posted today"

    def digest(self) -> str:
        now = self.clock.now()
        channel, day = self.settings.digest_channel, self._report_day()
        if not (channel and day and self.client):
            return self._not_due("digest", channel)
        sent = dispatch.once(self.sessions, f"digest:{channel}:{day}", owner=self.owner, now=now,
                             lease=self.lease, send=lambda: self._post_digest(channel))
        return f"posted the digest for {day}" if sent else "digest already posted today"

    def deliverables(self) -> str:
        now, made, keys = self.clock.now(), 0, self.settings.export_keys
        for request_id in deliverables.unrecorded(self.sessions):
            made += deliverables.make(self.sessions, request_id, exports=self.exports,
                                      keys=keys, now=now, owner=self.owner, lease=self.lease,
                                      people=self.people)
        posted = self.status_updates() if made else ""
        return f"made {made} record(s)" + (f"; {posted}" if posted else "")

    def retention(self) -> str:
        now = self.clock.now()
        purged = retention.purge_exports(self.sessions, self.exports, now=now,
                                         days=self.settings.export_retention_days)
        removed = sum(self._delete_slack_copies(request_id) for request_id in purged)
        reduced = retention.reduce_identifiers(self.sessions, now=now,
                                               days=self.settings.identifier_retention_days)
        return (f"purged {len(purged)} export(s), deleted {removed} file(s) in Slack; reduced {reduced} "
                "request(s)' identifiers")

    def audit_anchor(self) -> str:
        with self.sessions() as session:
            anchor = audit_anchor.append(session, self.settings.anchor_file, now=self.clock.now())
        return f"anchored event #{anchor.seq}" if anchor else "nothing to anchor: the audit trail is empty"

    def _delete_slack_copies(self, request_id: int) -> int:
        """The export files DMed to people go when DSR Desk's own copy goes (audited)."""
        if self.client is None:
            return 0
        with self.sessions() as session:
            files = retention.delivered_files(session, request_id)
        deleted = []
        for file_id in files:
            try:
                self.client.files_delete(file=file_id)
                deleted.append(file_id)
            except SlackApiError as exc:
                if exc.response.get("error") == "file_not_found":  # deleted by its recipient
                    deleted.append(file_id)
                else:
                    log.error("could not delete an export's Slack copy: %s", exc.response.get("error"))
        if files:
            with transaction(self.sessions) as session:
                audit.record(session, action="export.slack_copies_deleted", actor=retention.ACTOR,
                             at=self.clock.now(), request_id=request_id,
                             details={"deleted": deleted, "kept": sorted(set(files) - set(deleted))})
        return len(deleted)

    def _report_day(self) -> date | None:
        """Today in the digest's zone, once DSR_DIGEST_TIME has passed there."""
        return digest.local_day_due(self.clock.now(), self.settings.digest_zone,
                                    time.fromisoformat(self.settings.digest_time))

    def _not_due(self, what: str, channel: str) -> str:
        if not channel:
            return f"no {what}: DSR_DIGEST_CHANNEL is not set"
        if not self.client:
            return f"no {what}: SLACK_BOT_TOKEN is not set"
        return f"no {what} yet: it is due at {self.settings.digest_time} ({self.settings.digest_zone})"

    def _post_digest(self, channel: str) -> None:
        from bot.chart import digest_chart

        with self.sessions() as session:
            figures = digest.build(session, now=self.clock.now(), zone=self.settings.digest_zone)
        self.client.chat_postMessage(channel=channel, text=digest_text(figures),
                                     blocks=as_dicts(digest_blocks(figures)))
        try:  # the digest is posted: a failed chart must not make the job post it again
            self.client.files_upload_v2(
                channel=channel, content=digest_chart(figures), filename=f"dsr-digest-{figures.day}.png",
                title="Backlog, opened and completed over 30 days; deadlines of the next 14")
        except Exception as exc:  # noqa: BLE001 - logged; the figures are in the message
            log.error("could not upload the digest chart: %s", type(exc).__name__)
