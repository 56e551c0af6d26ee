"""Every listener on its own: called as bolt calls it (keyword arguments, the Deps in `context`),
with a recording Slack client, `ack` and `respond`, and a real RequestService on the test
database (SQLite and PostgreSQL). No App, no HTTP. (handlers/matches.py is tested on its own.)

`offline` is a world whose service has no database: a test on it shows the listener answers
(or refuses) without one, and fails if the listener reaches for it. A database is made for each
`world` test, so several calls on one world share a test where they share a setup."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import Any

import pytest

from bot.slack_driver import form_state
from handlers import actions, commands, home, intake, lists, review, systems
from handlers.deps import AFTER_ACK, opens_a_modal
from handlers.ids import Block, Callback
from handlers.views.intake import max_length
from services.errors import InvalidRequest
from services.request_lists import RequestFilter
from services.subjects import Identifier
from services.vocabulary import IdentifierKind, RequestStatus, RequestType
from storage.models import DsrRequest
from tests.forms import form
from tests.handlers.listener_kit import (
    APPROVER,
    CHANNEL,
    MATCHES,
    REQUESTER,
    STRANGER,
    THREAD,
    World,
    build_world,
)

REF = "DSR-000001"  # the first request filed in a fresh database
NOT_ALLOWED = "You are not allowed to"


@pytest.fixture
def world(session_factory) -> World:
    return build_world(session_factory)


@pytest.fixture
def offline() -> World:
    return build_world(None)  # type: ignore[arg-type]


def said(value: Any) -> str:
    """All a reply or a view says, as one string to search."""
    return str(value)


def warned(call: dict[str, Any], message: str) -> bool:
    """`call` is the ephemeral warning of replies_errors, with `message` in it."""
    return call["response_type"] == "ephemeral" and call["text"].startswith(":warning:") \
        and message in call["text"]


def thread_posts(world: World) -> list[str]:
    posts = world.client.calls.named("chat_postMessage")
    assert all((p["channel"], p["thread_ts"]) == (CHANNEL, THREAD) for p in posts)
    return [p["text"] for p in posts]


def refreshed(world: World, reference: str, status: RequestStatus) -> bool:
    """The request's message in the approvals channel, and only it, was re-rendered."""
    return [(u["channel"], u["ts"], u["text"]) for u in world.client.calls.named("chat_update")] \
        == [(CHANNEL, THREAD, f"{reference}: {status}")]


# /dsr: each subcommand's ack (commands.dsr) and the work after it (commands.after_ack)

def command(world: World, user: str, typed: str) -> dict[str, Any]:
    world.reset()
    commands.dsr(ack=world.ack, command={"user_id": user, "text": typed, "trigger_id": "T_CMD"},
                 client=world.client, context=world.context)
    return world.ack.only


def after(world: World, user: str, typed: str) -> None:
    world.reset()
    commands.after_ack(command={"user_id": user, "text": typed, "trigger_id": "T_CMD"},
                       client=world.client, respond=world.respond, context=world.context)


@pytest.mark.parametrize(("typed", "problem"), [
    ("", None),
    ("HELP", None),
    ("frobnicate now", "`/dsr frobnicate` is not a command."),
    ("<!channel>", "`/dsr &lt;!channel&gt;` is not a command."),
    *[(word, f"`/dsr {word}` needs a reference such as DSR-000042.")
      for word, sub in commands.SUBCOMMANDS.items() if sub.needs_reference],
    ("show yesterday", "`/dsr show` needs a reference"),
])
def test_help_answers_an_empty_or_unknown_command_and_a_missing_reference(offline, typed,
                                                                          problem) -> None:
    reply = command(offline, REQUESTER, typed)
    assert reply["response_type"] == "ephemeral"
    assert all(f"`/dsr {word}" in said(reply["blocks"]) for word in commands.SUBCOMMANDS)
    if problem is None:
        assert reply["text"] == "DSR Desk help" and ":warning:" not in said(reply["blocks"])
    else:
        assert f":warning: {problem}" in reply["blocks"][0]["text"]["text"]


@pytest.mark.parametrize(("user", "typed", "message"), [
    (REQUESTER, "search", "`/dsr search` needs an email, a phone or a name."),
    (APPROVER, "extend DSR-000001 " + "x" * (commands.REASON_LIMIT + 1),
     f"The reason: At most {commands.REASON_LIMIT:,} characters"),
    (STRANGER, "search jane@example.com", f"{NOT_ALLOWED} search for subjects"),
    (STRANGER, "report DSR-000001", f"{NOT_ALLOWED} read compliance records"),
    (STRANGER, "list open csv", f"{NOT_ALLOWED} see requests"),
])
def test_refusals_before_the_database_are_in_the_ack(offline, user, typed, message) -> None:
    reply = command(offline, user, typed)
    assert reply["response_type"] == "ephemeral" and message in reply["text"]


@pytest.mark.parametrize(("user", "typed"), [
    (REQUESTER, "list open"), (REQUESTER, "show DSR-000001"), (REQUESTER, "search"),
    (STRANGER, "list csv"), (STRANGER, "search jane@example.com"), (STRANGER, "report DSR-000001"),
    (REQUESTER, "nonsense"), (REQUESTER, ""),
])
def test_after_ack_has_nothing_to_do_when_the_ack_answered_or_refused(offline, user, typed) -> None:
    after(offline, user, typed)
    assert offline.client.calls == [] and offline.respond.calls == []


def test_the_form_opens_from_dsr_new_and_the_home_button_for_requesters_only(world) -> None:
    assert command(world, REQUESTER, "new") == {}  # the form opens with the (empty) ack
    (opened,) = world.client.calls.named("views_open")
    assert opened["trigger_id"] == "T_CMD" and opened["view"]["callback_id"] == Callback.NEW_REQUEST
    assert "GDPR" in said(opened["view"])  # the jurisdictions, read from the database
    world.reset()
    actions.new_request(body=world.body(REQUESTER), client=world.client, respond=world.respond,
                        context=world.context)
    (button,) = world.client.calls.named("views_open")
    assert button["trigger_id"] == "T_TRIGGER" and button["view"] == opened["view"]
    assert warned(command(world, STRANGER, "new"), "file data subject requests")
    assert world.client.calls == []
    world.reset()
    actions.new_request(body=world.body(STRANGER), client=world.client, respond=world.respond,
                        context=world.context)
    assert world.client.calls == [] and warned(world.respond.only, "file data subject requests")


def test_show_and_find_answer_with_the_request_or_the_subjects_requests(world) -> None:
    world.filed()
    world.filed(identifiers=(Identifier(IdentifierKind.EMAIL, "john@example.com"),))
    for typed in ("show DSR-000001", "show dsr-1", "find 1"):
        reply = command(world, REQUESTER, typed)
        assert reply["response_type"] == "ephemeral" and reply["text"] == REF
        assert "jane.doe@example.com" in said(reply["blocks"])  # in clear: /dsr show is private
    reply = command(world, REQUESTER, "find JANE.DOE@Example.com")
    assert reply["text"] == "Requests of the subject you searched for"
    assert "1 request" in said(reply["blocks"]) and REF in said(reply["blocks"])
    assert "DSR-000002" not in said(reply["blocks"])
    assert warned(command(world, STRANGER, "show DSR-000001"), f"{NOT_ALLOWED} see requests")
    assert warned(command(world, REQUESTER, "show DSR-000999"), "DSR-000999")


def test_list_answers_a_page_and_refuses_what_is_no_filter(world) -> None:
    world.filed()
    world.filed(kind=RequestType.ERASURE)
    reply = command(world, REQUESTER, "list  open   erasure")
    assert reply["text"] == "Requests: open erasure"
    assert "DSR-000002" in said(reply["blocks"]) and REF not in said(reply["blocks"])
    assert "*Requests: rejected*: none." in said(command(world, REQUESTER, "list rejected"))
    for typed in ("list bogus", "list bogus csv"):  # a CSV is refused in the ack too
        assert warned(command(world, REQUESTER, typed), "`bogus` is not a status")
    assert warned(command(world, STRANGER, "list"), f"{NOT_ALLOWED} see requests")


def test_list_csv_acks_then_sends_the_file_by_dm(world) -> None:
    world.filed()
    assert "Preparing the CSV" in command(world, REQUESTER, "list open csv")["text"]
    after(world, REQUESTER, "list open csv")
    assert world.client.calls.names() == ["conversations_open", "files_upload_v2"]
    assert world.client.calls.named("conversations_open") == [{"users": REQUESTER}]
    (upload,) = world.client.calls.named("files_upload_v2")
    assert (upload["channel"], upload["filename"]) == ("D1", "dsr-requests-open.csv")
    assert upload["content"].startswith("\ufeff".encode()) and REF.encode() in upload["content"]


def test_search_acks_then_reports_each_system_even_one_failing(offline) -> None:
    assert command(offline, REQUESTER, "search jane.doe@example.com")["text"].startswith(":mag:")
    after(offline, REQUESTER, "search jane.doe@example.com")
    reply = offline.respond.only
    assert reply["replace_original"] and reply["response_type"] == "ephemeral"
    assert "jane.doe@example.com" not in reply["text"]  # the subject masked
    assert reply["blocks"][0]["text"]["text"].splitlines() == [
        "*genesys*: search failed (TimeoutError); try again later.",
        "*zendesk* (simulation): Jane Doe 0 (1000)"]


@pytest.mark.parametrize(("typed", "refused", "allowed", "reply", "done", "again"), [
    ("extend DSR-000001 the subject sent 40 files", (REQUESTER, "extend deadlines"), APPROVER,
     "DSR-000001 now due", lambda r: r.extension_reason == "the subject sent 40 files",
     "already extended"),
    ("cancel DSR-000001 filed twice", (STRANGER, "cancel requests"), REQUESTER,
     ":x: DSR-000001 canceled.", lambda r: r.status == RequestStatus.CANCELED, "canceled"),
    ("ack DSR-000001", (STRANGER, "record acknowledgements"), REQUESTER,
     "Receipt of DSR-000001 recorded", lambda r: r.acknowledged_at == datetime(2026, 3, 2, 9, tzinfo=UTC),
     "acknowledged on 2026-03-02"),
])
def test_extend_cancel_and_ack_change_the_request_once_for_whom_may(world, typed, refused,
                                                                    allowed, reply, done,
                                                                    again) -> None:
    world.filed()
    untouched = world.service.get(REF)
    assert warned(command(world, refused[0], typed), f"{NOT_ALLOWED} {refused[1]}")
    assert world.service.get(REF) == untouched
    answer = command(world, allowed, typed)
    assert answer["response_type"] == "ephemeral" and reply in answer["text"]
    request = world.service.get(REF)
    assert done(request) and not done(untouched)
    if request.extended_due_on:
        assert f"now due {request.extended_due_on:%d %b %Y}" in answer["text"]
    assert warned(command(world, allowed, typed), again)  # none of them twice


def test_report_acks_then_sends_the_record(offline) -> None:
    assert "compliance record of DSR-000001" in command(offline, REQUESTER, "report dsr-000001")["text"]
    after(offline, REQUESTER, "report dsr-000001")
    assert offline.deps.deliverables.sent == [("record", "DSR-000001", REQUESTER)]
    assert "compliance record of DSR-000001 is in your direct messages" in \
        offline.respond.only["text"]


# Lists: the words of /dsr list, their pages, the Home group's "N more", the CSV

@pytest.mark.parametrize(("words", "expected"), [
    ("", {}),
    ("PENDING_APPROVAL erasure access", {"statuses": [RequestStatus.PENDING_APPROVAL],
                                         "types": [RequestType.ERASURE, RequestType.ACCESS]}),
    ("open", {"statuses": [s for s in RequestStatus if s not in (
        RequestStatus.COMPLETED, RequestStatus.REJECTED, RequestStatus.CANCELED)]}),
    ("mine awaiting", {"requester": REQUESTER, "awaiting": REQUESTER}),
    ("overdue", {"due_before": date(2026, 3, 2)}),
    ("due-soon", {"due_from": date(2026, 3, 2), "due_before": date(2026, 3, 10)}),
    ("from 2026-01-01 to 2026-02-28", {"received_from": date(2026, 1, 1),
                                       "received_to": date(2026, 2, 28)}),
    ("subject:" + "ab" * 32, {"subject": ["ab" * 32]}),
])
def test_parse_filters_reads_each_word(offline, words, expected) -> None:
    def fields(filters: RequestFilter) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(filters).items()}

    assert fields(lists.parse_filters(words, REQUESTER, offline.deps)) == fields(
        RequestFilter(**expected))


@pytest.mark.parametrize(("words", "message"), [
    ("open bogus", "`bogus` is not a status, a type, `mine`"),
    ("<@U1>", "`&lt;@U1&gt;` is not a status"),
    ("x" * 60, "`" + "x" * 40 + "…` is not a status"),
    ("from", "`from `: dates look like 2026-11-23."),
    ("to 2026-13-01", "`to 2026-13-01`: dates look like"),
    ("from 1999-12-31", "give a date from 2000-01-01 to 2099-12-31"),
    ("subject:abc", "`subject:abc` is not a status"),
])
def test_parse_filters_refuses_what_is_no_filter(offline, words, message) -> None:
    with pytest.raises(InvalidRequest) as refused:
        lists.parse_filters(words, REQUESTER, offline.deps)
    assert message in str(refused.value)


def test_requests_csv_is_one_row_a_request_without_subject_data() -> None:
    rows = [DsrRequest(id=7, type="erasure", status="completed", jurisdiction_code="GDPR",
                       received_at=datetime(2026, 3, 2, 9, 30, 15, 999, tzinfo=UTC),
                       due_on=date(2026, 4, 2), closed_at=datetime(2026, 3, 5, 8, tzinfo=UTC),
                       requester_slack_id="U1", simulation=True,
                       identity_verification="passport jane@x.org")]
    assert lists.requests_csv(rows).decode().splitlines() == [
        "\ufeff" + ",".join(lists.CSV_COLUMNS),
        "DSR-000007,Erasure,GDPR,completed,2026-03-02T09:30:15+00:00,2026-04-02,,"
        "2026-03-05T08:00:00+00:00,U1,yes"]


def test_turn_page_shows_the_next_page_where_the_list_is(world) -> None:
    world.many(21)
    for container in ("message", "view"):
        world.reset()
        lists.turn_page(body=world.body(REQUESTER, container={"type": container},
                                        view={"id": "V_LIST"}),
                        action={"value": "20|open"}, client=world.client, respond=world.respond,
                        context=world.context)
        if container == "view":
            (update,) = world.client.calls.named("views_update")
            assert update["view_id"] == "V_LIST" and world.respond.calls == []
            shown = update["view"]["blocks"]
        else:
            assert world.client.calls == [] and world.respond.only["replace_original"] is True
            shown = world.respond.only["blocks"]
        assert "*Requests: open*: 21–21 of 21" in said(shown)
        buttons = {b["action_id"]: b["value"] for b in shown[-2]["elements"]}
        assert buttons == {"list_page:prev": "0|open", "list_csv": "0|open"}  # no Next


def test_a_home_group_opens_its_whole_list_and_sends_it_as_csv(world) -> None:
    world.many(6)
    lists.open_list(body=world.body(REQUESTER), action={"value": "0|open mine"},
                    client=world.client, respond=world.respond, context=world.context)
    (opened,) = world.client.calls.named("views_open")
    assert opened["trigger_id"] == "T_TRIGGER" and opened["view"]["type"] == "modal"
    assert "1–6 of 6" in said(opened["view"]) and "DSR-000006" in said(opened["view"])
    world.reset()
    lists.send_csv_button(body=world.body(REQUESTER), action={"value": "40|open mine"},
                          client=world.client, respond=world.respond, context=world.context)
    (upload,) = world.client.calls.named("files_upload_v2")
    assert upload["filename"] == "dsr-requests-open-mine.csv"
    assert upload["content"].decode().count("DSR-00000") == 6  # every row, whatever the page
    assert "in your direct messages" in world.respond.only["text"]


@pytest.mark.parametrize(("listener", "user", "value", "message"), [
    (lists.turn_page, STRANGER, "20|open", f"{NOT_ALLOWED} see requests"),
    (lists.open_list, STRANGER, "0|overdue", f"{NOT_ALLOWED} see requests"),
    (lists.send_csv_button, STRANGER, "0|", f"{NOT_ALLOWED} see requests"),
    (lists.turn_page, REQUESTER, "0|open sesame", "`sesame` is not a status"),  # a forged button
])
def test_list_buttons_refuse_by_response_url(offline, listener, user, value, message) -> None:
    listener(body=offline.body(user), action={"value": value}, client=offline.client,
             respond=offline.respond, context=offline.context)
    assert offline.client.calls.named("files_upload_v2") == []
    assert offline.client.calls.named("views_open") == []
    assert warned(offline.respond.only, message) and offline.respond.only["replace_original"] is False


# Buttons on a request, and the rejection's reason

def click(world: World, listener, user: str, value: str) -> None:  # noqa: ANN001
    world.reset()
    listener(body=world.body(user), action={"value": value}, client=world.client,
             respond=world.respond, context=world.context)


@pytest.mark.parametrize(("kind", "post", "status", "woken"), [
    (RequestType.ACCESS, f":white_check_mark: Approved by <@{APPROVER}>; execution starts now.",
     RequestStatus.APPROVED, 1),
    (RequestType.ERASURE, f":white_check_mark: <@{APPROVER}> approved (1 of 2).",
     RequestStatus.PENDING_APPROVAL, 0),
])
def test_approve_records_the_decision_and_tells_the_thread(world, kind, post, status,
                                                           woken) -> None:
    reference = world.pending(kind)
    click(world, actions.approve, APPROVER, reference)
    assert world.status(reference) == status and len(world.woken) == woken
    assert refreshed(world, reference, status) and thread_posts(world) == [post]
    assert world.respond.calls == []


def test_approve_refusals_reach_respond_as_ephemeral(world) -> None:
    own = world.pending(requester=APPROVER)
    for approver, reference, message in (
            (APPROVER, own, "You filed this request: someone else must decide it."),  # four eyes
            (REQUESTER, own, f"{NOT_ALLOWED} approve or reject requests")):
        click(world, actions.approve, approver, reference)
        assert warned(world.respond.only, message)
        assert world.respond.only["replace_original"] is False
        assert world.client.calls == [] and world.woken == []
    assert world.status(own) == RequestStatus.PENDING_APPROVAL


def test_reject_opens_the_reason_modal_for_approvers_only(offline) -> None:
    click(offline, actions.reject, APPROVER, REF)
    (opened,) = offline.client.calls.named("views_open")
    assert opened["trigger_id"] == "T_TRIGGER"
    assert (opened["view"]["callback_id"], opened["view"]["private_metadata"]) == (
        Callback.REJECT_REASON, REF)
    click(offline, actions.reject, REQUESTER, REF)
    assert offline.client.calls == [] and warned(offline.respond.only, "approve or reject")


def rejection(world: World, user: str, reason: str) -> dict[str, Any]:
    world.reset()
    view = {"id": "V_REJECT", "private_metadata": REF, "state": {"values": {
        Block.REASON: {"value": {"type": "plain_text_input", "value": reason}}}}}
    actions.submit_rejection(ack=world.ack, body=world.body(user), view=view, context=world.context)
    return view


def test_submit_rejection_refuses_a_reason_longer_than_its_field_before_the_service(offline) -> None:
    limit = max_length(Block.REASON)
    with pytest.raises(InvalidRequest, match=f"At most {limit:,} characters"):  # app.error shows it
        rejection(offline, APPROVER, "x" * (limit + 1))
    assert offline.ack.calls == [] and AFTER_ACK not in offline.context


def test_submit_rejection_refuses_under_the_reason_or_acks_and_hands_over(world) -> None:
    world.pending()
    for user, reason, message in ((APPROVER, " \x00 ", "A rejection needs a reason."),
                                  (REQUESTER, "no", f"{NOT_ALLOWED} approve or reject requests")):
        rejection(world, user, reason)
        assert world.ack.only["response_action"] == "errors"
        assert message in world.ack.only["errors"][Block.REASON]
        assert AFTER_ACK not in world.context and world.status(REF) == RequestStatus.PENDING_APPROVAL
    view = rejection(world, APPROVER, "Identity <not> verified")
    assert world.ack.only == {} and world.context[AFTER_ACK] == {"reference": REF}
    assert world.status(REF) == RequestStatus.REJECTED and world.client.calls == []
    actions.announce_rejection(body=world.body(APPROVER), view=view, client=world.client,
                               context=world.context)
    assert refreshed(world, REF, RequestStatus.REJECTED)
    assert thread_posts(world) == [f":no_entry: Rejected by <@{APPROVER}>: Identity &lt;not&gt; verified"]


def test_announce_rejection_is_silent_when_the_ack_refused(offline) -> None:
    actions.announce_rejection(body=offline.body(APPROVER), view={}, client=offline.client,
                               context=offline.context)
    assert offline.client.calls == []


def test_retry_runs_the_failed_steps_again(world) -> None:
    reference = world.needing_attention()
    click(world, actions.retry, STRANGER, reference)
    assert warned(world.respond.only, f"{NOT_ALLOWED} retry requests") and world.client.calls == []
    click(world, actions.retry, REQUESTER, reference)
    assert world.status(reference) == RequestStatus.IN_PROGRESS and world.woken == [1]
    assert refreshed(world, reference, RequestStatus.IN_PROGRESS)
    assert thread_posts(world) == [f":arrows_counterclockwise: <@{REQUESTER}> retried 1 failed step(s)."]
    assert world.respond.only["text"] == f"Retrying 1 step(s) of {reference}."


@pytest.mark.parametrize(("listener", "user", "sent", "reply"), [
    (actions.send_export, REQUESTER, [("export", REF, REQUESTER)],
     f":package: The export of {REF} is in your direct messages."),
    (actions.send_record, APPROVER, [("record", REF, APPROVER)],
     f":page_facing_up: The compliance record of {REF} is in your direct messages."),
    (actions.send_export, APPROVER, [], ":warning: Only the requester and managers"),
])
def test_send_export_and_record_go_by_dm(offline, listener, user, sent, reply) -> None:
    listener(body=offline.body(user), action={"value": REF}, respond=offline.respond,
             context=offline.context)
    assert offline.deps.deliverables.sent == sent
    answer = offline.respond.only
    assert answer["text"].startswith(reply) and answer["response_type"] == "ephemeral"
    assert answer["replace_original"] is False


# The intake form

def submit(world: World, user: str = REQUESTER, **fields: Any) -> dict[str, Any]:
    world.reset()
    view = {"id": "V0INTAKE", "state": {"values": form(**fields)}}
    intake.submit_intake(ack=world.ack, body=world.body(user), view=view, context=world.context)
    return world.ack.only


def filed_references(world: World) -> list[str]:
    return [r.reference for r in world.service.page(RequestFilter(), viewer=REQUESTER).requests]


def test_submit_intake_files_the_request_once_and_hands_over_the_search(world) -> None:
    refused = submit(world, **{Block.JURISDICTION: "XX"})  # shaped like one, but unknown
    assert refused["response_action"] == "errors" and "XX" in refused["errors"][Block.JURISDICTION]
    assert AFTER_ACK not in world.context and filed_references(world) == []
    ack = submit(world)
    assert ack["response_action"] == "update" and REF in said(ack["view"])
    assert world.context[AFTER_ACK] == {"reference": REF, "view_id": "V0INTAKE"}
    assert world.status(REF) == RequestStatus.RECEIVED
    again = submit(world)  # the same modal submitted again files nothing more
    assert again["response_action"] == "update" and ":information_source:" in said(again["view"])
    assert filed_references(world) == [REF]


@pytest.mark.parametrize(("user", "fields", "block", "message"), [
    (REQUESTER, {Block.EMAILS: "jane@"}, Block.EMAILS, "is not an email address"),
    (REQUESTER, {Block.SYSTEMS: ["salesforce"]}, Block.SYSTEMS, "Choose among the systems"),
])
def test_submit_intake_shows_errors_on_the_fields(offline, user, fields, block, message) -> None:
    ack = submit(offline, user, **fields)
    assert ack["response_action"] == "errors" and message in ack["errors"][block]
    assert AFTER_ACK not in offline.context


def test_submit_intake_by_someone_without_a_role_says_so_in_place_of_the_form(offline) -> None:
    ack = submit(offline, STRANGER)
    assert ack["response_action"] == "update"
    assert f"{NOT_ALLOWED} file data subject requests" in said(ack["view"])
    assert AFTER_ACK not in offline.context


def test_show_matches_after_the_ack_searches_into_the_modal(world) -> None:
    submit(world)
    world.reset()
    intake.show_matches(body=world.body(REQUESTER), client=world.client, context=world.context)
    (update,) = world.client.calls.named("views_update")
    assert update["view_id"] == "V0INTAKE" and "Jane Doe 0" in said(update["view"])
    world.reset()
    world.context.pop(AFTER_ACK)  # the ack refused: nothing to show
    intake.show_matches(body=world.body(REQUESTER), client=world.client, context=world.context)
    assert world.client.calls == []


# The review of an erasure's plan: 16 lines, 15 a page

def reviewing(world: World) -> str:
    return world.filed(kind=RequestType.ERASURE, matches=MATCHES)


def in_modal(world: World, user: str, reference: str, offset: int = 0) -> dict[str, Any]:
    return world.body(user, view={"id": "V_REVIEW", "private_metadata": f"{reference}|{offset}"})


def plan_actions(world: World, reference: str) -> list[str]:
    _, page = world.service.plan_page(reference, viewer=REQUESTER, limit=100)
    return [str(item.action) for item in page.items]


def test_open_review_shows_the_plan_editable_by_its_requester_only(world) -> None:
    reference = reviewing(world)
    for user, editable in ((REQUESTER, True), (APPROVER, False)):
        click(world, review.open_review, user, reference)
        (opened,) = world.client.calls.named("views_open")
        view = opened["view"]
        assert view["callback_id"] == Callback.REVIEW_PLAN
        assert view["private_metadata"] == f"{reference}|0"
        assert "Lines 1–15 of 16" in said(view) and "Zendesk Support: 16 delete" in said(view)
        assert ("submit" in view) is editable and ("static_select" in said(view)) is editable
    searching = world.filed(kind=RequestType.ERASURE, systems=("genesys",))
    click(world, review.open_review, REQUESTER, searching)
    assert world.client.calls == []
    assert world.respond.only["text"] == (
        f"{searching}: :mag: finding the subject's data (0 of 1 searches done)…")
    for ref in (searching, "DSR-000777"):  # someone without a role learns nothing of either
        world.reset()
        click(world, review.open_review, STRANGER, ref)
        assert world.client.calls == [] and NOT_ALLOWED in world.respond.only["text"]


def change_line(world: World, user: str, reference: str, block_id: str, chosen: str) -> None:
    world.reset()
    review.change_line(body=in_modal(world, user, reference), client=world.client,
                       action={"block_id": block_id, "selected_option": {"value": chosen}},
                       context=world.context)


def test_change_line_saves_it_or_shows_why_not_and_shows_the_page_again(world) -> None:
    reference = reviewing(world)
    _, page = world.service.plan_page(reference, viewer=REQUESTER, limit=1)
    line = page.items[0].id
    for user, block_id, chosen, problem in (
            (APPROVER, f"line:{line}", "leave", "Only the person who filed the request reviews"),
            (REQUESTER, f"line:{line}", "redact", "Redact is not offered for subject #1000."),
            (REQUESTER, f"line:{line + 999}", "leave", "the review you used is out of date")):
        change_line(world, user, reference, block_id, chosen)
        (update,) = world.client.calls.named("views_update")
        assert problem in update["view"]["blocks"][0]["text"]["text"]
        assert world.client.calls.named("chat_update") == []
    change_line(world, REQUESTER, reference, "line:1 OR 1=1", "leave")  # a forged block id
    (refused,) = world.client.calls.named("views_update")  # refused before a query, in the modal
    assert "out of date" in said(refused["view"]) and not world.client.calls.named("chat_update")
    assert "leave" not in plan_actions(world, reference)

    change_line(world, REQUESTER, reference, f"line:{line}", "leave")
    assert plan_actions(world, reference).count("leave") == 1
    (update,) = world.client.calls.named("views_update")
    assert update["view_id"] == "V_REVIEW" and "15 delete · 1 leave" in said(update["view"])
    assert f"changed by <@{REQUESTER}>" in said(update["view"])
    assert refreshed(world, reference, RequestStatus.IN_REVIEW)


def test_change_group_changes_every_line_of_it(world) -> None:
    reference = reviewing(world)
    for chosen, problem, leaves in (
            ("subject|redact", "No line of the subject's own records can be set to redact.", 0),
            ("nobody|leave", "No group 'nobody' in a plan.", 0),
            ("subject|leave", None, 16)):
        world.reset()
        review.change_group(body=in_modal(world, REQUESTER, reference, 15),
                            action={"selected_option": {"value": chosen}},
                            client=world.client, context=world.context)
        (update,) = world.client.calls.named("views_update")
        assert plan_actions(world, reference).count("leave") == leaves
        assert update["view"]["private_metadata"] == f"{reference}|15"  # the page it was on
        if problem:
            assert problem in said(update["view"]["blocks"][0])
            assert world.client.calls.named("chat_update") == []
        else:
            assert "Zendesk Support: 16 leave" in said(update["view"])
            assert refreshed(world, reference, RequestStatus.IN_REVIEW)


def test_review_turn_page_shows_the_page_or_the_last_one(world) -> None:
    reference = reviewing(world)
    for offset in ("15", "30"):  # past the end: the last page
        world.reset()
        review.turn_page(body=in_modal(world, APPROVER, reference), action={"value": offset},
                         client=world.client, context=world.context)
        (update,) = world.client.calls.named("views_update")
        assert update["view"]["private_metadata"] == f"{reference}|15"
        assert "Lines 16–16 of 16" in said(update["view"]) and "Previous" in said(update["view"])
    world.reset()  # someone without a role: told so in the modal, not shown the page
    review.turn_page(body=in_modal(world, STRANGER, reference), action={"value": "0"},
                     client=world.client, context=world.context)
    (update,) = world.client.calls.named("views_update")
    assert NOT_ALLOWED in said(update["view"]) and "Lines" not in said(update["view"])


def submit_plan(world: World, user: str, reference: str) -> dict[str, Any]:
    world.reset()
    review.submit_plan(ack=world.ack, body=in_modal(world, user, reference), context=world.context)
    return world.ack.only


def test_submit_plan_refused_stays_in_the_modal_else_it_goes_for_approval(world) -> None:
    reference = reviewing(world)
    searching = world.filed(kind=RequestType.ERASURE, systems=("genesys",))
    for user, refused, problem in (
            (APPROVER, reference, "Only the person who filed the request sends its plan"),
            (REQUESTER, searching, "the search for the subject's data is not finished")):
        ack = submit_plan(world, user, refused)
        assert ack["response_action"] == "update"
        assert ack["view"]["callback_id"] == Callback.REVIEW_PLAN
        assert problem in ack["view"]["blocks"][0]["text"]["text"]
        assert AFTER_ACK not in world.context and world.status(refused) == RequestStatus.IN_REVIEW
        review.announce_plan(body=world.body(user), client=world.client, context=world.context)
        assert world.client.calls == []

    ack = submit_plan(world, REQUESTER, reference)
    assert ack["response_action"] == "update" and "the plan is sent for approval" in said(ack["view"])
    assert world.context[AFTER_ACK] == {"reference": reference}
    assert world.status(reference) == RequestStatus.PENDING_APPROVAL and world.client.calls == []
    review.announce_plan(body=world.body(REQUESTER), client=world.client, context=world.context)
    assert refreshed(world, reference, RequestStatus.PENDING_APPROVAL)
    assert thread_posts(world) == [f":clipboard: <@{REQUESTER}> sent the reviewed plan for "
                                   "approval:\nZendesk Support: 16 delete"]


def test_review_again_sends_a_failed_erasure_back_to_review(world) -> None:
    access = world.needing_attention()
    click(world, review.review_again, REQUESTER, access)
    assert warned(world.respond.only, "only an erasure that needs attention is reviewed again")
    erasure = world.needing_attention(RequestType.ERASURE)
    click(world, review.review_again, APPROVER, erasure)
    assert warned(world.respond.only, "Only the person who filed") and world.client.calls == []
    assert world.woken == [] and world.status(access) == world.status(erasure) == \
        RequestStatus.NEEDS_ATTENTION
    click(world, review.review_again, REQUESTER, erasure)
    assert world.status(erasure) == RequestStatus.IN_REVIEW and world.woken == [1]
    assert refreshed(world, erasure, RequestStatus.IN_REVIEW)
    assert thread_posts(world)[0].startswith(
        f":mag_right: <@{REQUESTER}> is reviewing the plan again")


# The App Home tab

def test_home_opened_publishes_each_role_holders_groups(world) -> None:
    world.pending()
    for user, shown, none in ((APPROVER, "*Awaiting your approval* (1)", "*Your open requests*: none"),
                              (REQUESTER, "*Your open requests* (1)", "*Awaiting your approval*: none")):
        world.reset()
        home.home_opened(event={"type": "app_home_opened", "user": user, "tab": "home"},
                         client=world.client, context=world.context)
        (published,) = world.client.calls.named("views_publish")
        assert published["user_id"] == user and published["view"]["type"] == "home"
        assert shown in said(published["view"]) and none in said(published["view"])
        assert REF in said(published["view"]) and "*Overdue*: none" in said(published["view"])


def test_home_opened_tells_someone_without_a_role_and_ignores_the_messages_tab(offline) -> None:
    home.home_opened(event={"user": STRANGER, "tab": "home"}, client=offline.client,
                     context=offline.context)
    (published,) = offline.client.calls.named("views_publish")
    assert published["user_id"] == STRANGER and "You have no DSR Desk role" in said(published["view"])
    offline.reset()
    home.home_opened(event={"user": REQUESTER, "tab": "messages"}, client=offline.client,
                     context=offline.context)
    assert offline.client.calls == []


def test_a_click_that_opens_a_modal_acks_and_opens_it_in_its_own_request(offline) -> None:
    """Slack's trigger_id lasts 3 s: the modal is not left to the background process."""
    offline.reset()
    opens_a_modal(actions.reject)(ack=offline.ack, body=offline.body(APPROVER),
                                  action={"value": REF}, client=offline.client,
                                  respond=offline.respond, context=offline.context)
    assert offline.ack.only == {}
    (opened,) = offline.client.calls.named("views_open")
    assert opened["view"]["callback_id"] == Callback.REJECT_REASON
    offline.reset()  # a refusal, once acked, goes by response_url
    opens_a_modal(actions.reject)(ack=offline.ack, body=offline.body(STRANGER),
                                  action={"value": REF}, client=offline.client,
                                  respond=offline.respond, context=offline.context)
    assert offline.client.calls == [] and warned(offline.respond.only, "approve or reject")


# /dsr systems: the data map

def test_systems_lists_the_map_and_managers_retire_a_system(world) -> None:
    from services.data_map import spec_of

    assert "has no systems yet" in said(command(world, REQUESTER, "systems"))
    world.deps.data_map.add(spec_of({
        "name": "payroll", "label": "Payroll <!channel>", "reach": "assisted", "owner": "S0HR",
        "categories": ["payslips", "bank details"], "request_types": ["access", "erasure"],
        "instructions": "Export the employee's profile."}), actor="U_MANAGER")
    reply = command(world, REQUESTER, "systems")
    listed = said(reply["blocks"])
    assert "*Payroll &lt;!channel&gt;* (`payroll`)" in listed  # a label cannot ping anyone
    assert "owner <!subteam^S0HR>" in listed and "holds payslips, bank details" in listed
    assert "Access / export, Erasure" in listed
    assert warned(command(world, REQUESTER, "systems retire payroll moved to HR suite"),
                  f"{NOT_ALLOWED} change the data map")
    assert command(world, "U_MANAGER", "systems retire payroll")["text"] == (
        "`/dsr systems retire` needs a system's name and a reason.")
    assert "is retired from the data map" in command(
        world, "U_MANAGER", "systems retire payroll moved to the HR suite")["text"]
    assert "has no systems yet" in said(command(world, REQUESTER, "systems"))
    assert "_retired " in said(command(world, REQUESTER, "systems retired"))
    assert warned(command(world, "U_MANAGER", "systems retire payroll again"), "is retired")
    assert "say `/dsr systems`" in command(world, REQUESTER, "systems frobnicate")["text"]
    assert warned(command(world, STRANGER, "systems"), f"{NOT_ALLOWED} see the data map")


def submit_system(world: World, user: str, editing: str = "", **fields: Any) -> dict[str, Any]:
    world.reset()
    filled = {Block.SYSTEM_NAME: "crm", Block.SYSTEM_LABEL: "CRM (HubSpot)",
              Block.SYSTEM_REACH: "assisted", Block.SYSTEM_OWNER: "U0SALES",
              Block.SYSTEM_CATEGORIES: "contact details, deals", Block.SYSTEM_TYPES: ["access"],
              Block.SYSTEM_INSTRUCTIONS: "Export the contact from HubSpot."} | fields
    view = {"id": "V0SYSTEM", "private_metadata": editing, "state": {"values": form_state(filled)}}
    systems.submit_system(ack=world.ack, body=world.body(user), view=view, context=world.context)
    return world.ack.only


def test_managers_add_and_edit_systems_in_a_form_that_points_at_what_to_fix(world) -> None:
    assert warned(command(world, REQUESTER, "systems add"), f"{NOT_ALLOWED} change the data map")
    command(world, "U_MANAGER", "systems add")
    opened = world.client.calls.named("views_open")[0]["view"]
    assert opened["callback_id"] == Callback.SYSTEM and not opened.get("private_metadata")

    refused = submit_system(world, "U_MANAGER", **{Block.SYSTEM_OWNER: "sales-team"})
    assert refused["response_action"] == "errors"
    assert list(refused["errors"]) == [Block.SYSTEM_OWNER]
    assert "Slack user id" in refused["errors"][Block.SYSTEM_OWNER]
    refused = submit_system(world, "U_MANAGER", **{Block.SYSTEM_REACH: "webhook"})
    assert list(refused["errors"]) == [Block.SYSTEM_WEBHOOK]
    assert "added to the data map" in said(submit_system(world, "U_MANAGER")["view"])
    assert "already has a system `crm`" in said(submit_system(world, "U_MANAGER"))

    command(world, "U_MANAGER", "systems edit crm")
    opened = world.client.calls.named("views_open")[0]["view"]
    assert opened["private_metadata"] == "crm" and "U0SALES" in said(opened)
    edited = submit_system(world, "U_MANAGER", editing="crm", **{
        Block.SYSTEM_NAME: "ignored", Block.SYSTEM_OWNER: "S0SALES"})
    assert "updated in the data map" in said(edited["view"])
    assert [(s.name, s.owner) for s in world.deps.data_map.systems(viewer=REQUESTER)] == [
        ("crm", "S0SALES")]
    assert submit_system(world, REQUESTER, editing="crm")["response_action"] == "update"
    assert "not allowed to change the data map" in said(world.ack.only["view"])
    assert warned(command(world, "U_MANAGER", "systems edit nothing"), "no system `nothing`")
