"""The App Home tab, published when a user opens it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from handlers.deps import Deps, acknowledge
from handlers.views.home import home_view


def publish_home(deps: Deps, client: WebClient, user: str) -> None:
    service = deps.service
    today = service.today()
    has_role = service.policy.is_requester(user)
    if has_role:
        view = home_view(
            mine=service.open_requests(requester=user),
            awaiting=service.awaiting(user),
            due_soon=service.open_requests(due_from=today, due_before=today + timedelta(days=8)),
            overdue=service.open_requests(due_before=today), today=today, has_role=True)
    else:
        view = home_view(mine=[], awaiting=[], due_soon=[], overdue=[], today=today,
                         has_role=False)
    client.views_publish(user_id=user, view=view.to_dict())


def register(app: App, deps: Deps) -> None:
    def home_opened(event: dict[str, Any], client: WebClient) -> None:
        if event.get("tab", "home") == "home":
            publish_home(deps, client, event["user"])

    # Slack wants the event acknowledged at once; the tab is built and published after that.
    app.event("app_home_opened")(ack=acknowledge, lazy=[home_opened])
