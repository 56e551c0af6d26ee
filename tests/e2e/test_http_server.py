"""`dsr-desk run --http` as production runs it: gunicorn's worker processes answering Slack's
signed requests, one more in the background (the work after the acks, the scheduled jobs, the
vendor stand-ins of simulation mode), and a clean stop on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlmodel import select

from bot.http import BACKGROUND_NICENESS
from bot.inbox import inbox_url
from bot.slack_driver import SlackDriver
from bot.slack_standin import SlackStandIn
from handlers.ids import Action, Block, Callback
from services.sandbox import server
from services.vendors.zendesk.standin import ZendeskSandbox
from services.vocabulary import RequestStatus
from storage.db import make_engine, make_session_factory
from storage.models import DsrRequest, InboxItem
from tests.conftest import child_env
from tests.e2e.conftest import APPROVALS, SECRET, Conversation, file_request, modal, wait_for
from tests.forms import form

PEOPLE = 6  # the stand-ins' subjects (DSR_SANDBOX_PEOPLE)


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


def niceness(pid: int) -> int | None:
    """None once the process is gone (a reload replaces them all)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[16])
    except OSError:
        return None


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz").status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Running:
    process: subprocess.Popen
    conversation: Conversation
    log: Path

    def settled(self, replacing: frozenset[int] = frozenset()) -> tuple[set[int], int]:
        """Waits until 2 worker processes answer Slack and one runs in the background, none of
        them among `replacing`; returns their pids."""

        def roles() -> tuple[set[int], int] | None:
            nice = {pid: niceness(pid) for pid in children(self.process.pid)}
            http = {pid for pid, n in nice.items() if n == 0}
            background = {pid for pid, n in nice.items() if n == BACKGROUND_NICENESS}
            if len(http) == 2 and len(background) == 1 and not (http | background) & replacing:
                return http, background.pop()
            return None

        return wait_for(roles, what="2 worker processes and a background one")


@contextmanager
def run_http(database_url: str, tmp_path: Path, **settings: str) -> Iterator[Running]:
    """`dsr-desk run --http --workers 2` (with `settings` in its environment); on leaving,
    SIGTERM, and checks that it stopped cleanly."""
    slack = SlackStandIn(bot_token="xoxb-http")
    slack_server = server.start(slack.wsgi)
    port = free_port()
    env = child_env("DSR_", "DATABASE_", "SLACK_") | {
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "DATABASE_URL": database_url,
        "DSR_DATA_DIR": str(tmp_path), "SLACK_BOT_TOKEN": "xoxb-http", "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": f"{slack_server.url}/api/", "DSR_REQUESTERS": "U_REQ",
        "DSR_APPROVERS": "U_APP", "DSR_APPROVALS_CHANNEL": APPROVALS,
        "DSR_POLL_SECONDS": "0.05", "DSR_SANDBOX_PEOPLE": str(PEOPLE), **settings}
    log = tmp_path / "app.log"
    with log.open("w") as log_file:
        app = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "run", "--http", "--host", "127.0.0.1", "--port",
             str(port), "--workers", "2"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
            stderr=log_file, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        assert app.stdout.readline().strip() == (
            f"DSR Desk listening on http://127.0.0.1:{port}/slack/events (2 worker processes, and one "
            "in the background)")
        wait_for(lambda: healthy(url), what="the workers to boot")
        yield Running(app, Conversation(slack, SlackDriver(url, SECRET, slack, slack_server.url)), log)
    finally:
        workers = children(app.pid)
        app.send_signal(signal.SIGTERM)
        code = app.wait(timeout=60)
        slack_server.stop()
    assert code == 0, log.read_text()
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


def test_run_http_answers_signed_requests_from_its_worker_processes(database_url, tmp_path) -> None:
    with run_http(database_url, tmp_path) as running:
        http_workers, background = running.settled()
        driver = running.conversation.driver
        answers = [driver.command("U_REQ", "list") for _ in range(10)]
        assert all(a.status_code == 200 and "*Requests*: none." in a.text for a in answers)
        assert driver.send("command=%2Fdsr&text=list", signature="v0=forged").status_code == 401
        refused = driver.command("U_STRANGER", "list")
        assert refused.status_code == 200 and "not allowed to see requests" in refused.text
        # A reload (SIGHUP) replaces every process, the background one included, by one of each.
        running.process.send_signal(signal.SIGHUP)
        running.settled(replacing=frozenset(http_workers | {background}))
    assert "Traceback" not in running.log.read_text()


def inbox_empty(database_url: str) -> bool:
    engine = make_engine(inbox_url(database_url))
    try:
        with make_session_factory(engine)() as session:
            return session.exec(select(InboxItem)).first() is None
    finally:
        engine.dispose()


def test_the_home_tab_appears_in_http_mode_and_a_redelivery_is_not_run_again(
        database_url, tmp_path) -> None:
    """A worker acks `app_home_opened` (recording its event id), the background process
    publishes the Home from the inbox; Slack's redelivery of the same event publishes nothing."""
    with run_http(database_url, tmp_path) as running:
        running.settled()
        slack, driver = running.conversation.slack, running.conversation.driver
        body = json.dumps({"type": "event_callback", "team_id": "T0STANDIN",
                           "event": {"type": "app_home_opened", "user": "U_APP", "tab": "home"},
                           "event_id": "Ev0HOMEHTTP", "event_time": int(time.time())})
        assert driver.send(body, content_type="application/json").status_code == 200
        wait_for(lambda: slack.home("U_APP"), timeout=30, what="the Home tab")
        assert driver.send(body, content_type="application/json").status_code == 200
        # Work after an ack is in the inbox before the ack returns: once the inbox is empty, a
        # second publish would have happened.
        wait_for(lambda: inbox_empty(database_url), what="the inbox to empty")
        assert len([c for c in slack.calls_to("views.publish")
                    if c.args.get("user_id") == "U_APP"]) == 1
    assert "Traceback" not in running.log.read_text()


def test_the_background_process_does_the_work_after_acks_and_is_replaced_if_it_dies(
        database_url, tmp_path) -> None:
    sessions = make_session_factory(make_engine(database_url))

    def completed(reference: str) -> bool:
        with sessions() as session:
            request = session.exec(select(DsrRequest).where(DsrRequest.id == int(reference[4:])))
            return request.one().status == RequestStatus.COMPLETED

    # The stand-ins are built from a seed: these are the subjects the app's stand-ins hold.
    users = ZendeskSandbox(seed=0, people=PEOPLE).state.users.values()
    rectified, exported = sorted(u["email"] for u in users if u["role"] == "end-user")[:2]
    with run_http(database_url, tmp_path) as running:
        conversation = running.conversation
        _, background = running.settled()
        # Searched and approved in the background process, in the stand-ins it serves.
        reference, message = file_request(conversation, rectified, systems=("zendesk",), **{
            Block.TYPE: "rectification", Block.NEW_VALUES: "email: corrected@example.org"})
        conversation.driver.click("U_APP", message, Action.APPROVE, APPROVALS)
        wait_for(lambda: completed(reference), timeout=60, what="the rectification")
        # The search after an ack sees what the execution changed.
        conversation.driver.command("U_REQ", "search corrected@example.org")
        results = wait_for(lambda: [e for e in conversation.slack.ephemerals("U_REQ")
                                    if "Results for" in e["text"]], what="the results")
        lines = results[0]["blocks"][0]["text"]["text"].splitlines()
        assert "*zendesk* (simulation): no match" not in lines
        assert any(line.startswith("*zendesk* (simulation): ") for line in lines)

        os.kill(background, signal.SIGKILL)  # gunicorn starts another in its place
        running.settled(replacing=frozenset({background}))
        reference, message = file_request(conversation, exported)
        conversation.driver.click("U_APP", message, Action.APPROVE, APPROVALS)
        wait_for(lambda: completed(reference), timeout=60, what="the access request")
    assert "Perhaps out of memory?" in running.log.read_text()  # gunicorn saw the SIGKILL


class Gate:
    """A Zendesk stand-in whose searches wait until the gate opens: the work after an ack is
    caught in flight, in whichever process runs it."""

    def __init__(self) -> None:
        self.sandbox = ZendeskSandbox(seed=0, people=PEOPLE)
        self.searching, self.open = threading.Event(), threading.Event()

    def wsgi(self, environ, start_response):  # noqa: ANN001, ANN201
        if "search" in environ.get("PATH_INFO", "") and not self.open.is_set():
            self.searching.set()
            self.open.wait(60)
        return self.sandbox.wsgi(environ, start_response)


def test_the_work_after_an_ack_survives_the_death_of_every_process_that_held_it(
        database_url, tmp_path) -> None:
    """An intake form's search runs after its ack, from the inbox: SIGKILL the worker processes
    (one of them acked) and the background process in the middle of the search, and the
    replacements gunicorn starts do it, once."""
    gate = Gate()
    with server.serve(gate.wsgi) as zendesk, run_http(
            database_url, tmp_path, DSR_SANDBOX_ZENDESK_URL=zendesk.url) as running:
        conversation, slack = running.conversation, running.conversation.slack
        http_workers, background = running.settled()
        before = len(slack.views())
        conversation.driver.command("U_REQ", "new")
        intake = modal(conversation, Callback.NEW_REQUEST, before)
        email = sorted(u["email"] for u in gate.sandbox.state.users.values()
                       if u["role"] == "end-user")[0]
        answer = conversation.driver.submit("U_REQ", intake, form(**{
            Block.EMAILS: email, Block.SYSTEMS: ["zendesk"]}))
        reference = answer.json()["view"]["private_metadata"]  # acked: "searching…"
        assert gate.searching.wait(30), "the search after the ack never started"
        for pid in (*http_workers, background):
            os.kill(pid, signal.SIGKILL)
        running.settled(replacing=frozenset({*http_workers, background}))
        gate.open.set()

        def matches_shown() -> list:
            return [c for c in slack.calls_to("views.update")
                    if c.args.get("view_id") == intake["id"]
                    and c.args["view"].get("callback_id") == Callback.CONFIRM_MATCHES]

        wait_for(matches_shown, what="the matches, found by the replacement")
        engine = make_engine(inbox_url(database_url))
        inbox = make_session_factory(engine)

        def emptied() -> bool:
            with inbox() as session:
                return not session.exec(select(InboxItem)).all()

        wait_for(emptied, what="the row to go")
        engine.dispose()
        assert len(matches_shown()) == 1  # done once
        assert json.loads(matches_shown()[0].args["view"]["private_metadata"])["r"] == reference
    log = running.log.read_text()
    assert "resumed 1 piece(s) of work after acks left by a crash of this worker" in log
    assert email not in log
