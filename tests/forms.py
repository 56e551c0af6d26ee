"""The intake form filled in well, with fields to override (state values as Slack sends them)."""

from __future__ import annotations

from bot.slack_driver import form_state
from handlers.ids import Block


def form(**fields) -> dict:
    base = {Block.TYPE: "access", Block.JURISDICTION: "GDPR", Block.SYSTEMS: ["zendesk"],
            Block.VERIFICATION: "Checked ID on a video call", Block.EMAILS: "jane@example.com"}
    return form_state({**base, **fields})
