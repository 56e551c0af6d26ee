"""Button clicks: approve, reject, retry, new request."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from handlers.deps import Deps, replies_errors
from handlers.ids import Action
from handlers.modals import post_in_thread, refresh_request_message
from handlers.views.intake import intake_modal, reject_modal


def register(app: App, deps: Deps) -> None:
    service = deps.service

    @app.action(Action.APPROVE)
    @replies_errors
    def approve(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient,
                respond: Respond) -> None:
        ack()
        user, reference = body["user"]["id"], action["value"]
        decision = service.decide(reference, approver=user, approve=True)
        request = refresh_request_message(deps, client, reference)
        if decision.decided:
            post_in_thread(client, request,
                           f":white_check_mark: Approved by <@{user}>; execution starts now.")
            deps.wake_worker()
        else:
            post_in_thread(client, request, f":white_check_mark: <@{user}> approved "
                           f"({decision.approvals} of {decision.required}).")

    @app.action(Action.REJECT)
    @replies_errors
    def reject(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient,
               respond: Respond) -> None:
        ack()
        user = body["user"]["id"]
        service.policy.require(service.policy.is_approver(user), "approve or reject requests")
        client.views_open(trigger_id=body["trigger_id"], view=reject_modal(action["value"]).to_dict())

    @app.action(Action.RETRY)
    @replies_errors
    def retry(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient,
              respond: Respond) -> None:
        ack()
        user, reference = body["user"]["id"], action["value"]
        count = service.retry(reference, actor=user)
        request = refresh_request_message(deps, client, reference)
        post_in_thread(client, request,
                       f":arrows_counterclockwise: <@{user}> retried {count} failed step(s).")
        deps.wake_worker()
        respond(text=f"Retrying {count} step(s) of {reference}.", response_type="ephemeral",
                replace_original=False)

    @app.action(Action.NEW_REQUEST)
    @replies_errors
    def new_request(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        service.policy.require(service.policy.is_requester(body["user"]["id"]),
                               "file data subject requests")
        client.views_open(trigger_id=body["trigger_id"],
                          view=intake_modal(deps.jurisdictions(), deps.systems).to_dict())

    @app.action(Action.PICK_MATCHES)
    def pick(ack: Ack) -> None:
        ack()  # ticking a match changes nothing until the modal is submitted
