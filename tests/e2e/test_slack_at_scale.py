"""A team with hundreds of requests, through `dsr-desk run --http --workers 2` and Slack alone:
the Home with its counts, a list paged to its end (in a reply and in the Home's modal), a
request found by its subject's email, the list as CSV by DM, and a match picked on the 6th
page of a subject's namesakes. Every payload the app sends passes the Slack stand-in's Block
Kit checks."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import select

from handlers.ids import Action, Block, Callback
from services.lookup import IdentifierLookup
from services.policy import Policy
from services.requests import RequestService
from services.sandbox import server
from services.subjects import Identifier
from services.vendors.zendesk.standin import ZendeskSandbox
from services.vocabulary import IdentifierKind
from storage.db import make_engine, make_session_factory
from storage.models import RequestSystem
from tests.conftest import ManualClock
from tests.e2e.conftest import matches_of, modal, wait_for
from tests.e2e.test_http_server import PEOPLE, run_http
from tests.factories import new_request
from tests.forms import form

FILED = 249  # and one more filed through Slack: 250
LOOKUP_KEY = "an e2e lookup key"
NAMESAKES = 60


def seed(database_url: str) -> str:
    """FILED requests by U_REQ, a tenth of them overdue; returns the email of one subject."""
    engine = make_engine(database_url)
    policy = Policy(requesters=frozenset({"U_REQ"}), approvers=frozenset(), managers=frozenset())
    service = RequestService(make_session_factory(engine), lambda system, sim: object(), policy,
                             ManualClock(datetime.now(UTC)), ZoneInfo("UTC"),
                             lookup=IdentifierLookup(LOOKUP_KEY.encode()))
    long_ago = datetime.now(UTC) - timedelta(days=60)
    for n in range(FILED):
        service.create(new_request(
            requester="U_REQ", received_at=long_ago if n % 10 == 0 else None,
            identifiers=(Identifier(IdentifierKind.EMAIL, f"subject{n}@example.org"),)))
    engine.dispose()
    return "subject123@example.org"


def latest_ephemeral(slack, user: str, text: str) -> dict | None:
    shown = [e for e in slack.ephemerals(user)
             if text in json.dumps(e.get("blocks"), ensure_ascii=False)]
    return shown[-1] if shown else None


def shown_range(blocks: list[dict]) -> tuple[int, int, int]:
    """(first, last, total) of a list page: "*Requests*: 21–40 of 250"."""
    first, last, total = re.search(r"(\d+)–(\d+) of ([\d,]+)",
                                   json.dumps(blocks, ensure_ascii=False)).groups()
    return int(first), int(last), int(total.replace(",", ""))


def button(blocks: list[dict], label: str) -> dict | None:
    return next((e for b in blocks if b["type"] == "actions" for e in b["elements"]
                 if e.get("text", {}).get("text") == label), None)


def test_a_team_with_250_requests_works_from_slack(database_url, tmp_path) -> None:
    email = seed(database_url)
    zendesk = ZendeskSandbox(seed=0, people=PEOPLE, requests_per_minute=None)
    for n in range(NAMESAKES):
        zendesk.add_user("Ada Namesake", email=f"ada.namesake{n:02}@example.net")
    zendesk_server = server.start(zendesk.wsgi)
    try:
        with run_http(database_url, tmp_path, DSR_LOOKUP_KEY=LOOKUP_KEY,
                      DSR_SANDBOX_ZENDESK_URL=zendesk_server.url) as running:
            running.settled()
            slack, driver = running.conversation.slack, running.conversation.driver

            # A match on the 6th page of 60 namesakes, picked through the filter-less pager.
            before = len(slack.views())
            driver.command("U_REQ", "new")
            intake = modal(running.conversation, Callback.NEW_REQUEST, before)
            answer = driver.submit("U_REQ", intake, form(**{
                Block.NAME: "Ada Namesake", Block.EMAILS: ""}))
            reference = answer.json()["view"]["private_metadata"]
            picker = matches_of(running.conversation, reference)
            for page in range(1, 6):
                nxt = button(picker["blocks"], "Next")
                driver.choose("U_REQ", picker, "pages:zendesk", nxt["action_id"], nxt["value"],
                              element_type="button", state={})
                picker = wait_for(lambda p=page, i=picker["id"]: (v := slack.views()[i]) and any(
                    b.get("block_id") == f"picks:zendesk:{p * 10}" for b in v["blocks"]) and v,
                    what=f"page {page + 1} of the matches")
            options = next(b for b in picker["blocks"] if b.get("block_id") == "picks:zendesk:50")
            chosen = options["elements"][0]["options"][7]
            assert "ada.namesake57@example.net" in json.dumps(chosen)  # the vendor's order
            state = {"picks:zendesk:50": {Action.PICK_MATCHES: {
                "type": "checkboxes", "selected_options": [{"value": chosen["value"]}]}}}
            assert driver.submit("U_REQ", picker, state).json()["response_action"] == "update"
            sessions = make_session_factory(make_engine(database_url))

            def confirmed() -> list | None:
                with sessions() as session:
                    return session.exec(select(RequestSystem.confirmed_records).where(
                        RequestSystem.request_id == int(reference.removeprefix("DSR-")))).one()

            covered = wait_for(confirmed, what="the confirmed record")
            assert [r["details"]["email"] for r in covered] == ["ada.namesake57@example.net"]

            # The Home: each group's count, and "N more" opening the whole list.
            event = {"type": "event_callback", "team_id": "T0STANDIN", "event_id": "Ev0SCALE",
                     "event": {"type": "app_home_opened", "user": "U_REQ", "tab": "home"},
                     "event_time": int(time.time())}
            driver.send(json.dumps(event), content_type="application/json")
            home = wait_for(lambda: slack.home("U_REQ"), what="the Home tab")
            shown = json.dumps(home["blocks"])
            assert "Your open requests* (250)" in shown and "Overdue* (25)" in shown
            more = button(home["blocks"], "245 more")
            driver.choose("U_REQ", home, "home", more["action_id"], more["value"],
                          element_type="button")
            listed = wait_for(lambda: next((v for v in slack.views().values()
                                            if (v.get("title") or {}).get("text") == "Requests"),
                                           None), what="the whole list in a modal")
            seen = []
            while True:
                first, last, total = shown_range(listed["blocks"])
                assert total == 250 and first == len(seen) + 1
                seen += re.findall(r"\*(DSR-\d+)\*", json.dumps(listed["blocks"]))
                nxt = button(listed["blocks"], "Next")
                if nxt is None:
                    break
                driver.choose("U_REQ", listed, "list_pages", nxt["action_id"], nxt["value"],
                              element_type="button")
                listed = wait_for(lambda f=last + 1, i=listed["id"]: (v := slack.views()[i])
                                  and shown_range(v["blocks"])[0] == f and v, what="next page")
            assert len(seen) == len(set(seen)) == 250

            # `/dsr list`, paged to its end in the reply.
            reply = driver.command("U_REQ", "list open").json()
            pages = 1
            while nxt := button(reply["blocks"], "Next"):
                reply["ts"] = reply.get("ts") or "0"
                driver.click("U_REQ", {"ts": reply["ts"], "blocks": reply["blocks"]},
                             nxt["action_id"], "C0GENERAL")
                expected = shown_range(reply["blocks"])[1] + 1
                reply = wait_for(lambda e=expected: (m := latest_ephemeral(
                    slack, "U_REQ", f"{e}–")) and m, what="the next page of the reply")
                pages += 1
            assert pages == 13 and shown_range(reply["blocks"])[1:] == (250, 250)

            # Found by the subject's email, in any case, and by no one's clear text.
            found = driver.command("U_REQ", f"find {email.upper()}").json()
            assert re.findall(r"\*(DSR-\d+)\*", json.dumps(found["blocks"])) == ["DSR-000124"]
            assert email not in json.dumps(found) and "subject:" in json.dumps(found)

            # The list as CSV, by direct message.
            assert "CSV" in driver.command("U_REQ", "list overdue csv").json()["text"]
            upload = wait_for(lambda: next((u for u in slack.uploaded_files()
                                            if u["name"].endswith(".csv")), None), what="the CSV")
            rows = list(csv.DictReader(io.StringIO(upload["bytes"].decode("utf-8-sig"))))
            assert len(rows) == 25 and {r["status"] for r in rows} == {"received"}
            assert "example.org" not in upload["bytes"].decode()

            refused = [c for c in slack.calls if c.error]
            assert refused == [], [(c.method, c.error) for c in refused]
        assert "Traceback" not in running.log.read_text()
    finally:
        zendesk_server.stop()

