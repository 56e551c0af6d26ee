"""Benchmark: one reminder sweep and one digest over 100,000 and 1,000,000 requests.

Targets: a steady-state sweep under 100 ms, and peak memory of the sweep and the digest that
does not grow with the number of requests (10 times the requests, at most 1.5 times the peak).

Each size is filled into its own database, migrated with the real migrations, by bulk inserts
of 10,000 rows, then analyzed (PostgreSQL: VACUUM ANALYZE, as autovacuum would have done):

- requests received evenly over the 3 years before the bench's clock (2026-11-23 09:30 UTC);
  laws GDPR 45 %, CCPA 25 %, US states 15 %, UK GDPR 10 %, LGPD 5 %, with their deadlines
  (GDPR as 30 days); types access 45 %, erasure 40 %, rectification 10 %, objection 5 %;
- each takes 1 to 50 days to close (triangular, mode 12 days), so those received in the last
  weeks are still open: about 2 % open in every open status, deadlines over the next ~45 days
  and some overdue; of the closed, 93 % completed, 4 % rejected, 3 % canceled;
- a request that runs past its deadline was extended 70 % of the time;
- CCPA requests have an acknowledgement deadline (14 days) and are acknowledged 0.5 to 12 days
  after receipt, so the recent ones are still unacknowledged;
- one `request.status_changed` audit event per request pending approval (the digest reads
  when each started waiting), with dummy hashes: the bench never verifies the chain. A real
  trail holds several events per request, which this bench leaves out.

Then, on each database: the first sweep, with a send that does nothing (it claims every owed
reminder), timed once; then `--runs` steady-state sweeps (every owed reminder already sent)
and digests, timed; then one of each under tracemalloc, for its peak of Python memory (driver
buffers in C are not counted). From the repository root:

    python -m bench.scheduled_jobs [--requests 100000 1000000] [--database-url URL] [--runs 5]

With --database-url, an empty PostgreSQL database: each size is filled into it in turn, and
the bench drops its tables after each, leaving it empty again.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from bot.settings import Settings
from services.scheduled import digest, reminders
from storage import migrate
from storage.db import SessionFactory, make_engine, make_session_factory
from storage.models import (
    IS_OPEN,
    IS_UNACKNOWLEDGED,
    OPEN_STATUSES,
    AuditEvent,
    DsrRequest,
    RequestStatus,
    RequestType,
)
from storage.queries import EFFECTIVE_DUE

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
ZONE = ZoneInfo("Europe/Berlin")
RETENTION = timedelta(days=Settings.model_fields["identifier_retention_days"].default)
OFFSETS = (7, 3, 1)  # bot.settings defaults: DSR_REMINDER_DAYS, DSR_ACK_REMINDER_DAYS
ACK_DAYS = 2
CHUNK = 10_000
SWEEP_TARGET_MS = 100
FLAT = 1.5  # the most a peak may grow with 10 times the requests and still count as flat

# (code, share, days to respond, days of extension)
LAWS = (("GDPR", 45, 30, 60), ("CCPA", 25, 45, 45), ("US_VA", 4, 45, 45), ("US_CO", 4, 45, 45),
        ("US_CT", 4, 45, 45), ("US_UT", 3, 45, 45), ("UK_GDPR", 10, 30, 60), ("LGPD", 5, 15, 0))
TYPES = (RequestType.ACCESS, RequestType.ERASURE, RequestType.RECTIFICATION, RequestType.OBJECTION)
CLOSED = (RequestStatus.COMPLETED, RequestStatus.REJECTED, RequestStatus.CANCELED)
OPEN_LATE = (RequestStatus.APPROVED, RequestStatus.IN_PROGRESS, RequestStatus.NEEDS_ATTENTION,
             RequestStatus.PENDING_APPROVAL)


def request_rows(count: int, rng: random.Random, now: datetime = NOW) -> Iterator[dict[str, Any]]:
    """The requests, oldest first, in the shape the module docstring states, received up to
    `now`. Each closed one has its compliance record (made as it closes) and, past the default
    retention, its identifiers reduced: the state the deliverables and retention jobs keep."""
    span = timedelta(days=3 * 365)
    laws = rng.choices(LAWS, weights=[law[1] for law in LAWS], k=count)
    types = rng.choices(TYPES, weights=(45, 40, 10, 5), k=count)
    for n in range(count):
        code, _, respond, extend = laws[n]
        received = now - span * ((count - n) / count) - timedelta(seconds=rng.uniform(0, 600))
        due = received.date() + timedelta(days=respond)
        takes = timedelta(days=rng.triangular(1, 50, 12))
        closed = received + takes if received + takes <= now else None
        late = (received + takes).date() > due
        extended = due + timedelta(days=extend) if late and extend and rng.random() < 0.7 else None
        waited = now - received
        if closed:
            status = rng.choices(CLOSED, weights=(93, 4, 3))[0]
        elif waited < timedelta(days=1):
            status = RequestStatus.RECEIVED
        elif waited < timedelta(days=3):
            status = RequestStatus.PENDING_APPROVAL
        else:
            status = rng.choices(OPEN_LATE, weights=(10, 70, 10, 10))[0]
        reduced = closed + RETENTION if closed and closed + RETENTION <= now else None
        acknowledged = None
        if code == "CCPA":
            acknowledged = received + timedelta(days=rng.uniform(0.5, 12))
            acknowledged = min(acknowledged, closed) if closed else acknowledged
            acknowledged = acknowledged if acknowledged <= now else None
        yield {
            "type": types[n], "status": status, "jurisdiction_code": code, "received_at": received,
            "ack_due_on": received.date() + timedelta(days=14) if code == "CCPA" else None,
            "acknowledged_at": acknowledged, "due_on": due, "extended_due_on": extended,
            "extension_reason": "Complex request: many systems" if extended else None,
            "extended_at": received + timedelta(days=respond - 5) if extended else None,
            "extended_by": "U0PRIVACY1" if extended else None, "closed_at": closed,
            "simulation": False, "requester_slack_id": f"U0REQ{rng.randrange(40):04d}",
            "identity_verification": "Verified against the account's email", "notes": "",
            "channel_id": "C0DSRINTAKE", "thread_ts": f"{received.timestamp():.6f}",
            "created_at": received, "updated_at": closed or received, "recorded_at": closed,
            "identifiers_reduced_at": reduced,
        }


def fill(engine: sa.Engine, rows: Iterator[dict[str, Any]]) -> None:
    """Migrate, insert the requests and their awaiting-approval events, then analyze."""
    migrate.upgrade(engine)
    with engine.begin() as conn:
        while chunk := list(islice(rows, CHUNK)):
            conn.execute(sa.insert(DsrRequest), chunk)
        waiting = conn.execute(sa.select(DsrRequest.id, DsrRequest.received_at)
                               .where(DsrRequest.status == RequestStatus.PENDING_APPROVAL)
                               .order_by(DsrRequest.id)).all()
        events = [{"seq": seq, "occurred_at": min(received + timedelta(hours=2), NOW),
                   "actor": "U0REQ0001", "action": "request.status_changed", "request_id": request_id,
                   "details": {"from": "received", "to": "pending_approval", "reason": None},
                   "prev_hash": f"{seq - 1:064x}", "hash": f"{seq:064x}"}
                  for seq, (request_id, received) in enumerate(waiting, start=1)]
        for start in range(0, len(events), CHUNK):
            conn.execute(sa.insert(AuditEvent), events[start:start + CHUNK])
        conn.execute(sa.text("UPDATE audit_chain_head SET last_seq = :seq, last_hash = :hash"),
                     {"seq": len(events), "hash": f"{len(events):064x}"})
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")


def shape(engine: sa.Engine) -> str:
    """The open workload, in words: what the sweep and the digest have to read."""
    today = NOW.astimezone(ZONE).date()

    def count(*where: sa.ColumnElement[bool]) -> int:
        with engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(DsrRequest).where(*where)).one()[0]

    total, open_ = count(), count(IS_OPEN)
    return (f"{open_:,} open ({100 * open_ / total:.1f} %), "
            f"{count(IS_OPEN, EFFECTIVE_DUE.between(today, today + timedelta(days=max(OFFSETS)))):,} "
            f"due within {max(OFFSETS)} days, {count(IS_OPEN, today > EFFECTIVE_DUE):,} overdue, "
            f"{count(DsrRequest.status == RequestStatus.PENDING_APPROVAL):,} pending approval, "
            f"{count(IS_UNACKNOWLEDGED, DsrRequest.ack_due_on >= today):,} unacknowledged (CCPA)")


def sweep(sessions: SessionFactory) -> int:
    return reminders.sweep(sessions, lambda _event: None, today=NOW.astimezone(ZONE).date(),
                           offsets=OFFSETS, ack_days=ACK_DAYS, owner="bench", now=NOW)


def build_digest(sessions: SessionFactory) -> digest.Digest:
    with sessions() as session:
        return digest.build(session, now=NOW, zone=ZONE)


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    """(milliseconds the call took, what it returned)"""
    started = time.perf_counter()
    result = call()
    return 1000 * (time.perf_counter() - started), result


def peak_kib(call: Callable[[], object]) -> float:
    """Python memory the call allocates at its peak, beyond what was allocated before it."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        call()
        return (tracemalloc.get_traced_memory()[1] - before) / 1024
    finally:
        tracemalloc.stop()


def measure(url: str, count: int, runs: int) -> dict[str, Any]:
    engine = make_engine(url)
    began = time.perf_counter()
    fill(engine, request_rows(count, random.Random(count)))
    filled = time.perf_counter() - began
    sessions = make_session_factory(engine)
    figures: dict[str, Any] = {"requests": count, "fill_s": filled, "shape": shape(engine)}
    figures["first_ms"], figures["first_sent"] = timed(lambda: sweep(sessions))
    figures["sweep_ms"] = []
    for _ in range(runs):
        ms, sent = timed(lambda: sweep(sessions))
        if sent:
            raise AssertionError(f"a steady-state sweep sent {sent} reminder(s)")
        figures["sweep_ms"].append(ms)
    figures["digest_ms"] = [timed(lambda: build_digest(sessions))[0] for _ in range(runs)]
    figures["sweep_kib"] = peak_kib(lambda: sweep(sessions))
    figures["digest_kib"] = peak_kib(lambda: build_digest(sessions))
    engine.dispose()
    return figures


def empty_postgres(url: str, *, check: bool) -> None:
    """Refuse a database that has tables (check), or drop everything the bench created."""
    engine = make_engine(url)
    with engine.begin() as conn:
        if check:
            if tables := sa.inspect(conn).get_table_names():
                raise SystemExit(f"{engine.url.database} is not empty ({', '.join(sorted(tables))}): "
                                 "give the bench an empty database")
            return
        metadata = sa.MetaData()
        metadata.reflect(conn)
        metadata.drop_all(conn)
        conn.exec_driver_sql("DROP FUNCTION IF EXISTS audit_event_append_only()")
    engine.dispose()


def report(backend: str, results: list[dict[str, Any]]) -> None:
    for r in results:
        print(f"\n{backend}, {r['requests']:,} requests (filled in {r['fill_s']:.0f} s): {r['shape']}")
        print(f"  {'':<28} {'median ms':>10} {'max ms':>8} {'peak KiB':>9}")
        print(f"  {'first sweep, ' + format(r['first_sent'], ',') + ' sent':<28} "
              f"{r['first_ms']:>10.1f} {'':>8} {'':>9}")
        for name, key in (("sweep, steady state", "sweep"), ("digest", "digest")):
            ms = r[f"{key}_ms"]
            print(f"  {name:<28} {statistics.median(ms):>10.1f} {max(ms):>8.1f} {r[f'{key}_kib']:>9.0f}")
    sweep_ms = [statistics.median(r["sweep_ms"]) for r in results]
    print(f"\n  target: steady-state sweep under {SWEEP_TARGET_MS} ms: "
          f"{'holds' if max(sweep_ms) < SWEEP_TARGET_MS else 'MISSED'} "
          f"(slowest median {max(sweep_ms):.1f} ms)")
    if len(results) < 2:
        return
    small, large = results[0], results[-1]
    growth = large["requests"] / small["requests"]
    print(f"  {large['requests']:,} / {small['requests']:,} requests ({growth:.0f}x):")
    for name, key in (("sweep", "sweep"), ("digest", "digest")):
        time_ratio = statistics.median(large[f"{key}_ms"]) / statistics.median(small[f"{key}_ms"])
        memory_ratio = large[f"{key}_kib"] / small[f"{key}_kib"]
        flat = memory_ratio <= FLAT
        print(f"    {name:<7} time {time_ratio:5.2f}x   peak memory {memory_ratio:5.2f}x   "
              f"target memory flat (<= {FLAT}x): {'holds' if flat else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, nargs="+", default=[100_000, 1_000_000],
                        help="sizes, each filled into its own database")
    parser.add_argument("--database-url", default="",
                        help="an empty PostgreSQL database to use instead of SQLite files")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each operation")
    args = parser.parse_args()
    backend = "PostgreSQL" if args.database_url else "SQLite"
    print(f"Reminder sweep and digest, {backend}, {args.runs} runs each; "
          f"open statuses {', '.join(OPEN_STATUSES)}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.database_url:
            empty_postgres(args.database_url, check=True)
        for count in sorted(args.requests):
            url = args.database_url or f"sqlite:///{Path(tmp) / f'bench-{count}.sqlite3'}"
            try:
                results.append(measure(url, count, args.runs))
            finally:
                if args.database_url:
                    empty_postgres(args.database_url, check=False)
                else:
                    Path(tmp, f"bench-{count}.sqlite3").unlink(missing_ok=True)
    report(backend, results)


if __name__ == "__main__":
    main()
