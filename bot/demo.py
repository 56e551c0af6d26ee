"""`dsr-desk demo`: one simulated request, end to end, through the real app with no Slack account.

The app runs in HTTP mode on a localhost port against a stand-in of Slack's Web API; a driver
plays the people (signed slash command, form, confirmation, approval click) and the vendors
are the built-in stand-ins. The conversation is printed as a transcript.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from cryptography.fernet import Fernet

from bot.app import create_app
from bot.http import wsgi_app
from bot.settings import Settings
from bot.slack_driver import SlackDriver, form_state, tick_everything
from bot.slack_standin import SlackStandIn
from handlers.ids import Action, Block, Callback
from services.sandbox import server
from storage import migrate
from storage.db import make_engine

PEOPLE = {"U0PRIYA": "Priya (privacy analyst)", "U0MARCO": "Marco (DPO, approver)"}
APPROVALS = "C0PRIVACY"
SECRET = "demo-signing-secret"


def _wait(condition: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.05)
    raise TimeoutError("the demo stalled; run with DSR_LOG_LEVEL=DEBUG to see why")


def _text_of(blocks: list[dict[str, Any]]) -> str:
    parts = []
    for block in blocks:
        text = block.get("text")
        if isinstance(text, dict):
            parts.append(text["text"])
        for element in block.get("elements") or []:
            if element.get("type") == "button":
                parts.append(f"[{element['text']['text']}]")
            elif isinstance(element.get("text"), str):
                parts.append(element["text"])
    return "\n".join(parts)


class Transcript:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    def say(self, who: str, what: str) -> None:
        indented = what.replace("\n", "\n" + " " * 6)
        print(f"\n{who}:\n      {indented}", file=self.out, flush=True)


def run_demo(out: TextIO, workdir: Path | None = None) -> str:
    """Play the demo; returns the request's final status."""
    with tempfile.TemporaryDirectory() as tmp:
        base = workdir or Path(tmp)
        database = f"sqlite:///{base / 'demo.sqlite3'}"
        engine = make_engine(database)
        migrate.upgrade(engine)
        engine.dispose()
        slack = SlackStandIn(bot_token="xoxb-demo", users={
            user: {"real_name": name} for user, name in PEOPLE.items()})
        slack_server = server.start(slack.wsgi)
        settings = Settings(
            _env_file=None,  # the demo touches nothing real, whatever .env holds
            DATABASE_URL=database, DSR_DATA_DIR=str(base), SLACK_BOT_TOKEN="xoxb-demo",
            SLACK_SIGNING_SECRET=SECRET, SLACK_API_URL=f"{slack_server.url}/api/",
            DSR_REQUESTERS="U0PRIYA", DSR_APPROVERS="U0MARCO", DSR_APPROVALS_CHANNEL=APPROVALS,
            DSR_POLL_SECONDS=0.2, DSR_EXPORT_KEY=Fernet.generate_key().decode(),  # lives as long as the demo
        )
        runtime = create_app(settings, intervals={"execute": 0.2, "status_updates": 0.2,
                                                  "deliverables": 0.2})
        runtime.scheduler.start()
        app_server = server.start(wsgi_app(runtime))
        try:
            return _play(Transcript(out), runtime, slack,
                         SlackDriver(app_server.url, SECRET, slack, slack_server.url))
        finally:
            app_server.stop()
            runtime.close()
            slack_server.stop()


def _play(t: Transcript, runtime: Any, slack: SlackStandIn, driver: SlackDriver) -> str:
    runtime.registry.sandboxes.url("zendesk")
    zendesk = runtime.registry.sandboxes.instances["zendesk"]
    subject = next(u for u in zendesk.state.users.values() if u["role"] == "end-user")
    t.say("DSR Desk demo", "Everything below is simulated: a local stand-in of Slack, and the "
          "built-in stand-ins of Zendesk Support and Genesys Cloud. Nothing real is touched.")

    t.say(PEOPLE["U0PRIYA"], "/dsr new")
    driver.command("U0PRIYA", "new")
    intake = _wait(lambda: next((v for v in slack.views().values()
                                 if v.get("callback_id") == Callback.NEW_REQUEST), None))
    t.say("DSR Desk (modal)", f"opens '{intake['title']['text']}': subject, type, jurisdiction, "
          "systems, 'Use real API' (off), identity verification, …")
    form = {Block.EMAILS: subject["email"], Block.TYPE: "access", Block.JURISDICTION: "GDPR",
            Block.SYSTEMS: ["zendesk", "genesys"], Block.VERIFICATION: "Reply from the address on file"}
    t.say(PEOPLE["U0PRIYA"], "fills in: " + ", ".join(
        f"{k}={', '.join(v) if isinstance(v, list) else v}" for k, v in form.items()))
    answer = driver.submit("U0PRIYA", intake, form_state(form)).json()
    reference = answer["view"]["private_metadata"]
    matches = _wait(lambda: next((v for v in slack.views().values()
                                  if v.get("callback_id") == Callback.CONFIRM_MATCHES), None))
    t.say("DSR Desk (modal)", f"{reference} recorded. Matches found:\n" + _text_of(
        [b for b in matches["blocks"] if b["type"] != "input"]) + "\n" + "\n".join(
        f"[ ] {o['text']['text']} ({o.get('description', {}).get('text', '')})"
        for b in matches["blocks"] if b["type"] == "input" for o in b["element"]["options"]))
    t.say(PEOPLE["U0PRIYA"], "ticks every match and clicks [Send for approval]")
    driver.submit("U0PRIYA", matches, tick_everything(matches))
    # Its buttons come once it is saved as the request's thread (handlers.modals._confirm).
    message = _wait(lambda: next((m for m in slack.messages(APPROVALS)
                                  if reference in json.dumps(m["blocks"])
                                  and '"actions"' in json.dumps(m["blocks"])), None))
    t.say(f"DSR Desk in #{APPROVALS}", _text_of(message["blocks"]))

    t.say(PEOPLE["U0MARCO"], "clicks [Approve]")
    driver.click("U0MARCO", message, Action.APPROVE, APPROVALS)
    detail = _wait(lambda: (d := runtime.service.detail(reference, viewer=None)).request.status
                   in ("completed", "needs_attention") and d)
    # The notices follow the status change: wait for the one to the requester.
    _wait(lambda: any(reference in m["text"] for m in slack.messages("U0PRIYA")))
    for reply in slack.thread(APPROVALS, message["ts"])[1:]:
        t.say("DSR Desk in the thread", reply["text"])
    for dm in slack.messages("U0PRIYA"):
        t.say("DSR Desk to Priya (direct message)", dm["text"])
    t.say("Result", f"{reference} is {detail.request.status}; {len(detail.steps)} steps, "
          "audit trail recorded. Connect a real workspace with SLACK_BOT_TOKEN and "
          "SLACK_APP_TOKEN (README: 'Creating the Slack app').")
    return str(detail.request.status)

