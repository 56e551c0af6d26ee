"""Two replicas on one PostgreSQL database, one of them killed again and again (issue 17).

Each replica is `dsr-desk run --http --workers 2` in a process tree of its own, with its own
DSR_DATA_DIR; both share the database, one Slack stand-in and one set of vendor stand-ins served
here, as production's replicas share Slack and the vendors. Slack's requests go to the replicas in
turn, as a load balancer sends them (one that does not answer is skipped, and a request whose
answer was lost is sent again, as a person clicks again). Meanwhile processes of one replica are
SIGKILLed at moments drawn from a seeded `random.Random` (CHAOS_SEED=N picks the plan): its
background process, an HTTP worker, and the whole replica, restarted as a supervisor would.

The workload (an access request with its export, an erasure reviewed and approved by two
approvers, a rectification) must then end as it ends without faults, on one replica: every request
completed, the vendors' state the same, nothing posted twice in Slack, and the vendors' per-minute
limits kept by both replicas together.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select

from bot.http import BACKGROUND_NICENESS
from bot.slack_driver import SlackDriver
from bot.slack_standin import SlackStandIn
from bot.slack_standin_state import dm_id
from handlers.ids import Action, Block, Callback
from services.sandbox import server
from services.vendors.genesys.standin import LOGIN_PATH, GenesysSandbox
from services.vendors.zendesk.standin import ZendeskSandbox
from services.vocabulary import RequestStatus
from storage.db import SessionFactory, make_engine, make_session_factory
from storage.models import Approval, Dispatch, DsrRequest, InboxItem, Notice
from tests.conftest import child_env, fresh_database
from tests.e2e.conftest import APPROVALS, SECRET, Conversation, file_request, modal, wait_for
from tests.e2e.test_http_server import children, free_port, healthy, niceness

# A fixed plan by default, so CI is repeatable; CHAOS_SEED=N tries another (8 seeds pass).
SEED = int(os.environ.get("CHAOS_SEED") or 21)
PEOPLE = 6  # subjects seeded in both stand-ins
STANDIN_SEED = 3
# Calls a minute, kept by the stand-ins and set as the replicas' limits. The fault-free run has
# realistic ones (Zendesk's smallest plan: 200; Genesys Cloud: 300 a token), which this workload
# (about 45 Zendesk and 20 Genesys calls) never reaches. The run with kills has limits it
# exceeds, so that the budget both replicas share in the database must hold them back; that
# costs a minute (the calls over the limit wait for the first ones to leave the window).
REALISTIC = {"zendesk": 200, "genesys": 300}
TIGHT = {"zendesk": 30, "genesys": 12}
OVERALL = 120.0  # seconds the workload may take to complete, kills included
NEW_EMAIL = "corrected@example.org"


def request_id(reference: str) -> int:
    return int(reference.removeprefix("DSR-"))


# -- the vendors: one set of stand-ins, served here, their calls recorded ----------------------


class Recorded:
    """A stand-in's WSGI app, with the time and status of every call it answered."""

    def __init__(self, app: Callable[..., Any], counted: Callable[[str], bool]) -> None:
        self.app, self.counted = app, counted
        self.calls: list[tuple[float, str, int]] = []  # (monotonic time, "GET /path", status)
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        at, path = time.monotonic(), environ.get("PATH_INFO", "")
        call = f"{environ.get('REQUEST_METHOD')} {path}"

        def recording(status: str, headers: list, *exc: Any) -> Any:
            if self.counted(path):
                with self._lock:
                    self.calls.append((at, call, int(status.split()[0])))
            return start_response(status, headers, *exc)

        return self.app(environ, recording)

    def busiest_minute(self) -> int:
        """The most calls any sliding minute held."""
        window: deque[float] = deque()
        most = 0
        for at, _, _ in sorted(self.calls):
            window.append(at)
            while at - window[0] >= 60:
                window.popleft()
            most = max(most, len(window))
        return most

    def refused(self) -> list[str]:
        return [call for _, call, status in self.calls if status == 429]


@dataclass
class Vendors:
    zendesk: Any
    genesys: Any
    recorded: dict[str, Recorded]
    urls: dict[str, str]
    limits: dict[str, int]

    def snapshot(self) -> dict[str, Any]:
        return {"zendesk": self.zendesk.snapshot(), "genesys": self.genesys.snapshot()}


@contextmanager
def vendors(limits: dict[str, int]) -> Iterator[Vendors]:
    zendesk = ZendeskSandbox(seed=STANDIN_SEED, people=PEOPLE, requests_per_minute=limits["zendesk"])
    genesys = GenesysSandbox(seed=STANDIN_SEED, people=PEOPLE, requests_per_minute=limits["genesys"])
    recorded = {"zendesk": Recorded(zendesk.wsgi, lambda path: True),
                # Genesys' login is a service of its own, outside the API's limit.
                "genesys": Recorded(genesys.wsgi, lambda path: path != LOGIN_PATH)}
    with server.serve(recorded["zendesk"]) as z, server.serve(recorded["genesys"]) as g, genesys:
        yield Vendors(zendesk, genesys, recorded, {"zendesk": z.url, "genesys": g.url}, limits)


# -- the replicas ------------------------------------------------------------------------------


@dataclass
class Replica:
    """One `dsr-desk run --http --workers 2`: its own data folder and port, restartable."""

    name: str
    env: dict[str, str]
    folder: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    lives: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.folder / "app.log"

    def start(self) -> None:
        self.lives += 1
        with self.log.open("a") as log:
            log.write(f"\n=== life {self.lives} ===\n")
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bot.cli", "run", "--http", "--host", "127.0.0.1",
                 "--port", str(self.port), "--workers", "2"],
                cwd=self.folder, env=self.env | {"DSR_DATA_DIR": str(self.folder)},
                stdout=subprocess.PIPE, stderr=log, text=True)
        assert "DSR Desk listening" in self.process.stdout.readline(), self.log.read_text()
        wait_for(lambda: healthy(self.url), timeout=60, what=f"{self.name} to boot")

    def roles(self) -> tuple[set[int], int | None]:
        nice = {pid: niceness(pid) for pid in children(self.process.pid)}
        return ({pid for pid, n in nice.items() if n == 0},
                next((pid for pid, n in nice.items() if n == BACKGROUND_NICENESS), None))

    def settled(self, replacing: frozenset[int] = frozenset()) -> tuple[set[int], int]:
        def ready() -> tuple[set[int], int] | None:
            http, background = self.roles()
            if len(http) == 2 and background and not (http | {background}) & replacing:
                return http, background
            return None

        return wait_for(ready, timeout=60, what=f"{self.name}'s processes")

    def kill_everything(self) -> None:
        """SIGKILL the arbiter and its children at once (a host or container lost)."""
        pids = [self.process.pid, *children(self.process.pid)]
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process.stdout.close()
        # The children are gone too (they were reparented; wait until the kernel removed them).
        wait_for(lambda: not any(niceness(pid) is not None for pid in pids[1:]), timeout=30,
                 what="the killed processes to go")

    def stop(self) -> None:
        """SIGTERM, as a deployment stops it: a clean exit."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self.process.stdout.close()
        assert code == 0, self.log.read_text()[-5000:]


class Balancer(SlackDriver):
    """Slack's requests sent to the replicas in turn, as a load balancer does. A replica that
    refuses the connection is skipped; a request whose answer is lost (its process was killed)
    is sent again to the next one, as Slack's user sees an error and tries again."""

    def __init__(self, replicas: list[Replica], slack: SlackStandIn, slack_url: str) -> None:
        super().__init__(replicas[0].url, SECRET, slack, slack_url)
        self.replicas = replicas
        self.turn = 0
        self.resent = 0

    def send(self, body: str, **options: Any) -> httpx.Response:
        for _ in range(100):
            replica = self.replicas[self.turn % len(self.replicas)]
            self.turn += 1
            self.url = f"{replica.url}/slack/events"
            try:
                answer = super().send(body, **options)
            except httpx.TransportError:
                self.resent += 1
                time.sleep(0.1)
                continue
            if answer.status_code < 500:
                return answer
            self.resent += 1
        raise AssertionError("no replica answered")


# -- the chaos ---------------------------------------------------------------------------------


class Chaos(threading.Thread):
    """SIGKILLs processes of `victim` at seeded random moments: each kind at least once."""

    KINDS = ("background", "http worker", "whole replica")

    def __init__(self, victim: Replica, rng: random.Random) -> None:
        super().__init__(name="chaos", daemon=True)
        self.victim, self.rng = victim, rng
        kinds = [*self.KINDS, *rng.choices(self.KINDS, k=2)]
        rng.shuffle(kinds)
        self.plan = [(rng.uniform(1.0, 5.0), kind) for kind in kinds]
        self.done: list[str] = []
        self.failure: BaseException | None = None
        self.finished = threading.Event()

    def run(self) -> None:
        try:
            for delay, kind in self.plan:
                time.sleep(delay)
                self.kill(kind)
                self.done.append(kind)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.failure = exc
        finally:
            self.finished.set()

    def kill(self, kind: str) -> None:
        victim = self.victim
        http, background = victim.settled()
        if kind == "whole replica":
            victim.kill_everything()
            victim.start()  # a supervisor's restart: same folder, host and port
            victim.settled()
            return
        pid = background if kind == "background" else self.rng.choice(sorted(http))
        os.kill(pid, signal.SIGKILL)
        victim.settled(replacing=frozenset({pid}))


# -- the workload, through Slack ---------------------------------------------------------------


@dataclass
class Workload:
    conversation: Conversation
    sessions: SessionFactory
    threads: dict[str, str] = field(default_factory=dict)  # reference -> its thread's ts
    kinds: dict[str, str] = field(default_factory=dict)  # request type -> reference

    @property
    def slack(self) -> SlackStandIn:
        return self.conversation.slack

    def request(self, reference: str) -> DsrRequest:
        with self.sessions() as session:
            return session.get(DsrRequest, request_id(reference))

    def status(self, reference: str) -> RequestStatus:
        return self.request(reference).status

    def message(self, ts: str) -> dict:
        return next(m for m in self.slack.messages(APPROVALS) if m["ts"] == ts)

    def file(self, kind: str, email: str, systems: tuple[str, ...], **fields: str) -> tuple[str, dict]:
        reference, message = file_request(self.conversation, email, systems=systems,
                                          **{Block.TYPE: kind, **fields})
        self.threads[reference], self.kinds[kind] = message["ts"], reference
        return reference, message

    def approve(self, user: str, reference: str) -> None:
        """Click Approve on the request's message as it is now (the buttons come and go)."""
        ts = self.threads[reference]
        message = wait_for(lambda: (m := self.message(ts))
                           and f'"action_id": "{Action.APPROVE}"' in json.dumps(m["blocks"]) and m,
                           what="the approve button")
        self.conversation.driver.click(user, message, Action.APPROVE, APPROVALS)

    def approved_by(self, user: str, reference: str) -> bool:
        plan = self.request(reference).plan_sha256
        with self.sessions() as session:
            return any(a.approver_slack_id == user and a.plan_sha256 == plan
                       for a in session.exec(select(Approval).where(
                           Approval.request_id == request_id(reference))))

    def review_and_approve(self, reference: str) -> None:
        """Open the plan from the thread, send it as proposed, and have it approved twice. The
        review modal opens after the ack, within the click's trigger: if it does not come (the
        process that had it died), the requester clicks again."""
        ts = self.threads[reference]
        ready = wait_for(lambda: next((m for m in self.slack.thread(APPROVALS, ts) if m["ts"] != ts
                                       and Action.REVIEW_PLAN in json.dumps(m.get("blocks"))), None),
                         timeout=60, what="the plan ready for review")
        for attempt in range(5):
            before = len(self.slack.views())
            self.conversation.driver.click("U_REQ", ready, Action.REVIEW_PLAN, APPROVALS)
            try:
                plan = modal(self.conversation, Callback.REVIEW_PLAN, before)
                break
            except AssertionError:
                if attempt == 4:
                    raise
        assert self.conversation.driver.submit("U_REQ", plan, {}).status_code == 200
        wait_for(lambda: self.status(reference) == RequestStatus.PENDING_APPROVAL, timeout=60,
                 what="the plan to await approval")
        self.approve("U_APP1", reference)
        wait_for(lambda: self.approved_by("U_APP1", reference), timeout=60,
                 what="the first approval of this plan")
        self.approve("U_APP2", reference)

    def run(self, emails: dict[str, str]) -> None:
        """The mixed workload, driven through Slack: the three requests filed (their searches),
        the erasure's plan reviewed, then all approved, so that their executions overlap."""
        both = ("zendesk", "genesys")
        access, _ = self.file("access", emails["access"], both)
        rectified, _ = self.file("rectification", emails["rectification"], both,
                                 **{Block.NEW_VALUES: f"email: {NEW_EMAIL}"})
        erased, _ = self.file("erasure", emails["erasure"], both)
        self.review_and_approve(erased)
        self.approve("U_APP1", access)
        self.approve("U_APP2", rectified)

    def notices(self) -> dict[str, Counter]:
        """Per request type: the lines of the notices written for its thread (the outbox)."""
        with self.sessions() as session:
            rows = session.exec(select(Notice)).all()
        return {kind: Counter(line for n in rows if n.request_id == request_id(reference)
                              for line in normalized(n.text, reference))
                for kind, reference in self.kinds.items()}

    def finished(self) -> bool:
        """Every request completed, its record made and everything about it told in Slack:
        no notice, send-once message or work after an ack left."""
        if not all(self.status(r) is RequestStatus.COMPLETED and self.request(r).recorded_at
                   for r in self.threads):
            return False
        with self.sessions() as session:
            return not (session.exec(select(Notice.id).where(Notice.sent_at.is_(None))).first()
                        or session.exec(select(Dispatch.id).where(Dispatch.sent_at.is_(None))).first()
                        or session.exec(select(InboxItem.id)).first())


def subjects() -> dict[str, str]:
    """Three subjects both stand-ins hold (they are built from the same seed)."""
    zendesk = ZendeskSandbox(seed=STANDIN_SEED, people=PEOPLE, requests_per_minute=None)
    genesys = GenesysSandbox(seed=STANDIN_SEED, people=PEOPLE, requests_per_minute=None)
    in_genesys = json.dumps(genesys.snapshot()["subjects"]).lower()
    emails = sorted(u["email"] for u in zendesk.state.users.values()
                    if u["role"] == "end-user" and u["email"].lower() in in_genesys)
    assert len(emails) >= 3, emails
    return dict(zip(("access", "rectification", "erasure"), emails, strict=False))


# -- what Slack shows --------------------------------------------------------------------------


def normalized(text: str, reference: str) -> list[str]:
    """A message's lines without what differs between equal runs: the reference, hashes and
    numbers (bytes, audit event numbers), and how notices were batched into messages."""
    text = re.sub(r"\b[0-9a-f]{8}-[0-9a-f-]{27}\b", "UUID", text.replace(reference, "DSR-X"))
    text = re.sub(r"\b[0-9a-f]{12,}\b", "HASH", text)
    return [re.sub(r"(?<![\w@^])\d[\d,.]*", "N", line).removesuffix(" _(simulation)_")
            for line in text.splitlines()]


def slack_summary(slack: SlackStandIn, workload: Workload) -> dict[str, Any]:
    """Per request (by type): the lines of its thread counted, its approval messages, the
    files and the requester's DMs, as Slack shows them, comparable between runs."""
    channel = slack.messages(APPROVALS)
    files = slack.uploaded_files()
    summary: dict[str, Any] = {}
    for kind, reference in workload.kinds.items():
        ts = workload.threads[reference]
        summary[kind] = {
            "thread": Counter(line for m in channel if m["thread_ts"] == ts and m["ts"] != ts
                              for line in normalized(m["text"], reference)),
            "approval messages": sum(1 for m in channel if m["thread_ts"] in (None, m["ts"])
                                     and reference in json.dumps(m["blocks"])),
            "files": Counter(f"{f['name'].replace(reference, 'DSR-X')} in {f['channel_id']}"
                             for f in files if reference in f["name"]),
            "requester DMs": Counter(line for m in slack.messages("U_REQ")
                                     if reference in m["text"]
                                     for line in normalized(m["text"], reference)),
        }
    return summary


# -- the test ----------------------------------------------------------------------------------


@contextmanager
def deployment(database_url: str, folder: Path, vendors: Vendors, replicas: int
               ) -> Iterator[tuple[list[Replica], Workload]]:
    """`replicas` replicas on `database_url`, with a Slack stand-in of their own, and the
    workload's driver spreading Slack's requests over them."""
    slack = SlackStandIn(bot_token="xoxb-chaos")
    with ExitStack() as stack:
        slack_server = server.start(slack.wsgi)
        stack.callback(slack_server.stop)
        shared_tmp = folder / "tmp"  # one host: the replicas' worker slots are locked here
        shared_tmp.mkdir(parents=True)
        env = child_env("DSR_", "DATABASE_", "SLACK_", "GENESYS_", "ZENDESK_") | {
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "TMPDIR": str(shared_tmp),
            "DATABASE_URL": database_url, "SLACK_BOT_TOKEN": "xoxb-chaos",
            "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": f"{slack_server.url}/api/",
            "DSR_REQUESTERS": "U_REQ", "DSR_APPROVERS": "U_APP1 U_APP2",
            "DSR_APPROVALS_CHANNEL": APPROVALS, "DSR_POLL_SECONDS": "0.05",
            "DSR_SANDBOX_ZENDESK_URL": vendors.urls["zendesk"],
            "DSR_SANDBOX_GENESYS_URL": vendors.urls["genesys"],
            "ZENDESK_REQUESTS_PER_MINUTE": str(vendors.limits["zendesk"]),
            "GENESYS_REQUESTS_PER_MINUTE": str(vendors.limits["genesys"])}
        running = []
        for n in range(replicas):
            replica = Replica(f"replica {'AB'[n]}", env, folder / f"replica-{'ab'[n]}")
            replica.folder.mkdir()
            replica.start()
            stack.callback(replica.stop)
            running.append(replica)
        for replica in running:
            replica.settled()
        engine = make_engine(database_url)
        stack.callback(engine.dispose)
        driver = Balancer(running, slack, slack_server.url)
        yield running, Workload(Conversation(slack, driver), make_session_factory(engine))


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"])
def test_two_replicas_survive_kills_with_the_outcome_of_a_run_without_them(
        database_url, tmp_path, request) -> None:
    """About 95 s: 15 s without faults, then 75 s with them (a minute of it spent waiting for
    the tight limits' window, see TIGHT)."""
    print(f"chaos seed {SEED} (CHAOS_SEED={SEED} repeats this run)")
    rng = random.Random(SEED)
    emails = subjects()

    # The outcome without faults: one replica, fresh stand-ins of the same seed, its own database.
    started = time.monotonic()
    with fresh_database("postgresql", tmp_path, request) as baseline_url, vendors(REALISTIC) as calm:
        with deployment(baseline_url, tmp_path / "baseline", calm, replicas=1) as (_, workload):
            workload.run(emails)
            wait_for(workload.finished, timeout=OVERALL, what="the fault-free run to finish")
            expected_slack = slack_summary(workload.slack, workload)
        expected_vendors = calm.snapshot()
    print(f"fault-free run: {time.monotonic() - started:.1f} s")

    started = time.monotonic()
    with vendors(TIGHT) as shared, deployment(database_url, tmp_path / "chaos", shared,
                                         replicas=2) as (replicas, workload):
        chaos = Chaos(replicas[1], rng)
        print("kills planned:", ", ".join(f"{kind} after {delay:.1f} s" for delay, kind in chaos.plan))
        chaos.start()
        workload.run(emails)
        chaos.finished.wait(OVERALL)
        assert chaos.failure is None, f"seed {SEED}: {chaos.failure!r}"
        assert set(chaos.done) == set(Chaos.KINDS), chaos.done
        wait_for(workload.finished, timeout=OVERALL, what=f"every request to finish (seed {SEED})")
        shown = slack_summary(workload.slack, workload)
        notices = workload.notices()
        outcome = shared.snapshot()
    logs = "".join(replica.log.read_text() for replica in replicas)  # stopped cleanly by now
    resumed = re.findall(r"resumed (\d+) (step|piece)", logs)
    print(f"run with kills: {time.monotonic() - started:.1f} s, {replicas[1].lives} lives of "
          f"{replicas[1].name}; restarted processes resumed "
          f"{sum(int(n) for n, what in resumed if what == 'step')} step(s) and "
          f"{sum(int(n) for n, what in resumed if what == 'piece')} piece(s) of work after acks; "
          f"{workload.conversation.driver.resent} Slack request(s) sent again")

    for kind, expected in expected_slack.items():
        twice = {line: n for line, n in shown[kind]["thread"].items() if n > 1}
        # Told apart: a notice written twice (the work was done twice) or one posted twice.
        assert not twice, (f"seed {SEED}: in the {kind}'s thread, posted more than once: {twice}; "
                           f"notices written: { {line: notices[kind][line] for line in twice} }")
        for what, value in expected.items():
            assert shown[kind][what] == value, f"seed {SEED}: the {kind}'s {what}"
        assert shown[kind]["approval messages"] == 1, f"seed {SEED}: {kind}"
    exported = shown["access"]["files"]
    assert exported[f"DSR-X-export.zip in {dm_id(('U_REQ',))}"] == 1, f"seed {SEED}: {exported}"
    for kind in shown:
        assert shown[kind]["files"]["DSR-X-compliance-record.pdf in C0APPROVALS"] == 1, kind
    assert outcome == expected_vendors, f"seed {SEED}: the vendors' state differs"
    assert len(outcome["genesys"]["requests"]) == 3
    assert "Traceback" not in logs, f"seed {SEED}"
    for system, limit in TIGHT.items():
        recorded = shared.recorded[system]
        assert recorded.refused() == [], f"seed {SEED}: {system} answered 429"
        assert getattr(shared, system).traffic.stats.rate_limited == 0
        assert recorded.busiest_minute() <= limit
        print(f"{system}: {len(recorded.calls)} calls, at most {recorded.busiest_minute()} in a "
              f"minute (limit {limit})")
