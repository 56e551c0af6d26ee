"""The data map in Slack (`/dsr systems`): each system, who owns it, what it holds, the request
types it takes part in and how DSR Desk reaches it."""

from __future__ import annotations

from collections.abc import Sequence

from slack_sdk.models.blocks import (
    Block,
    CheckboxesElement,
    InputBlock,
    Option,
    PlainTextInputElement,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from handlers.ids import Action, Callback
from handlers.ids import Block as BlockId
from handlers.views.common import TYPE_LABELS, context, escape, line_sections, mention, section
from services.vocabulary import Reach
from storage.models import DataSystem

REACH_LABELS = {
    Reach.CONNECTOR: ":electric_plug: connector",
    Reach.ASSISTED: ":bust_in_silhouette: task for its owner",
    Reach.WEBHOOK: ":satellite_antenna: signed webhook",
}
IMPORT_HINT = ("Managers change it with `/dsr systems add`, `/dsr systems edit <name>` and "
               "`/dsr systems retire <name> <reason>`, or as a file: `dsr-desk systems export` "
               "writes it, `dsr-desk systems import FILE --as <your Slack id>` applies it. "
               "Every change goes to the audit trail.")


def system_line(system: DataSystem) -> str:
    types = ", ".join(TYPE_LABELS[t] for t in system.request_types)
    line = (f"*{escape(system.label)}* (`{system.name}`) · {REACH_LABELS[Reach(system.reach)]} · "
            f"owner {mention(system.owner)}\n      {types} · holds "
            f"{escape(', '.join(system.categories))}")
    if system.retired_at is not None:
        line += f" · _retired {system.retired_at:%d %b %Y}_"
    return line


def systems_blocks(systems: Sequence[DataSystem]) -> list[Block]:
    if not systems:
        return [section("*The data map* has no systems yet."), context(IMPORT_HINT)]
    return [section(f"*The data map*: {len(systems)} system(s)"),
            *line_sections([system_line(s) for s in systems]), context(IMPORT_HINT)]


# The form of a system: a block for each field of services.data_map.FIELDS.
SYSTEM_BLOCKS = {
    "name": BlockId.SYSTEM_NAME, "label": BlockId.SYSTEM_LABEL, "reach": BlockId.SYSTEM_REACH,
    "owner": BlockId.SYSTEM_OWNER, "categories": BlockId.SYSTEM_CATEGORIES,
    "request_types": BlockId.SYSTEM_TYPES, "instructions": BlockId.SYSTEM_INSTRUCTIONS,
    "webhook_url": BlockId.SYSTEM_WEBHOOK,
}


def _input(block: BlockId, label: str, value: str, hint: str, *, optional: bool = False,
           multiline: bool = False, max_length: int = 80) -> InputBlock:
    return InputBlock(block_id=block, label=label, hint=hint, optional=optional,
                      element=PlainTextInputElement(action_id=Action.INPUT, multiline=multiline,
                                                    initial_value=value or None,
                                                    max_length=max_length))


def system_modal(system: DataSystem | None) -> View:
    """The form adding a system (`system` None) or editing one; its name, once given, stays."""
    reach = Reach(system.reach) if system else None
    types = set(system.request_types) if system else set()
    blocks: list[Block] = [
        context("A system of the data map: where the team holds personal data. Requests filed "
                "from now on offer it; every change goes to the audit trail.")]
    if system is None:
        blocks.append(_input(BlockId.SYSTEM_NAME, "Name", "", "As requests will name it: lower-case "
                             "letters, digits and dashes, e.g. payroll.", max_length=40))
    else:
        blocks.append(section(f"*{escape(system.label)}* (`{system.name}`)"))
    reach_options = [Option(value=r.value, text=REACH_LABELS[r].split(" ", 1)[1]) for r in Reach]
    blocks += [
        _input(BlockId.SYSTEM_LABEL, "Label", system.label if system else "",
               "As people will read it, e.g. Payroll (Personio)."),
        InputBlock(block_id=BlockId.SYSTEM_REACH, label="How DSR Desk reaches it",
                   element=StaticSelectElement(
                       action_id=Action.INPUT, placeholder="Choose", options=reach_options,
                       initial_option=next((o for o in reach_options if o.value == reach), None))),
        _input(BlockId.SYSTEM_OWNER, "Owner", system.owner if system else "",
               "A Slack user id (U…, in their profile: ⋮ > Copy member ID) or user group id (S…).",
               max_length=32),
        _input(BlockId.SYSTEM_CATEGORIES, "Categories of personal data",
               ", ".join(system.categories) if system else "",
               "Comma-separated, e.g. contact details, payslips, bank details.", max_length=1500),
        InputBlock(block_id=BlockId.SYSTEM_TYPES, label="Request types it takes part in",
                   element=CheckboxesElement(
                       action_id=Action.INPUT,
                       options=[Option(value=k, text=v) for k, v in TYPE_LABELS.items()],
                       initial_options=[Option(value=k, text=v) for k, v in TYPE_LABELS.items()
                                        if k in types] or None)),
        _input(BlockId.SYSTEM_INSTRUCTIONS, "Instructions for its owner",
               system.instructions if system else "", "For a task for its owner: how to find the "
               "subject's data, export it and erase it.", optional=True, multiline=True,
               max_length=3000),
        _input(BlockId.SYSTEM_WEBHOOK, "Webhook URL", (system.webhook_url or "") if system else "",
               "For a signed webhook: the in-house service's https:// URL.", optional=True,
               max_length=500),
    ]
    return View(type="modal", callback_id=Callback.SYSTEM, title="Data map",
                submit="Save", close="Cancel", private_metadata=system.name if system else "",
                blocks=blocks)
