"""ZendeskConnector over a real localhost socket against the Zendesk stand-in."""

from __future__ import annotations

import json

import httpx
import pytest

from services.connectors.base import Continue, Done, Failed, RequestSpec, StepRun, Waiting
from services.connectors.http import Limits, VendorError
from services.sandbox.server import serve
from services.sandbox.traffic import FaultPlan, LoseAnswers
from services.subjects import Identifier
from services.vendors.zendesk.connector import ZendeskConnector
from services.vendors.zendesk.standin import ZendeskSandbox
from services.vendors.zendesk.standin_state import record_invalid
from services.vocabulary import IdentifierKind as K
from services.vocabulary import PlanAction, RequestType
from tests.connector_driver import MemorySink, drive, review, summaries

EMAIL = "ada.lovelace@example.org"


def make_connector(url: str, client: httpx.Client, attempts: int = 5) -> ZendeskConnector:
    return ZendeskConnector(client, url, email="agent@example.com", token="sandbox-token",
                            limits=Limits(attempts=attempts, backoff_base=0.001, backoff_max=0.01),
                            sleep=lambda s: None, poll_seconds=0)


@pytest.fixture
def sandbox() -> ZendeskSandbox:
    return ZendeskSandbox(seed=3, people=6, requests_per_minute=None)


@pytest.fixture
def connector(sandbox):
    with serve(sandbox.wsgi) as running, httpx.Client() as client:
        yield make_connector(running.url, client)


def subject(sandbox, tickets: int = 0, status: str = "closed") -> dict:
    user = sandbox.add_user("Ada Lovelace", email=EMAIL, phone="+15557770001",
                            external_id="CUST-ADA")
    for n in range(tickets):
        sandbox.add_ticket(user["id"], subject=f"Order {n}", description=f"About order {n}",
                           status=status, comments=[f"Please call me on +15557770001 ({n})"])
    return user


def spec(connector, kind: RequestType, **extra) -> RequestSpec:
    identifiers = (Identifier(K.EMAIL, EMAIL), Identifier(K.NAME, "Ada Lovelace"))
    matches = connector.search_subjects([identifiers[0]])
    confirmed = [{"record_id": m.record_id, "label": m.label, "details": m.details}
                 for m in matches]
    return RequestSpec("DSR-000007", kind, identifiers, confirmed, **extra)


def calls(sandbox, key: str) -> int:
    return sum(n for call, n in sandbox.traffic.stats.calls.items()
               if call.removesuffix(".json") == key)


def test_search_by_each_identifier(connector, sandbox) -> None:
    user = subject(sandbox)
    for identifier in (Identifier(K.EMAIL, EMAIL), Identifier(K.PHONE, "+15557770001"),
                       Identifier(K.NAME, "Ada Lovelace"), Identifier(K.EXTERNAL_ID, "CUST-ADA"),
                       Identifier(K.VENDOR_USER_ID, str(user["id"]), "zendesk")):
        matches = connector.search_subjects([identifier])
        assert [(m.record_id, m.label) for m in matches] == [(str(user["id"]), "Ada Lovelace")]
    assert connector.search_subjects([Identifier(K.EMAIL, "nobody@example.invalid")]) == []


def test_access_exports_every_page_of_tickets_and_comments(connector, sandbox) -> None:
    user = subject(sandbox, tickets=230, status="open")
    other = sandbox.add_user("Someone Else", email="else@example.net")
    cc = sandbox.add_ticket(other["id"], subject="Shared", description="x",
                            collaborator_ids=[user["id"]],
                            comments=[f"reply {n}" for n in range(150)])
    sink = MemorySink()
    trace = drive(connector, spec(connector, RequestType.ACCESS), sink)
    done = summaries(trace)
    assert done["export_users"] == {"users": 1, "identities": 2}
    assert done["export_tickets"] == {"tickets": 231}
    assert sum(isinstance(o, Continue) for _, o in trace) >= 5  # 3 pages requested, 1 cc, ...
    tickets = {k: v for k, v in sink.files.items() if k.startswith("zendesk/tickets/")}
    assert len(tickets) == 231
    shared = sink.files[f"zendesk/tickets/{cc['id']}.json"]
    assert len(shared["comments"]) == 151  # the description and 150 replies: two pages
    assert sink.files[f"zendesk/users/{user['id']}.json"]["user"]["email"] == EMAIL


def test_rectification_and_objection(connector, sandbox) -> None:
    user = subject(sandbox)
    drive(connector, spec(connector, RequestType.RECTIFICATION, new_values=(
        Identifier(K.NAME, "Ada King"), Identifier(K.EMAIL, "ada.king@example.org"),
        Identifier(K.PHONE, "+15557779999"))))
    updated = sandbox.state.users[user["id"]]
    assert (updated["name"], updated["email"], updated["phone"]) == (
        "Ada King", "ada.king@example.org", "+15557779999")
    objection = RequestSpec("DSR-000008", RequestType.OBJECTION, (),
                            [{"record_id": str(user["id"]), "label": "", "details": {}}])
    assert summaries(drive(connector, objection)) == {"suspend_users": {
        "suspended_users": 1, "verified": "read back: suspended"}}
    assert sandbox.state.users[user["id"]]["suspended"] is True


def test_a_correction_answered_but_not_applied_is_not_reported_done(connector, sandbox) -> None:
    user = subject(sandbox)
    sandbox.lose_writes({"update_user", "update_identity"})
    *_, (action, outcome) = drive(connector, spec(connector, RequestType.RECTIFICATION,
                                                  new_values=(Identifier(K.NAME, "Ada King"),)))
    assert action == "rectify_users" and isinstance(outcome, Failed)
    assert "does not show the corrected name when read back" in outcome.reason
    objection = RequestSpec("DSR-000008", RequestType.OBJECTION, (),
                            [{"record_id": str(user["id"]), "label": "", "details": {}}])
    *_, (action, outcome) = drive(connector, objection)
    assert action == "suspend_users" and isinstance(outcome, Failed)
    assert sandbox.state.users[user["id"]]["suspended"] is False


def test_erasure_in_the_documented_order_with_bulk_batches(connector, sandbox) -> None:
    user = subject(sandbox, tickets=250)
    other = sandbox.add_user("Someone Else", email="else@example.net")
    mention = sandbox.add_ticket(other["id"], subject="Complaint", description="x",
                                 status="open",
                                 comments=[f"Forwarding from {EMAIL}, she asked twice."])
    with_file = sandbox.add_ticket(other["id"], subject="Scan", description="x", status="open",
                                   comments=["ID card of Ada Lovelace attached"], attachment=True)
    planned, candidates = review(connector, spec(connector, RequestType.ERASURE))
    proposed = {c.record_id: c.proposed for c in candidates}
    assert len(candidates) == 1 + 252  # the user and every ticket found
    assert proposed[str(mention["id"])] is PlanAction.REDACT  # someone else's: redact, not delete
    assert proposed[str(with_file["id"])] is PlanAction.LEAVE  # a name only: maybe a namesake
    # (the stand-in refuses `type:` in a search-export query, as Zendesk does: none was sent)
    trace = drive(connector, planned)
    done = summaries(trace)
    assert list(done) == ["redact_tickets", "delete_tickets", "purge_tickets", "delete_users",
                          "purge_users"]
    assert done["delete_tickets"]["count"] == 250 and done["purge_tickets"]["count"] == 250
    assert calls(sandbox, "DELETE /api/v2/tickets/destroy_many") == 3  # 250 ids, 100 a call
    assert calls(sandbox, "DELETE /api/v2/deleted_tickets/destroy_many") == 3
    assert calls(sandbox, "GET /api/v2/job_statuses/show_many") <= 6  # jobs read together

    state = sandbox.snapshot()
    text = json.dumps(state["comments"]) + json.dumps(state["tickets"])
    assert EMAIL not in text and "+15557770001" not in text
    kept = {t["id"] for t in state["tickets"]}
    assert {mention["id"], with_file["id"]} <= kept  # someone else's tickets are never deleted
    assert user["id"] in state["permanently_deleted_users"]
    assert not state["deleted_tickets"]  # deleted ones were purged


def test_the_subjects_open_tickets_are_redacted_and_closed_so_the_user_can_go(
        connector, sandbox) -> None:
    user = subject(sandbox, tickets=2)
    solved = sandbox.add_ticket(user["id"], subject="Refund", description="Refund please",
                                status="solved", comments=[f"Write to {EMAIL}"])
    planned, candidates = review(connector, spec(connector, RequestType.ERASURE))
    assert {c.record_id: c.proposed for c in candidates}[str(solved["id"])] is \
        PlanAction.REDACT_CLOSE
    done = summaries(drive(connector, planned))
    assert sandbox.state.tickets[solved["id"]]["status"] == "closed"
    assert EMAIL not in json.dumps(sandbox.state.comments[solved["id"]])
    assert done["purge_users"] == {"purged_users": [user["id"]]}


def test_a_requester_of_a_ticket_left_open_is_not_forced(connector, sandbox) -> None:
    user = subject(sandbox, tickets=2)
    solved = sandbox.add_ticket(user["id"], subject="Refund", description="x", status="solved")
    planned, _ = review(connector, spec(connector, RequestType.ERASURE), choose=lambda c: (
        PlanAction.LEAVE if c.record_id == str(solved["id"]) else c.proposed))
    action, failed = drive(connector, planned)[-1]
    assert action == "delete_users" and isinstance(failed, Failed)
    assert f"still requests 1 unclosed ticket(s) (#{solved['id']})" in failed.reason
    assert "Review the plan again" in failed.reason
    assert user["id"] not in sandbox.snapshot()["deleted_users"]
    assert solved["id"] in sandbox.state.tickets  # left, as the plan says


def test_faults_end_in_the_same_state(sandbox) -> None:
    clean = ZendeskSandbox(seed=3, people=6, requests_per_minute=None)
    sandbox.traffic.set_faults(FaultPlan(error_rate=0.3, retry_after=0, seed=9))
    for box in (clean, sandbox):
        subject(box, tickets=120)
        with serve(box.wsgi) as running, httpx.Client() as client:
            connector = make_connector(running.url, client, attempts=12)
            drive(connector, spec(connector, RequestType.ACCESS))
            drive(connector, review(connector, spec(connector, RequestType.ERASURE))[0])
    assert sum(sandbox.traffic.stats.injected.values()) > 20
    assert sandbox.snapshot() == clean.snapshot()


def test_the_subjects_images_are_redacted_even_when_their_user_is_left(connector, sandbox) -> None:
    user = subject(sandbox)
    photo = sandbox.add_ticket(user["id"], subject="Damage", description="See the photo",
                               inline_image=True)
    planned, _ = review(connector, spec(connector, RequestType.ERASURE), choose=lambda c: (
        PlanAction.LEAVE if c.kind == "user" else PlanAction.REDACT_CLOSE))
    drive(connector, planned)
    first = sandbox.state.comments[photo["id"]][0]
    assert first["attachments"] and all(a["file_name"] == "redacted.txt"
                                        for a in first["attachments"])
    assert user["id"] not in sandbox.snapshot()["deleted_users"]  # left, as the plan says


def test_a_close_and_a_redaction_sent_again_after_lost_answers_are_read_back(
        connector, sandbox) -> None:
    """Sent again after its answer was lost, Zendesk refuses the close of the ticket it closed
    (422) and the redaction it applied (no longer matching the comment): both are read back,
    found applied, and the erasure goes on."""
    user = subject(sandbox)
    solved = sandbox.add_ticket(user["id"], subject="Refund", description="Refund please",
                                status="solved", comments=[f"Write to {EMAIL}"])
    inline = sandbox.add_ticket(user["id"], subject="Damage", status="open",
                                description=f"See the photo, {EMAIL}", inline_image=True)
    sandbox.traffic.set_faults(FaultPlan(lose=(
        LoseAnswers("PUT", f"/api/v2/tickets/{solved['id']}", exact=True),
        LoseAnswers("PUT", "/api/v2/comment_redactions/", count=2))))
    planned, _ = review(connector, spec(connector, RequestType.ERASURE), choose=lambda c: (
        PlanAction.REDACT_CLOSE if c.kind == "ticket" else c.proposed))
    done = summaries(drive(connector, planned))
    assert sum(sandbox.traffic.stats.lost.values()) == 3
    assert calls(sandbox, f"PUT /api/v2/tickets/{solved['id']}") == 2  # the 2nd answered 422
    assert sandbox.state.tickets[solved["id"]]["status"] == "closed"
    assert EMAIL not in json.dumps(sandbox.state.comments[solved["id"]])
    assert EMAIL not in json.dumps(sandbox.state.comments[inline["id"]])
    assert all(a["file_name"] == "redacted.txt"
               for a in sandbox.state.comments[inline["id"]][0]["attachments"])
    assert done["purge_users"] == {"purged_users": [user["id"]]}


def test_a_refused_close_that_was_not_ours_still_fails(connector, sandbox) -> None:
    """A 422 is reconciled only when the ticket shows closed: a refusal for another reason is
    a failure, named without the subject's data."""
    user = subject(sandbox)
    ticket = sandbox.add_ticket(user["id"], subject=f"Account of {EMAIL}", description="x")
    planned, _ = review(connector, spec(connector, RequestType.ERASURE), choose=lambda c: (
        PlanAction.REDACT_CLOSE if c.kind == "ticket" else c.proposed))

    def invalid(*args, **kwargs):
        raise record_invalid("subject", "InvalidValue", "Subject: is invalid")

    sandbox.state.update_ticket = invalid
    with pytest.raises(VendorError, match="answered 422") as raised:  # the engine: Failed
        drive(connector, planned)
    assert EMAIL not in str(raised.value)
    assert sandbox.state.tickets[ticket["id"]]["status"] == "open"


def test_a_search_finds_every_namesake_page_after_page(sandbox, connector) -> None:
    """Search Users pages by offset, 100 at most a page: 250 namesakes take 3 pages."""
    for n in range(250):
        sandbox.add_user("Ada Lovelace", email=f"ada{n}@example.net")
    found = connector.search_subjects([Identifier(K.NAME, "Ada Lovelace")])
    assert len({m.record_id for m in found}) == 250
    assert calls(sandbox, "GET /api/v2/users/search") == 3


def deletion_runs(sandbox: ZendeskSandbox, tickets: list[int], *, poll_seconds: float = 5.0,
                  checkpoint: dict | None = None) -> tuple[list, list[float]]:
    """The delete_tickets step run after run, as the engine would: (outcome, calls it made)
    for each run, and the seconds the step slept itself."""
    slept: list[float] = []
    runs = []
    with serve(sandbox.wsgi) as running, httpx.Client() as client:
        connector = ZendeskConnector(client, running.url, email="agent@example.com",
                                     token="sandbox-token", limits=Limits(attempts=2),
                                     sleep=slept.append, poll_seconds=poll_seconds)
        bare = RequestSpec("DSR-000007", RequestType.ERASURE, ())
        for _ in range(50):
            before = dict(sandbox.traffic.stats.calls)
            outcome = connector.run_step(StepRun("delete_tickets", {"tickets": tickets},
                                                 checkpoint, bare, {}, MemorySink()))
            made = [call for call, n in sandbox.traffic.stats.calls.items()
                    for _ in range(n - before.get(call, 0))]
            runs.append((outcome, made))
            if isinstance(outcome, (Done, Failed)):
                return runs, slept
            checkpoint = outcome.checkpoint
    raise AssertionError("the deletion did not finish")


def test_bulk_jobs_go_side_by_side_each_recorded_before_the_next_call(sandbox) -> None:
    """One batch submitted per run, its job in the checkpoint the run returns (the engine
    records it before the next call); then all the jobs read in one show_many at a short delay
    that grows while none finishes (the stand-in completes a job on its second read)."""
    user = subject(sandbox, tickets=250)
    ids = sorted(t["id"] for t in sandbox.state.tickets.values() if t["requester_id"] == user["id"])
    runs, slept = deletion_runs(sandbox, ids)
    submitted = runs[:3]
    for number, (outcome, made) in enumerate(submitted, start=1):
        assert isinstance(outcome, Continue)
        assert [call.removesuffix(".json") for call in made] == \
            ["DELETE /api/v2/tickets/destroy_many"]  # one submission, nothing after it
        assert len(outcome.checkpoint["jobs"]) == number
    jobs = set(submitted[-1][0].checkpoint["jobs"])
    reads = [made for _, made in runs[3:]]
    assert [r[0].removesuffix(".json") for r in reads] == \
        ["GET /api/v2/job_statuses/show_many"] * 2  # every job in each read
    assert calls(sandbox, "GET /api/v2/tickets/show_many") == 3  # read back, 100 a call
    assert slept == [0.5, 0.75]  # not a fixed poll of 5 s
    done = runs[-1][0]
    assert isinstance(done, Done) and done.summary["count"] == 250
    assert {v.record_id for v in done.verified} == {str(i) for i in ids}
    assert jobs == {job.id for job in sandbox.state.jobs.values()}  # none sent twice


def test_a_slow_job_is_polled_in_the_step_briefly_then_by_the_engine() -> None:
    """Short delays are slept in the step; once the delay passes 2 s the engine waits
    (Waiting), up to poll_seconds: a job that never ends does not hold a worker."""
    slow = ZendeskSandbox(seed=3, people=6, requests_per_minute=None, job_polls=7)
    user = subject(slow, tickets=2)
    ids = sorted(t["id"] for t in slow.state.tickets.values() if t["requester_id"] == user["id"])
    runs, slept = deletion_runs(slow, ids, poll_seconds=3)
    assert slept == [0.5, 0.75, 1.125, 1.6875]
    assert [o.seconds for o, _ in runs if isinstance(o, Waiting)] == [2.53125, 3, 3]
    assert isinstance(runs[-1][0], Done) and runs[-1][0].summary["count"] == 2


def test_a_failed_job_is_submitted_anew_by_the_retry(sandbox) -> None:
    """A job that ended `failed` fails the step, and a person's retry starts from a checkpoint
    that submits its batch again instead of reading the failed job again."""
    user = subject(sandbox, tickets=150)
    ids = sorted(t["id"] for t in sandbox.state.tickets.values() if t["requester_id"] == user["id"])
    sandbox.fail_next_job("Failed: backend unavailable")
    runs, _ = deletion_runs(sandbox, ids)
    failed = runs[-1][0]
    assert isinstance(failed, Failed) and "ended failed" in failed.reason
    assert sorted(failed.checkpoint["pending"]) == ids[:100]  # the failed job's batch
    assert len(failed.checkpoint["jobs"]) == 1  # the other job, read again on the retry
    runs, _ = deletion_runs(sandbox, ids, checkpoint=failed.checkpoint)
    assert isinstance(runs[-1][0], Done) and runs[-1][0].summary["count"] == 150
    assert not [t for t in sandbox.state.tickets.values()
                if t["requester_id"] == user["id"] and t["id"] not in sandbox.state.deleted_tickets]
