"""Slack listeners: parse a payload, call one service, render Block Kit."""

from __future__ import annotations

from slack_bolt import App, BoltRequest, BoltResponse

from handlers import actions, commands, home, modals, review
from handlers.deps import Deps


def register_handlers(app: App, deps: Deps) -> None:
    @app.middleware
    def once_per_event(request: BoltRequest, body: dict, next) -> BoltResponse | None:  # noqa: ANN001, A002
        """Slack redelivers events it thinks were missed: each event id is handled once. (The
        work after an event's ack comes back through here from the inbox: it is let through.)"""
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if event_id and not request.lazy_only and not deps.service.first_delivery(event_id):
            return BoltResponse(status=200, body="")
        return next()

    commands.register(app, deps)
    modals.register(app, deps)
    actions.register(app, deps)
    home.register(app, deps)
    review.register(app, deps)
