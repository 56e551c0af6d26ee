"""The inbox (bot.inbox) on both databases: the work after an ack is a row before the ack
returns; another runner (another process's, with its own engine) does it, once however many
race, and takes it over from a runner that died, when the lease ends or at once when the dead
runner's stable id comes back."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import pytest
from slack_bolt import App, BoltContext, BoltRequest
from slack_bolt.authorization import AuthorizeResult
from sqlmodel import select

from bot import inbox as inbox_module
from bot.identity import claim as claim_identity
from bot.inbox import MAX_ATTEMPTS, Inbox, open_inbox
from handlers.deps import AFTER_ACK, hand_over
from storage.db import make_engine, make_session_factory
from storage.models import InboxItem
from storage.types import utcnow
from tests.e2e.conftest import wait_for

SECRET = "inbox-signing-secret"
SUBJECT = "jane.subject@example.org"  # what someone typed: it must never reach a log


class Process:
    """What one process of the bot holds: its engine, a bolt app whose `/dsr` command has work
    after its ack, and the inbox as the app's lazy listener runner."""

    def __init__(self, database_url: str, owner: str, *, lease_seconds: float = 60.0,
                 work=None) -> None:  # noqa: ANN001
        self.engine = make_engine(database_url)
        self.database = make_session_factory(self.engine)
        self.sessions = open_inbox(self.database)  # SQLite: a file of its own
        self.done: list[tuple[str, str]] = []  # (who, the command's text, the ack's hand-over)
        executor = ThreadPoolExecutor(max_workers=4)
        self.app = App(signing_secret=SECRET, process_before_response=True,
                       listener_executor=executor, logger=logging.getLogger("test.bolt"),
                       authorize=lambda **_: AuthorizeResult(enterprise_id=None, team_id="T1",
                                                             bot_token="xoxb-t", bot_user_id="UB"))
        self.inbox = Inbox(self.sessions, self.app, executor, owner=owner, capacity=4,
                           lease_seconds=lease_seconds, database=self.database)
        self.app.listener_runner.lazy_listener_runner = self.inbox

        def dsr(ack, command, context: BoltContext) -> None:  # noqa: ANN001
            ack(f"on it: {command['text']}")
            hand_over(context, reference="DSR-000007")

        def after_ack(command, context: BoltContext) -> None:  # noqa: ANN001
            (work or (lambda _: None))(command)
            self.done.append((owner, command["text"], context[AFTER_ACK]["reference"]))

        self.app.command("/dsr")(ack=dsr, lazy=[after_ack])

    def send(self, text: str, stamp: int | None = None):  # noqa: ANN201
        body = urlencode({"command": "/dsr", "text": text, "user_id": "U1", "team_id": "T1",
                          "response_url": "http://127.0.0.1:9/unused"})
        stamp = str(stamp or int(time.time()))
        signature = "v0=" + hmac.new(SECRET.encode(), f"v0:{stamp}:{body}".encode(),
                                     hashlib.sha256).hexdigest()
        return self.app.dispatch(BoltRequest(body=body, headers={
            "content-type": "application/x-www-form-urlencoded",
            "x-slack-request-timestamp": stamp, "x-slack-signature": signature}))

    def close(self) -> None:
        self.inbox.stop()
        self.engine.dispose()
        self.inbox.engine.dispose()


@pytest.fixture
def processes(database_url):
    started: list[Process] = []

    def start(owner: str, **options) -> Process:  # noqa: ANN003
        started.append(Process(database_url, owner, **options))
        return started[-1]

    yield start
    for process in started:
        process.close()


def rows(process: Process) -> list[InboxItem]:
    with process.sessions() as session:
        return list(session.exec(select(InboxItem).order_by(InboxItem.id)))


def run_claimed(process: Process, limit: int = 50) -> int:
    claimed = process.inbox.claim(limit)
    for item in claimed:
        process.inbox.run_item(item)
    return len(claimed)


def test_the_work_is_written_before_the_ack_returns_and_run_once_by_racing_runners(
        processes) -> None:
    acking = processes("host:http:1")  # answers Slack; never runs the inbox
    texts = [f"search {SUBJECT} {n}" for n in range(20)]
    for text in texts:
        response = acking.send(text)
        assert response.status == 200 and response.body == f"on it: {text}"
    written = rows(acking)
    assert [json.loads(r.body)["text"] for r in written] == texts  # all there as the acks return
    assert {r.function for r in written} == {"after_ack"} and not acking.done

    runners = [processes(f"host:worker:{n}") for n in (1, 2)]
    start = threading.Barrier(2)
    claimed: dict[str, list[int]] = {}

    def race(runner: Process) -> None:
        start.wait()
        items = runner.inbox.claim(50)
        claimed[runner.inbox.owner] = [i.id for i in items]
        for item in items:
            runner.inbox.run_item(item)

    threads = [threading.Thread(target=race, args=(r,)) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(sum(claimed.values(), [])) == [r.id for r in written]  # each taken once
    done = runners[0].done + runners[1].done
    assert Counter(text for _, text, _ in done) == Counter(texts)  # each done exactly once
    assert {handed for _, _, handed in done} == {"DSR-000007"}  # what the ack handed over
    assert rows(acking) == []  # done: the row, and the subject's data in it, are gone


def test_served_runners_share_the_work_and_run_each_once(processes) -> None:
    acking = processes("host:http:1")
    runners = [processes(f"host:worker:{n}") for n in (1, 2)]
    for runner in runners:
        runner.inbox.serve()
    texts = [f"search {n}" for n in range(30)]
    for text in texts:
        acking.send(text)
    wait_for(lambda: len(runners[0].done) + len(runners[1].done) == len(texts), what="the work")
    wait_for(lambda: rows(acking) == [], what="the rows to go")
    assert Counter(t for r in runners for _, t, _ in r.done) == Counter(texts)


def test_a_row_waiting_past_the_signature_window_still_runs(processes) -> None:
    """The row is re-dispatched without a second signature check: the ack's process did it."""
    acking = processes("host:http:1")
    runner = processes("host:worker:1")
    acking.send("search late")
    with acking.sessions.begin() as session:  # as if it had waited 10 minutes in the inbox
        item = session.exec(select(InboxItem)).one()
        headers = json.loads(item.headers)
        headers["x-slack-request-timestamp"] = [str(int(time.time()) - 600)]
        item.headers = json.dumps(headers)
    assert run_claimed(runner) == 1
    assert runner.done == [("host:worker:1", "search late", "DSR-000007")]


def test_work_held_by_a_runner_that_died_is_taken_over_when_its_lease_ends(processes) -> None:
    acking = processes("host:http:1")
    dead = processes("host:worker:1", lease_seconds=0.5)
    other = processes("host:worker:2")
    acking.send("search taken over")
    assert len(dead.inbox.claim(10)) == 1  # ... and it dies before running it
    assert other.inbox.claim(10) == []  # held while the lease lasts
    wait_for(lambda: run_claimed(other), what="the lease to end")
    assert other.done == [("host:worker:2", "search taken over", "DSR-000007")] and not dead.done
    assert rows(acking) == []


def test_a_runner_restarted_with_its_stable_id_resumes_its_work_at_once(processes,
                                                                         tmp_path) -> None:
    acking = processes("host:http:1")
    identity = claim_identity("sqlite:///same", "worker", lock_dir=tmp_path)
    dead = processes(identity.id, lease_seconds=3600)  # a lease nobody would wait out
    acking.send("search resumed")
    assert len(dead.inbox.claim(10)) == 1
    identity.release()  # its process is SIGKILLed: the kernel drops the slot's lock
    other = processes("host:worker:other")
    assert other.inbox.claim(10) == []

    again = claim_identity("sqlite:///same", "worker", lock_dir=tmp_path)
    assert again.id == identity.id  # the replacement takes the same slot, so the same id
    restarted = processes(again.id)
    assert restarted.inbox.recover() == 1
    assert run_claimed(restarted) == 1
    assert restarted.done == [(again.id, "search resumed", "DSR-000007")]
    assert rows(acking)[0:1] == []
    again.release()


def test_work_that_keeps_failing_is_dropped_after_a_few_attempts_without_personal_data_in_the_log(
        processes, monkeypatch, caplog) -> None:
    monkeypatch.setattr(inbox_module, "RETRY_SECONDS", 0.0)
    attempts = []

    def fail(command: dict) -> None:
        attempts.append(command["text"])
        raise ValueError(f"no such subject: {command['text']}")

    acking = processes("host:http:1")
    runner = processes("host:worker:1", work=fail)
    acking.send(f"search {SUBJECT}")
    with caplog.at_level(logging.INFO):
        for _ in range(MAX_ATTEMPTS):
            assert wait_for(lambda: run_claimed(runner), what="a retry") == 1
    assert len(attempts) == MAX_ATTEMPTS and rows(acking) == [] and not runner.done
    assert f"dropped after {MAX_ATTEMPTS} attempt(s): ValueError" in caplog.text
    assert SUBJECT not in caplog.text


def test_work_whose_process_dies_each_time_is_dropped_too(processes, caplog) -> None:
    acking = processes("host:http:1")
    acking.send(f"search {SUBJECT}")
    for n in range(MAX_ATTEMPTS):  # claimed, and the claimer dies each time
        assert len(processes(f"host:worker:{n}", lease_seconds=0).inbox.claim(1)) == 1
    last = processes("host:worker:last")
    with caplog.at_level(logging.INFO):
        assert last.inbox.claim(1) == []
    assert rows(acking) == [] and not last.done
    assert "its process stopped during each of 3 attempts" in caplog.text
    assert SUBJECT not in caplog.text


def test_on_sqlite_the_inbox_is_a_file_of_its_own_and_older_rows_move_there(
        processes, backend) -> None:
    """An ack's INSERT does not wait behind the app's other writes on SQLite (one writer at a
    time): its rows are in a file beside the database. Rows an older version left in the
    database's table are moved there and run, once."""
    acking = processes("acker")
    own_file = acking.inbox.sessions is not acking.database
    assert own_file == (backend == "sqlite")
    with acking.database.begin() as session:  # as an older version wrote it
        session.add(InboxItem(function="after_ack", body=json.dumps({
            "command": "/dsr", "text": "left behind", "user_id": "U1", "team_id": "T1",
            "response_url": "http://127.0.0.1:9/unused"}), headers=json.dumps({}), handed=json.dumps(
                {"reference": "DSR-000007"}), received_at=utcnow()))
    acking.send("new")
    assert acking.inbox.move_older_rows() == (1 if own_file else 0)
    assert acking.inbox.move_older_rows() == 0
    if own_file:
        with acking.database() as session:
            assert session.exec(select(InboxItem)).all() == []
    assert sorted(r.body.count("left behind") for r in rows(acking)) == [0, 1]
    runner = processes("runner")
    while run_claimed(runner):
        pass
    assert sorted(text for _, text, _ in runner.done) == ["left behind", "new"]
