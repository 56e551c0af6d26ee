"""The App Home tab."""

from __future__ import annotations

from datetime import date

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, DividerBlock, HeaderBlock
from slack_sdk.models.views import View

from handlers.ids import Action
from handlers.views.common import context, section


def home_view(groups: list[Block] | None, today: date) -> View:
    """The tab: `groups` (handlers.views.lists.home_group), or None for someone without a role."""
    if groups is None:
        return View(type="home", blocks=[
            HeaderBlock(text="DSR Desk"),
            section("You have no DSR Desk role yet. Ask an admin to add you to DSR_REQUESTERS, "
                    "DSR_APPROVERS or DSR_MANAGERS."),
        ])
    return View(type="home", blocks=[
        HeaderBlock(text="DSR Desk"),
        ActionsBlock(elements=[ButtonElement(text="New request", action_id=Action.NEW_REQUEST,
                                             style="primary")]),
        context(f"Today {today:%d %b %Y}. `/dsr help` lists every command; `/dsr find` finds a "
                "subject's requests."),
        DividerBlock(),
        *groups,
    ])
