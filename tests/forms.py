"""Modal state as Slack sends it in a view_submission."""

from __future__ import annotations

from handlers.ids import Action, Block


def form(**fields) -> dict:
    """A view_submission's state.values as Slack sends it."""
    base = {Block.TYPE: "access", Block.JURISDICTION: "GDPR", Block.SYSTEMS: ["zendesk"],
            Block.VERIFICATION: "Checked ID on a video call", Block.EMAILS: "jane@example.com"}
    base.update(fields)
    values = {}
    for block, value in base.items():
        if block in (Block.TYPE, Block.JURISDICTION):
            element = {"type": "static_select", "selected_option": {"value": value}}
        elif block in (Block.SYSTEMS, Block.REAL_API):
            element = {"type": "checkboxes", "selected_options": [{"value": v} for v in value]}
        elif block == Block.RECEIVED:
            element = {"type": "datepicker", "selected_date": value}
        else:
            element = {"type": "plain_text_input", "value": value}
        values[str(block)] = {str(Action.INPUT): element}
    return values
