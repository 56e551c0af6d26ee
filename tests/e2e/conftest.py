"""The real app in HTTP mode on a localhost port, a Slack Web API stand-in, the vendor stand-ins."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from bot.app import Runtime, create_app
from bot.http import wsgi_app
from bot.settings import Settings
from bot.slack_driver import SlackDriver
from bot.slack_standin import SlackStandIn
from services.sandbox import server

SECRET = "e2e-signing-secret"
APPROVERS = [f"U_APP{n}" for n in range(1, 21)]


@dataclass
class World:
    runtime: Runtime
    slack: SlackStandIn
    driver: SlackDriver

    def emails(self) -> list[str]:
        self.runtime.registry.sandboxes.url("zendesk")
        users = self.runtime.registry.sandboxes.instances["zendesk"].state.users.values()
        return sorted(u["email"] for u in users if u["role"] == "end-user")


def wait_for(condition, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def world(database_url, tmp_path):
    slack = SlackStandIn(bot_token="xoxb-e2e")
    slack_server = server.start(slack.wsgi)
    settings = Settings(
        _env_file=None,  # never a developer's real credentials
        DATABASE_URL=database_url, DSR_DATA_DIR=str(tmp_path), SLACK_BOT_TOKEN="xoxb-e2e",
        SLACK_SIGNING_SECRET=SECRET, SLACK_API_URL=f"{slack_server.url}/api/",
        DSR_REQUESTERS="U_REQ", DSR_APPROVERS=" ".join(["U_REQ", *APPROVERS]),
        DSR_MANAGERS="U_MGR", DSR_APPROVALS_CHANNEL="C0APPROVALS", DSR_POLL_SECONDS=0.05,
        DSR_SANDBOX_PEOPLE=6,
    )
    runtime = create_app(settings, intervals={"execute": 0.05, "status_updates": 0.05, "deliverables": 0.05},
                         sleep=lambda s: None)
    runtime.scheduler.start()
    app_server = server.start(wsgi_app(runtime))
    yield World(runtime, slack, SlackDriver(app_server.url, SECRET, slack, slack_server.url))
    app_server.stop()
    runtime.close()
    slack_server.stop()
