"""`dsr-desk run` in Socket Mode, as its own process, against local stand-ins of Slack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bot.slack_standin import SlackStandIn
from bot.socket_standin import SocketModeStandIn
from handlers.ids import Action, Block, Callback
from services.sandbox import server
from tests.conftest import child_env
from tests.e2e.conftest import wait_for
from tests.e2e.test_http_server import PEOPLE, Gate
from tests.forms import form

ROOT = Path(__file__).resolve().parents[2]


def test_run_in_socket_mode_answers_commands(database_url, tmp_path) -> None:
    slack = SlackStandIn(bot_token="xoxb-sock", app_token="xapp-sock")
    sockets = SocketModeStandIn()
    slack.socket_url = sockets.url
    slack_server = server.start(slack.wsgi)
    env = child_env("DSR_", "DATABASE_", "SLACK_")
    env.update({"PYTHONPATH": str(ROOT), "DATABASE_URL": database_url, "DSR_DATA_DIR": str(tmp_path),
                "SLACK_BOT_TOKEN": "xoxb-sock", "SLACK_APP_TOKEN": "xapp-sock",
                "SLACK_API_URL": f"{slack_server.url}/api/", "DSR_REQUESTERS": "U_REQ",
                "DSR_APPROVERS": "U_A U_B", "DSR_APPROVALS_CHANNEL": "C0APPROVALS"})
    bot = subprocess.Popen([sys.executable, "-m", "bot.cli", "run"], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert sockets.wait_connected(), "the bot never opened its Socket Mode connection"
        command = {"command": "/dsr", "text": "help", "user_id": "U_REQ", "team_id": "T0STANDIN",
                   "channel_id": "C0GENERAL", "trigger_id": slack.new_trigger_id("U_REQ"),
                   "response_url": slack.response_url(slack_server.url, user="U_REQ")}
        ack = sockets.send("slash_commands", command)
        assert "`/dsr new`" in json.dumps(ack["payload"])
        sockets.send("slash_commands", {**command, "text": "new",
                                        "trigger_id": slack.new_trigger_id("U_REQ")})
        wait_for(lambda: slack.calls_to("views.open"), what="the intake modal")
        assert slack.calls_to("apps.connections.open")
        # The manifest's event, and a click in what it shows: the Home, its New request button.
        sockets.send("events_api", {"type": "event_callback", "team_id": "T0STANDIN",
                                    "event_id": "Ev0SOCKHOME", "event_time": 1, "event": {
                                        "type": "app_home_opened", "user": "U_REQ", "tab": "home"}})
        home = wait_for(lambda: slack.home("U_REQ"), what="the Home tab")
        assert "Your open requests" in json.dumps(home["blocks"])
        sockets.send("interactive", {
            "type": "block_actions", "team": {"id": "T0STANDIN"}, "user": {"id": "U_REQ"},
            "container": {"type": "view", "view_id": home["id"]}, "view": home,
            "trigger_id": slack.new_trigger_id("U_REQ"), "api_app_id": "A0DSRDESK",
            "actions": [{"type": "button", "action_id": Action.NEW_REQUEST, "block_id": "b",
                         "action_ts": "1.0"}]})
        wait_for(lambda: len(slack.calls_to("views.open")) == 2, what="the form from the Home")
    finally:
        bot.terminate()
        output, _ = bot.communicate(timeout=20)
        sockets.stop()
        slack_server.stop()
    assert "Socket Mode" in output


def test_a_view_submissions_work_after_its_ack_survives_the_death_of_the_process_that_acked(
        database_url, tmp_path) -> None:
    """In Socket Mode the process that acks also does the work after the ack: it is SIGKILLed in
    the middle of an intake form's search, and the next `dsr-desk run` does the search, once."""
    gate = Gate()  # the search waits there until the gate opens
    slack = SlackStandIn(bot_token="xoxb-sock", app_token="xapp-sock")
    sockets = SocketModeStandIn()
    slack.socket_url = sockets.url
    with server.serve(slack.wsgi) as slack_server, server.serve(gate.wsgi) as zendesk:
        env = child_env("DSR_", "DATABASE_", "SLACK_") | {
            "PYTHONPATH": str(ROOT), "DATABASE_URL": database_url, "DSR_DATA_DIR": str(tmp_path),
            "SLACK_BOT_TOKEN": "xoxb-sock", "SLACK_APP_TOKEN": "xapp-sock",
            "SLACK_API_URL": f"{slack_server.url}/api/", "DSR_REQUESTERS": "U_REQ",
            "DSR_APPROVERS": "U_A", "DSR_APPROVALS_CHANNEL": "C0APPROVALS",
            "DSR_SANDBOX_ZENDESK_URL": zendesk.url, "DSR_SANDBOX_PEOPLE": str(PEOPLE)}

        started: list[subprocess.Popen] = []

        def bot() -> subprocess.Popen:
            started.append(subprocess.Popen(
                [sys.executable, "-m", "bot.cli", "run"], cwd=tmp_path, env=env,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
            return started[-1]

        first = bot()
        try:
            assert sockets.wait_connected(), "the bot never opened its Socket Mode connection"
            sockets.send("slash_commands", {
                "command": "/dsr", "text": "new", "user_id": "U_REQ", "team_id": "T0STANDIN",
                "channel_id": "C0GENERAL", "trigger_id": slack.new_trigger_id("U_REQ"),
                "response_url": slack.response_url(slack_server.url, user="U_REQ")})
            intake = wait_for(lambda: next(iter(slack.views().values()), None), what="the form")
            email = sorted(u["email"] for u in gate.sandbox.state.users.values()
                           if u["role"] == "end-user")[0]
            ack = sockets.send("interactive", {
                "type": "view_submission", "team": {"id": "T0STANDIN"}, "user": {"id": "U_REQ"},
                "api_app_id": "A0DSRDESK", "trigger_id": slack.new_trigger_id("U_REQ"),
                "view": {**intake, "state": {"values": form(**{
                    Block.EMAILS: email, Block.SYSTEMS: ["zendesk"]})}}})
            assert ack["payload"]["response_action"] == "update"  # "searching…"
            assert gate.searching.wait(30), "the search after the ack never started"
            first.kill()
            first.wait(10)
            second = bot()
            gate.open.set()

            def matches_shown() -> list:
                return [c for c in slack.calls_to("views.update")
                        if c.args["view"].get("callback_id") == Callback.CONFIRM_MATCHES]

            wait_for(matches_shown, what="the matches, found by the next process")
            second.terminate()
            output, _ = second.communicate(timeout=20)
            assert len(matches_shown()) == 1
            assert "resumed 1 piece(s) of work after acks left by a crash" in output
        finally:
            for process in started:
                if process.poll() is None:
                    process.kill()
                    process.communicate(timeout=10)
            sockets.stop()
