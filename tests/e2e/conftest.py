"""The real app in HTTP mode on a localhost port, a Slack Web API stand-in, the vendor stand-ins."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import pytest

from bot.app import Runtime, create_app
from bot.http import wsgi_app
from bot.settings import Settings
from bot.slack_driver import SlackDriver, tick_everything
from bot.slack_standin import SlackStandIn
from handlers.ids import Block, Callback
from services.sandbox import server
from tests.forms import form

SECRET = "e2e-signing-secret"
APPROVALS = "C0APPROVALS"
APPROVERS = [f"U_APP{n}" for n in range(1, 21)]


@dataclass
class Conversation:
    """Slack's side: its Web API stand-in, and a client sending signed requests to the app."""

    slack: SlackStandIn
    driver: SlackDriver


@dataclass
class World(Conversation):
    runtime: Runtime

    def emails(self) -> list[str]:
        self.runtime.registry.sandboxes.url("zendesk")
        users = self.runtime.registry.sandboxes.instances["zendesk"].state.users.values()
        return sorted(u["email"] for u in users if u["role"] == "end-user")


def wait_for(condition, timeout: float = 60.0, what: str = "condition"):
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
    yield World(slack, SlackDriver(app_server.url, SECRET, slack, slack_server.url), runtime)
    app_server.stop()
    runtime.close()
    slack_server.stop()


def modal(world: Conversation, callback: str, after: int = 0) -> dict:
    return wait_for(lambda: next((v for v in list(world.slack.views().values())[after:]
                                  if v.get("callback_id") == callback), None),
                    what=f"a {callback} modal")


def matches_of(world: Conversation, reference: str) -> dict:
    """The match picker of `reference`, once its search has filled it."""
    return wait_for(lambda: next((v for v in world.slack.views().values()
                                  if v.get("callback_id") == Callback.CONFIRM_MATCHES
                                  and json.loads(v["private_metadata"])["r"] == reference), None),
                    what="the matches")


def file_request(world: Conversation, email: str, systems=("zendesk", "genesys"),
                 **fields) -> tuple[str, dict]:
    """Through the app: /dsr new, submit the form, tick every match, send for approval.
    Returns the reference and the approval message."""
    before = len(world.slack.views())
    assert world.driver.command("U_REQ", "new").status_code == 200
    intake = modal(world, Callback.NEW_REQUEST, before)
    answer = world.driver.submit("U_REQ", intake, form(**{
        Block.EMAILS: email, Block.SYSTEMS: list(systems), **fields}))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["response_action"] == "update"
    reference = body["view"]["private_metadata"]
    matches = matches_of(world, reference)
    ticked = tick_everything(matches)
    assert set(ticked) == {f"picks:{system}:0" for system in systems}
    assert world.driver.submit("U_REQ", matches, ticked).status_code == 200
    message = wait_for(lambda: next((m for m in world.slack.messages(APPROVALS)
                                     if reference in json.dumps(m["blocks"])
                                     and m.get("thread_ts") in (None, m["ts"])
                                     and '"actions"' in json.dumps(m["blocks"])), None),
                       what="the approval message with its buttons")
    return reference, message
