"""The match picker: each system's records a page at a time, with a filter, ticks kept across
pages (services.matching). Full values are shown: a modal is seen only by its requester."""

from __future__ import annotations

import json
from collections.abc import Sequence

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    CheckboxesElement,
    InputBlock,
    Option,
    PlainTextInputElement,
)
from slack_sdk.models.views import View

from handlers.ids import Action, Callback
from handlers.views.common import clip, context, section
from services.labels import system_label
from services.matching import MatchPage, facts

PAGE_SIZE = 10  # a checkboxes element holds at most 10 options
FILTER_LIMIT = 200  # characters of a filter kept (private_metadata holds at most 3,000)
OPTION_LIMIT = 75  # an option's text and description


def where(reference: str, pages: Sequence[MatchPage]) -> str:
    """The modal's private_metadata: the request, each system's offset and filter, and whether
    anything was found."""
    return json.dumps({"r": reference, "v": {p.system: [p.offset, p.filter] for p in pages},
                       "f": any(p.found for p in pages)})


def picks_block_id(page: MatchPage) -> str:
    return f"picks:{page.system}:{page.offset}"


def _system(page: MatchPage) -> list[Block]:
    label = system_label(page.system)
    if not page.found:
        return [section(f"*{label}*: no record matches these identifiers.")]
    shown = (f"{page.offset + 1}–{page.offset + len(page.candidates)} of {page.total}"
             if page.candidates else "none")
    narrowed = f" · filter “{page.filter}” matches {page.total}" if page.filter else ""
    blocks: list[Block] = [
        section(f"*{label}*: {page.found} record(s) found · *{page.picked} ticked* · showing "
                f"{shown}{narrowed}"),
        InputBlock(block_id=f"filter:{page.system}", label=f"Filter {label}", optional=True,
                   dispatch_action=True, element=PlainTextInputElement(
                       action_id=f"{Action.MATCH_FILTER}:{page.system}",
                       initial_value=page.filter or None, max_length=FILTER_LIMIT,
                       placeholder="part of a name, an email or a phone; Enter to apply",
                       dispatch_action_config={"trigger_actions_on": ["on_enter_pressed"]})),
    ]
    if page.candidates:
        options, ticked, cut = [], [], False
        for candidate in page.candidates:
            about = facts(candidate.details) or candidate.record_id
            cut = cut or len(candidate.label) > OPTION_LIMIT or len(about) > OPTION_LIMIT
            option = Option(value=str(candidate.id), text=clip(candidate.label, OPTION_LIMIT),
                            description=clip(about, OPTION_LIMIT))
            options.append(option)
            if candidate.picked:
                ticked.append(option)
        blocks.append(ActionsBlock(block_id=picks_block_id(page), elements=[CheckboxesElement(
            action_id=Action.PICK_MATCHES, options=options, initial_options=ticked or None)]))
        if cut:
            blocks.append(context("A text ending in … is longer than Slack shows; the record's "
                                  "id is in the request once confirmed."))
    buttons = []
    if page.offset > 0:
        buttons.append(ButtonElement(text="Previous", action_id=f"{Action.MATCH_PAGE}:prev",
                                     value=f"{page.system}|{max(page.offset - PAGE_SIZE, 0)}"))
    if page.offset + len(page.candidates) < page.total:
        buttons.append(ButtonElement(text="Next", action_id=f"{Action.MATCH_PAGE}:next",
                                     value=f"{page.system}|{page.offset + PAGE_SIZE}"))
    if buttons:
        blocks.append(ActionsBlock(block_id=f"pages:{page.system}", elements=buttons))
    return blocks


def matches_modal(reference: str, pages: Sequence[MatchPage]) -> View:
    found = any(p.found for p in pages)
    blocks: list[Block] = [context(f"*{reference}*: tick the records that belong to the subject, "
                                   "on every page. Only ticked records are touched.")]
    for page in pages:
        blocks += _system(page)
    if not found:
        blocks.append(section("Nothing was found. Submitting cancels the request with the "
                              "reason *no records found*; tell the subject we hold no data."))
    return View(type="modal", callback_id=Callback.CONFIRM_MATCHES, title="Confirm records",
                submit="Send for approval" if found else "Cancel request", close="Close",
                private_metadata=where(reference, pages), blocks=blocks)
