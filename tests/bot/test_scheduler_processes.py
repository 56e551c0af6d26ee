"""Two `dsr-desk jobs serve` processes (APScheduler each) share one PostgreSQL database through
a simulated day, posting to the Slack Web API stand-in: each reminder, the digest and the
escalation reach Slack once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from slack_sdk import WebClient
from sqlmodel import select

from bot.slack_standin import SlackStandIn
from services.lifecycle import transition
from services.sandbox import server
from services.vocabulary import RequestStatus
from storage.db import make_engine, make_session_factory, transaction
from storage.models import Dispatch
from tests.conftest import child_env
from tests.factories import add_request

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # a Monday, 06:00; the digest is due at 09:00
SPEED = 4320.0  # a simulated day in 20 seconds
APPROVALS, DIGEST = "C0APPROVALS", "C0MANAGERS"
# days to the deadline on the first day -> the reminders owed over the simulated day
PLAN = {1: ["due:1d"], 3: ["due:3d"], 4: ["due:7d", "due:3d"], 8: ["due:7d"], 20: []}


def scheduler(database_url: str, slack_url: str, data_dir: Path) -> subprocess.Popen:
    env = child_env("DSR_", "DATABASE_", "SLACK_")
    env.update({"PYTHONPATH": str(ROOT), "DATABASE_URL": database_url, "DSR_DATA_DIR": str(data_dir),
                "SLACK_BOT_TOKEN": "xoxb-two", "SLACK_API_URL": f"{slack_url}/api/",
                "DSR_APPROVERS": "U_APP", "DSR_MANAGERS": "U_MGR", "DSR_DIGEST_CHANNEL": DIGEST,
                "DSR_TIMEZONE": "UTC", "DSR_DIGEST_TIME": "09:00", "DSR_LOG_LEVEL": "WARNING"})
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "jobs", "serve", "--seconds", "60",
         "--clock-start", START.isoformat(), "--clock-speed", str(SPEED),
         "--clock-anchor-from-stdin", "--clock-until", (START + timedelta(hours=23)).isoformat()],
        env=env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)


def ready(process: subprocess.Popen) -> str:
    """What the process printed up to its "ready" line (it then waits for its clock's anchor)."""
    lines = []
    while not (lines and lines[-1].endswith(": ready\n")):
        line = process.stdout.readline()
        assert line, "".join(lines)  # it ended before it was ready
        lines.append(line)
    return "".join(lines)


@pytest.mark.postgres
def test_two_scheduler_processes_post_each_reminder_and_the_digest_once(
        postgres, postgres_template, tmp_path) -> None:
    name = f"dsr_s_{os.getpid()}_{int(time.time())}"
    database_url = postgres.create(name, template=postgres_template)
    factory = make_session_factory(make_engine(database_url))
    slack = SlackStandIn(bot_token="xoxb-two")
    try:
        with server.serve(slack.wsgi) as slack_server:
            client = WebClient(token="xoxb-two", base_url=f"{slack_server.url}/api/")
            threads: dict[str, tuple[int, list[str]]] = {}  # thread ts -> (days, owed reminders)
            with transaction(factory) as session:
                for days, owed in [*PLAN.items(), (1, "completed"), (-2, "overdue")]:
                    ts = client.chat_postMessage(channel=APPROVALS, text="a request")["ts"]
                    request = add_request(session, START - timedelta(days=10), requester="U_REQ")
                    request.channel_id, request.thread_ts = APPROVALS, ts
                    request.due_on = START.date() + timedelta(days=days)
                    session.add(request)
                    session.flush()
                    transition(session, request, RequestStatus.PENDING_APPROVAL, actor="U_REQ",
                               at=START - timedelta(days=10))
                    if owed == "completed":
                        for status in (RequestStatus.APPROVED, RequestStatus.IN_PROGRESS,
                                       RequestStatus.COMPLETED):
                            transition(session, request, status, actor="U_APP", at=START)
                    threads[ts] = (days, owed if isinstance(owed, list) else [owed])

            processes = [scheduler(database_url, slack_server.url, tmp_path) for _ in range(2)]
            # Both start the simulated day together once both are ready, however long their
            # start-up took on a busy machine.
            readies = [ready(p) for p in processes]
            anchor = time.time()
            outputs = [r + p.communicate(f"{anchor}\n", timeout=120)[0]
                       for r, p in zip(readies, processes, strict=True)]
            assert [p.returncode for p in processes] == [0, 0], outputs

            for ts, (days, owed) in threads.items():
                replies = [m["text"] for m in slack.thread(APPROVALS, ts)[1:]]
                if owed == ["completed"]:  # its export and record, once
                    assert len(replies) == 2, replies
                    assert replies[0].startswith(":package: Export packaged") and "record made" in replies[0]
                    assert replies[1].startswith(":page_facing_up: Compliance record of")
                    continue
                owed = [o for o in owed if o != "overdue"]  # escalated in the managers' channel
                assert len(replies) == len(owed), (days, replies)
                assert all(r.startswith(":alarm_clock:") for r in replies)
            reminders_sent = sum(len(owed) for _, owed in threads.values()
                                 if owed not in (["completed"], ["overdue"]))
            assert len(slack.messages("U_REQ")) - 1 == reminders_sent == 5  # and the export
            digest_channel = slack.messages(DIGEST)
            texts = [json.dumps(m["blocks"]) for m in digest_channel]
            assert sum("DSR digest for Mon 02 Mar 2026" in t for t in texts) == 1, outputs
            assert sum("past the legal deadline" in t for t in texts) == 1, outputs
            uploads = sorted(f["name"].rsplit(".", 1)[-1] for f in slack.uploaded_files())
            assert uploads == ["json", "pdf", "png", "zip"] and len(digest_channel) == 3
        with factory() as session:
            dispatches = session.exec(select(Dispatch)).all()
        # reminders, digest, escalation, and the completed request's record
        assert len(dispatches) == reminders_sent + 3 and all(d.sent_at for d in dispatches)
        owners = {line.split()[1].rstrip(":") for output in outputs for line in output.splitlines()
                  if line.startswith("scheduler ")}
        assert len(owners) == 2  # two schedulers, each with its own identity
    finally:
        factory.kw["bind"].dispose()
        postgres.drop(name)
