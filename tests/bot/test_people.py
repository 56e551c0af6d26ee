"""Names for Slack user ids (bot.directory.SlackPeople) through slack_sdk to the Slack stand-in,
and a compliance record that keeps the names of the day it was made."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pypdf
import pytest
from slack_sdk import WebClient

from bot.directory import SlackPeople, shown_name
from bot.slack_standin import SlackStandIn
from services.export_store import DatabaseStore
from services.record_pdf import render_pdf
from services.records import ensure_record, record_json
from services.sandbox import server
from storage.db import transaction
from tests.services.test_records import completed, make_world

MADE = datetime(2026, 4, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def world(session_factory):
    return make_world(session_factory)


@pytest.fixture
def slack() -> Iterator[tuple[SlackStandIn, WebClient]]:
    standin = SlackStandIn(users={
        "U_REQUESTER": {"real_name": "Rita Ramos", "display_name": "rita"},
        "U_APPROVER1": {"real_name": "Ana Lima"},  # no display name: Slack shows the real name
    })
    with server.serve(standin.wsgi) as running:
        yield standin, WebClient(token=standin.bot_token, base_url=f"{running.url}/api/")


def rename(standin: SlackStandIn, user_id: str, **profile: str) -> None:
    """A user changes their profile in Slack. The stand-in has no public call for it yet."""
    with standin._lock:
        standin._state.users[user_id] = {**standin._state.users.get(user_id, {}), **profile}


def _pdf_text(pdf: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    return " ".join(" ".join(page.extract_text() for page in reader.pages).split())


def test_names_as_slack_shows_them(slack) -> None:
    standin, client = slack
    people = SlackPeople(client)
    assert people.names(["U_REQUESTER", "U_APPROVER1", "U_REQUESTER"]) == {
        "U_REQUESTER": "rita", "U_APPROVER1": "Ana Lima"}
    assert len(standin.calls_to("users.info")) == 2
    people.names(["U_REQUESTER"])  # cached for a while
    assert len(standin.calls_to("users.info")) == 2


def test_display_name_then_real_name_then_username() -> None:
    assert shown_name({"name": "rr", "real_name": "Rita R",
                       "profile": {"display_name": " Rita\n Ramos "}}) == "Rita Ramos"
    assert shown_name({"name": "rr", "real_name": "Rita R", "profile": {"display_name": None}}) == "Rita R"
    assert shown_name({"name": "rr", "profile": {"display_name": "", "real_name": ""}}) == "rr"
    assert shown_name({"profile": {}}) is None
    assert len(shown_name({"profile": {"display_name": "x" * 500}})) == 80


def test_a_user_slack_refuses_is_left_out(slack) -> None:
    standin, client = slack
    assert SlackPeople(client).names(["B0NOTAUSER", "U_APPROVER1"]) == {"U_APPROVER1": "Ana Lima"}
    assert [c.error for c in standin.calls_to("users.info")] == ["user_not_found", None]


def test_slack_out_of_reach_gives_no_names_and_is_not_asked_again_at_once(slack) -> None:
    _, client = slack
    people = SlackPeople(client)
    tries = []

    def unreachable(**kwargs):
        tries.append(kwargs["user"])
        raise ConnectionRefusedError(111, "Connection refused")

    people.client.users_info = unreachable
    assert people.names(["U_REQUESTER", "U_APPROVER1"]) == {}
    assert people.names(["U_APPROVER1"]) == {}
    assert tries == ["U_REQUESTER"]  # one failure pauses the lookups: a record does not wait on each


def test_a_made_record_keeps_the_names_of_its_day(world, session_factory, slack) -> None:
    service, connectors, clock = world
    standin, client = slack
    ref = completed(service, connectors, clock, session_factory)
    exports = DatabaseStore(session_factory)
    with transaction(session_factory) as session:
        made = ensure_record(session, ref, exports=exports, now=MADE, people=SlackPeople(client))
    assert made.people["U_REQUESTER"] == "rita"
    assert "Filed by rita (U_REQUESTER)" in _pdf_text(render_pdf(made))

    rename(standin, "U_REQUESTER", display_name="Rita Ramos-Silva")
    assert SlackPeople(client).names(["U_REQUESTER"]) == {"U_REQUESTER": "Rita Ramos-Silva"}
    with transaction(session_factory) as session:
        stored = ensure_record(session, ref, exports=exports, now=MADE, people=SlackPeople(client))
    assert record_json(stored) == record_json(made)
    assert json.loads(record_json(stored))["people"]["U_REQUESTER"] == "rita"
    text = _pdf_text(render_pdf(stored))
    assert "Filed by rita (U_REQUESTER)" in text and "Ramos-Silva" not in text
