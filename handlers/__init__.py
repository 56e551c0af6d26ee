"""Slack listeners: parse a payload, call one service, render Block Kit.

Each listener is a plain module-level function; its dependencies reach it in bolt's `context`
(handlers.deps.deps_of), set by the first middleware here."""

from __future__ import annotations

from collections.abc import Callable

from slack_bolt import App, BoltContext, BoltRequest, BoltResponse

from handlers import actions, commands, home, intake, lists, matches, review, systems
from handlers.deps import DEPS, Deps


def register_handlers(app: App, deps: Deps) -> None:
    @app.middleware
    def with_deps_once_per_event(request: BoltRequest, context: BoltContext, body: dict,
                                 next: Callable[[], BoltResponse]) -> BoltResponse | None:  # noqa: A002
        """Gives every listener the Deps. And Slack redelivers events it thinks were missed:
        each event id is handled once. (The work after an event's ack comes back through here
        from the inbox: it is let through.) One middleware: each costs an ack its own call."""
        context[DEPS] = deps
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if event_id and not request.lazy_only and not deps.service.first_delivery(event_id):
            return BoltResponse(status=200, body="")
        return next()

    # bolt tries the listeners in this order, one matcher call each: the most used first
    # (`/dsr`, then the approvers' buttons).
    for module in (commands, actions, intake, matches, lists, home, review, systems):
        module.register(app)
