"""Slack listeners: parse a payload, call one service, render Block Kit."""

from __future__ import annotations

from slack_bolt import App

from handlers import actions, commands, home, modals
from handlers.deps import Deps


def register_handlers(app: App, deps: Deps) -> None:
    commands.register(app, deps)
    modals.register(app, deps)
    actions.register(app, deps)
    home.register(app, deps)
