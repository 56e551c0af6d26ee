"""Benchmark: acknowledgement latency and CPU of the Slack app in HTTP mode, against a bare bolt
app (bench.bare_bolt) in the same run.

20 concurrent clients send signed `/dsr list` commands and Approve clicks to the real app
(`dsr-desk run --http` as in production: gunicorn's processes answering Slack, and the
background one doing the work after the acks and the scheduled jobs), with 100,000 requests in
the database, and the same to the peer: a bolt app with the same signing secret and Flask
adapter whose `/dsr` acks with a line of text and whose clicks ack with nothing, served the
same way (gthread, 2 processes of 8 threads). Rounds interleave the two (which goes first
alternates); each round's p99 is taken, and the figures are the min/median/max over rounds.

Targets (issue 14): each kind's p99 under 100 ms, and its median p99 and its CPU per ack at most
1.5 times the bare app's. Exits 1 if one is missed. From the repository root:

    python -m bench.slack_ack [--requests 100000] [--rounds 9] [--calls 300] [--clients 20]
                              [--database-url postgresql+psycopg://...]

Before measuring, both apps must refuse a forged signature and a stale one (10 minutes old)
with 401. Every answer is checked: HTTP 200, our `/dsr list` ack is the list's page with its
total, the peer's its line, and a click's ack is empty. After the clicks the benchmark waits
until every approval is in the database (work deferred past the ack is done, not dropped) and
fails if a listener failed after its ack.

The data: three years of requests in the shape `bench.scheduled_jobs` describes, then the
requests the clicks approve, each with its approval message in the Slack stand-in. The app
starts on it and the benchmark waits until its scheduled jobs have caught up before measuring.

What is measured: from the moment a client starts sending a request (connecting if it has no
open connection) until it has read the whole response. Clients are closed-loop asyncio
connections in this process (a fraction of a millisecond of CPU a request); requests are built
before the stand-in forks and signed just before their round (Slack signs before it sends);
the Web API stand-in runs in a process of its own. The machine is shared: read the ratios,
which both apps pay alike, before the absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import chain
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa
from cryptography.fernet import Fernet
from werkzeug.test import Client

from bench.scheduled_jobs import fill, request_rows
from bot.slack_driver import SlackDriver
from bot.slack_standin import SlackStandIn
from handlers.ids import Action
from services.sandbox import server
from services.vocabulary import RequestStatus, RequestType
from storage.db import make_engine

SECRET = "bench-secret"
APPROVALS = "C0APPROVALS"
TARGET_MS = 100  # p99 of an acknowledgement (Slack's limit: 3,000)
PEER_RATIO = 1.5  # the most our p99 and CPU per ack may be of the bare bolt app's


def approval_messages(slack: SlackStandIn, count: int) -> list[str]:
    """Posts `count` approval messages in the stand-in, as the app does when a request goes to
    approval, so that the clicks' approvals update real messages; returns their ts."""
    api = Client(slack.wsgi)
    posted = [api.post("/api/chat.postMessage", headers={"Authorization": f"Bearer {slack.bot_token}"},
                       data={"channel": APPROVALS, "text": "DSR awaiting approval"}).json
              for _ in range(count)]
    return [message["ts"] for message in posted]


def awaiting_rows(thread_ts: list[str], now: datetime) -> Iterator[dict[str, Any]]:
    """Requests received over the last day, awaiting approval, each with its message in the
    approvals channel: what the clicks decide."""
    count = len(thread_ts)
    unset = dict.fromkeys(("ack_due_on", "acknowledged_at", "extended_due_on", "extension_reason",
                           "extended_at", "extended_by", "closed_at", "recorded_at",
                           "identifiers_reduced_at"))
    for n in range(count):
        received = now - timedelta(days=1) * ((count - n) / count)
        yield unset | {
            "type": (RequestType.ACCESS, RequestType.ERASURE)[n % 2],
            "status": RequestStatus.PENDING_APPROVAL, "jurisdiction_code": "GDPR",
            "received_at": received, "due_on": received.date() + timedelta(days=30),
            "simulation": True, "requester_slack_id": "U0REQ0001",
            "identity_verification": "Verified against the account's email", "notes": "",
            "channel_id": APPROVALS, "thread_ts": thread_ts[n],
            "created_at": received, "updated_at": received}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_healthy(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError("the app did not start")


def cpu_seconds(pid: int, *, answering: bool = False) -> float:
    """User plus system CPU time used so far by a process and its children (Linux); with
    `answering`, only the processes that answer Slack: not DSR Desk's background one (the only
    one at a lower priority, bot.http), whose work after the acks a bare app does not do."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # the process ended meanwhile
            continue
        if (stat.parent.name == str(pid) or fields[1] == str(pid)) and not (
                answering and int(fields[16]) > 0):
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def wait_idle(pid: int, timeout: float = 300.0) -> float:
    """Seconds until the app's scheduled jobs have caught up with the data it found (the first
    reminder sweep, say): under 5 % of a CPU over a second."""
    began = time.perf_counter()
    while time.perf_counter() - began < timeout:
        used = cpu_seconds(pid)
        time.sleep(1.0)
        if cpu_seconds(pid) - used < 0.05:
            return time.perf_counter() - began
    raise TimeoutError("the app stayed busy")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


class Prepared(SlackDriver):
    """Builds each request's body as Slack sends it, to be signed (`signed`) when it is sent."""

    def send(self, body: str, *, timestamp: int | None = None, signature: str | None = None,
             content_type: str = "application/x-www-form-urlencoded") -> tuple[str, str]:  # type: ignore[override]
        return body, content_type

    def signed(self, unsigned: tuple[str, str], *, at: float | None = None,
               signature: str | None = None) -> bytes:
        """The raw HTTP/1.1 request, signed now (or at `at`), or with `signature` as given."""
        body, content_type = unsigned
        stamp = str(int(time.time() if at is None else at))
        signature = signature or self.verifier.generate_signature(timestamp=stamp, body=body) or ""
        data = body.encode()
        target = urlsplit(self.url)
        head = (f"POST {target.path} HTTP/1.1\r\nHost: {target.netloc}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(data)}\r\n"
                f"X-Slack-Request-Timestamp: {stamp}\r\nX-Slack-Signature: {signature}\r\n\r\n")
        return head.encode() + data


async def _exchange(conn: list, host: str, port: int, raw: bytes) -> tuple[int, bytes]:
    """One request on the client's connection (opened when it has none); the status and body."""
    if not conn:
        conn.extend(await asyncio.open_connection(host, port))
    reader, writer = conn
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
    body = await reader.readexactly(int(fields.get("content-length", "0")))
    if fields.get("connection", "").lower() == "close" or lines[0].startswith("HTTP/1.0"):
        writer.close()
        conn.clear()
    return status, body


async def _closed_loop(host: str, port: int, requests: Sequence[bytes], clients: int,
                       expect: Callable[[bytes], bool]) -> tuple[list[float], list[str]]:
    latencies: list[float] = []
    failures: list[str] = []
    queue = iter(requests)

    async def client() -> None:
        conn: list = []
        for raw in queue:
            started = time.perf_counter()
            try:
                status, body = await _exchange(conn, host, port, raw)
            except (OSError, asyncio.IncompleteReadError) as exc:
                conn.clear()
                failures.append(type(exc).__name__)
                continue
            latencies.append(time.perf_counter() - started)
            if status != 200 or not expect(body):
                failures.append(f"HTTP {status} {body[:80]!r}")
        if conn:
            conn[1].close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, failures


def _serve_standin(slack: SlackStandIn, port: int) -> None:
    server.start(slack.wsgi, port=port).thread.join()


def wait_for(engine: sa.Engine, query: str, count: int, timeout: float = 300.0) -> float:
    began = time.perf_counter()
    with engine.connect() as conn:
        while conn.execute(sa.text(query)).scalar_one() < count:
            if time.perf_counter() - began > timeout:
                raise TimeoutError(f"{query!r} did not reach {count}")
            conn.rollback()
            time.sleep(0.05)
    return time.perf_counter() - began


@dataclass
class Figures:
    """One app's answers to one kind of call: each round's p99 (ms) and the CPU it took."""

    p99: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    calls: int = 0
    failures: list[str] = field(default_factory=list)

    def cpu_ms(self) -> float:
        return 1000 * self.cpu_s / self.calls


def start_bare(port: int, slack_url: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "SLACK_SIGNING_SECRET": SECRET, "SLACK_BOT_TOKEN": "xoxb-bench",
           "SLACK_API_URL": f"{slack_url}/api/", "PYTHONPATH": str(Path(__file__).parents[1])}
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", "2",
                                 "--threads", "8", "-b", f"127.0.0.1:{port}", "--log-level",
                                 "warning", "bench.bare_bolt:web"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def refuses_unsigned(driver: Prepared, port: int, probe: tuple[str, str]) -> None:
    """Both apps must answer a forged signature and a stale one with 401 before anything is
    measured: an app that skipped the check would look fast."""
    for what, raw in (("forged", driver.signed(probe, signature="v0=" + "0" * 64)),
                      ("stale", driver.signed(probe, at=time.time() - 600))):
        status, _ = asyncio.run(_one("127.0.0.1", port, raw))
        if status != 401:
            sys.exit(f"the app on port {port} answered a {what} signature with {status}, not 401")


async def _one(host: str, port: int, raw: bytes) -> tuple[int, bytes]:
    conn: list = []
    try:
        return await _exchange(conn, host, port, raw)
    finally:
        if conn:
            conn[1].close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=300, help="of each kind, app and round")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--database-url", default="",
                        help="an empty PostgreSQL database to use instead of a SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        began = time.perf_counter()
        engine = make_engine(url)
        now = datetime.now(UTC)
        warmup = args.calls
        clicked = warmup + args.rounds * args.calls
        slack = SlackStandIn(bot_token="xoxb-bench")
        # Three years of history up to yesterday, then the requests the clicks approve.
        fill(engine, chain(request_rows(args.requests - clicked, random.Random(args.requests),
                                        now=now - timedelta(days=1)),
                           awaiting_rows(approval_messages(slack, clicked), now)))
        print(f"{args.requests:,} requests in the database ({time.perf_counter() - began:.1f} s)")
        slack_url = f"http://127.0.0.1:{free_port()}"
        ours_port, bare_port = free_port(), free_port()
        # Built before the stand-in's process forks, so that it knows every trigger id and
        # response_url in them; signed just before their round.
        driver = Prepared(f"http://127.0.0.1:{ours_port}", SECRET, slack, slack_url)
        lists = [driver.command("U_REQ", "list pending_approval erasure")
                 for _ in range(warmup + args.rounds * args.calls)]
        pending = range(args.requests - clicked + 1, args.requests + 1)
        clicks = []
        for request_id, message in zip(pending, slack.messages(APPROVALS), strict=True):
            message = {"ts": message["ts"], "blocks": [{"type": "actions", "block_id": "decide", "elements": [
                {"type": "button", "action_id": Action.APPROVE, "value": f"DSR-{request_id:06d}",
                 "text": {"type": "plain_text", "text": "Approve"}}]}]}
            clicks.append(driver.click("U_APP", message, Action.APPROVE, APPROVALS))
        standin = multiprocessing.get_context("fork").Process(
            target=_serve_standin, args=(slack, urlsplit(slack_url).port), daemon=True)
        standin.start()
        env = {**os.environ, "DATABASE_URL": url, "DSR_DATA_DIR": tmp,
               "SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_SIGNING_SECRET": SECRET,
               "SLACK_API_URL": f"{slack_url}/api/", "DSR_REQUESTERS": "U_REQ",
               "DSR_APPROVERS": "U_APP U_APP2", "DSR_APPROVALS_CHANNEL": APPROVALS,
               "DSR_EXPORT_KEY": Fernet.generate_key().decode(),
               "DSR_LOG_LEVEL": "WARNING", "PYTHONPATH": str(Path(__file__).parents[1])}
        app_log, bare_log = Path(tmp) / "app.log", Path(tmp) / "bare.log"
        with app_log.open("wb") as log:
            app = subprocess.Popen([sys.executable, "-m", "bot.cli", "run", "--http", "--host",
                                    "127.0.0.1", "--port", str(ours_port)], env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
        bare = start_bare(bare_port, slack_url, bare_log)
        ours_expects = {"/dsr list": lambda body: b"Requests: pending_approval erasure" in body
                        and b" of " in body, "Approve click": lambda body: body == b""}
        bare_expects = {"/dsr list": lambda body: b"Requests: none." in body,
                        "Approve click": lambda body: body == b""}
        try:
            for where, log in ((f"http://127.0.0.1:{ours_port}", app_log),
                               (f"http://127.0.0.1:{bare_port}", bare_log)):
                try:
                    wait_healthy(where)
                except TimeoutError:
                    sys.exit(f"{where} did not start:\n{log.read_text()}")
            for port in (ours_port, bare_port):
                refuses_unsigned(driver, port, lists[0])
            print("both apps refuse a forged and a stale signature (401)")
            print(f"the app's scheduled jobs caught up in {wait_idle(app.pid):.1f} s")
            print(f"{args.clients} concurrent clients (closed loop), {args.rounds} rounds of "
                  f"{args.calls} calls of each kind and app, {url.split(':')[0]}")
            figures = {(kind, who): Figures() for kind in ours_expects for who in ("ours", "bare")}
            processes = {"ours": (app.pid, ours_port, ours_expects),
                         "bare": (bare.pid, bare_port, bare_expects)}
            for round_ in range(-1, args.rounds):  # round -1: the warm-up, not counted
                for kind, made in (("/dsr list", lists), ("Approve click", clicks)):
                    order = ("ours", "bare") if round_ % 2 else ("bare", "ours")
                    for who in order:
                        pid, port, expects = processes[who]
                        start = warmup + round_ * args.calls if round_ >= 0 else 0
                        batch = [driver.signed(m) for m in made[start:start + args.calls]]
                        used = cpu_seconds(pid, answering=True)
                        latencies, failed = asyncio.run(_closed_loop(
                            "127.0.0.1", port, batch, args.clients, expects[kind]))
                        if round_ < 0:
                            continue
                        fig = figures[kind, who]
                        fig.cpu_s += cpu_seconds(pid, answering=True) - used
                        fig.calls += len(batch)
                        fig.p99.append(percentile([1000 * v for v in latencies], 0.99))
                        fig.failures += failed
            drained = wait_for(engine, "SELECT count(*) FROM approval", len(clicks))
            missed = report(figures, drained)
            failed = [line for line in app_log.read_text().splitlines() if " failed with " in line]
            if failed:  # a listener's work after the ack (handlers.deps.replies_errors)
                missed.append(f"{len(failed)} listeners failed after the ack, e.g. {failed[0]}")
            for line in missed:
                print(f"MISSED: {line}")
            if missed:
                sys.exit(1)
        finally:
            engine.dispose()
            for process in (app, bare):
                process.terminate()
                process.wait(timeout=30)
            standin.terminate()
            standin.join(timeout=10)


def report(figures: dict[tuple[str, str], Figures], drained: float) -> list[str]:
    """Prints the table; returns the targets missed."""
    missed = []
    print(f"\n{'':<14} {'app':<5} {'p99 ms min/median/max':>24} {'CPU ms/ack':>10} "
          "(the processes answering Slack)")
    for (kind, who), fig in figures.items():
        p99 = "/".join(f"{v:.1f}" for v in (min(fig.p99), statistics.median(fig.p99), max(fig.p99)))
        print(f"{kind:<14} {who:<5} {p99:>24} {fig.cpu_ms():>10.2f}"
              + (f"   FAILED {len(fig.failures)}: {sorted(set(fig.failures))[:3]}"
                 if fig.failures else ""))
        if fig.failures:
            missed.append(f"{kind} ({who}): {len(fig.failures)} answers not as expected")
    for kind in dict.fromkeys(k for k, _ in figures):
        ours, bare = figures[kind, "ours"], figures[kind, "bare"]
        p99 = statistics.median(ours.p99)
        latency, cpu = p99 / statistics.median(bare.p99), ours.cpu_ms() / bare.cpu_ms()
        print(f"{kind:<14} ours/bare: p99 {latency:.2f}x, CPU {cpu:.2f}x")
        if p99 >= TARGET_MS:
            missed.append(f"{kind}: median p99 {p99:.1f} ms, not under {TARGET_MS} ms")
        if latency > PEER_RATIO:
            missed.append(f"{kind}: p99 {latency:.2f}x the bare app's, over {PEER_RATIO}x")
        if cpu > PEER_RATIO:
            missed.append(f"{kind}: CPU {cpu:.2f}x the bare app's, over {PEER_RATIO}x")
    print(f"every approval recorded {drained:.1f} s after the last click was acknowledged")
    return missed


if __name__ == "__main__":
    main()
