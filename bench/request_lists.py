"""Benchmark: the request lists of the Slack layer (the Home, `/dsr list`, `/dsr find`, a list
as CSV) over 10,000 and 100,000 requests, and 1,000,000 with `--requests 100000 1000000`.

Targets: each Slack-facing list operation (the Home's 4 groups, the first and the last page of
`/dsr list open`, `/dsr find <email>`) under 100 ms median at 100,000 requests, and within 2
times its floor, or within 3 ms a page of it (the Home reads 4), (medians) at 100,000 requests
and more: a page pays a
fixed ~1-2 ms (a session, two statements, ORM objects) that a floor of 0.3 ms cannot, and
which grows with nothing; a list as CSV linear-ish: the same
list at the next size (10 times the requests, about 10 times the rows) costs at most 2 times
as many ms per 1,000 rows (a quadratic cost would be 10 times; caches make even the floor's
grow a little). The small size is there for that comparison; at it a page's fixed cost dwarfs
its floor.

The data: bench.scheduled_jobs fills each database (its docstring says in what shape) and this
bench adds one identifier per request, the subject's email `subject<id>@example.org` with its
lookup hash (services.lookup, key `bench key`, hashed here in bulk), then analyzes again.

Each operation is what its handler reads, without Slack and without building blocks, for a
requester with requests who is also an approver (U0REQ0001), on a clock fixed at the bench's
2026-11-23 09:30 UTC:

1. the Home: the page of each of its 4 groups (handlers.home.GROUPS, HOME_ROWS rows each);
2. `/dsr list open`: its first page of 20 with the total, and its last page;
3. `/dsr find subject<n>@example.org`: the lookup hash, then the page of that subject (one);
4. `/dsr list overdue csv` and `/dsr list completed from <a year ago> csv`: requests_csv
   over RequestService.each.

The floor of each: one hand-written SQL statement returning the same rows and the total (an
uncorrelated count as a column), read through a plain connection into typed rows, no ORM;
the Home's is its 4 groups in one UNION ALL; a CSV's reads only the columns it writes and
writes the same bytes. The bench checks that both return the same rows, totals and bytes.
After an untimed round, each round runs every operation and then its floor. From the
repository root:

    python -m bench.request_lists [--requests 100000 1000000] [--database-url URL] [--rounds 7]

With --database-url, an empty PostgreSQL database: each size is filled into it in turn, and
the bench drops its tables after each, leaving it empty again. Exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import hmac
import io
import itertools
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.scheduled_jobs import CHUNK, NOW, ZONE, empty_postgres, fill, request_rows, shape
from handlers.deps import Deps
from handlers.home import GROUPS
from handlers.lists import DUE_SOON_DAYS, page_of, parse_filters, requests_csv
from handlers.views.common import TYPE_LABELS
from handlers.views.lists import HOME_ROWS, PAGE_SIZE
from services.lookup import IdentifierLookup
from services.policy import Policy
from services.request_lists import RequestPage
from services.requests import RequestService
from services.subjects import Identifier
from services.vocabulary import OPEN_STATUSES, IdentifierKind, IdentifierPurpose, RequestStatus
from storage.db import make_engine, make_session_factory
from storage.models import DsrRequest, SubjectIdentifier

VIEWER = "U0REQ0001"  # request_rows spreads requests over U0REQ0000..0039
KEY = b"bench key"
LIST_TARGET_MS = 100
LIST_TARGET_AT = 100_000  # the size the time target is stated for
FLOOR_TARGET = 2.0  # ours / floor, medians ...
FIXED_MS = 3.0  # ... or at most this much above it a page read: its fixed cost (docstring)
LINEAR = 2.0  # the most ms per 1,000 rows may grow with 10 times the rows (quadratic: 10 times)
TODAY = NOW.astimezone(ZONE).date()
YEAR_AGO = TODAY - timedelta(days=365)
YEAR_WORDS = f"completed from {YEAR_AGO.isoformat()}"


class FixedClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


def email(request_id: int) -> str:
    return f"subject{request_id}@example.org"


def add_identifiers(engine: sa.Engine) -> None:
    """One identifying email per request with its lookup hash, then analyze again. The emails
    are already in normal form, so the hash is the HMAC of `email:<address>` (checked below
    against IdentifierLookup, which validates each address: too slow for a million)."""
    def digest(request_id: int) -> str:
        return hmac.new(KEY, f"email:{email(request_id)}".encode(), hashlib.sha256).hexdigest()

    expected = IdentifierLookup(KEY).digest(Identifier(IdentifierKind.EMAIL, email(1)))
    if digest(1) != expected:
        raise AssertionError("the bench's lookup hash differs from services.lookup's")
    with engine.begin() as conn:
        ids = iter(conn.execute(sa.select(DsrRequest.id).order_by(DsrRequest.id)).scalars().all())
        while chunk := list(itertools.islice(ids, CHUNK)):
            conn.execute(sa.insert(SubjectIdentifier), [
                {"request_id": n, "kind": IdentifierKind.EMAIL,
                 "purpose": IdentifierPurpose.IDENTIFIES, "value": email(n), "system": None,
                 "lookup": digest(n)} for n in chunk])
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")


# The floors: hand-written SQL, with the open statuses as literals (as IS_OPEN writes them).
COLUMNS = list(DsrRequest.__table__.c)  # a page's: all of them, as the ORM reads
CSV_COLUMNS = [DsrRequest.__table__.c[name] for name in (
    "id", "type", "jurisdiction_code", "status", "received_at", "due_on", "extended_due_on",
    "closed_at", "requester_slack_id", "simulation")]  # a CSV's: those it writes


def selected(columns: Sequence[sa.Column]) -> str:
    return ", ".join(c.name for c in columns)  # in this order: text columns match by position


TOTAL = sa.column("total", sa.Integer)
GROUP = sa.column("grp", sa.Integer)
OPEN = f"status IN {OPEN_STATUSES}"
DUE = "coalesce(extended_due_on, due_on)"
BY_DUE, NEWEST = f"{DUE}, id", "id DESC"
PARAMS = (sa.bindparam("viewer", VIEWER), sa.bindparam("today", TODAY, type_=sa.Date),
          sa.bindparam("soon", TODAY + timedelta(days=DUE_SOON_DAYS + 1), type_=sa.Date))
# The Home's groups, in the order of handlers.home.GROUPS: (words, where, order)
HOME_FLOORS = (
    ("awaiting", "status = 'pending_approval' AND requester_slack_id <> :viewer AND id NOT IN "
                 "(SELECT request_id FROM approval WHERE approver_slack_id = :viewer)", BY_DUE),
    ("open mine", f"{OPEN} AND requester_slack_id = :viewer", NEWEST),
    ("due-soon", f"{OPEN} AND {DUE} >= :today AND {DUE} < :soon", BY_DUE),
    ("overdue", f"{OPEN} AND {DUE} < :today", BY_DUE),
)
FIND = "id IN (SELECT request_id FROM subject_identifier WHERE lookup = :lookup)"


def paged(where: str, order: str, limit: int, offset: int = 0, extra: str = "") -> str:
    return (f"SELECT {selected(COLUMNS)}, (SELECT count(*) FROM dsr_request WHERE {where}) AS total"
            f"{extra} FROM dsr_request WHERE {where} ORDER BY {order} "
            f"LIMIT {limit} OFFSET {offset}")


def home_statement() -> sa.TextClause:
    return sa.text(" UNION ALL ".join(
        f"SELECT * FROM ({paged(where, order, HOME_ROWS, extra=f', {n} AS grp')}) AS g{n}"
        for n, (_, where, order) in enumerate(HOME_FLOORS))).bindparams(*PARAMS)


def floor_rows(engine: sa.Engine, statement: sa.TextClause, *columns: sa.ColumnClause
               ) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(statement.columns(*columns)).all()


def floor_csv(rows: Sequence[sa.Row]) -> bytes:
    """requests_csv's bytes, written from plain rows."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(("reference", "type", "jurisdiction", "status", "received_at", "due_on",
                     "extended_due_on", "closed_at", "requester", "simulation"))
    for r in rows:
        writer.writerow([f"DSR-{r.id:06d}", TYPE_LABELS[r.type], r.jurisdiction_code, r.status,
                         r.received_at.isoformat(timespec="seconds"), r.due_on,
                         r.extended_due_on or "",
                         r.closed_at.isoformat(timespec="seconds") if r.closed_at else "",
                         r.requester_slack_id, "yes" if r.simulation else "no"])
    return ("\ufeff" + out.getvalue()).encode()


@dataclass
class Case:
    name: str
    ours: Callable[[], Any]
    floor: Callable[[], Any]
    same: Callable[[Any, Any], int]  # raises unless both returned the same; the rows shown
    slack: bool = True  # a Slack-facing list: the time targets apply
    lists: int = 1  # pages it reads, each paying the fixed cost (FIXED_MS)
    ours_ms: list[float] = field(default_factory=list)
    floor_ms: list[float] = field(default_factory=list)
    rows: int = 0

    def ratio(self) -> float:
        return statistics.median(self.ours_ms) / statistics.median(self.floor_ms)


def same_page(name: str) -> Callable[[RequestPage, list[sa.Row]], int]:
    def check(page: RequestPage, rows: list[sa.Row]) -> int:
        ours = ([r.id for r in page.requests], page.total)
        floor = ([r.id for r in rows], rows[0].total if rows else 0)
        if ours != floor:
            raise AssertionError(f"{name}: ours {ours}, floor {floor}")
        return len(rows)
    return check


def same_home(pages: list[RequestPage], rows: list[sa.Row]) -> int:
    for n, page in enumerate(pages):
        same_page(f"Home group {GROUPS[n][1]!r}")(page, [r for r in rows if r.grp == n])
    return len(rows)


def same_bytes(ours: bytes, floor: bytes) -> int:
    if ours != floor:
        raise AssertionError("the CSVs differ")
    return ours.count(b"\n") - 1


def cases(engine: sa.Engine, count: int) -> list[Case]:
    sessions = make_session_factory(engine)
    policy = Policy(requesters=frozenset({VIEWER}), approvers=frozenset({VIEWER}),
                    managers=frozenset())
    service = RequestService(sessions, lambda _system, _simulation: object(), policy,
                             FixedClock(NOW), ZONE, lookup=IdentifierLookup(KEY))
    deps = Deps(service=service, approvals_channel="C0DSRAPPROVALS", systems=[],
                live_systems=set(), jurisdictions=list, wake_worker=lambda: None,
                deliverables=None, data_map=None)  # type: ignore[arg-type] - lists use neither
    total = page_of(deps, VIEWER, "open").total
    last = max(0, (total - 1) // PAGE_SIZE * PAGE_SIZE)
    wanted = count // 2 + 1
    lookup = IdentifierLookup(KEY).digests_of(email(wanted))[0]

    def home() -> list[RequestPage]:  # what handlers.home.publish_home reads
        return [service.page(parse_filters(words, VIEWER, deps), viewer=VIEWER, limit=HOME_ROWS)
                for _, words in GROUPS]

    def find() -> RequestPage:  # handlers.commands._find
        digests = service.subject_lookups(email(wanted))
        page = page_of(deps, VIEWER, " ".join(f"subject:{d}" for d in digests))
        if [r.id for r in page.requests] != [wanted] or page.total != 1:
            raise AssertionError(f"/dsr find {email(wanted)} found {page.total}, not DSR-{wanted}")
        return page

    def ours_csv(words: str) -> Callable[[], bytes]:  # handlers.lists.send_csv
        return lambda: requests_csv(service.each(parse_filters(words, VIEWER, deps),
                                                 viewer=VIEWER))

    def floor_page(where: str, order: str, offset: int = 0,
                   *binds: sa.BindParameter) -> Callable[[], list[sa.Row]]:
        statement = sa.text(paged(where, order, PAGE_SIZE, offset))
        return lambda: floor_rows(engine, statement.bindparams(*binds), *COLUMNS, TOTAL)

    def floor_csv_of(where: str, order: str, *binds: sa.BindParameter) -> Callable[[], bytes]:
        statement = sa.text(f"SELECT {selected(CSV_COLUMNS)} FROM dsr_request WHERE {where} "
                            f"ORDER BY {order}")
        return lambda: floor_csv(floor_rows(engine, statement.bindparams(*binds), *CSV_COLUMNS))

    since = sa.bindparam("since", datetime.combine(YEAR_AGO, datetime.min.time(), tzinfo=ZONE),
                         type_=DsrRequest.__table__.c.received_at.type)
    home_floor = home_statement()
    return [
        Case(f"Home: 4 groups of {HOME_ROWS}", home,
             lambda: floor_rows(engine, home_floor, *COLUMNS, TOTAL, GROUP), same_home,
             lists=len(GROUPS)),
        Case("/dsr list open, page 1", lambda: page_of(deps, VIEWER, "open"),
             floor_page(OPEN, NEWEST), same_page("open, page 1")),
        Case(f"/dsr list open, page {last // PAGE_SIZE + 1}",
             lambda: page_of(deps, VIEWER, "open", last),
             floor_page(OPEN, NEWEST, last), same_page("open, last page")),
        Case("/dsr find <email>", find,
             floor_page(FIND, NEWEST, 0, sa.bindparam("lookup", lookup)), same_page("find")),
        Case("/dsr list overdue csv", ours_csv("overdue"),
             floor_csv_of(f"{OPEN} AND {DUE} < :today", BY_DUE, PARAMS[1]), same_bytes,
             slack=False),
        Case(f"/dsr list {YEAR_WORDS} csv", ours_csv(YEAR_WORDS),
             floor_csv_of(f"status = '{RequestStatus.COMPLETED.value}' AND received_at >= :since",
                          NEWEST, since), same_bytes, slack=False),
    ]


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    """(milliseconds the call took, what it returned)"""
    started = time.perf_counter()
    result = call()
    return 1000 * (time.perf_counter() - started), result


def measure(url: str, count: int, rounds: int) -> dict[str, Any]:
    engine = make_engine(url)
    began = time.perf_counter()
    fill(engine, request_rows(count, random.Random(count)))
    add_identifiers(engine)
    filled = time.perf_counter() - began
    measured = cases(engine, count)
    for case in measured:  # untimed: warms caches, checks both return the same
        case.rows = case.same(case.ours(), case.floor())
    for _ in range(rounds):
        for case in measured:
            ms, ours = timed(case.ours)
            case.ours_ms.append(ms)
            ms, floor = timed(case.floor)
            case.floor_ms.append(ms)
            case.same(ours, floor)
    figures = {"requests": count, "fill_s": filled, "shape": shape(engine), "cases": measured}
    engine.dispose()
    return figures


def spread(ms: list[float]) -> str:
    return f"{min(ms):.1f}/{statistics.median(ms):.1f}/{max(ms):.1f}"


def per_thousand(case: Case) -> float:
    return 1000 * statistics.median(case.ours_ms) / max(case.rows, 1)


def report(backend: str, results: list[dict[str, Any]]) -> list[str]:
    """Prints the figures and the targets; returns the targets missed."""
    missed = []
    for r in results:
        print(f"\n{backend}, {r['requests']:,} requests (filled in {r['fill_s']:.0f} s): {r['shape']}")
        print(f"  {'':<44} {'rows':>7} {'ours ms min/med/max':>22} {'floor ms min/med/max':>22} "
              f"{'ratio':>6} {'ms/1k rows':>10}")
        for case in r["cases"]:
            print(f"  {case.name:<44} {case.rows:>7,} {spread(case.ours_ms):>22} "
                  f"{spread(case.floor_ms):>22} {case.ratio():>6.2f} "
                  f"{'' if case.slack else format(per_thousand(case), '.2f'):>10}")
        for case in (c for c in r["cases"] if c.slack and r["requests"] >= LIST_TARGET_AT):
            where = f"{case.name} at {r['requests']:,}"
            median = statistics.median(case.ours_ms)
            if r["requests"] == LIST_TARGET_AT and median >= LIST_TARGET_MS:
                missed.append(f"{where}: median {median:.1f} ms, not under {LIST_TARGET_MS} ms")
            above = median - statistics.median(case.floor_ms)
            if case.ratio() > FLOOR_TARGET and above > FIXED_MS * case.lists:
                missed.append(f"{where}: {case.ratio():.2f}x its floor ({above:.1f} ms above "
                              f"it), not within {FLOOR_TARGET}x or {FIXED_MS * case.lists:.0f} ms")
    for small, large in itertools.pairwise(results):
        for before, after in zip(small["cases"], large["cases"], strict=True):
            if not before.slack and per_thousand(after) > LINEAR * per_thousand(before):
                missed.append(f"{after.name}: {per_thousand(after):.2f} ms per 1,000 rows at "
                              f"{large['requests']:,}, over {LINEAR}x the "
                              f"{per_thousand(before):.2f} at {small['requests']:,}")
    print(f"\n  targets: Slack-facing lists under {LIST_TARGET_MS} ms median at "
          f"{LIST_TARGET_AT:,} requests and within {FLOOR_TARGET}x (or {FIXED_MS:.0f} ms) of their "
          "floor from then on; "
          f"CSV ms per 1,000 rows at most {LINEAR}x at the next size"
          f"{'' if len(results) > 1 else ' (not checked: give two sizes)'}: "
          f"{'hold' if not missed else 'MISSED'}")
    for line in missed:
        print(f"  MISSED: {line}")
    return missed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, nargs="+", default=[10_000, LIST_TARGET_AT],
                        help="sizes, each filled into its own database (1000000 for a million)")
    parser.add_argument("--database-url", default="",
                        help="an empty PostgreSQL database to use instead of SQLite files")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds of each operation")
    args = parser.parse_args()
    backend = "PostgreSQL" if args.database_url else "SQLite"
    print(f"Request lists, {backend}, {args.rounds} rounds each; viewer {VIEWER} (a requester "
          f"and approver), today {TODAY}")
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
