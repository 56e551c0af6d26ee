"""`dsr-desk run` in Socket Mode, as its own process, against local stand-ins of Slack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bot.slack_standin import SlackStandIn
from bot.socket_standin import SocketModeStandIn
from services.sandbox import server
from tests.conftest import child_env
from tests.e2e.conftest import wait_for

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
    finally:
        bot.terminate()
        output, _ = bot.communicate(timeout=20)
        sockets.stop()
        slack_server.stop()
    assert "Socket Mode" in output
