"""The Slack side of `services.notify.Notifier`: progress in the request's thread, and the
requester told in a direct message when the request completes or needs attention."""

from __future__ import annotations

import logging

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from handlers.deps import Deps
from handlers.modals import post_in_thread, refresh_request_message
from handlers.views.common import as_dicts, section
from handlers.views.request import retry_actions
from services.notify import Event

log = logging.getLogger("dsr_desk.notify")
ICONS = {"request.started": ":gear:", "step.done": ":white_check_mark:",
         "step.waiting": ":hourglass_flowing_sand:", "request.completed": ":tada:",
         "request.needs_attention": ":warning:"}


class SlackNotifier:
    def __init__(self, client: WebClient, deps: Deps) -> None:
        self.client = client
        self.deps = deps

    def publish(self, event: Event) -> None:
        marker = " _(simulation)_" if event.simulation else ""
        text = f"{ICONS.get(event.kind, '•')} {event.text}{marker}"
        try:
            if event.kind in ("request.needs_attention", "request.completed", "request.started"):
                # These change the request's status: its message shows it, and is re-read.
                request = refresh_request_message(self.deps, self.client, event.reference)
            else:
                request = self.deps.service.get(event.request_id)
            if event.kind == "request.needs_attention":
                blocks = as_dicts([section(text), retry_actions(request)])
                post_in_thread(self.client, request, text, blocks)
                self._tell_requester(request.requester_slack_id,
                                     f":warning: {event.reference} needs attention: {event.text}",
                                     blocks)
            elif event.kind == "request.completed":
                post_in_thread(self.client, request, text)
                self._tell_requester(request.requester_slack_id,
                                     f":tada: {event.reference} is completed{marker}. "
                                     f"`/dsr show {event.reference}` has every step.")
            else:
                post_in_thread(self.client, request, text)
        except SlackApiError as exc:
            log.error("could not post %s for %s: %s", event.kind, event.reference,
                      exc.response.get("error"))

    def _tell_requester(self, user: str, text: str, blocks: list[dict] | None = None) -> None:
        channel = self.client.conversations_open(users=user)["channel"]["id"]
        self.client.chat_postMessage(channel=channel, text=text, blocks=blocks)
