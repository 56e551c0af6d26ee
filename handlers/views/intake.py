"""The intake modal (`/dsr new`) and the rejection-reason modal."""

from __future__ import annotations

from collections.abc import Sequence

from slack_sdk.models.blocks import (
    CheckboxesElement,
    DatePickerElement,
    InputBlock,
    Option,
    PlainTextInputElement,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from handlers.ids import Action, Block, Callback
from handlers.views.common import TYPE_LABELS, context
from services.labels import system_label
from storage.models import Approval, DsrRequest, Jurisdiction

SLACK_TEXT_LIMIT = 3000  # the most a plain_text_input takes
# The fields whose column holds less than Slack's limit, or that are kept short: the modal
# enforces each, and the listener checks again (a submission need not come from our modal).
MAX_LENGTH = {
    Block.NAME: 200,
    Block.VERIFICATION: DsrRequest.__table__.c.identity_verification.type.length,  # 2,000
    Block.NOTES: DsrRequest.__table__.c.notes.type.length,  # 3,000
    Block.REASON: Approval.__table__.c.reason.type.length,  # 2,000
}


def max_length(block: str) -> int:
    return MAX_LENGTH.get(block, SLACK_TEXT_LIMIT)


def _text(block: Block, label: str, hint: str | None = None, *, optional: bool = True,
          multiline: bool = False) -> InputBlock:
    return InputBlock(
        block_id=block, label=label, optional=optional, hint=hint,
        element=PlainTextInputElement(action_id=Action.INPUT, multiline=multiline,
                                      max_length=max_length(block)),
    )


def intake_modal(jurisdictions: Sequence[Jurisdiction], systems: Sequence[str]) -> View:
    return View(
        type="modal",
        callback_id=Callback.NEW_REQUEST,
        title="New DSR",
        submit="Find subject",
        close="Cancel",
        blocks=[
            context("Identify the subject with at least one of name, email, phone or vendor id. "
                    "The next step searches the chosen systems; you confirm the matches."),
            _text(Block.NAME, "Subject's name"),
            _text(Block.EMAILS, "Email addresses", "One per line.", multiline=True),
            _text(Block.PHONES, "Phone numbers", "With country code, one per line: +4670123456",
                  multiline=True),
            _text(Block.VENDOR_IDS, "Vendor user ids", "One per line as system:id, e.g. "
                  "zendesk:1000032", multiline=True),
            InputBlock(block_id=Block.TYPE, label="Request type", element=StaticSelectElement(
                action_id=Action.INPUT, placeholder="Choose",
                options=[Option(value=k, text=v) for k, v in TYPE_LABELS.items()])),
            InputBlock(block_id=Block.JURISDICTION, label="Jurisdiction", element=StaticSelectElement(
                action_id=Action.INPUT, placeholder="Choose",
                options=[Option(value=j.code, text=j.name[:75]) for j in jurisdictions][:100])),
            InputBlock(block_id=Block.SYSTEMS, label="Systems", element=CheckboxesElement(
                action_id=Action.INPUT,
                options=[Option(value=s, text=system_label(s)) for s in systems])),
            InputBlock(block_id=Block.REAL_API, label="Mode", optional=True,
                       hint="Leave unticked to run a simulation against built-in stand-ins: "
                            "nothing real is touched.",
                       element=CheckboxesElement(action_id=Action.INPUT, options=[
                           Option(value="real", text="Use real API")])),
            _text(Block.VERIFICATION, "Identity verification",
                  "How the subject's identity was verified.", optional=False),
            _text(Block.NEW_VALUES, "Corrected values (rectification)",
                  "One per line as field: value, e.g. email: jane@new.example", multiline=True),
            _text(Block.SEARCH_TERMS, "Extra search terms (erasure)",
                  "More strings that identify the subject in tickets, one per line.",
                  multiline=True),
            InputBlock(block_id=Block.RECEIVED, label="Received on", optional=True,
                       hint="If the request reached you before today: the legal clock starts then.",
                       element=DatePickerElement(action_id=Action.INPUT)),
            _text(Block.NOTES, "Notes", multiline=True),
        ],
    )


def reject_modal(reference: str) -> View:
    return View(
        type="modal", callback_id=Callback.REJECT_REASON, title="Reject request",
        submit="Reject", close="Back", private_metadata=reference,
        blocks=[
            context(f"Rejecting *{reference}*. The reason goes to the requester and the audit "
                    "trail; do not include the subject's personal data."),
            InputBlock(block_id=Block.REASON, label="Reason", element=PlainTextInputElement(
                action_id=Action.INPUT, multiline=True, max_length=max_length(Block.REASON))),
        ],
    )
