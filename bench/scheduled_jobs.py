"""Benchmark: one reminder sweep and one digest over 100,000 and 1,000,000 requests.

Targets, at 1,000,000 requests: a steady-state sweep and a digest each under 100 ms median,
and within 2 times its floor (medians); at every size, peak memory of the sweep and the digest
that does not grow with the number of requests (10 times the requests, at most 1.5 times the
peak).

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

The floor of each: hand-written SQL for the same figures, read through a plain connection,
no ORM. The sweep's is one statement returning the reminders owed and not yet claimed (keys
formatted in SQL, anti-joined with `dispatch` by key): before the first sweep it must return
exactly what that sweep sends, after it nothing. The digest's is one statement, a UNION ALL of
every figure (the days as a VALUES table, each day's counts as index ranges; percentiles with
percentile_disc on PostgreSQL and a running sum on SQLite), assembled into a Digest that must
equal ours.

Then, on each database: the floor of the first sweep, then the first sweep with a send that
does nothing (it claims every owed reminder), timed once; after an untimed round, `--rounds`
rounds of the steady-state sweep (every owed reminder already sent) and the digest, each
followed or preceded by its floor (the order alternates), each checked; then one of each
under tracemalloc, for its peak of Python memory (driver buffers in C are not counted). From
the repository root:

    python -m bench.scheduled_jobs [--requests 100000 1000000] [--database-url URL] [--rounds 11]

With --database-url, an empty PostgreSQL database: each size is filled into it in turn, and
the bench drops its tables after each, leaving it empty again. Exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from bot.settings import Settings
from services.scheduled import digest, dispatch, reminders
from services.vocabulary import OPEN_STATUSES, RequestStatus, RequestType
from storage import migrate
from storage.db import SessionFactory, make_engine, make_session_factory
from storage.models import IS_OPEN, IS_UNACKNOWLEDGED, AuditEvent, Dispatch, DsrRequest
from storage.queries import EFFECTIVE_DUE

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
ZONE = ZoneInfo("Europe/Berlin")
RETENTION = timedelta(days=Settings.model_fields["identifier_retention_days"].default)
OFFSETS = (7, 3, 1)  # bot.settings defaults: DSR_REMINDER_DAYS, DSR_ACK_REMINDER_DAYS
ACK_DAYS = 2
CHUNK = 10_000
TIME_TARGET_MS = 100
TARGET_AT = 1_000_000  # the size the time and floor targets are stated for
FLOOR_TARGET = 2.0  # ours / floor, medians
FLAT = 1.5  # the most a peak may grow with 10 times the requests and still count as flat
TODAY = NOW.astimezone(ZONE).date()

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
    return reminders.sweep(sessions, lambda _event: None, today=TODAY, offsets=OFFSETS,
                           ack_days=ACK_DAYS, owner="bench", now=NOW)


def build_digest(sessions: SessionFactory) -> digest.Digest:
    with sessions() as session:
        return digest.build(session, now=NOW, zone=ZONE)


# The floors: hand-written SQL, with the statuses as literals (as IS_OPEN writes them).
IS_OPEN_SQL = f"status IN {OPEN_STATUSES}"
IS_CLOSED_SQL = f"status IN {digest.CLOSED_STATUSES}"
DUE = "coalesce(extended_due_on, due_on)"
TIME = DsrRequest.__table__.c.received_at.type


def reference_sql(dialect: str) -> str:
    """format_reference in SQL: DSR- and the id, at least 6 digits."""
    if dialect == "sqlite":
        return "printf('DSR-%06d', id)"
    return "'DSR-' || CASE WHEN id < 1000000 THEN lpad(id::text, 6, '0') ELSE id::text END"


def sweep_floor_statement(dialect: str) -> sa.TextClause:
    """The reminders owed today and not claimed yet: (key, id) and what their texts need."""
    offsets = sorted(OFFSETS)
    offset = " ".join(f"WHEN {DUE} <= :within{k} THEN {k}" for k in offsets[:-1])
    ref = reference_sql(dialect)
    return sa.text(f"""
        SELECT key, id, type, jurisdiction_code, status, simulation, due FROM (
          SELECT 'due:' || CASE {offset} ELSE {offsets[-1]} END || 'd:' || {ref} AS key,
                 id, type, jurisdiction_code, status, simulation, {DUE} AS due
          FROM dsr_request WHERE {IS_OPEN_SQL} AND {DUE} >= :today AND {DUE} <= :last
          UNION ALL
          SELECT 'ack:' || {ref}, id, type, jurisdiction_code, status, simulation, ack_due_on
          FROM dsr_request WHERE acknowledged_at IS NULL AND {IS_OPEN_SQL}
            AND ack_due_on >= :today AND ack_due_on <= :ack_last
        ) AS owed WHERE NOT EXISTS (SELECT 1 FROM dispatch WHERE dispatch.key = owed.key
                                    AND (sent_at IS NOT NULL OR claimed_at >= :live_since))
    """).bindparams(
        sa.bindparam("live_since", NOW - dispatch.LEASE, type_=Dispatch.__table__.c.claimed_at.type),
        *(sa.bindparam(f"within{k}", TODAY + timedelta(days=k), type_=sa.Date) for k in offsets[:-1]),
        sa.bindparam("today", TODAY, type_=sa.Date),
        sa.bindparam("last", TODAY + timedelta(days=offsets[-1]), type_=sa.Date),
        sa.bindparam("ack_last", TODAY + timedelta(days=ACK_DAYS), type_=sa.Date),
    ).columns(sa.column("key", sa.String), sa.column("id", sa.Integer))


def digest_floor_statement(dialect: str) -> sa.TextClause:
    """Every figure of the digest, one UNION ALL: (part, status, type, day, n1..n4, at)."""
    days = [TODAY - timedelta(days=n) for n in range(digest.WINDOW_DAYS - 1, -1, -1)]
    values = ", ".join(f"(:day{n}, :start{n}, :end{n})" for n in range(len(days)))
    if dialect == "sqlite":
        taken = "CAST(round((julianday(closed_at) - julianday(received_at)) * 86400) AS INTEGER) / 3600"
        # nearest rank: the first hour whose running count reaches share * total
        hours = """hist AS (SELECT hours, count(*) AS n FROM taken GROUP BY hours),
          ranked AS (SELECT hours, sum(n) OVER (ORDER BY hours) AS seen, sum(n) OVER () AS total
                     FROM hist),
          hours AS (SELECT min(CASE WHEN 2 * seen >= total THEN hours END) AS p50,
                           min(CASE WHEN 10 * seen >= 9 * total THEN hours END) AS p90
                    FROM ranked)"""
        stamp = "TIMESTAMP"
    else:
        taken = "floor(extract(epoch FROM closed_at - received_at))::bigint / 3600"
        hours = """hours AS (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY hours) AS p50,
                           percentile_disc(0.9) WITHIN GROUP (ORDER BY hours) AS p90
                    FROM taken)"""
        stamp = "TIMESTAMPTZ"
    in_day = "closed_at >= lo AND closed_at < hi"
    statement = sa.text(f"""
        WITH days(day, lo, hi) AS (VALUES {values}),
        taken AS (SELECT {taken} AS hours FROM dsr_request
                  WHERE status = 'completed' AND closed_at >= :start0),
        {hours}
        SELECT 'day' AS part, CAST(NULL AS TEXT) AS status, CAST(NULL AS TEXT) AS type, day,
               (SELECT count(*) FROM dsr_request WHERE received_at >= lo AND received_at < hi) AS n1,
               (SELECT count(*) FROM dsr_request WHERE {IS_CLOSED_SQL} AND {in_day}) AS n2,
               (SELECT count(*) FROM dsr_request WHERE status = 'completed' AND {in_day}) AS n3,
               (SELECT count(*) FROM dsr_request WHERE status = 'completed' AND {in_day}
                  AND {DUE} >= day) AS n4,
               CAST(NULL AS {stamp}) AS at
        FROM days
        UNION ALL
        SELECT 'open', status, type, NULL, count(*), NULL, NULL, NULL, NULL
        FROM dsr_request WHERE {IS_OPEN_SQL} GROUP BY status, type
        UNION ALL
        SELECT 'due', NULL, NULL, {DUE}, count(*), NULL, NULL, NULL, NULL
        FROM dsr_request WHERE {IS_OPEN_SQL} AND {DUE} < :soon GROUP BY {DUE}
        UNION ALL
        SELECT 'hours', NULL, NULL, NULL, p50, p90, NULL, NULL, NULL FROM hours
        UNION ALL
        SELECT 'last24', NULL, NULL, NULL, count(*), NULL, NULL, NULL, NULL
        FROM dsr_request WHERE status = 'completed' AND closed_at >= :day_ago
        UNION ALL
        SELECT * FROM (
          SELECT 'waiting', CAST(NULL AS TEXT), CAST(NULL AS TEXT), CAST(NULL AS DATE), r.id,
                 CAST(NULL AS BIGINT), CAST(NULL AS BIGINT), CAST(NULL AS BIGINT), max(e.occurred_at)
          FROM dsr_request AS r JOIN audit_event AS e ON e.request_id = r.id
          WHERE r.status = 'pending_approval' AND e.action = 'request.status_changed'
          GROUP BY r.id HAVING max(e.occurred_at) < :day_ago
          ORDER BY max(e.occurred_at), r.id LIMIT 20) AS waiting
        UNION ALL
        SELECT 'head', last_hash, NULL, NULL, last_seq, NULL, NULL, NULL, NULL
        FROM audit_chain_head WHERE id = 1 AND last_seq > 0
    """)
    bounds = [datetime.combine(day, datetime.min.time(), ZONE) for day in days]
    bounds.append(datetime.combine(TODAY + timedelta(days=1), datetime.min.time(), ZONE))
    return statement.bindparams(
        *(p for n, day in enumerate(days) for p in (
            sa.bindparam(f"day{n}", day, type_=sa.Date),
            sa.bindparam(f"start{n}", bounds[n], type_=TIME),
            sa.bindparam(f"end{n}", bounds[n + 1], type_=TIME))),
        sa.bindparam("soon", TODAY + timedelta(days=digest.DUE_SOON_DAYS), type_=sa.Date),
        sa.bindparam("day_ago", NOW - timedelta(days=1), type_=TIME),
    ).columns(sa.column("part", sa.String), sa.column("status", sa.String),
              sa.column("type", sa.String), sa.column("day", sa.Date),
              *(sa.column(f"n{n}", sa.Integer) for n in range(1, 5)), sa.column("at", TIME))


def digest_of(rows: list[sa.Row]) -> digest.Digest:
    """The floor's rows as a Digest."""
    parts: dict[str, list[sa.Row]] = {}
    for row in rows:
        parts.setdefault(row.part, []).append(row)
    due = {r.day: r.n1 for r in parts.get("due", [])}
    days = sorted(parts["day"], key=lambda r: r.day)
    open_counts = {(r.status, r.type): r.n1 for r in parts.get("open", [])}
    backlog, series = sum(open_counts.values()), []
    for r in reversed(days):
        series.append(digest.DayCounts(r.day, r.n1, r.n3, r.n4, backlog))
        backlog += r.n2 - r.n1
    (hours,) = parts["hours"]
    head = parts.get("head")
    return digest.Digest(
        day=TODAY, open_counts=open_counts,
        due_next_7_days=sum(n for day, n in due.items() if TODAY <= day <= TODAY + timedelta(days=7)),
        overdue=sum(n for day, n in due.items() if day < TODAY),
        completed_last_24h=parts["last24"][0].n1,
        completed_30_days=sum(r.n3 for r in days),
        median_days=None if hours.n1 is None else round(hours.n1 / 24, 1),
        p90_days=None if hours.n2 is None else round(hours.n2 / 24, 1),
        completed_on_time=sum(r.n4 for r in days),
        awaiting_approval=[(f"DSR-{r.n1:06d}", round((NOW - r.at).total_seconds() / 86400, 1))
                           for r in sorted(parts.get("waiting", []), key=lambda r: (r.at, r.n1))],
        series=series[::-1],
        due_soon=[(TODAY + timedelta(days=n), due.get(TODAY + timedelta(days=n), 0))
                  for n in range(digest.DUE_SOON_DAYS)],
        chain_head=(head[0].n1, head[0].status) if head else None,
    )


def floor_rows(engine: sa.Engine, statement: sa.TextClause) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(statement).all()


def same_digest(ours: digest.Digest, floor: digest.Digest) -> None:
    if ours != floor:
        raise AssertionError(f"the digests differ:\n  ours  {ours}\n  floor {floor}")


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


@dataclass
class Job:
    name: str
    ours: Callable[[], Any]
    floor: Callable[[], Any]
    same: Callable[[Any, Any], None]  # raises unless both gave the same figures
    ours_ms: list[float] = field(default_factory=list)
    floor_ms: list[float] = field(default_factory=list)
    kib: float = 0.0

    def ratio(self) -> float:
        return statistics.median(self.ours_ms) / statistics.median(self.floor_ms)


def steady_sweep_same(sent: int, owed: list[sa.Row]) -> None:
    if sent or owed:
        raise AssertionError(f"a steady-state sweep sent {sent}, its floor found {len(owed)} owed")


def jobs(engine: sa.Engine) -> list[Job]:
    sessions = make_session_factory(engine)
    dialect = engine.dialect.name
    sweep_floor, digest_floor = sweep_floor_statement(dialect), digest_floor_statement(dialect)
    return [
        Job("sweep, steady state", lambda: sweep(sessions),
            lambda: floor_rows(engine, sweep_floor), steady_sweep_same),
        Job("digest", lambda: build_digest(sessions),
            lambda: digest_of(floor_rows(engine, digest_floor)), same_digest),
    ]


def first_sweep(engine: sa.Engine) -> tuple[float, int]:
    """The first sweep, timed, checked against what its floor found owed before it."""
    owed = {(r.key, r.id) for r in floor_rows(engine, sweep_floor_statement(engine.dialect.name))}
    ms, sent = timed(lambda: sweep(make_session_factory(engine)))
    with engine.connect() as conn:
        claimed = {(key, request_id) for key, request_id in conn.execute(
            sa.select(Dispatch.key, Dispatch.request_id))}
    if sent != len(owed) or claimed != owed:
        raise AssertionError(f"the first sweep sent {sent} and claimed {len(claimed)}, "
                             f"its floor found {len(owed)} owed: {sorted(claimed ^ owed)[:5]}")
    return ms, sent


def measure(url: str, count: int, rounds: int) -> dict[str, Any]:
    engine = make_engine(url)
    began = time.perf_counter()
    fill(engine, request_rows(count, random.Random(count)))
    filled = time.perf_counter() - began
    figures: dict[str, Any] = {"requests": count, "fill_s": filled, "shape": shape(engine)}
    figures["first_ms"], figures["first_sent"] = first_sweep(engine)
    figures["jobs"] = measure_jobs(engine, rounds)
    engine.dispose()
    return figures


def measure_jobs(engine: sa.Engine, rounds: int) -> list[Job]:
    """An untimed round, then `rounds` timed ones, ours and the floor in alternating order;
    then the peak memory of ours."""
    measured = jobs(engine)
    for job in measured:
        job.same(job.ours(), job.floor())
    for n in range(rounds):
        for job in measured:
            if n % 2:
                floor_ms, floor = timed(job.floor)
                ours_ms, ours = timed(job.ours)
            else:
                ours_ms, ours = timed(job.ours)
                floor_ms, floor = timed(job.floor)
            job.same(ours, floor)
            job.ours_ms.append(ours_ms)
            job.floor_ms.append(floor_ms)
    for job in measured:
        job.kib = peak_kib(job.ours)
    return measured


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


def spread(ms: list[float]) -> str:
    return f"{min(ms):.1f}/{statistics.median(ms):.1f}/{max(ms):.1f}"


def report(backend: str, results: list[dict[str, Any]]) -> list[str]:
    """Prints the figures and the targets; returns the targets missed."""
    missed = []
    for r in results:
        print(f"\n{backend}, {r['requests']:,} requests (filled in {r['fill_s']:.0f} s): {r['shape']}")
        print(f"  {'':<22} {'ours ms min/med/max':>22} {'floor ms min/med/max':>22} {'ratio':>6} "
              f"{'peak KiB':>9}")
        print(f"  {'first sweep, ' + format(r['first_sent'], ',') + ' sent':<22} "
              f"{r['first_ms']:>22.1f}")
        for job in r["jobs"]:
            print(f"  {job.name:<22} {spread(job.ours_ms):>22} {spread(job.floor_ms):>22} "
                  f"{job.ratio():>6.2f} {job.kib:>9.0f}")
        if r["requests"] < TARGET_AT:
            continue
        for job in r["jobs"]:
            where, median = f"{job.name} at {r['requests']:,}", statistics.median(job.ours_ms)
            if median >= TIME_TARGET_MS:
                missed.append(f"{where}: median {median:.1f} ms, not under {TIME_TARGET_MS} ms")
            if job.ratio() > FLOOR_TARGET:
                missed.append(f"{where}: {job.ratio():.2f}x its floor, not within {FLOOR_TARGET}x")
    if len(results) > 1:
        small, large = results[0], results[-1]
        growth = large["requests"] / small["requests"]
        print(f"\n  {large['requests']:,} / {small['requests']:,} requests ({growth:.0f}x):")
        for before, after in zip(small["jobs"], large["jobs"], strict=True):
            time_ratio = statistics.median(after.ours_ms) / statistics.median(before.ours_ms)
            memory_ratio = after.kib / before.kib
            print(f"    {after.name:<22} time {time_ratio:5.2f}x   peak memory {memory_ratio:5.2f}x")
            if memory_ratio > FLAT:
                missed.append(f"{after.name}: peak memory {memory_ratio:.2f}x with {growth:.0f}x the "
                              f"requests, not flat (<= {FLAT}x)")
    checked = any(r["requests"] >= TARGET_AT for r in results)
    print(f"\n  targets: at {TARGET_AT:,} requests, under {TIME_TARGET_MS} ms median and within "
          f"{FLOOR_TARGET}x the floor{'' if checked else ' (not checked: no such size)'}; peak "
          f"memory flat (<= {FLAT}x){'' if len(results) > 1 else ' (not checked: give two sizes)'}:"
          f" {'hold' if not missed else 'MISSED'}")
    for line in missed:
        print(f"  MISSED: {line}")
    return missed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, nargs="+", default=[100_000, TARGET_AT],
                        help="sizes, each filled into its own database")
    parser.add_argument("--database-url", default="",
                        help="an empty PostgreSQL database to use instead of SQLite files")
    parser.add_argument("--rounds", type=int, default=11, help="timed rounds of each operation")
    args = parser.parse_args()
    backend = "PostgreSQL" if args.database_url else "SQLite"
    print(f"Reminder sweep and digest, {backend}, {args.rounds} rounds each; "
          f"open statuses {', '.join(OPEN_STATUSES)}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.database_url:
            empty_postgres(args.database_url, check=True)
        for count in sorted(args.requests):
            url = args.database_url or f"sqlite:///{Path(tmp) / f'bench-{count}.sqlite3'}"
            try:
                results.append(measure(url, count, args.rounds))
            finally:
                if args.database_url:
                    empty_postgres(args.database_url, check=False)
                else:
                    Path(tmp, f"bench-{count}.sqlite3").unlink(missing_ok=True)
    if report(backend, results):
        sys.exit(1)


if __name__ == "__main__":
    main()
