"""Pieces every view uses."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date

from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject, SectionBlock

from services.labels import TYPE_LABELS  # one label per type, everywhere: views import it here
from services.lifecycle import TERMINAL
from services.subjects import Identifier, mask
from services.vocabulary import IdentifierPurpose, RequestStatus
from storage.models import DsrRequest, SubjectIdentifier

SECTION_LIMIT = 3000
LIST_SECTION_LINES = 15  # one-line summaries per section: 15 stay under SECTION_LIMIT
STATUS_LABELS = {
    RequestStatus.RECEIVED: ":mag: matching records",
    RequestStatus.IN_REVIEW: ":mag_right: plan in review",
    RequestStatus.PENDING_APPROVAL: ":hourglass: awaiting approval",
    RequestStatus.APPROVED: ":white_check_mark: approved",
    RequestStatus.IN_PROGRESS: ":gear: in progress",
    RequestStatus.NEEDS_ATTENTION: ":warning: needs attention",
    RequestStatus.COMPLETED: ":heavy_check_mark: completed",
    RequestStatus.REJECTED: ":no_entry: rejected",
    RequestStatus.CANCELED: ":x: canceled",
}


def escape(text: str) -> str:
    """Text from outside (a ticket's words) as mrkdwn shows it literally: Slack's three control
    characters escaped, so no <!channel>, mention or link can be formed."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int = SECTION_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=clip(text)))


def line_sections(lines: Sequence[str]) -> list[SectionBlock]:
    """Lines in sections of LIST_SECTION_LINES: a few blocks instead of one per line."""
    return [section("\n".join(lines[start:start + LIST_SECTION_LINES]))
            for start in range(0, len(lines), LIST_SECTION_LINES)]


def mention(slack_id: str) -> str:
    """A Slack user (U…, W…) or user group (S…) as Slack renders it (ids checked where they enter)."""
    return f"<!subteam^{slack_id}>" if slack_id.startswith("S") else f"<@{slack_id}>"


def context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=clip(text, 2000))])


def simulated(request: DsrRequest) -> str:
    return " :test_tube: *SIMULATION*" if request.simulation else ""


def deadline(request: DsrRequest, today: date | None = None) -> str:
    due = request.effective_due_on
    text = f"due {due:%d %b %Y}"
    if request.extended_due_on:
        text += " (extended)"
    if today is not None and request.status not in TERMINAL:
        days = (due - today).days
        text += f", {days} day(s) left" if days >= 0 else f", *overdue by {-days} day(s)*"
    return text


def masked_identifiers(rows: Iterable[SubjectIdentifier]) -> str:
    shown = [f"{r.kind}: `{mask(Identifier(r.kind, r.value, r.system))}`"
             for r in rows if r.purpose == IdentifierPurpose.IDENTIFIES]
    return ", ".join(shown) or "none"


def one_line(request: DsrRequest, today: date | None = None) -> str:
    return (f"*{request.reference}* · {TYPE_LABELS[request.type]} · {request.jurisdiction_code} · "
            f"{STATUS_LABELS[RequestStatus(request.status)]} · {deadline(request, today)}"
            f"{simulated(request)}")


def as_dicts(blocks: Sequence[Block]) -> list[dict]:
    return [b.to_dict() for b in blocks]
