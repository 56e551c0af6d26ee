"""The App Home tab."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, DividerBlock, HeaderBlock
from slack_sdk.models.views import View

from handlers.ids import Action
from handlers.views.common import LIST_SECTION_LINES, context, one_line, section
from storage.models import DsrRequest


def _group(title: str, requests: Sequence[DsrRequest], today: date) -> list[Block]:
    if not requests:
        return [section(f"*{title}*\n_none_")]
    lines = "\n".join(one_line(r, today) for r in requests[:LIST_SECTION_LINES])
    return [section(f"*{title}*\n{lines}")]


def home_view(*, mine: Sequence[DsrRequest], awaiting: Sequence[DsrRequest],
              due_soon: Sequence[DsrRequest], overdue: Sequence[DsrRequest], today: date,
              has_role: bool) -> View:
    if not has_role:
        return View(type="home", blocks=[
            HeaderBlock(text="DSR Desk"),
            section("You have no DSR Desk role yet. Ask an admin to add you to DSR_REQUESTERS, "
                    "DSR_APPROVERS or DSR_MANAGERS."),
        ])
    blocks: list[Block] = [
        HeaderBlock(text="DSR Desk"),
        ActionsBlock(elements=[ButtonElement(text="New request", action_id=Action.NEW_REQUEST,
                                             style="primary")]),
        context(f"Today {today:%d %b %Y}. `/dsr help` lists every command."),
        DividerBlock(),
        *_group("Awaiting your approval", awaiting, today),
        *_group("Your open requests", mine, today),
        *_group("Due within 7 days", due_soon, today),
        *_group("Overdue", overdue, today),
    ]
    return View(type="home", blocks=blocks)
