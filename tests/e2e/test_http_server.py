"""`dsr-desk run --http` as production runs it: gunicorn's worker processes, each building the
app after the fork, answering Slack's signed requests, and stopping cleanly on SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from bot.slack_driver import SlackDriver
from bot.slack_standin import SlackStandIn
from services.sandbox import server
from tests.conftest import child_env
from tests.e2e.conftest import SECRET, wait_for


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if stat.read_text().rpartition(")")[2].split()[1] == str(pid):
                found.add(int(stat.parent.name))
        except OSError:
            continue
    return found


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz").status_code == 200
    except httpx.HTTPError:
        return False


def test_run_http_answers_signed_requests_from_its_worker_processes(database_url, tmp_path) -> None:
    slack = SlackStandIn(bot_token="xoxb-http")
    slack_server = server.start(slack.wsgi)
    port = free_port()
    env = child_env("DSR_", "DATABASE_", "SLACK_") | {
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "DATABASE_URL": database_url,
        "DSR_DATA_DIR": str(tmp_path), "SLACK_BOT_TOKEN": "xoxb-http", "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": f"{slack_server.url}/api/", "DSR_REQUESTERS": "U_REQ",
        "DSR_APPROVERS": "U_APP", "DSR_APPROVALS_CHANNEL": "C0APPROVALS"}
    with (tmp_path / "app.log").open("w") as log:
        app = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "run", "--http", "--host", "127.0.0.1", "--port",
             str(port), "--workers", "2"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
            stderr=log, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        assert app.stdout.readline().strip() == (
            f"DSR Desk listening on http://127.0.0.1:{port}/slack/events (2 worker processes)")
        wait_for(lambda: healthy(url), what="the workers to boot")
        assert len(children(app.pid)) == 2

        driver = SlackDriver(url, SECRET, slack, slack_server.url)
        answers = [driver.command("U_REQ", "list") for _ in range(10)]
        assert all(a.status_code == 200 and "Requests (0 shown)" in a.text for a in answers)
        assert driver.send("command=%2Fdsr&text=list", signature="v0=forged").status_code == 401
        refused = driver.command("U_STRANGER", "list")
        assert refused.status_code == 200 and "not allowed to see requests" in refused.text
    finally:
        workers = children(app.pid)
        app.send_signal(signal.SIGTERM)
        code = app.wait(timeout=60)
        slack_server.stop()
    assert code == 0, (tmp_path / "app.log").read_text()
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    assert "Traceback" not in (tmp_path / "app.log").read_text()
