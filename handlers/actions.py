"""Button clicks: approve, reject, retry, new request.

Each click is acknowledged at once, with nothing to say; what it does runs after the ack as a
bolt lazy listener, and a refusal or failure reaches the user by response_url (ephemeral)."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from handlers.deps import Deps, acknowledge, replies_errors
from handlers.ids import Action
from handlers.modals import post_in_thread, refresh_request_message
from handlers.views.intake import intake_modal, reject_modal


def register(app: App, deps: Deps) -> None:
    service = deps.service

    @replies_errors
    def approve(body: dict[str, Any], action: dict[str, Any], client: WebClient,
                respond: Respond) -> None:
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

    @replies_errors
    def reject(body: dict[str, Any], action: dict[str, Any], client: WebClient,
               respond: Respond) -> None:
        user = body["user"]["id"]
        service.policy.require(service.policy.is_approver(user), "approve or reject requests")
        client.views_open(trigger_id=body["trigger_id"], view=reject_modal(action["value"]).to_dict())

    @replies_errors
    def retry(body: dict[str, Any], action: dict[str, Any], client: WebClient,
              respond: Respond) -> None:
        user, reference = body["user"]["id"], action["value"]
        count = service.retry(reference, actor=user)
        request = refresh_request_message(deps, client, reference)
        post_in_thread(client, request,
                       f":arrows_counterclockwise: <@{user}> retried {count} failed step(s).")
        deps.wake_worker()
        respond(text=f"Retrying {count} step(s) of {reference}.", response_type="ephemeral",
                replace_original=False)

    @replies_errors
    def new_request(body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        service.policy.require(service.policy.is_requester(body["user"]["id"]),
                               "file data subject requests")
        client.views_open(trigger_id=body["trigger_id"],
                          view=intake_modal(deps.jurisdictions(), deps.systems).to_dict())

    @replies_errors
    def send_export(body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        user, reference = body["user"]["id"], action["value"]
        deps.deliverables.send_export(reference, user)
        respond(text=f":package: The export of {reference} is in your direct messages.",
                response_type="ephemeral", replace_original=False)

    @replies_errors
    def send_record(body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        user, reference = body["user"]["id"], action["value"]
        deps.deliverables.send_record(reference, user)
        respond(text=f":page_facing_up: The compliance record of {reference} is in your direct "
                     "messages.", response_type="ephemeral", replace_original=False)

    app.action(Action.SEND_EXPORT)(ack=acknowledge, lazy=[send_export])
    app.action(Action.SEND_RECORD)(ack=acknowledge, lazy=[send_record])
    app.action(Action.APPROVE)(ack=acknowledge, lazy=[approve])
    app.action(Action.REJECT)(ack=acknowledge, lazy=[reject])
    app.action(Action.RETRY)(ack=acknowledge, lazy=[retry])
    app.action(Action.NEW_REQUEST)(ack=acknowledge, lazy=[new_request])

    @app.action(Action.PICK_MATCHES)
    def pick(ack: Ack) -> None:
        ack()  # ticking a match changes nothing until the modal is submitted
