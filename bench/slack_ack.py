"""Benchmark: acknowledgement latency of the Slack app in HTTP mode.

20 concurrent clients send signed `/dsr list` commands and Approve clicks to the real app
(`dsr-desk run --http` as in production: gunicorn's processes answering Slack, and the
background one doing the work after the acks and the scheduled jobs), with 100,000 requests in
the database; prints p50, p99 and max against Slack's 3 s limit (our target: p99 under 100 ms),
and the app's CPU time per call. From the repository root:

    python -m bench.slack_ack [--requests 100000] [--calls 2000] [--clients 20] [--warmup 200]
                              [--database-url postgresql+psycopg://...]

The data: three years of requests in the shape `bench.scheduled_jobs` describes (about 2 %
open, the closed ones recorded), then the requests the clicks approve, received in the last
day, each with its approval message in the Slack stand-in (the clicks' approvals update them).
The app starts on it and the benchmark waits until its scheduled jobs have caught up (the
first reminder sweep, say) before it measures the steady state.

What is measured: from the moment a client starts sending a request (connecting if it has no
open connection) until it has read the whole HTTP response, i.e. the time Slack would wait for
our acknowledgement. Each client is closed-loop: it sends its next request as soon as the last
is answered, so 20 requests are always in flight. The first `--warmup` calls of each kind fill
the app's caches and pools and are reported apart (their max). Every answer is checked (HTTP
200, and for `/dsr list` the list itself in the acknowledgement); after the clicks the
benchmark waits until every approval is in the database, so work the app defers past the ack
is done, not dropped, and reports the CPU it took; a listener failing after the ack fails the
benchmark.

The machine is shared by the app, the load generator and the Slack Web API stand-in, so the
load generator is kept out of the app's way, as Slack's servers are in production:
- requests are built and signed before the clock starts (Slack signs before it sends);
- the 20 clients are asyncio connections in this process, which costs a fraction of a
  millisecond of CPU per request (20 threads with httpx cost several, and with one GIL their
  own queueing was counted as the app's latency);
- the Web API stand-in the app calls after acking runs in a process of its own.
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
from collections.abc import Iterator, Sequence
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
from storage.db import make_engine
from storage.models import RequestStatus, RequestType

SECRET = "bench-secret"
APPROVALS = "C0APPROVALS"


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


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time used so far by a process and its children: the app's worker
    processes (Linux)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # the process ended meanwhile
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
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
    """Builds each signed request as Slack sends it, as raw HTTP/1.1 bytes, to send later."""

    def send(self, body: str, *, timestamp: int | None = None, signature: str | None = None,
             content_type: str = "application/x-www-form-urlencoded") -> bytes:  # type: ignore[override]
        stamp = str(timestamp if timestamp is not None else int(time.time()))
        signed = self.verifier.generate_signature(timestamp=stamp, body=body) or ""
        data = body.encode()
        target = urlsplit(self.url)
        head = (f"POST {target.path} HTTP/1.1\r\nHost: {target.netloc}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(data)}\r\n"
                f"X-Slack-Request-Timestamp: {stamp}\r\nX-Slack-Signature: {signed}\r\n\r\n")
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
                       expect: bytes) -> tuple[list[float], list[str]]:
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
            if status != 200 or expect not in body:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=2000, help="of each kind")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=200,
                        help="calls of each kind sent first and reported apart (the app's first "
                             "requests fill its caches and connection pools)")
    parser.add_argument("--database-url", default="",
                        help="an empty PostgreSQL database to use instead of a SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        began = time.perf_counter()
        engine = make_engine(url)
        now = datetime.now(UTC)
        clicked = args.warmup + args.calls
        slack = SlackStandIn(bot_token="xoxb-bench")
        # Three years of history up to yesterday, then the requests the clicks approve.
        fill(engine, chain(request_rows(args.requests - clicked, random.Random(args.requests),
                                        now=now - timedelta(days=1)),
                           awaiting_rows(approval_messages(slack, clicked), now)))
        print(f"{args.requests} requests in the database ({time.perf_counter() - began:.1f} s)")
        slack_url = f"http://127.0.0.1:{free_port()}"
        port = free_port()
        app_url = f"http://127.0.0.1:{port}"
        # Built before the stand-in's process forks, so that it knows every trigger id and
        # response_url in them.
        driver = Prepared(app_url, SECRET, slack, slack_url)
        lists = [driver.command("U_REQ", "list pending_approval erasure") for _ in range(clicked)]
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
        app_log = Path(tmp) / "app.log"
        with app_log.open("wb") as log:
            app = subprocess.Popen([sys.executable, "-m", "bot.cli", "run", "--http", "--host",
                                    "127.0.0.1", "--port", str(port)], env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
        try:
            try:
                wait_healthy(app_url)
            except TimeoutError:
                sys.exit(f"the app did not start:\n{app_log.read_text()}")
            print(f"the app's scheduled jobs caught up in {wait_idle(app.pid):.1f} s")
            print(f"{args.clients} concurrent clients (closed loop), {args.calls} calls of each "
                  f"kind, {url.split(':')[0]}; Slack's limit 3000 ms, target p99 < 100 ms")
            for name, requests, expect in (("/dsr list", lists, b"Requests ("),
                                           ("Approve click", clicks, b"")):
                warm, failures = asyncio.run(_closed_loop(
                    "127.0.0.1", port, requests[:args.warmup], args.clients, expect))
                measured_from = cpu_seconds(app.pid)
                latencies, failed = asyncio.run(_closed_loop(
                    "127.0.0.1", port, requests[args.warmup:], args.clients, expect))
                cpu = cpu_seconds(app.pid) - measured_from
                failures += failed
                ms = [1000 * v for v in latencies]
                print(f"{name:<14} p50 {statistics.median(ms):6.1f} ms   "
                      f"p99 {percentile(ms, 0.99):6.1f} ms   max {max(ms):6.1f} ms   "
                      f"app CPU {1000 * cpu / args.calls:4.1f} ms a call   "
                      f"(warm-up: max {1000 * max(warm, default=0):.0f} ms)"
                      + (f"   FAILED {len(failures)}: {sorted(set(failures))[:3]}" if failures else ""))
            drained = wait_for(engine, "SELECT count(*) FROM approval", len(clicks))
            cpu = cpu_seconds(app.pid) - measured_from  # from the first measured click
            print(f"every approval recorded {drained:.1f} s after the last click was acknowledged; "
                  f"the app's CPU from the first measured click to then: "
                  f"{1000 * cpu / args.calls:.1f} ms a click")
            failed = [line for line in app_log.read_text().splitlines() if " failed with " in line]
            if failed:  # a listener's work after the ack (handlers.deps.replies_errors)
                sys.exit(f"{len(failed)} listeners failed after the ack, e.g. {failed[0]}")
        finally:
            engine.dispose()
            app.terminate()
            app.wait(timeout=30)
            standin.terminate()
            standin.join(timeout=10)


if __name__ == "__main__":
    main()
