"""The review of an erasure's plan: open it, change a line or a whole group, page through it,
send it for approval. Each change is saved (and audited) at once; the modal is re-rendered."""

from __future__ import annotations

import re
from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient

from handlers.deps import (
    AFTER_ACK,
    Deps,
    acknowledge,
    deps_of,
    hand_over,
    opens_a_modal,
    replies_errors,
    replies_in_modal,
)
from handlers.edge import text
from handlers.ids import Action, Callback
from handlers.messages import post_in_thread, refresh_request_message
from handlers.views.request import done_modal
from handlers.views.review import PAGE_SIZE, review_modal, summary_text
from services.errors import DsrError, InvalidRequest
from services.vocabulary import MAX_REQUEST_ID


def _modal(deps: Deps, reference: str, user: str, offset: int, problem: str | None = None) -> dict:
    service = deps.service
    request, plan = service.plan_page(reference, viewer=user, offset=offset, limit=PAGE_SIZE)
    if offset and not plan.items and plan.total:  # the page emptied: show the last one
        request, plan = service.plan_page(reference, viewer=user, limit=PAGE_SIZE,
                                          offset=(plan.total - 1) // PAGE_SIZE * PAGE_SIZE)
    _, summary, _ = service.plan_summary(reference)
    editable = user == request.requester_slack_id
    return review_modal(request, plan, editable=editable, summary=summary,
                        problem=problem).to_dict()


def _where(body: dict[str, Any]) -> tuple[str, int]:
    reference, _, offset = text(body["view"]["private_metadata"]).partition("|")
    return reference, _number(offset or "0")


def _number(value: Any) -> int:
    """A number the review modal carries (a page's offset, a line's id), as it came back: one
    that is not ours is refused, before it reaches a query."""
    value = text(value)
    if not (value.isascii() and value.isdigit() and len(value) <= 10) or int(value) > MAX_REQUEST_ID:
        raise InvalidRequest("This review is out of date: open it again from the request's thread.")
    return int(value)


def _chosen(action: dict[str, Any]) -> str:
    return text((action.get("selected_option") or {}).get("value"))


def _announce_plan(deps: Deps, client: WebClient, reference: str, user: str) -> None:
    request = refresh_request_message(deps, client, reference)
    _, summary, _ = deps.service.plan_summary(reference)
    post_in_thread(client, request, f":clipboard: <@{user}> sent the reviewed plan for "
                   f"approval:\n{summary_text(summary)}")


@replies_errors
def open_review(body: dict[str, Any], action: dict[str, Any], client: WebClient,
                respond: Respond, context: BoltContext) -> None:
    deps = deps_of(context)
    user, reference = body["user"]["id"], action["value"]
    policy = deps.service.policy  # the role first: someone without one learns nothing
    policy.require(policy.is_requester(user) or policy.is_approver(user), "see plans")
    _, summary, discovery = deps.service.plan_summary(reference)
    done, total, failed = discovery
    if failed or done < total:
        respond(text=f"{reference}: {summary_text(summary, discovery)}",
                response_type="ephemeral", replace_original=False)
        return
    client.views_open(trigger_id=body["trigger_id"], view=_modal(deps, reference, user, 0))


def _rerender(deps: Deps, body: dict[str, Any], client: WebClient, change) -> None:  # noqa: ANN001
    """Apply `change`, then show the page again (with the refusal, if there was one)."""
    user = body["user"]["id"]
    reference, offset = _where(body)
    problem = None
    try:
        change(reference, user)
    except DsrError as exc:
        problem = str(exc)
    client.views_update(view_id=body["view"]["id"],
                        view=_modal(deps, reference, user, offset, problem))
    if problem is None:
        refresh_request_message(deps, client, reference)


@replies_in_modal
def change_line(body: dict[str, Any], action: dict[str, Any], client: WebClient,
                context: BoltContext) -> None:
    deps = deps_of(context)
    item_id = _number(action["block_id"].removeprefix("line:"))
    chosen = _chosen(action)
    _rerender(deps, body, client, lambda ref, user: deps.service.set_plan_action(
        ref, item_id, chosen, actor=user))


@replies_in_modal
def change_group(body: dict[str, Any], action: dict[str, Any], client: WebClient,
                 context: BoltContext) -> None:
    deps = deps_of(context)
    group, _, chosen = _chosen(action).partition("|")
    _rerender(deps, body, client, lambda ref, user: deps.service.set_plan_group(
        ref, group, chosen, actor=user))


@replies_in_modal
def turn_page(body: dict[str, Any], action: dict[str, Any], client: WebClient,
              context: BoltContext) -> None:
    reference, _ = _where(body)
    client.views_update(view_id=body["view"]["id"], view=_modal(
        deps_of(context), reference, body["user"]["id"], _number(action["value"])))


def submit_plan(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    deps = deps_of(context)
    user = body["user"]["id"]
    reference, offset = _where(body)
    try:
        request = deps.service.submit_plan(reference, actor=user)
    except DsrError as exc:
        ack(response_action="update", view=_modal(deps, reference, user, offset, str(exc)))
        return
    ack(response_action="update", view=done_modal(
        f":white_check_mark: {reference}: the plan is sent for approval.").to_dict())
    hand_over(context, reference=request.reference)


def announce_plan(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    """After the ack, from the inbox (bot.inbox): the plan in the request's thread."""
    if handed := context.get(AFTER_ACK):
        _announce_plan(deps_of(context), client, handed["reference"], body["user"]["id"])


@replies_errors
def review_again(body: dict[str, Any], action: dict[str, Any], client: WebClient,
                 respond: Respond, context: BoltContext) -> None:
    deps = deps_of(context)
    user, reference = body["user"]["id"], action["value"]
    request = deps.service.review_again(reference, actor=user)
    refresh_request_message(deps, client, reference)
    post_in_thread(client, request, f":mag_right: <@{user}> is reviewing the plan again: "
                   "what was done stays done; the search runs again for what is new.")
    deps.wake_worker()


def register(app: App) -> None:
    app.view(Callback.REVIEW_PLAN)(ack=submit_plan, lazy=[announce_plan])
    app.action(Action.REVIEW_PLAN)(opens_a_modal(open_review))
    app.action(Action.REVIEW_AGAIN)(ack=acknowledge, lazy=[review_again])
    app.action(Action.PLAN_LINE)(ack=acknowledge, lazy=[change_line])
    app.action(Action.PLAN_GROUP)(ack=acknowledge, lazy=[change_group])
    app.action(re.compile(f"^{Action.PLAN_PAGE}:"))(ack=acknowledge, lazy=[turn_page])
