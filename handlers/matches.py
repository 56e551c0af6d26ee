"""The subject's records found in each system, shown in the intake modal and confirmed there:
only the ticked ones are touched. The confirmed request goes to the approvals channel."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from handlers.deps import AFTER_ACK, Deps, acknowledge, deps_of, hand_over, replies_in_modal
from handlers.edge import mapping, text
from handlers.ids import Action, Callback
from handlers.messages import refresh_request_message, request_message
from handlers.views.matches import FILTER_LIMIT, PAGE_SIZE, matches_modal
from handlers.views.request import done_modal
from services.errors import DsrError
from services.vocabulary import MAX_REQUEST_ID, RequestStatus

log = logging.getLogger("dsr_desk.handlers")


def present_matches(deps: Deps, client: WebClient, view_id: str, reference: str,
                    user: str) -> None:
    """The systems searched for the request's subject, what they found kept for the picker, its
    first page shown in modal `view_id`."""
    try:
        systems = deps.service.find_matches(reference)
        pages = [deps.service.match_page(reference, system, viewer=user, limit=PAGE_SIZE)
                 for system in systems]
        client.views_update(view_id=view_id, view=matches_modal(reference, pages).to_dict())
    except Exception as exc:  # noqa: BLE001 - shown in the modal, logged without personal data
        log.error("search for %s failed: %s", reference, type(exc).__name__)
        client.views_update(view_id=view_id, view=done_modal(
            f":warning: {reference}: the search failed ({type(exc).__name__}: "
            f"{str(exc)[:300] if isinstance(exc, DsrError) else 'see the logs'}). The request "
            f"is recorded; cancel it with `/dsr cancel {reference}` and file it again.").to_dict())


def _read_where(view: dict[str, Any]) -> tuple[str, dict[str, tuple[int, str]], bool]:
    """The request, each system's offset and filter, and whether anything was found, as the
    modal carries them."""
    metadata = text(view.get("private_metadata"))
    try:
        carried = json.loads(metadata)
        reference = text(carried["r"])
        systems = {text(system): (_number(offset), text(typed)[:FILTER_LIMIT])
                   for system, (offset, typed) in mapping(carried.get("v")).items()}
    except (ValueError, TypeError, KeyError, AttributeError):
        return metadata, {}, False  # not a modal of ours: the service refuses what it asks
    return reference, systems, carried.get("f") is True


def _number(value: Any) -> int:
    return value if isinstance(value, int) and 0 <= value <= MAX_REQUEST_ID else 0


def _save_ticks(deps: Deps, view: dict[str, Any], reference: str, user: str) -> None:
    """The ticks on the page the modal shows now (its state), saved: the rows it shows that
    are ticked are picked, the others not."""
    shown: set[int] = set()
    for block in view.get("blocks") or []:
        if isinstance(block, dict) and text(block.get("block_id")).startswith("picks:"):
            for element in block.get("elements") or []:
                shown |= _ids(mapping(element).get("options"))
    ticked: set[int] = set()
    for block_id, elements in mapping(mapping(view.get("state")).get("values")).items():
        if text(block_id).startswith("picks:"):
            for element in mapping(elements).values():
                ticked |= _ids(mapping(element).get("selected_options"))
    if shown:
        deps.service.pick_matches(reference, actor=user, shown=shown, ticked=ticked)


def _ids(options: Any) -> set[int]:
    values = [text(mapping(o).get("value")) for o in options or []]
    return {int(v) for v in values if v.isascii() and v.isdigit() and len(v) <= 10}


def _show(deps: Deps, client: WebClient, view: dict[str, Any], user: str,
          moved: dict[str, tuple[int, str]]) -> None:
    """The ticks saved, and the modal shown again with each system at its offset and filter
    (`moved` overriding what it carried)."""
    reference, systems, _ = _read_where(view)
    _save_ticks(deps, view, reference, user)
    systems |= moved
    pages = [deps.service.match_page(reference, system, viewer=user, offset=offset,
                                     limit=PAGE_SIZE, filter=typed)
             for system, (offset, typed) in systems.items() if system in deps.systems]
    client.views_update(view_id=view["id"], view=matches_modal(reference, pages).to_dict())


@replies_in_modal
def turn_page(body: dict[str, Any], action: dict[str, Any], client: WebClient,
              context: BoltContext) -> None:
    """Previous / Next of one system's matches."""
    system, _, offset = text(action.get("value")).partition("|")
    _, systems, _ = _read_where(body["view"])
    typed = systems.get(system, (0, ""))[1]
    _show(deps_of(context), client, body["view"], body["user"]["id"],
          {system: (int(offset) if offset.isdigit() and len(offset) < 10 else 0, typed)})


@replies_in_modal
def filter_matches(body: dict[str, Any], action: dict[str, Any], client: WebClient,
                   context: BoltContext) -> None:
    """Enter in a system's filter: its first page of the records the filter matches."""
    system = text(action.get("action_id")).removeprefix(f"{Action.MATCH_FILTER}:")
    _show(deps_of(context), client, body["view"], body["user"]["id"],
          {system: (0, text(action.get("value"))[:FILTER_LIMIT])})


def submit_matches(ack: Ack, body: dict[str, Any], view: dict[str, Any],
                   context: BoltContext) -> None:
    deps = deps_of(context)
    user = body["user"]["id"]
    reference, systems, found = _read_where(view)
    if found:  # what is ticked on this page is saved with the other pages' ticks
        _save_ticks(deps, view, reference, user)
        if not any(deps.service.picked_matches(reference).values()):
            ack(response_action="errors", errors={f"filter:{next(iter(systems))}": (
                "Tick the records that are the subject's. If none is, close this and "
                f"`/dsr cancel {reference}`.")})
            return
    ack(response_action="update",
        view=done_modal(f":hourglass: {reference}: sending for approval…").to_dict())
    hand_over(context, reference=reference, view_id=view["id"])


def confirm(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    """After the ack: the ticked records confirmed, the request posted for approval (or for
    its plan's review), the modal told where it went."""
    if handed := context.get(AFTER_ACK):
        _confirm(deps_of(context), client, handed["view_id"], handed["reference"],
                 body["user"]["id"])


def _confirm(deps: Deps, client: WebClient, view_id: str, reference: str, user: str) -> None:
    service = deps.service
    try:
        picked = service.picked_matches(reference)
        if not any(picked.values()):
            service.cancel(reference, actor=user, reason="no records found")
            client.views_update(view_id=view_id, view=done_modal(
                f"{reference} canceled: no records found.").to_dict())
            return
        request = service.confirm(reference, picked, actor=user)
        in_review = request.status == RequestStatus.IN_REVIEW
        # Posted without its buttons, which come once the message is saved as the request's
        # thread: a click can never arrive before the thread its answer is posted in is known.
        blocks = [b for b in request_message(deps, reference)[1] if b["type"] != "actions"]
        posted = client.chat_postMessage(
            channel=deps.approvals_channel,
            text=f"{reference} " + ("is in review" if in_review else "awaits approval"),
            blocks=blocks)
        service.set_thread(reference, channel=posted["channel"], ts=posted["ts"])
        refresh_request_message(deps, client, reference)
        if in_review:
            deps.wake_worker()  # its discovery starts now, not at the next scheduled run
        client.views_update(view_id=view_id, view=done_modal(
            f":mag_right: {reference} is in review: the bot is finding the subject's data. In its "
            f"thread in <#{deps.approvals_channel}> you then review what the erasure would do, "
            "line by line, before it goes to the approvers." if in_review else
            f":white_check_mark: {reference} is waiting for approval in <#{deps.approvals_channel}>."
        ).to_dict())
    except Exception as exc:  # noqa: BLE001 - shown in the modal, logged without personal data
        log.error("confirmation of %s failed: %s", reference, type(exc).__name__)
        message = str(exc) if isinstance(exc, DsrError) else "an internal error; see the logs"
        client.views_update(view_id=view_id, view=done_modal(
            f":warning: {reference} was not sent for approval: {message[:500]}").to_dict())


def register(app: App) -> None:
    app.view(Callback.CONFIRM_MATCHES)(ack=submit_matches, lazy=[confirm])
    app.action(re.compile(f"^{Action.MATCH_PAGE}:"))(ack=acknowledge, lazy=[turn_page])
    app.action(re.compile(f"^{Action.MATCH_FILTER}:"))(ack=acknowledge, lazy=[filter_matches])
    # A tick is saved with the page's others when the page is left or the modal submitted.
    app.action(Action.PICK_MATCHES)(acknowledge)
