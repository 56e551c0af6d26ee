"""Benchmark: erase a Zendesk subject with 1, 100 and 1,000 tickets through the real engine,
review included (discovery, the plan submitted as proposed, approval, execution, read-backs).

Prints the API calls made against two floors: the bare bulk minimum (delete, job read and purge,
job read per 100 tickets, then the user: what an erasure with no review and no read-back needs)
and the floor of a reviewed, verified erasure (below), and the run time against the floor that
the vendor's rate limit sets: the fewest calls at an even pace of the limit (Zendesk allows
bursts within a minute, so a run inside one minute's budget can beat it). The stand-in enforces
the same per-minute limit the connector keeps to. From the repository root:

    python -m bench.zendesk_erasure [--tickets 1 100 1000] [--rpm 700] [--rounds 3]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bot.settings import Settings
from bot.wiring import ConnectorRegistry
from services.connectors.http import Limits
from services.sandbox.server import serve
from services.sandbox.zendesk import ZendeskSandbox
from storage import migrate
from storage.db import make_engine, make_session_factory
from storage.models import RequestType
from tests.conftest import ManualClock
from tests.workflow import file_request, run_until_settled

EMAIL = "bench.subject@example.org"


TERMS = 3  # the subject's name, email and phone, each searched once (the guide asks for it)
JOBS_AT_ONCE = 30  # Zendesk queues at most 30 bulk jobs per account


def minimum_calls(tickets: int) -> int:
    """List the subject's tickets, bulk-delete them, check each job once, purge them, check
    each job once, then soft- and permanently delete the user: 5 calls per 100 tickets + 2."""
    batches = max(1, math.ceil(tickets / 100))
    return 5 * batches + 2


def verified_floor(tickets: int) -> int:
    """The fewest calls of a reviewed erasure that reads every action back: the intake search;
    discovery (the user, one search each for requester and cc (an end user is assigned
    nothing), one more page per 100 tickets, one search per term); per 100 tickets a delete,
    a read-back and a purge, and one job-status read per wave of jobs for each; then the
    user's unclosed check, its deletion, a read-back, its permanent deletion and two
    read-backs."""
    batches = max(1, math.ceil(tickets / 100))
    waves = math.ceil(batches / JOBS_AT_ONCE)
    return 1 + (1 + 2 + (batches - 1) + TERMS) + 3 * batches + 2 * waves + 6


def run(tickets: int, rpm: int, workdir: Path) -> dict[str, float]:
    sandbox = ZendeskSandbox(seed=0, people=2, requests_per_minute=rpm, job_polls=1)
    user = sandbox.add_user("Bench Subject", email=EMAIL, phone="+15550001234")
    for n in range(tickets):
        sandbox.add_ticket(user["id"], subject=f"Order {n}", description="Where is my order?",
                           status="closed")
    workdir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite:///{workdir / f'bench-{tickets}.sqlite3'}")
    migrate.upgrade(engine)
    factory = make_session_factory(engine)
    clock = ManualClock(datetime.now(UTC))
    with serve(sandbox.wsgi) as server:
        settings = Settings(_env_file=None, DSR_DATA_DIR=str(workdir),
                            DSR_SANDBOX_ZENDESK_URL=server.url)
        registry = ConnectorRegistry(settings, poll_seconds=0,
                                     limits=Limits(requests_per_minute=rpm))
        before = sandbox.traffic.stats.total
        started = time.perf_counter()
        request_id = file_request(factory, registry, clock, RequestType.ERASURE, EMAIL,
                                  systems=("zendesk",))
        run_until_settled(factory, registry, clock, [request_id])
        elapsed = time.perf_counter() - started
        calls = sandbox.traffic.stats.total - before
    engine.dispose()
    fewest, floor = minimum_calls(tickets), verified_floor(tickets)
    return {"tickets": tickets, "calls": calls, "fewest": fewest, "verified": floor,
            "seconds": elapsed, "floor": floor / (rpm / 60),
            "rate_limited": sandbox.traffic.stats.rate_limited}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--rpm", type=int, default=700, help="Zendesk plan limit (Enterprise 700)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"Zendesk erasure, rate limit {args.rpm}/min (both ends), {args.rounds} rounds; "
          "calls are the most of any round, seconds min/median/max")
    print(f"{'tickets':>8} {'calls':>6} {'bulk':>5} {'ratio':>6} {'review':>6} {'ratio':>6} "
          f"{'seconds min/med/max':>20} {'floor s':>8} {'429s':>5}")
    with tempfile.TemporaryDirectory() as workdir:
        for tickets in args.tickets:
            rounds = [run(tickets, args.rpm, Path(workdir) / f"round-{n}")
                      for n in range(args.rounds)]
            r, calls = rounds[0], max(r["calls"] for r in rounds)
            seconds = sorted(r["seconds"] for r in rounds)
            spread = f"{seconds[0]:.2f}/{statistics.median(seconds):.2f}/{seconds[-1]:.2f}"
            print(f"{tickets:>8} {calls:>6} {r['fewest']:>5} {calls / r['fewest']:>6.2f} "
                  f"{r['verified']:>6} {calls / r['verified']:>6.2f} {spread:>20} "
                  f"{r['floor']:>8.2f} {max(r['rate_limited'] for r in rounds):>5}")


if __name__ == "__main__":
    main()
