"""Views stay inside Slack's limits and never show identifiers in clear in channel messages."""

from __future__ import annotations

from datetime import UTC, date, datetime

from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from handlers.views.common import as_dicts
from handlers.views.home import home_view
from handlers.views.lists import PAGE_SIZE, home_group, list_blocks, list_modal
from handlers.views.matches import matches_modal
from handlers.views.request import approval_message, detail_blocks
from services.matching import MatchPage
from services.request_lists import RequestPage
from services.requests import RequestDetail
from services.vocabulary import IdentifierKind, IdentifierPurpose
from storage.models import (
    Approval,
    DsrRequest,
    ExecutionStep,
    MatchCandidate,
    RequestSystem,
    SubjectIdentifier,
)

NOW = datetime(2026, 11, 23, 10, tzinfo=UTC)
TODAY = date(2026, 11, 23)


def request(n: int = 42, status: str = "pending_approval") -> DsrRequest:
    return DsrRequest(id=n, type="erasure", status=status, jurisdiction_code="GDPR",
                      received_at=NOW, due_on=date(2026, 12, 23), simulation=True,
                      requester_slack_id="U_REQ", identity_verification="passport jane@x.org")


def detail(steps: int = 0) -> RequestDetail:
    ids = [SubjectIdentifier(request_id=42, kind=IdentifierKind.EMAIL,
                             purpose=IdentifierPurpose.IDENTIFIES, value="jane.doe@example.com"),
           SubjectIdentifier(request_id=42, kind=IdentifierKind.PHONE,
                             purpose=IdentifierPurpose.IDENTIFIES, value="+4670123456"),
           SubjectIdentifier(request_id=42, kind=IdentifierKind.NAME,
                             purpose=IdentifierPurpose.IDENTIFIES, value="Jane Doe")]
    return RequestDetail(
        request(), ids,
        [RequestSystem(request_id=42, system="zendesk", confirmed_records=[{"record_id": "1"}])],
        [Approval(request_id=42, approver_slack_id="U_A", decision="approve", decided_at=NOW)],
        [ExecutionStep(request_id=42, position=n, system="zendesk", action=f"step_{n}",
                       status="done", started_at=NOW, finished_at=NOW) for n in range(steps)])


def checked(blocks: list[Block], limit: int) -> str:
    dicts = as_dicts(blocks)  # slack_sdk validates lengths while serialising
    assert len(dicts) <= limit
    for block in dicts:
        for text in (block.get("text") or {}, *(block.get("elements") or [])):
            if isinstance(text, dict) and text.get("type") == "mrkdwn":
                assert len(text["text"]) <= 3000
    return str(dicts)


def test_approval_message_masks_the_subject() -> None:
    text = checked(approval_message(detail(), 2, TODAY), 50)
    assert "j***@e******.com" in text and "+46******56" in text and "J*** D**" in text
    for secret in ("jane.doe", "example.com", "70123456", "Jane Doe", "passport"):
        assert secret not in text
    assert "Approve" in text and "1 so far" in text


def test_detail_with_many_steps_stays_within_limits() -> None:
    text = checked(detail_blocks(detail(steps=200), TODAY), 50)
    assert "jane.doe@example.com" in text  # ephemeral, for people with a role


def test_lists_and_home_within_limits() -> None:
    many = [request(n) for n in range(1, 300)]
    middle = RequestPage(many[40:40 + PAGE_SIZE], total=299, offset=40)
    text = checked(list_blocks(middle, TODAY, "All", "open"), 50)
    assert "41–60 of 299" in text and "Page 3 of 15" in text
    assert "'value': '20|open'" in text and "'value': '60|open'" in text  # Previous, Next
    last = RequestPage(many[280:], total=299, offset=280)
    assert "'text': 'Next'" not in checked(list_blocks(last, TODAY, "All", "open"), 50)
    assert len(list_modal(middle, TODAY, "All", "open").to_dict()["blocks"]) <= 100
    groups = [block for words in ("awaiting", "open mine", "due-soon", "overdue")
              for block in home_group(words, RequestPage(many[:5], 299, 0), TODAY, words)]
    view = home_view(groups, TODAY).to_dict()
    assert len(view["blocks"]) <= 100 and "294 more" in str(view)
    assert len({b["elements"][0]["action_id"] for b in view["blocks"]
                if b["type"] == "actions"}) == 5  # New request, and one "N more" a group


def test_matches_modal_with_many_matches() -> None:
    candidates = [MatchCandidate(id=n, request_id=1, system="zendesk", position=n, record_id=str(n),
                                 label="A" * 200, details={"email": "x" * 300}, haystack="",
                                 picked=n == 12)
                  for n in range(10, 20)]
    pages = [MatchPage("zendesk", candidates, total=59, found=59, picked=3, offset=10, filter=""),
             MatchPage("genesys", [], total=0, found=0, picked=0, offset=0, filter="")]
    view = matches_modal("DSR-000042", pages).to_dict()
    assert View(**view).to_dict() == view
    text = str(view)
    assert "no record matches" in text and "11–20 of 59" in text and "3 ticked" in text
    assert "longer than Slack shows" in text  # a cut label says so
    picks = next(b for b in view["blocks"] if b.get("block_id") == "picks:zendesk:10")
    assert [o["value"] for o in picks["elements"][0]["initial_options"]] == ["12"]
    assert {e["text"]["text"] for b in view["blocks"] if b.get("block_id") == "pages:zendesk"
            for e in b["elements"]} == {"Previous", "Next"}
