"""The App Home tab, published when a user opens it: each group with its count, its first rows
and "N more" opening the whole list (handlers.lists)."""

from __future__ import annotations

from typing import Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient

from handlers.deps import Deps, acknowledge, deps_of
from handlers.lists import parse_filters
from handlers.views.home import home_view
from handlers.views.lists import HOME_ROWS, home_group

# Each group is a list `/dsr list` can show: these words name it.
GROUPS = (("Awaiting your approval", "awaiting"), ("Your open requests", "open mine"),
          ("Due within 7 days", "due-soon"), ("Overdue", "overdue"))


def publish_home(deps: Deps, client: WebClient, user: str) -> None:
    service = deps.service
    today = service.today()
    groups = None
    if service.policy.is_requester(user):
        groups = [block for title, words in GROUPS for block in home_group(
            title, service.page(parse_filters(words, user, deps), viewer=user, limit=HOME_ROWS),
            today, words)]
    client.views_publish(user_id=user, view=home_view(groups, today).to_dict())


def home_opened(event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    if event.get("tab", "home") == "home":
        publish_home(deps_of(context), client, event["user"])


def register(app: App) -> None:
    # Slack wants the event acknowledged at once; the tab is built and published after that.
    app.event("app_home_opened")(ack=acknowledge, lazy=[home_opened])


