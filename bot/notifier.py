"""The Slack side of `services.notify.Notifier`: one thread message per batch of a request's
progress, its approval message kept current, and the requester told in a direct message when
the request completes, needs attention, or is reminded of a deadline; a finished request's
compliance record goes to its thread and its export to the requester (`bot.deliveries`)."""

from __future__ import annotations

from collections.abc import Sequence

from slack_sdk import WebClient

from bot.deliveries import Deliveries
from handlers.deps import Deps
from handlers.messages import post_in_thread, refresh_request_message
from handlers.views.common import as_dicts, escape, section
from handlers.views.request import retry_actions
from handlers.views.review import review_button
from services.notify import Event

ICONS = {"request.started": ":gear:", "step.done": ":white_check_mark:",
         "step.waiting": ":hourglass_flowing_sand:", "request.completed": ":tada:",
         "request.needs_attention": ":warning:", "reminder.due": ":alarm_clock:",
         "reminder.ack": ":incoming_envelope:", "record.made": ":page_facing_up:",
         "export.ready": ":package:", "review.ready": ":mag_right:", "review.failed": ":warning:"}
MAX_LINES = 20  # a batch longer than this is summarised: a thread message stays readable


class SlackNotifier:
    def __init__(self, client: WebClient, deps: Deps, deliveries: Deliveries) -> None:
        self.client = client
        self.deps = deps
        self.deliveries = deliveries

    def publish(self, events: Sequence[Event]) -> None:
        """Errors propagate: the caller releases the batch for a later try."""
        first = events[0]
        # Every batch may change the status or the steps done: the message shows both.
        request = refresh_request_message(self.deps, self.client, first.reference)
        marker = " _(simulation)_" if first.simulation else ""
        # The services' words carry vendors' answers (an error's description, a ticket's
        # status): escaped, no vendor text can mention a channel or disguise a link.
        lines = [f"{ICONS.get(e.kind, '•')} {escape(e.text)}" for e in events]
        if len(lines) > MAX_LINES:
            lines = lines[:MAX_LINES - 1] + [f"… and {len(lines) - MAX_LINES + 1} more updates: "
                                             f"`/dsr show {first.reference}` has every step."]
        text = "\n".join(lines) + marker
        failed = next((e for e in events if e.kind == "request.needs_attention"), None)
        if failed is not None and request.status == "needs_attention":
            blocks = as_dicts([section(text), retry_actions(request)])
            post_in_thread(self.client, request, text, blocks)
            self._tell_requester(request.requester_slack_id,
                                 f":warning: {first.reference} needs attention: "
                                 f"{escape(failed.text)}", blocks)
            return
        if any(e.kind == "review.ready" for e in events) and request.status == "in_review":
            blocks = as_dicts([section(text), review_button(request)])
            post_in_thread(self.client, request, text, blocks)
            self._tell_requester(request.requester_slack_id,
                                 f":mag_right: {first.reference}: the erasure's plan is ready for "
                                 "your review. Nothing is destroyed before it is approved.", blocks)
            return
        if any(e.kind == "review.failed" for e in events) and request.status == "in_review":
            post_in_thread(self.client, request, text, as_dicts([section(text),
                                                                 retry_actions(request)]))
            return
        post_in_thread(self.client, request, text)
        for event in events:
            if event.kind == "request.completed":
                self._tell_requester(request.requester_slack_id,
                                     f":tada: {event.reference} is completed{marker}. "
                                     f"`/dsr show {event.reference}` has every step.")
            elif event.kind == "record.made":
                self.deliveries.post_record(request)
            elif event.kind == "export.ready":
                self.deliveries.send_export(event.reference, request.requester_slack_id,
                                            actor="dsr-desk")
            elif event.kind.startswith("reminder."):
                self._tell_requester(request.requester_slack_id,
                                     f"{ICONS[event.kind]} {escape(event.text)}{marker}")

    def _tell_requester(self, user: str, text: str, blocks: list[dict] | None = None) -> None:
        channel = self.client.conversations_open(users=user)["channel"]["id"]
        self.client.chat_postMessage(channel=channel, text=text, blocks=blocks)
