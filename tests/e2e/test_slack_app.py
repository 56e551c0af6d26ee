"""End to end over HTTP: signed Slack requests in, Web API calls out, vendors simulated."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import threading
import time
import zipfile
from urllib.parse import quote

import pypdf
from sqlmodel import select

from bot import cli
from bot.slack_standin_state import dm_id
from handlers.ids import Action, Block, Callback
from services.vocabulary import RequestStatus
from storage.models import Approval, AuditEvent, DsrRequest, PlanItem
from tests.e2e.conftest import APPROVALS, World, file_request, modal, wait_for
from tests.forms import form


def current(world: World, channel: str, ts: str) -> dict:
    return next(m for m in world.slack.messages(channel) if m["ts"] == ts)


def status(world: World, reference: str) -> RequestStatus:
    return world.runtime.service.get(reference).status


def test_request_from_intake_to_completion(world: World) -> None:
    email = world.emails()[0]
    reference, message = file_request(world, email)
    shown = json.dumps(message["blocks"])
    assert email not in shown and email.split("@")[0] not in shown  # masked in the channel
    assert "SIMULATION" in shown and "awaiting approval" in shown

    # Four-eyes and roles, enforced on the click itself.
    world.driver.click("U_REQ", message, Action.APPROVE, APPROVALS)
    world.driver.click("U_MGR", message, Action.APPROVE, APPROVALS)
    assert wait_for(lambda: world.slack.ephemerals("U_MGR") and world.slack.ephemerals("U_REQ"),
                    what="both refusals")  # run side by side after the acks: in either order
    assert "someone else must decide" in world.slack.ephemerals("U_REQ")[-1]["text"]
    assert "not allowed to approve" in world.slack.ephemerals("U_MGR")[-1]["text"]
    assert status(world, reference) == RequestStatus.PENDING_APPROVAL

    assert world.driver.click("U_APP1", message, Action.APPROVE, APPROVALS).status_code == 200
    wait_for(lambda: status(world, reference) == RequestStatus.COMPLETED, what="completion")
    updated = wait_for(lambda: "completed" in json.dumps(
        current(world, APPROVALS, message["ts"])["blocks"]), what="the updated message")
    assert updated
    final = json.dumps(current(world, APPROVALS, message["ts"])["blocks"])
    assert "approved by <@U_APP1>" in final and '"action_id"' not in final  # buttons gone
    thread = wait_for(lambda: (t := world.slack.thread(APPROVALS, message["ts"]))
                      and "All steps done" in json.dumps(t) and t, what="the thread")
    texts = [m["text"] for m in thread]
    assert any("Approved by <@U_APP1>" in t for t in texts)
    assert any("zendesk.export_tickets done" in t for t in texts)
    assert all(email not in t for t in texts)
    dm = wait_for(lambda: [m for m in world.slack.messages("U_REQ") if "completed" in m["text"]],
                  what="the requester's DM")
    assert reference in dm[0]["text"]

    shown = world.driver.command("U_REQ", f"show {reference}").json()
    steps = json.dumps(shown["blocks"])
    assert "export_users" in steps and "finished" in steps and email in steps  # ephemeral
    listed = world.driver.command("U_REQ", "list completed access").json()
    assert reference in json.dumps(listed["blocks"])


def test_signatures_are_verified(world: World) -> None:
    body = "command=%2Fdsr&text=help&user_id=U_REQ&team_id=T0STANDIN"
    assert world.driver.send(body).status_code == 200
    assert world.driver.send(body, signature="").status_code == 401
    assert world.driver.send(body, signature="v0=" + "0" * 64).status_code == 401
    assert world.driver.send(body, timestamp=int(time.time()) - 600).status_code == 401


def test_help_and_mistyped_commands(world: World) -> None:
    assert "`/dsr new`" in json.dumps(world.driver.command("U_REQ", "help").json())
    wrong = json.dumps(world.driver.command("U_REQ", "nwe").json())
    assert "`/dsr nwe` is not a command" in wrong and "`/dsr new`" in wrong
    missing = json.dumps(world.driver.command("U_REQ", "show").json())
    assert "needs a reference" in missing
    unknown = world.driver.command("U_REQ", "show DSR-999999").json()
    assert "No request DSR-999999" in unknown["text"]


def test_bad_modal_input_comes_back_on_the_fields(world: World) -> None:
    world.driver.command("U_REQ", "new")
    intake = modal(world, Callback.NEW_REQUEST)
    answer = world.driver.submit("U_REQ", intake, form(**{
        Block.EMAILS: "jane@", Block.PHONES: "12", Block.TYPE: "rectification"})).json()
    assert answer["response_action"] == "errors"
    assert set(answer["errors"]) == {Block.EMAILS, Block.PHONES, Block.NEW_VALUES}
    none = world.driver.submit("U_REQ", intake, form(**{Block.EMAILS: ""})).json()
    assert "at least one" in none["errors"][Block.NAME]


def test_twenty_racing_approvals_give_one_decision(world: World) -> None:
    reference, message = file_request(world, world.emails()[1])
    barrier = threading.Barrier(20)

    def click(n: int) -> None:
        barrier.wait()
        world.driver.click(f"U_APP{n}", message, Action.APPROVE, APPROVALS)

    threads = [threading.Thread(target=click, args=(n,)) for n in range(1, 21)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_for(lambda: status(world, reference) == RequestStatus.COMPLETED, what="completion")
    refused = wait_for(lambda: sum(len(world.slack.ephemerals(f"U_APP{n}")) for n in range(1, 21))
                       == 19, what="19 refusals")
    assert refused
    with world.runtime.service.sessions() as session:
        request = session.exec(select(DsrRequest).where(DsrRequest.id == int(reference[4:]))).one()
        assert len(session.exec(select(Approval).where(Approval.request_id == request.id)).all()) == 1
        planned = session.exec(select(AuditEvent).where(AuditEvent.request_id == request.id,
                                                        AuditEvent.action == "request.planned"))
        assert len(planned.all()) == 1
    approved = [m for m in world.slack.thread(APPROVALS, message["ts"])
                if "Approved by" in m["text"]]
    assert len(approved) == 1


def test_app_home(world: World) -> None:
    reference, _ = file_request(world, world.emails()[2])
    world.driver.event({"type": "app_home_opened", "user": "U_APP2", "tab": "home"})
    home = wait_for(lambda: world.slack.home("U_APP2"), what="the home tab")
    text = json.dumps(home["blocks"])
    assert "Awaiting your approval" in text and reference in text and "New request" in text
    world.driver.event({"type": "app_home_opened", "user": "U_NOBODY", "tab": "home"})
    assert "no DSR Desk role" in json.dumps(wait_for(lambda: world.slack.home("U_NOBODY"))["blocks"])


def test_a_failed_step_asks_for_attention_with_retry(world: World) -> None:
    # Zendesk keeps no postal address: the rectification step fails and a person must look.
    reference, message = file_request(world, world.emails()[3], systems=("zendesk",), **{
        Block.TYPE: "rectification", Block.NEW_VALUES: "address: 1 New Street, Lisbon"})
    world.driver.click("U_APP1", message, Action.APPROVE, APPROVALS)
    wait_for(lambda: status(world, reference) == RequestStatus.NEEDS_ATTENTION, what="failure")
    dm = wait_for(lambda: [m for m in world.slack.messages("U_REQ")
                           if reference in m["text"] and "needs attention" in m["text"]],
                  what="the requester's DM")[0]
    assert "has no field for address" in dm["text"] and "1 New Street" not in json.dumps(dm)
    world.driver.click("U_REQ", dm, Action.RETRY, dm["channel"])
    wait_for(lambda: any("retried 1 failed step(s)" in m["text"]
                         for m in world.slack.thread(APPROVALS, message["ts"])), what="the retry")
    wait_for(lambda: len([m for m in world.slack.messages("U_REQ")
                          if "needs attention" in m["text"]]) == 2, what="the second failure")
    assert status(world, reference) == RequestStatus.NEEDS_ATTENTION


def test_a_redelivered_event_is_handled_once(world: World) -> None:
    event = {"type": "app_home_opened", "user": "U_APP3", "tab": "home"}
    body = json.dumps({"type": "event_callback", "team_id": "T0STANDIN", "event": event,
                       "event_id": "Ev0REDELIVER", "event_time": int(time.time())})
    for _ in range(3):
        assert world.driver.send(body, content_type="application/json").status_code == 200
    wait_for(lambda: world.slack.home("U_APP3"), what="the home tab")
    time.sleep(0.3)
    assert len([c for c in world.slack.calls_to("views.publish")
                if c.args.get("user_id") == "U_APP3"]) == 1


def test_payloads_never_reach_the_logs(world: World, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    stray = {"type": "view_submission", "user": {"id": "U_REQ"}, "team": {"id": "T0STANDIN"},
             "view": {"id": "V1", "type": "modal", "callback_id": "not_ours", "state": {"values": {
                 "x": {"value": {"type": "plain_text_input", "value": "jane.doe@example.com"}}}}}}
    world.driver.send("payload=" + quote(json.dumps(stray)))
    assert "Unhandled request ({…payload withheld…})" in caplog.text
    assert "jane.doe@example.com" not in caplog.text


def test_search_answers_ephemerally_after_the_ack(world: World) -> None:
    email = world.emails()[4]
    first = world.driver.command("U_REQ", f"search {email}").json()
    assert "Searching" in first["text"]
    result = wait_for(lambda: [e for e in world.slack.ephemerals("U_REQ")
                               if "Results for" in e["text"]], what="the results")[0]
    text = json.dumps(result["blocks"])
    assert "*zendesk* (simulation)" in text and "*genesys* (simulation)" in text
    assert "*zendesk* (simulation): no match" not in result["blocks"][0]["text"]["text"].splitlines()
    assert email not in result["text"]  # the notification text is masked
    refused = world.driver.command("U_NOBODY", f"search {email}").json()
    assert "not allowed to search" in refused["text"]


def test_acknowledging_receipt_is_recorded_once_and_audited(world: World) -> None:
    reference, _ = file_request(world, world.emails()[2], systems=("zendesk",),
                                **{Block.JURISDICTION: "CCPA"})
    answer = world.driver.command("U_REQ", f"ack {reference}").json()
    assert "recorded as acknowledged" in answer["text"]
    again = world.driver.command("U_REQ", f"ack {reference}").json()
    assert "was acknowledged on" in again["text"]
    assert "not allowed" in world.driver.command("U_STRANGER", f"ack {reference}").json()["text"]
    with world.runtime.service.sessions() as session:
        events = session.exec(select(AuditEvent).where(AuditEvent.action == "request.acknowledged")).all()
    assert [e.actor for e in events] == ["U_REQ"]
    assert world.runtime.service.get(reference).acknowledged_at is not None


def test_a_completed_access_request_delivers_its_export_and_record(world: World, tmp_path) -> None:
    email = world.emails()[1]
    reference, message = file_request(world, email, systems=("zendesk",))
    world.driver.click("U_APP1", message, Action.APPROVE, APPROVALS)
    wait_for(lambda: status(world, reference) == RequestStatus.COMPLETED, what="completion")

    files = wait_for(lambda: {f["name"]: f for f in world.slack.uploaded_files()}
                     if len(world.slack.uploaded_files()) == 3 else None, what="the deliverables")
    export = files[f"{reference}-export.zip"]
    assert export["channel_id"] == dm_id(("U_REQ",))  # a DM, never a channel
    with zipfile.ZipFile(io.BytesIO(export["bytes"])) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert "zendesk/tickets-001.json" in [f["name"] for f in manifest["files"]]
        assert email in archive.read("zendesk/users-001.json").decode()
    pdf = files[f"{reference}-compliance-record.pdf"]
    assert (pdf["channel_id"], pdf["thread_ts"]) == (APPROVALS, message["ts"])
    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf["bytes"])).pages)
    for expected in (reference, "U_APP1", "export_users", "export_tickets", manifest["files"][0]["sha256"]):
        assert expected in text.replace("\n", " ")
    assert email not in text
    record = json.loads(files[f"{reference}-compliance-record.json"]["bytes"])
    assert record["export_archive_sha256"] == hashlib.sha256(export["bytes"]).hexdigest()

    # /dsr show offers the export again: to its requester and managers only.
    shown = world.driver.command("U_REQ", f"show {reference}").json()
    assert "kept until" in json.dumps(shown["blocks"])
    shown["ts"] = message["ts"]
    world.driver.click("U_APP2", shown, Action.SEND_EXPORT, "C0GENERAL")
    assert "only its requester and managers" in wait_for(
        lambda: world.slack.ephemerals("U_APP2"), what="the refusal")[-1]["text"]
    world.driver.click("U_MGR", shown, Action.SEND_EXPORT, "C0GENERAL")
    wait_for(lambda: any(f["channel_id"] == dm_id(("U_MGR",))
                         for f in world.slack.uploaded_files()), what="the manager's copy")

    # /dsr report: anyone with a role gets the record in a DM; others are refused.
    assert "Preparing" in world.driver.command("U_APP2", f"report {reference}").json()["text"]
    wait_for(lambda: any(f["channel_id"] == dm_id(("U_APP2",))
                         and f["name"].endswith(".pdf") for f in world.slack.uploaded_files()),
             what="the record by DM")
    assert "not allowed" in world.driver.command("U_NOBODY", f"report {reference}").json()["text"]
    with world.runtime.service.sessions() as session:
        delivered = session.exec(select(AuditEvent).where(AuditEvent.action == "export.delivered")
                                 .order_by(AuditEvent.seq)).all()
    assert [e.details["to"] for e in delivered] == ["U_REQ", "U_MGR"]

    # The record file checks out against the trail from the command line.
    saved = tmp_path / "record.json"
    saved.write_bytes(files[f"{reference}-compliance-record.json"]["bytes"])
    settings = world.runtime.core.settings
    os.environ.update(DATABASE_URL=settings.effective_database_url, DSR_DATA_DIR=str(settings.data_dir))
    try:
        assert cli.main(["audit", "verify", "--record", str(saved)]) == 0
        assert cli.main(["report", reference, "--out", str(tmp_path / "again.json")]) == 0
    finally:
        del os.environ["DATABASE_URL"], os.environ["DSR_DATA_DIR"]
    assert json.loads((tmp_path / "again.json").read_text()) == record


def test_a_simulated_erasure_is_reviewed_approved_and_completed(world: World) -> None:
    """Through Slack alone: the plan is found, reviewed line by line, approved, carried out."""
    email = world.emails()[0]
    reference, message = file_request(world, email, systems=("zendesk", "genesys"),
                                      **{Block.TYPE: "erasure"})
    assert "plan in review" in json.dumps(message["blocks"])
    assert Action.APPROVE not in json.dumps(message["blocks"])  # nothing to approve yet
    ready = wait_for(lambda: next((m for m in world.slack.thread(APPROVALS, message["ts"])
                                   if m["ts"] != message["ts"]
                                   and Action.REVIEW_PLAN in json.dumps(m.get("blocks"))), None),
                     what="the plan ready for review, in the thread")
    before = len(world.slack.views())
    world.driver.click("U_REQ", ready, Action.REVIEW_PLAN, APPROVALS)
    plan = modal(world, Callback.REVIEW_PLAN, before)
    shown = json.dumps(plan["blocks"])
    assert email not in shown and "Zendesk Support user #" in shown
    lines = [b for b in plan["blocks"] if b["block_id"].startswith("line:")
             and b.get("accessory")]
    assert lines, shown
    # One line changed and changed back, as a reviewer would: each saved and shown again.
    line = lines[0]
    proposed = line["accessory"]["initial_option"]["value"]
    other = next(o["value"] for o in line["accessory"]["options"] if o["value"] != proposed)
    world.driver.choose("U_REQ", plan, line["block_id"], Action.PLAN_LINE, other)
    shown_action = lambda: next(  # noqa: E731 - the line's action as the modal shows it now
        b for b in world.slack.views()[plan["id"]]["blocks"] if b["block_id"] == line["block_id"]
    )["accessory"]["initial_option"]["value"]
    wait_for(lambda: shown_action() == other, what="the changed line")
    world.driver.choose("U_REQ", world.slack.views()[plan["id"]], line["block_id"],
                        Action.PLAN_LINE, proposed)
    # Waits for the line to show the proposal again: "changed by" shows since the first change,
    # and a change still in flight when the plan is sent would reopen its review.
    wait_for(lambda: shown_action() == proposed, what="the line changed back")
    # An approver sees the lines but cannot change them.
    world.driver.choose("U_APP1", world.slack.views()[plan["id"]], line["block_id"],
                        Action.PLAN_LINE, other)
    answer = world.driver.submit("U_REQ", world.slack.views()[plan["id"]], {})
    assert answer.json()["response_action"] == "update"
    wait_for(lambda: status(world, reference) == RequestStatus.PENDING_APPROVAL, what="approval")
    awaiting = wait_for(lambda: (m := current(world, APPROVALS, message["ts"]))
                        and Action.APPROVE in json.dumps(m["blocks"]) and m, what="approve")
    assert "Plan:" in json.dumps(awaiting["blocks"])
    world.driver.click("U_APP1", awaiting, Action.APPROVE, APPROVALS)
    wait_for(lambda: len(world.runtime.service.detail(reference, viewer=None).approvals) == 1,
             what="the first approval")
    world.driver.click("U_APP2", awaiting, Action.APPROVE, APPROVALS)
    wait_for(lambda: status(world, reference) in (RequestStatus.COMPLETED,
                                                  RequestStatus.NEEDS_ATTENTION), what="the end")
    detail = world.runtime.service.detail(reference, viewer=None)
    assert status(world, reference) == RequestStatus.COMPLETED, [s.error for s in detail.steps]
    with world.runtime.service.sessions() as session:
        lines = session.exec(select(PlanItem).where(PlanItem.request_id == detail.request.id)).all()
        changes = session.exec(select(AuditEvent).where(AuditEvent.action == "plan.changed")).all()
    assert [c.actor for c in changes] == ["U_REQ", "U_REQ"]  # the approver's pick was refused
    assert [(line.system, line.kind) for line in lines
            if line.action != "leave" and not line.verified] == []
    thread = json.dumps(world.slack.thread(APPROVALS, message["ts"]))
    assert "sent the reviewed plan for approval" in thread and email not in thread


def review_and_approve(world: World, reference: str, message: dict, reviewed: int = 0) -> dict:
    """Open the plan from the thread (the `reviewed`-th offer), send it as proposed, and have
    the two approvers an erasure needs approve it. Returns the review modal as first shown."""
    ready = wait_for(lambda: ([m for m in world.slack.thread(APPROVALS, message["ts"])
                               if m["ts"] != message["ts"]
                               and Action.REVIEW_PLAN in json.dumps(m.get("blocks"))]
                              [reviewed:] or [None])[0],
                     what="the plan ready for review, in the thread")
    before = len(world.slack.views())
    world.driver.click("U_REQ", ready, Action.REVIEW_PLAN, APPROVALS)
    plan = modal(world, Callback.REVIEW_PLAN, before)
    assert world.driver.submit("U_REQ", plan, {}).json()["response_action"] == "update"
    wait_for(lambda: status(world, reference) == RequestStatus.PENDING_APPROVAL, what="approval")
    awaiting = wait_for(lambda: (m := current(world, APPROVALS, message["ts"]))
                        and f'"action_id": "{Action.APPROVE}"' in json.dumps(m["blocks"]) and m,
                        what="the approve button")
    world.driver.click("U_APP1", awaiting, Action.APPROVE, APPROVALS)

    def approved_by_first() -> bool:  # an approval counts for the plan it saw
        detail = world.runtime.service.detail(reference, viewer=None)
        return any(a.approver_slack_id == "U_APP1" and a.plan_sha256 == detail.request.plan_sha256
                   for a in detail.approvals)
    wait_for(approved_by_first, what="the first approval of this plan")
    world.driver.click("U_APP2", awaiting, Action.APPROVE, APPROVALS)
    return plan


def test_an_erasure_blocked_by_a_late_ticket_is_reviewed_again_from_slack(world: World) -> None:
    """A ticket the subject files after the review blocks the user's deletion; "Review the plan
    again" in the requester's DM finds it, and the second approved plan finishes the erasure."""
    email = world.emails()[1]
    zendesk = world.runtime.registry.sandboxes.instances["zendesk"]
    subject = next(u for u in zendesk.state.users.values() if u["email"] == email)
    reference, message = file_request(world, email, systems=("zendesk",),
                                      **{Block.TYPE: "erasure"})
    first = review_and_approve(world, reference, message)
    late = zendesk.add_ticket(subject["id"], subject="One more thing", status="open",
                              description="Please also delete my account")
    wait_for(lambda: status(world, reference) in (RequestStatus.NEEDS_ATTENTION,
                                                  RequestStatus.COMPLETED), what="the end")
    assert status(world, reference) == RequestStatus.NEEDS_ATTENTION
    dm = wait_for(lambda: [m for m in world.slack.messages("U_REQ")
                           if reference in m["text"] and "needs attention" in m["text"]],
                  what="the requester's DM")[0]
    assert Action.REVIEW_AGAIN in json.dumps(dm["blocks"])

    world.driver.click("U_REQ", dm, Action.REVIEW_AGAIN, dm["channel"])
    wait_for(lambda: any("reviewing the plan again" in m["text"]
                         for m in world.slack.thread(APPROVALS, message["ts"])), what="the note")
    second = review_and_approve(world, reference, message, reviewed=1)
    shown = json.dumps(second["blocks"])
    assert f"#{late['id']}" in shown and f"#{late['id']}" not in json.dumps(first["blocks"])
    wait_for(lambda: status(world, reference) in (RequestStatus.COMPLETED,
                                                  RequestStatus.NEEDS_ATTENTION), what="the end")
    detail = world.runtime.service.detail(reference, viewer=None)
    assert status(world, reference) == RequestStatus.COMPLETED, [s.error for s in detail.steps]
    assert subject["id"] in zendesk.state.purged_user_ids
    with world.runtime.service.sessions() as session:
        events = session.exec(select(AuditEvent).where(
            AuditEvent.request_id == detail.request.id)).all()
    assert [e.action for e in events].count("plan.submitted") == 2
    assert any(e.actor == "U_REQ" and e.details.get("reason") == "reviewed again" for e in events)


HOSTILE = "<!channel> <!here> <@U0BOSS> <!subteam^S0ALL> <https://evil.example|the bank> & co"


def assert_inert(text: str) -> None:
    """Shown literally: no mention, broadcast or disguised link can be formed."""
    for control in ("<!channel>", "<!here>", "<@U0BOSS>", "<!subteam", "<https://evil"):
        assert control not in text, control
    assert "&lt;!channel&gt;" in text and "&amp; co" in text


def test_user_text_reaches_mrkdwn_escaped(world: World) -> None:
    """A rejection reason and a request's notes, as a hostile requester or approver types
    them: the thread, every refresh of the request message and `/dsr show` show them inert."""
    reference, message = file_request(world, world.emails()[2], systems=("zendesk",),
                                      **{Block.NOTES: HOSTILE})
    before = len(world.slack.views())
    world.driver.click("U_APP1", message, Action.REJECT, APPROVALS)
    reason = modal(world, Callback.REJECT_REASON, before)
    assert world.driver.submit("U_APP1", reason, form(**{Block.REASON: HOSTILE})).status_code == 200
    posted = wait_for(lambda: [m for m in world.slack.thread(APPROVALS, message["ts"])
                               if "Rejected by" in m["text"]], what="the rejection")
    assert_inert(posted[0]["text"])
    refreshed = wait_for(lambda: (m := current(world, APPROVALS, message["ts"]))
                         and "rejected by" in json.dumps(m["blocks"]) and m, what="the refresh")
    shown = json.dumps(refreshed["blocks"])
    assert "rejectd" not in shown
    assert_inert("\n".join(e["text"] for b in refreshed["blocks"] if b["type"] == "context"
                           for e in b["elements"]))
    shown = world.driver.command("U_APP1", f"show {reference}").json()
    notes = next(b["text"]["text"] for b in shown["blocks"]
                 if b["type"] == "section" and "*Notes:*" in b["text"]["text"])
    assert_inert(notes.split("*Notes:*")[1])


def test_a_replayed_intake_submission_files_nothing_more(world: World) -> None:
    """The same signed view submission sent again (a replay within the signature's 5 minutes,
    or Slack resending it): one request, and the resend is told which."""
    sent: list[str] = []
    send = world.driver.send
    world.driver.send = lambda body, **kw: (sent.append(body), send(body, **kw))[1]
    before = len(world.slack.views())
    world.driver.command("U_REQ", "new")
    intake = modal(world, Callback.NEW_REQUEST, before)
    first = world.driver.submit("U_REQ", intake, form(**{Block.EMAILS: world.emails()[4],
                                                         Block.SYSTEMS: ["zendesk"]}))
    reference = first.json()["view"]["private_metadata"]
    replays = [send(sent[-1]) for _ in range(3)]
    for replay in replays:
        assert replay.status_code == 200
        assert replay.json()["response_action"] == "update"
        assert f"filed {reference} already" in json.dumps(replay.json()["view"])
    with world.runtime.service.sessions() as session:
        assert len(session.exec(select(DsrRequest)).all()) == 1


def test_the_approve_button_appears_only_once_the_thread_is_saved(world: World) -> None:
    """An approver quick enough to click as the message appears must find the thread its
    "Approved by" goes to already known: the buttons come with the first update, after it."""
    reference, message = file_request(world, world.emails()[5], systems=("zendesk",))
    posts = [c.args for c in world.slack.calls_to("chat.postMessage")
             if c.args.get("channel") == APPROVALS and not c.args.get("thread_ts")
             and reference in json.dumps(c.args.get("blocks"))]
    assert len(posts) == 1 and '"actions"' not in json.dumps(posts[0]["blocks"])
    updates = [c.args for c in world.slack.calls_to("chat.update")
               if reference in json.dumps(c.args.get("blocks"))]
    assert f'"action_id": "{Action.APPROVE}"' in json.dumps(updates[0]["blocks"])
    assert world.runtime.service.get(reference).thread_ts == message["ts"]
    world.driver.click("U_APP1", current(world, APPROVALS, message["ts"]), Action.APPROVE,
                       APPROVALS)
    wait_for(lambda: any("Approved by <@U_APP1>" in m["text"]
                         for m in world.slack.thread(APPROVALS, message["ts"])), what="the post")
