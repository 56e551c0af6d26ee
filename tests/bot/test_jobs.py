"""The scheduled jobs as the bot runs them: through slack_sdk to the Slack Web API stand-in, with a
hand-moved clock. Reminders, escalation and the digest are posted once; progress is batched."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import UTC, date, datetime, timedelta

import pypdf
import pytest
from sqlmodel import select

from bot.app import Core, build_core
from bot.settings import Settings
from bot.slack_standin import SlackStandIn
from services import engine as eng
from services import notify
from services.intake import confirm_records
from services.lifecycle import transition
from services.sandbox import server
from services.subjects import Identifier
from services.vocabulary import IdentifierKind, RequestStatus, RequestType
from storage.db import transaction
from storage.models import AuditEvent, DsrRequest, ExportChunk, ExportFile
from tests.conftest import ManualClock
from tests.factories import add_request
from tests.workflow import run_until_settled

S = RequestStatus
DIGEST = "C0MANAGERS"
APPROVALS = "C0APPROVALS"
T0 = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)  # 08:00 in Berlin, a Monday


@pytest.fixture
def slack():
    standin = SlackStandIn(bot_token="xoxb-jobs")
    running = server.start(standin.wsgi)
    standin.url = running.url
    yield standin
    running.stop()


@pytest.fixture
def jobs(database_url, tmp_path, slack):
    settings = Settings(
        _env_file=None, DATABASE_URL=database_url, DSR_DATA_DIR=str(tmp_path),
        SLACK_BOT_TOKEN="xoxb-jobs", SLACK_API_URL=f"{slack.url}/api/", DSR_REQUESTERS="U_REQ",
        DSR_APPROVERS="U_APP", DSR_MANAGERS="U_MGR S0LEADS", DSR_APPROVALS_CHANNEL=APPROVALS,
        DSR_DIGEST_CHANNEL=DIGEST, DSR_TIMEZONE="Europe/Berlin", DSR_DIGEST_TIME="09:00")
    core = build_core(settings, clock=ManualClock(T0))
    yield core.jobs
    core.registry.sandboxes.stop()


def filed(jobs, *statuses: RequestStatus, due_in: int | None = None, **overrides) -> DsrRequest:
    """A request with its approval message posted (as the app does), moved through `statuses`."""
    now = jobs.clock.now()
    posted = jobs.client.chat_postMessage(channel=APPROVALS, text="request")
    with transaction(jobs.sessions) as session:
        request = add_request(session, now, requester="U_REQ", **overrides)
        request.channel_id, request.thread_ts = APPROVALS, posted["ts"]
        if due_in is not None:
            request.due_on = now.date() + timedelta(days=due_in)
        session.add(request)
        session.flush()
        for status in statuses:
            transition(session, request, status, actor="U_APP", at=now)
        return request


def test_reminders_reach_the_thread_and_the_requester_once(jobs, slack) -> None:
    request = filed(jobs, S.PENDING_APPROVAL, due_in=7)
    filed(jobs, S.CANCELED, due_in=7)
    assert jobs.run("reminders") == "sent 1 reminder(s)"
    assert jobs.run("reminders") == "sent 0 reminder(s)"
    replies = slack.thread(APPROVALS, request.thread_ts)[1:]
    assert [m["text"] for m in replies] == [
        ":alarm_clock: DSR-000001 (access, GDPR) is due in 7 days, on Mon 09 Mar 2026. "
        "Status: pending approval. _(simulation)_"]
    assert [m["text"] for m in slack.messages("U_REQ")] == [replies[0]["text"]]
    # the request's message is re-rendered with its deadline
    assert "7 day(s) left" in json.dumps(slack.thread(APPROVALS, request.thread_ts)[0]["blocks"])
    assert "jane" not in json.dumps(slack.messages(APPROVALS)).lower()


def test_digest_once_a_day_after_its_local_time_with_a_chart(jobs, slack) -> None:
    done = filed(jobs, S.PENDING_APPROVAL, S.APPROVED, S.IN_PROGRESS, due_in=20)
    with transaction(jobs.sessions) as session:
        transition(session, session.get(DsrRequest, done.id), S.COMPLETED, actor="dsr-desk",
                   at=T0 + timedelta(minutes=30))
    filed(jobs, S.PENDING_APPROVAL, due_in=-2, type=RequestType.ERASURE)
    assert jobs.run("digest") == "no digest yet: it is due at 09:00 (Europe/Berlin)"
    jobs.clock.advance(hours=1, minutes=5)
    assert jobs.run("digest") == "posted the digest for 2026-03-02"
    assert jobs.run("digest") == "digest already posted today"
    message, chart_share = slack.messages(DIGEST)  # the digest, then its chart
    shown = json.dumps(message["blocks"])
    assert "DSR digest for Mon 02 Mar 2026" in shown
    assert "Open requests: 1*" in shown and "*Overdue:* 1" in shown
    assert "*Completed in the last 24 hours:* 1" in shown
    # The overdue pending request counts against the on-time share: 1 on time of 2.
    assert "1 completed" in shown and "50% within the deadline: 1 of 2" in shown
    [chart] = slack.uploaded_files()
    assert chart["channel_id"] == DIGEST and chart["bytes"].startswith(b"\x89PNG")
    assert chart_share["files"][0]["id"] == chart["id"]
    jobs.clock.advance(days=1)
    assert jobs.run("digest") == "posted the digest for 2026-03-03"
    assert len(slack.messages(DIGEST)) == 4


def test_overdue_requests_escalate_daily_to_the_managers(jobs, slack) -> None:
    filed(jobs, S.PENDING_APPROVAL, S.APPROVED, due_in=-3, type=RequestType.ERASURE)
    filed(jobs, S.PENDING_APPROVAL, due_in=4)
    jobs.clock.advance(hours=2)
    assert jobs.run("escalation") == "escalated 1 overdue request(s)"
    assert jobs.run("escalation") == "escalation already posted today"
    [message] = slack.messages(DIGEST)
    shown = json.dumps(message["blocks"])
    assert "1 request is past the legal deadline." in shown
    assert "<@U_MGR>" in shown and "<!subteam^S0LEADS>" in shown
    assert "*DSR-000001* \\u00b7 Erasure \\u00b7 GDPR \\u00b7 approved \\u00b7 overdue by *3 days*" in shown


def test_progress_is_posted_as_one_message_per_batch(jobs, slack) -> None:
    request = filed(jobs, S.PENDING_APPROVAL, S.APPROVED, S.IN_PROGRESS, due_in=20)
    with transaction(jobs.sessions) as session:
        for n in range(40):
            notify.enqueue(session, request.id, "step.done",
                           f"zendesk.delete_tickets page {n} done.", T0)
    assert jobs.run("status_updates") == "posted 40 update(s)"
    replies = slack.thread(APPROVALS, request.thread_ts)[1:]
    assert len(replies) == 1
    lines = replies[0]["text"].splitlines()
    assert len(lines) == 20 and lines[-1].startswith("… and 21 more updates")
    assert jobs.run("status_updates") == "posted 0 update(s)"


def stored(jobs, reference: str) -> bytes:
    """What the database holds of a request's export files (the default store)."""
    with jobs.sessions() as session:
        return b"".join(session.exec(select(ExportChunk.data).join(ExportFile).where(
            ExportFile.path.startswith(f"{reference}/"))))


def test_finished_access_request_delivers_its_export_and_record_then_retention(jobs, slack) -> None:
    request = filed(jobs, S.PENDING_APPROVAL, S.APPROVED, S.IN_PROGRESS, type=RequestType.ACCESS,
                    due_in=20)
    sink = jobs.worker.sinks(request, "zendesk")  # what the access steps write to
    sink.write("zendesk/users/5.json", {"user": {"id": 5, "name": "Jane Doe"}})
    sink.write("zendesk/tickets/7.json", {"ticket": {"id": 7, "subject": "Refund"}, "comments": []})
    assert stored(jobs, request.reference) and b"Jane" not in stored(jobs, request.reference)
    with transaction(jobs.sessions) as session:
        transition(session, session.get(DsrRequest, request.id), S.COMPLETED, actor="dsr-desk",
                   at=jobs.clock.now())

    assert jobs.run("deliverables") == "made 1 record(s); posted 2 update(s)"
    assert jobs.run("deliverables") == "made 0 record(s)"
    files = {f["name"]: f for f in slack.uploaded_files()}
    export = files[f"{request.reference}-export.zip"]
    assert export["channel_id"].startswith("D")
    assert "deletes its copy and this file on" in export["initial_comment"]
    with zipfile.ZipFile(io.BytesIO(export["bytes"])) as zipped:
        manifest = json.loads(zipped.read("manifest.json"))
        assert {f["name"] for f in manifest["files"]} == {"zendesk/users-001.json",
                                                          "zendesk/tickets-001.json"}
        for entry in manifest["files"]:
            data = zipped.read(entry["name"])
            assert (len(data), hashlib.sha256(data).hexdigest()) == (entry["bytes"], entry["sha256"])
        assert request.reference in zipped.read("README.txt").decode()
    pdf = files[f"{request.reference}-compliance-record.pdf"]
    record = json.loads(files[f"{request.reference}-compliance-record.json"]["bytes"])
    assert pdf["channel_id"] == APPROVALS and pdf["thread_ts"] == request.thread_ts
    assert record["export_archive_sha256"] == hashlib.sha256(export["bytes"]).hexdigest()
    assert [f["name"] for f in record["export_manifest"]] == sorted(
        f["name"] for f in manifest["files"])
    # The people it names, as the Slack stand-in shows them (users.info, users:read).
    assert record["people"] == {"U_APP": "User U_APP", "U_REQ": "User U_REQ"}
    shown = " ".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf["bytes"])).pages)
    assert "User U_REQ (U_REQ)" in " ".join(shown.split())  # the PDF an auditor reads names them
    assert "User U_APP (U_APP)" in " ".join(shown.split())

    jobs.clock.advance(days=31)
    assert jobs.run("retention") == ("purged 1 export(s), deleted 1 file(s) in Slack; reduced 0 "
                                     "request(s)' identifiers")
    assert stored(jobs, request.reference) == b"" and not jobs.settings.exports_dir.exists()
    assert [f["name"] for f in slack.uploaded_files()] == [  # the DMed zip is gone from Slack
        f"{request.reference}-compliance-record.pdf", f"{request.reference}-compliance-record.json"]
    with jobs.sessions() as session:
        actions = list(session.exec(select(AuditEvent.action).where(AuditEvent.request_id == request.id)
                                    .order_by(AuditEvent.seq)))
    assert actions[-5:] == ["export.packaged", "record.made", "export.delivered", "export.purged",
                            "export.slack_copies_deleted"]


def replica(database_url: str, data_dir, slack, clock: ManualClock) -> Core:
    """One replica of the app: its own host (DSR_DATA_DIR: its local disk), the shared database."""
    settings = Settings(
        _env_file=None, DATABASE_URL=database_url, DSR_DATA_DIR=str(data_dir),
        SLACK_BOT_TOKEN="xoxb-jobs", SLACK_API_URL=f"{slack.url}/api/", DSR_REQUESTERS="U_REQUESTER",
        DSR_APPROVERS="U_APP", DSR_MANAGERS="U_MGR", DSR_APPROVALS_CHANNEL=APPROVALS,
        DSR_DIGEST_CHANNEL=DIGEST, DSR_SANDBOX_PEOPLE=6)
    return build_core(settings, clock=clock, worker_id=f"replica-{data_dir.name}")


def approved_access(core: Core, clock: ManualClock, subject: Identifier) -> int:
    """An access request to every stand-in, its matches confirmed, approved and planned."""
    systems = ("zendesk", "genesys")
    # Searched outside the transaction: the calls take the vendor budget's own (bot.app).
    matches = {system: core.registry(system, True).search_subjects([subject]) for system in systems}
    with transaction(core.jobs.sessions) as session:
        request = add_request(session, clock.now(), type=RequestType.ACCESS, systems=systems,
                              identifiers=(subject,), simulation=True)
        for system in systems:
            confirm_records(session, request, system, matches[system], actor="U_REQUESTER",
                            at=clock.now())
        for status, actor in ((S.PENDING_APPROVAL, "U_REQUESTER"), (S.APPROVED, "U_APP")):
            transition(session, request, status, actor=actor, at=clock.now())
        eng.schedule(session, request, core.registry, at=clock.now())
        return request.id


def test_replicas_on_different_hosts_stage_package_and_send_one_export(database_url, tmp_path,
                                                                       slack) -> None:
    """Replica A runs an access request's steps, B packages it and sends it (the deliverables
    job), C sends it again ("Send me the export"): each on its own disk, so only what they share,
    the database, carries the export between them."""
    clock = ManualClock(T0)
    a, b, c = (replica(database_url, tmp_path / name, slack, clock) for name in ("a", "b", "c"))
    try:
        a.registry.sandboxes.url("zendesk")
        zendesk = a.registry.sandboxes.instances["zendesk"]
        email = next(u["email"] for u in zendesk.state.users.values() if u["role"] == "end-user")
        request_id = approved_access(a, clock, Identifier(IdentifierKind.EMAIL, email))
        run_until_settled(a.jobs.sessions, a.registry, clock, [request_id], worker=a.jobs.worker)
        with a.jobs.sessions() as session:
            request = session.get(DsrRequest, request_id)
        assert request.status == S.COMPLETED

        assert b.jobs.run("deliverables").startswith("made 1 record(s)")
        c.deps.deliverables.send_export(request.reference, "U_REQUESTER")
    finally:
        a.registry.sandboxes.stop()

    with b.jobs.sessions() as session:
        request = session.get(DsrRequest, request_id)
    sent = [f["bytes"] for f in slack.uploaded_files() if f["name"] == f"{request.reference}-export.zip"]
    assert len(sent) == 2 and sent[0] == sent[1], "B's and C's copies are the same archive"
    assert hashlib.sha256(sent[0]).hexdigest() == request.export_sha256
    with zipfile.ZipFile(io.BytesIO(sent[0])) as zipped:
        names = set(zipped.namelist())
        assert {"README.txt", "manifest.json", "zendesk/users-001.json"} <= names
        assert any(name.startswith("genesys/") for name in names), names
        [user] = json.loads(zipped.read("zendesk/users-001.json"))
        assert user["user"]["email"] == email  # what A's steps fetched, packaged by B
    with b.jobs.sessions() as session:
        actions = list(session.exec(select(AuditEvent.action).where(AuditEvent.request_id == request_id)))
    assert actions.count("export.delivered") == 2 and "export.packaged" in actions
    assert not any((tmp_path / name / "exports").exists() for name in "abc"), "no local disk used"


def test_without_a_digest_channel_the_reports_say_so(database_url, tmp_path) -> None:
    settings = Settings(_env_file=None, DATABASE_URL=database_url, DSR_DATA_DIR=str(tmp_path))
    core = build_core(settings, clock=ManualClock(datetime(2026, 3, 2, 12, tzinfo=UTC)))
    assert core.jobs.run("digest") == "no digest: DSR_DIGEST_CHANNEL is not set"
    assert core.jobs.run("reminders") == "sent 0 reminder(s)"
    assert date(2026, 3, 2) == core.jobs.clock.now().date()
