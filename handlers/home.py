"""The App Home tab, published when a user opens it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from handlers.deps import Deps
from handlers.views.home import home_view


def publish_home(deps: Deps, client: WebClient, user: str) -> None:
    service = deps.service
    today = service.today()
    has_role = service.policy.is_requester(user)
    if has_role:
        open_all = service.open_requests(limit=200)
        view = home_view(
            mine=service.open_requests(requester=user),
            awaiting=service.awaiting(user),
            due_soon=[r for r in open_all
                      if today <= r.effective_due_on <= today + timedelta(days=7)],
            overdue=[r for r in open_all if r.effective_due_on < today],
            today=today, has_role=True)
    else:
        view = home_view(mine=[], awaiting=[], due_soon=[], overdue=[], today=today,
                         has_role=False)
    client.views_publish(user_id=user, view=view.to_dict())


def register(app: App, deps: Deps) -> None:
    @app.event("app_home_opened")
    def home_opened(event: dict[str, Any], client: WebClient) -> None:
        if event.get("tab", "home") == "home":
            publish_home(deps, client, event["user"])
