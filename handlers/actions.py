"""Button clicks on a request: approve, reject (and the rejection's reason), retry, new request,
send the export or the compliance record.

Each click is acknowledged at once, with nothing to say; what it does runs after the ack (bolt's
lazy listeners, from the inbox: bot.inbox), and a refusal or failure reaches the user by
response_url (ephemeral)."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient

from handlers.deps import (
    AFTER_ACK,
    acknowledge,
    deps_of,
    hand_over,
    opens_a_modal,
    replies_errors,
)
from handlers.edge import field_value
from handlers.ids import Action, Block, Callback
from handlers.messages import post_in_thread, refresh_request_message
from handlers.views.common import escape
from handlers.views.intake import intake_modal, reject_modal
from services.errors import DsrError


@replies_errors
def approve(body: dict[str, Any], action: dict[str, Any], client: WebClient, respond: Respond,
            context: BoltContext) -> None:
    deps = deps_of(context)
    user, reference = body["user"]["id"], action["value"]
    decision = deps.service.decide(reference, approver=user, approve=True)
    request = refresh_request_message(deps, client, reference)
    if decision.decided:
        post_in_thread(client, request,
                       f":white_check_mark: Approved by <@{user}>; execution starts now.")
        deps.wake_worker()
    else:
        post_in_thread(client, request, f":white_check_mark: <@{user}> approved "
                       f"({decision.approvals} of {decision.required}).")


@replies_errors
def reject(body: dict[str, Any], action: dict[str, Any], client: WebClient, respond: Respond,
           context: BoltContext) -> None:
    """Opens the modal that asks for the rejection's reason."""
    policy = deps_of(context).service.policy
    policy.require(policy.is_approver(body["user"]["id"]), "approve or reject requests")
    client.views_open(trigger_id=body["trigger_id"], view=reject_modal(action["value"]).to_dict())


def submit_rejection(ack: Ack, body: dict[str, Any], view: dict[str, Any],
                     context: BoltContext) -> None:
    reason = field_value(view["state"]["values"], Block.REASON)
    try:
        decision = deps_of(context).service.decide(
            view["private_metadata"], approver=body["user"]["id"], approve=False, reason=reason)
    except DsrError as exc:
        ack(response_action="errors", errors={Block.REASON: str(exc)[:150]})
        return
    ack()
    hand_over(context, reference=decision.request.reference)


def announce_rejection(body: dict[str, Any], view: dict[str, Any], client: WebClient,
                       context: BoltContext) -> None:
    if handed := context.get(AFTER_ACK):
        request = refresh_request_message(deps_of(context), client, handed["reference"])
        reason = field_value(view["state"]["values"], Block.REASON)
        post_in_thread(client, request,
                       f":no_entry: Rejected by <@{body['user']['id']}>: {escape(reason)}")


@replies_errors
def retry(body: dict[str, Any], action: dict[str, Any], client: WebClient, respond: Respond,
          context: BoltContext) -> None:
    deps = deps_of(context)
    user, reference = body["user"]["id"], action["value"]
    count = deps.service.retry(reference, actor=user)
    request = refresh_request_message(deps, client, reference)
    post_in_thread(client, request,
                   f":arrows_counterclockwise: <@{user}> retried {count} failed step(s).")
    deps.wake_worker()
    respond(text=f"Retrying {count} step(s) of {reference}.", response_type="ephemeral",
            replace_original=False)


@replies_errors
def new_request(body: dict[str, Any], client: WebClient, respond: Respond,
                context: BoltContext) -> None:
    deps = deps_of(context)
    policy = deps.service.policy
    policy.require(policy.is_requester(body["user"]["id"]), "file data subject requests")
    client.views_open(trigger_id=body["trigger_id"],
                      view=intake_modal(deps.jurisdictions(), deps.systems).to_dict())


@replies_errors
def send_export(body: dict[str, Any], action: dict[str, Any], respond: Respond,
                context: BoltContext) -> None:
    user, reference = body["user"]["id"], action["value"]
    deps_of(context).deliverables.send_export(reference, user)
    respond(text=f":package: The export of {reference} is in your direct messages.",
            response_type="ephemeral", replace_original=False)


@replies_errors
def send_record(body: dict[str, Any], action: dict[str, Any], respond: Respond,
                context: BoltContext) -> None:
    user, reference = body["user"]["id"], action["value"]
    deps_of(context).deliverables.send_record(reference, user)
    respond(text=f":page_facing_up: The compliance record of {reference} is in your direct "
                 "messages.", response_type="ephemeral", replace_original=False)


def register(app: App) -> None:
    app.action(Action.APPROVE)(ack=acknowledge, lazy=[approve])
    app.action(Action.REJECT)(opens_a_modal(reject))
    app.action(Action.SEND_EXPORT)(ack=acknowledge, lazy=[send_export])
    app.action(Action.SEND_RECORD)(ack=acknowledge, lazy=[send_record])
    app.view(Callback.REJECT_REASON)(ack=submit_rejection, lazy=[announce_rejection])
    app.action(Action.RETRY)(ack=acknowledge, lazy=[retry])
    app.action(Action.NEW_REQUEST)(opens_a_modal(new_request))
