"""Whatever reaches /slack/events gets a 401 or a clear answer, never a 500 or a traceback.

The app runs in-process (its WSGI app behind httpx's WSGI transport: no socket, so fuzzing is
quick), with the work after each ack run before the answer, so that whatever it logs is logged
by the time a test looks. Requests are signed as Slack signs them, unless a test says otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import sqlite3
import time
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.http import MAX_BODY_BYTES, wsgi_app
from bot.slack_driver import SlackDriver, form_state
from handlers.commands import SUBCOMMANDS as TABLE
from handlers.edge import DATABASE_DOWN
from handlers.ids import Action, Block, Callback
from handlers.intake import intake_key
from handlers.views.common import TYPE_LABELS
from handlers.views.intake import reject_modal
from handlers.views.systems import system_modal
from storage.db import make_engine, make_session_factory
from storage.models import DsrRequest
from tests.e2e.conftest import SECRET, World
from tests.e2e.test_http_server import free_port
from tests.forms import form

FUZZ = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SUBCOMMANDS = ["", *TABLE]  # every subcommand the table has, and none


@pytest.fixture
def slack(world: World, monkeypatch: pytest.MonkeyPatch) -> SlackDriver:
    """Slack's side, sending signed requests to the app in-process."""
    inbox = world.runtime.inbox
    inbox.stop()  # nothing claims in the background: the work after each ack runs, from its
    # row, before the answer
    monkeypatch.setattr(inbox, "ring", lambda: [inbox.run_item(i) for i in inbox.claim(100)])
    driver = SlackDriver("http://dsr-desk.test", SECRET, world.slack, world.driver.standin_url)
    driver.http = httpx.Client(transport=httpx.WSGITransport(app=wsgi_app(world.runtime)))
    return driver


def intake_view(world: World, slack: SlackDriver) -> dict[str, Any]:
    """A new intake modal, as `/dsr new` opens it in Slack (each is filed once)."""
    before = set(world.slack.views())
    assert slack.command("U_REQ", "new").status_code == 200
    return next(v for view_id, v in world.slack.views().items() if view_id not in before)


def submit(slack: SlackDriver, view: dict[str, Any], values: dict[str, Any],
           user: str = "U_REQ") -> httpx.Response:
    return slack.submit(user, view, values)


@pytest.fixture
def open_view(world: World, slack: SlackDriver) -> str:
    """The id of a modal open in Slack, for the views we submit without opening them first:
    the work after their ack updates it."""
    return intake_view(world, slack)["id"]


def tracebacks(records: list[logging.LogRecord]) -> list[str]:
    """What was logged with a traceback, or as a failure of the app rather than a refusal."""
    return [f"{r.name}: {r.getMessage()[:200]}" for r in records
            if r.exc_info or "Traceback" in r.getMessage()
            or (r.levelno >= logging.ERROR and r.name in ("dsr-desk", "dsr_desk.slack"))
            or "listener failed" in r.getMessage() or " failed with " in r.getMessage()]


# 1. Unsigned, stale or forged: 401, and nothing in the log worth a traceback.

def _signature(body: bytes, stamp: str, secret: str = SECRET) -> str:
    return "v0=" + hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body,
                            hashlib.sha256).hexdigest()


def _raw(slack: SlackDriver, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return slack.http.post(slack.url, content=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", **headers})


NOW = str(int(time.time()))
UNSIGNED = {
    "a timestamp that is no number": (b"command=%2Fdsr&text=list",
                                      {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=0"}),
    "a timestamp of 5,000 digits": (b"command=%2Fdsr", {"X-Slack-Request-Timestamp": "9" * 5000,
                                                        "X-Slack-Signature": "v0=0"}),
    "a payload that is no JSON": (b"payload=%7Bnot+json", {"X-Slack-Request-Timestamp": NOW,
                                                           "X-Slack-Signature": "v0=forged"}),
    "a JSON body that is no JSON": (b'{"type": "event_callback", ', {
        "Content-Type": "application/json", "X-Slack-Request-Timestamp": NOW}),
    "no headers at all": (b"payload=%5B1%5D", {}),
    "a body that is no UTF-8": (b"payload=\xff\xfe", {
        "X-Slack-Request-Timestamp": NOW, "X-Slack-Signature": _signature(b"payload=\xff\xfe", NOW)}),
    "a signature made with another secret": (b"command=%2Fdsr&text=list", {
        "X-Slack-Request-Timestamp": NOW,
        "X-Slack-Signature": _signature(b"command=%2Fdsr&text=list", NOW, "not-the-secret")}),
}


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("case", list(UNSIGNED))
def test_a_request_slack_did_not_sign_is_refused_with_401_and_no_traceback(
        slack, caplog, case) -> None:
    body, headers = UNSIGNED[case]
    answer = _raw(slack, body, headers)
    assert answer.status_code == 401, answer.text
    assert tracebacks(caplog.records) == []


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_body_larger_than_any_of_slacks_is_refused_unread(slack, caplog) -> None:
    answer = _raw(slack, b"payload=" + b"x" * MAX_BODY_BYTES, {"X-Slack-Request-Timestamp": NOW})
    assert answer.status_code == 413
    assert tracebacks(caplog.records) == []


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_request_signed_too_long_ago_is_a_replay_and_refused(slack, caplog) -> None:
    stale = int(time.time()) - 5 * 60 - 30
    answer = slack.send(urlencode({"command": "/dsr", "text": "help"}), timestamp=stale)
    assert answer.status_code == 401
    assert slack.send(urlencode({"command": "/dsr", "text": "help", "user_id": "U_REQ"})
                      ).status_code == 200  # the same, signed now
    assert tracebacks(caplog.records) == []


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("body", ["payload=%7Bjane%40example.com", "payload=%5B%22jane%40example.com%22%5D",
                                  '{"jane@example.com": '])
def test_a_signed_body_that_is_not_slacks_gets_400_and_one_short_line(slack, caplog, body) -> None:
    caplog.set_level(logging.INFO)
    answer = slack.send(body, content_type="application/json" if body.startswith("{")
                        else "application/x-www-form-urlencoded")
    assert answer.status_code == 400
    assert tracebacks(caplog.records) == []
    lines = [r.getMessage() for r in caplog.records if r.name == "dsr_desk.http"]
    assert len(lines) == 1 and "not Slack's" in lines[0]
    assert "jane" not in caplog.text  # the body is never logged


# 2. Signed, but values no modal or command of ours would send: a clear answer on both databases.

@pytest.mark.parametrize(("text", "expected"), [
    ("list to 9999-12-31", "give a date from 2000-01-01 to 2099-12-31"),
    ("list from 0001-01-01", "give a date from 2000-01-01 to 2099-12-31"),
    ("list from 2026-02-30", "dates look like 2026-11-23"),
    ("show 999999999999", "No request 999999999999"),
    ("show DSR-2147483648", "No request DSR-2147483648"),
    ("cancel 99999999999 changed their mind", "No request 99999999999"),
    ("extend DSR-000001 " + "x" * 2001, "At most 2,000 characters"),
    ("<!channel>" + "y" * 5000, "is not a command"),
])
def test_commands_out_of_range_get_a_clear_reply(slack, caplog, text, expected) -> None:
    answer = slack.command("U_REQ", text)
    assert answer.status_code == 200, answer.text
    assert expected in answer.text
    assert "<!channel>" not in answer.text
    assert tracebacks(caplog.records) == []


INVALID_CHOICES = [
    ({Block.TYPE: "everything"}, Block.TYPE, "Choose a request type from the list"),
    ({Block.JURISDICTION: "gdpr'); drop table"}, Block.JURISDICTION, "Choose a jurisdiction"),
    ({Block.JURISDICTION: "XX_NOWHERE"}, Block.JURISDICTION, "No deadline rules for 'XX_NOWHERE'"),
    ({Block.SYSTEMS: ["zendesk", "salesforce"]}, Block.SYSTEMS, "Choose among the systems offered"),
    ({Block.REAL_API: ["real", "imaginary"]}, Block.REAL_API, "Tick the box"),
    ({Block.RECEIVED: "yesterday"}, Block.RECEIVED, "dates look like 2026-11-23"),
    ({Block.RECEIVED: "0001-01-01"}, Block.RECEIVED, "give a date from 2000-01-01"),
    ({Block.RECEIVED: "9999-12-31"}, Block.RECEIVED, "give a date from 2000-01-01"),
]
TOO_LONG = [  # longer than their columns (storage.models), within Slack's 3,000
    ({Block.VERIFICATION: "v" * 2500}, Block.VERIFICATION, "At most 2,000 characters"),
    ({Block.NAME: "n" * 500}, Block.NAME, "At most 200 characters"),
    ({Block.SEARCH_TERMS: "order " + "7" * 1500}, Block.SEARCH_TERMS, "At most 1,000 characters a line"),
    ({Block.TYPE: "rectification", Block.NEW_VALUES: "address: " + "a" * 1500}, Block.NEW_VALUES,
     "At most 1,000 characters a line"),
    ({Block.VENDOR_IDS: "zendesk:" + "1" * 1200}, Block.VENDOR_IDS, "At most 1,000 characters a line"),
]


@pytest.mark.parametrize(("fields", "block", "message"), INVALID_CHOICES + TOO_LONG)
def test_intake_values_no_modal_of_ours_offers_get_a_field_error(
        world, slack, caplog, fields, block, message) -> None:
    answer = submit(slack, intake_view(world, slack), form(**fields))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["response_action"] == "errors", body
    assert message in body["errors"][block]
    assert tracebacks(caplog.records) == []


def test_a_rejection_reason_longer_than_its_column_gets_a_field_error(world, slack, caplog) -> None:
    view = {**reject_modal("DSR-000001").to_dict(), "id": "V_REJECT"}  # refused before any update
    reason = {Block.REASON: {Action.INPUT: {"type": "plain_text_input", "value": "r" * 2500}}}
    answer = submit(slack, view, reason, user="U_APP1")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"response_action": "errors",
                             "errors": {Block.REASON: "At most 2,000 characters, please (this has 2,500)."}}
    assert tracebacks(caplog.records) == []


def test_nul_characters_are_dropped_from_text_the_same_on_both_databases(world, slack, caplog) -> None:
    answer = submit(slack, intake_view(world, slack), form(**{
        Block.NAME: "Ja\x00ne Doe", Block.NOTES: "called\x00 twice", Block.SEARCH_TERMS: "JD-\x0077",
        Block.VERIFICATION: "passport\x00"}))
    assert answer.status_code == 200, answer.text
    reference = answer.json()["view"]["private_metadata"]
    detail = world.runtime.service.detail(reference, viewer="U_REQ")
    assert (detail.request.notes, detail.request.identity_verification) == ("called twice", "passport")
    assert {i.value for i in detail.identifiers} >= {"Jane Doe", "JD-77"}

    canceled = slack.command("U_REQ", f"cancel {reference} filed\x00 twice")
    assert canceled.status_code == 200 and f"{reference} canceled" in canceled.text
    assert tracebacks(caplog.records) == []


# The database out of reach: a reply that says so, on both databases, in commands and modals.

def _broken_sessions(database_url: str, tmp_path, how: str):
    url = sa.make_url(database_url)
    if url.get_backend_name() == "sqlite":
        # SQLite as its URI opens it: read-only, or (mode=rw never creates) a file that is gone
        target = f"file:{url.database}?mode=ro" if how == "read_only" else \
            f"file:{tmp_path}/gone.sqlite3?mode=rw"
        engine = make_engine(database_url, creator=lambda: sqlite3.connect(
            target, uri=True, check_same_thread=False))
    elif how == "read_only":
        engine = make_engine(database_url,
                             connect_args={"options": "-c default_transaction_read_only=on"})
    else:  # a port nobody listens on: refused at once
        engine = make_engine(url.set(port=free_port()).render_as_string(hide_password=False))
    return make_session_factory(engine)


@pytest.mark.parametrize("how", ["gone", "read_only"])
def test_a_database_out_of_reach_gets_a_reply_that_says_so(
        world, slack, caplog, database_url, tmp_path, how) -> None:
    world.runtime.service.sessions = _broken_sessions(database_url, tmp_path, how)

    answer = submit(slack, intake_view(world, slack), form())  # a write
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"response_action": "errors", "errors": {Block.NAME: DATABASE_DOWN}}
    listed = slack.command("U_REQ", "list")  # a read
    assert listed.status_code == 200
    assert (DATABASE_DOWN in listed.text) == (how == "gone")
    canceled = slack.command("U_REQ", "cancel DSR-000001")  # a read, then (if found) a write
    assert canceled.status_code == 200
    assert DATABASE_DOWN in canceled.text or "No request" in canceled.text
    assert tracebacks(caplog.records) == []
    assert any("database unavailable" in r.getMessage() for r in caplog.records)


# 4. Fuzzing: every subcommand and every modal, with anything in every field.

def _answered(answer: httpx.Response, records: list[logging.LogRecord]) -> dict[str, Any] | None:
    assert answer.status_code == 200, answer.text[:500]
    assert tracebacks(records) == []
    return answer.json() if answer.content else None


def _field_errors_name_input_blocks(body: dict[str, Any] | None, view: dict[str, Any]) -> None:
    if body is None:
        return  # the modal closes (say, a rejection recorded)
    assert body["response_action"] in ("errors", "update"), body
    if body["response_action"] == "errors":
        inputs = {b["block_id"] for b in view.get("blocks", []) if b.get("type") == "input"}
        assert body["errors"] and set(body["errors"]) <= inputs, body
        assert all(isinstance(m, str) and 0 < len(m) <= 150 for m in body["errors"].values())


anything = st.text(max_size=60) | st.builds(str.__mul__, st.characters(), st.integers(0, 3100))
references = st.builds("DSR-{}".format, st.integers(0, 10**14)) | anything


@given(word=st.sampled_from(SUBCOMMANDS), rest=anything | references
       | st.builds("{} {}".format, references, anything))
@FUZZ
def test_fuzz_every_subcommand(slack, caplog, word, rest) -> None:
    before = len(caplog.records)
    body = _answered(slack.command("U_REQ", f"{word} {rest}"), caplog.records[before:])
    assert body is None or body.get("text")


def _choice(options: list[str]) -> st.SearchStrategy[str]:
    return st.sampled_from(options) | anything


@given(data=st.data())
@FUZZ
def test_fuzz_the_intake_form(world, slack, caplog, data) -> None:
    systems = world.runtime.deps.systems
    codes = [j.code for j in world.runtime.deps.jurisdictions()]
    fields: dict[str, Any] = {
        block: data.draw(anything, label=block) for block in (
            Block.NAME, Block.EMAILS, Block.PHONES, Block.VENDOR_IDS, Block.VERIFICATION,
            Block.NEW_VALUES, Block.SEARCH_TERMS, Block.NOTES)}
    fields |= {
        Block.TYPE: data.draw(_choice(list(TYPE_LABELS)), label="type"),
        Block.JURISDICTION: data.draw(_choice(codes), label="jurisdiction"),
        Block.SYSTEMS: data.draw(st.lists(_choice(systems), max_size=3), label="systems"),
        Block.REAL_API: data.draw(st.lists(_choice(["real"]), max_size=2), label="mode"),
        Block.RECEIVED: data.draw(st.dates().map(str) | anything, label="received"),
    }
    view = intake_view(world, slack)
    before = len(caplog.records)
    body = _answered(submit(slack, view, form_state(fields)), caplog.records[before:])
    _field_errors_name_input_blocks(body, view)


def _matches(data: st.DataObject) -> tuple[dict, dict]:
    ours = st.builds(lambda ref, offset, typed, found: json.dumps(
        {"r": ref, "v": {"zendesk": [offset, typed]}, "f": found}),
        references, st.integers(-5, 10**12), anything, st.booleans())
    picked = data.draw(st.lists(anything | st.integers(0, 10**12).map(str), max_size=4),
                       label="picked")
    view = {"type": "modal", "callback_id": Callback.CONFIRM_MATCHES,
            "blocks": [{"type": "actions", "block_id": "picks:zendesk:0", "elements": [
                {"type": "checkboxes", "options": [{"value": v} for v in picked]}]}],
            "private_metadata": data.draw(references | ours, label="metadata")}
    return view, {"picks:zendesk:0": {Action.PICK_MATCHES: {
        "type": "checkboxes", "selected_options": [{"value": v} for v in picked]}}}


def _rejection(data: st.DataObject) -> tuple[dict, dict]:
    view = reject_modal("DSR-000001").to_dict() | {
        "private_metadata": data.draw(references, label="metadata")}
    return view, {Block.REASON: {Action.INPUT: {"type": "plain_text_input",
                                                "value": data.draw(anything, label="reason")}}}


def _review(data: st.DataObject) -> tuple[dict, dict]:
    metadata = data.draw(references | st.builds("{}|{}".format, references, anything), label="metadata")
    return {"type": "modal", "callback_id": Callback.REVIEW_PLAN, "blocks": [],
            "private_metadata": metadata}, {}


def _system(data: st.DataObject) -> tuple[dict, dict]:
    """The data map's form: anything in each field, a system's name or anything as the one
    edited, sent by a manager or not (see test_fuzz_the_other_modals' users)."""
    view = system_modal(None).to_dict() | {
        "private_metadata": data.draw(st.sampled_from(["", "payroll"]) | anything, label="metadata")}
    fields: dict[str, Any] = {block: data.draw(anything, label=str(block)) for block in (
        Block.SYSTEM_NAME, Block.SYSTEM_LABEL, Block.SYSTEM_OWNER, Block.SYSTEM_CATEGORIES,
        Block.SYSTEM_INSTRUCTIONS, Block.SYSTEM_WEBHOOK)}
    fields[Block.SYSTEM_REACH] = data.draw(_choice(["connector", "assisted", "webhook"]), label="reach")
    fields[Block.SYSTEM_TYPES] = data.draw(st.lists(_choice(list(TYPE_LABELS)), max_size=5),
                                           label="types")
    return view, form_state(fields)


OTHER_VIEWS = {Callback.CONFIRM_MATCHES: _matches, Callback.REJECT_REASON: _rejection,
               Callback.REVIEW_PLAN: _review, Callback.SYSTEM: _system}


def test_every_modal_is_fuzzed() -> None:
    assert set(OTHER_VIEWS) | {Callback.NEW_REQUEST} == set(Callback)


@pytest.mark.parametrize("callback", list(OTHER_VIEWS))
@given(data=st.data())
@FUZZ
def test_fuzz_the_other_modals(slack, caplog, open_view, callback, data) -> None:
    view, values = OTHER_VIEWS[callback](data)
    view["id"] = open_view
    user = data.draw(st.sampled_from(["U_REQ", "U_APP1", "U_MGR", "U_STRANGER"]), label="user")
    before = len(caplog.records)
    body = _answered(submit(slack, view, values, user=user), caplog.records[before:])
    _field_errors_name_input_blocks(body, view)



def test_a_forged_view_id_still_keys_its_intake_within_the_column() -> None:
    long_id = "V" + "9" * 5000
    key = intake_key({"id": long_id})
    assert len(key) <= DsrRequest.__table__.c.intake_key.type.length
    assert key == intake_key({"id": long_id}) != intake_key({"id": long_id + "0"})
    assert intake_key({"id": "V0000ABC12"}) == "view:V0000ABC12"
