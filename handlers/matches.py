"""The subject's records found in each system, shown in the intake modal and confirmed there:
only the ticked ones are touched. The confirmed request goes to the approvals channel."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from handlers.deps import AFTER_ACK, Deps, acknowledge, deps_of, hand_over
from handlers.edge import mapping, text
from handlers.ids import Action, Callback
from handlers.messages import refresh_request_message, request_message
from handlers.views.request import done_modal, match_key, matches_modal
from services.errors import DsrError
from storage.models import RequestStatus

log = logging.getLogger("dsr_desk.handlers")


def present_matches(deps: Deps, client: WebClient, view_id: str, reference: str) -> None:
    """The systems searched for the request's subject, the matches shown in modal `view_id`."""
    try:
        matches = deps.service.search(reference)
        client.views_update(view_id=view_id, view=matches_modal(reference, matches).to_dict())
    except Exception as exc:  # noqa: BLE001 - shown in the modal, logged without personal data
        log.error("search for %s failed: %s", reference, type(exc).__name__)
        client.views_update(view_id=view_id, view=done_modal(
            f":warning: {reference}: the search failed ({type(exc).__name__}: "
            f"{str(exc)[:300] if isinstance(exc, DsrError) else 'see the logs'}). The request "
            f"is recorded; cancel it with `/dsr cancel {reference}` and file it again.").to_dict())


def submit_matches(ack: Ack, body: dict[str, Any], view: dict[str, Any],
                   context: BoltContext) -> None:
    _, reference, _ = _confirmation(body, view)
    ack(response_action="update",
        view=done_modal(f":hourglass: {reference}: sending for approval…").to_dict())
    hand_over(context, reference=reference, view_id=view["id"])


def confirm(body: dict[str, Any], view: dict[str, Any], client: WebClient,
            context: BoltContext) -> None:
    """After the ack: the ticked records confirmed, the request posted for approval (or for
    its plan's review), the modal told where it went."""
    if handed := context.get(AFTER_ACK):
        user, reference, picked = _confirmation(body, view)
        _confirm(deps_of(context), client, handed["view_id"], reference, user, picked)


def _confirmation(body: dict[str, Any], view: dict[str, Any]) -> tuple[str, str, set[str]]:
    """Who confirmed, which request, and the match keys they ticked."""
    picked = {text(mapping(option).get("value"))
              for block in mapping(mapping(view.get("state")).get("values")).values()
              for element in mapping(block).values()
              for option in mapping(element).get("selected_options") or []}
    return body["user"]["id"], view["private_metadata"], picked


def _confirm(deps: Deps, client: WebClient, view_id: str, reference: str, user: str,
             picked: set[str]) -> None:
    service = deps.service
    try:
        if not picked:
            service.cancel(reference, actor=user, reason="no records found")
            client.views_update(view_id=view_id, view=done_modal(
                f"{reference} canceled: no records found.").to_dict())
            return
        found = service.search(reference)
        confirmed = {system: [m for m in matches if match_key(m) in picked]
                     for system, matches in found.items()}
        request = service.confirm(reference, confirmed, actor=user)
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
    # Ticking a match changes nothing until the modal is submitted.
    app.action(Action.PICK_MATCHES)(acknowledge)
