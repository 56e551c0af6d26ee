"""The work after each Slack acknowledgement, written down before the ack returns.

bolt runs a listener's `lazy=[...]` functions after its ack, through a `LazyListenerRunner`.
`Inbox` is ours. Its `start`, which bolt calls before the listener's response is returned (we
run with process_before_response=True: see slack_bolt/listener/thread_runner.py), INSERTs the
request into the `inbox` table in one short transaction and rings a doorbell. The process that
runs the jobs (HTTP mode: the background process; Socket Mode and `jobs serve`: the same process)
claims rows with a lease (`serve`), dispatches each through bolt as a lazy-only request, and
deletes it once done. So no process's death loses the work: a row whose claimer died is taken
over when its lease ends, or at once by the claimer's replacement, which has the same stable id
(bot.identity) and releases its rows as it starts.

Work runs at least once: a process that dies after the work and before deleting its row has it
done again. The lazy functions bear that (a decision or an intake is recorded once; a repeated
search shows the same modal again). A row whose run keeps failing is dropped after MAX_ATTEMPTS
with a log line naming the function, never the body: it holds what people typed.

Where the rows live (`inbox_url`): PostgreSQL, the database's `inbox` table (an INSERT takes a
row lock only). SQLite, a file of its own beside the database: SQLite lets one transaction write
at a time, and an ack's INSERT waited behind the background process's work (approvals, steps,
from a niced process the acking ones preempt while it holds the lock): 20 clients clicking Approve
saw a p99 of 670 ms (bench.slack_ack). Rows left in the database's table by an older version are
moved to the file when the inbox is served.

Rows are dispatched with mode="socket_mode", which tells bolt not to check the signature again:
the process that wrote the row did, and a row may wait past the signature's 5-minute window.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from slack_bolt import App, BoltRequest
from slack_bolt.kwargs_injection import build_required_kwargs
from slack_bolt.lazy_listener import LazyListenerRunner
from slack_bolt.listener.thread_runner import ThreadListenerRunner
from slack_bolt.util.utils import get_arg_names_of_callable, get_name_for_callable
from sqlmodel import select

from handlers.deps import AFTER_ACK
from handlers.edge import place
from storage.db import (
    SessionFactory,
    make_engine,
    make_session_factory,
    single_statements,
    sqlite_file,
    transaction,
)
from storage.models import InboxItem
from storage.types import utcnow

log = logging.getLogger("dsr_desk.inbox")
# A claim lasts this long, renewed every RENEW_SECONDS while its work runs: a process that died
# holding rows loses them after at most this (at once if it is restarted: `recover`).
LEASE_SECONDS = 60.0
RENEW_SECONDS = 15.0
# Rows nobody rang for (written by another replica) or whose lease ended are found this often.
POLL_SECONDS = 1.0
MAX_ATTEMPTS = 3
RETRY_SECONDS = 5.0  # after a failed attempt, times its number
OUTCOME = "dsr_inbox_outcome"  # `run` leaves None or the exception here, in the request's context


def inbox_url(database_url: str) -> str:
    """The database that holds the inbox (see the module docstring)."""
    if (path := sqlite_file(database_url)) is None:
        return database_url
    return sa.make_url(database_url).set(database=str(path.with_name(
        f"{path.stem}.inbox{path.suffix}"))).render_as_string(hide_password=False)


def open_inbox(database: SessionFactory) -> SessionFactory:
    """The sessions of the inbox's database (made at once if it is a file of its own) for the
    app whose `database` sessions are given."""
    url = database.kw["bind"].url.render_as_string(hide_password=False)
    if (own_url := inbox_url(url)) == url:
        return database
    own = make_engine(own_url)
    with own.begin() as connection:  # idempotent, so racing processes may all run it
        table = InboxItem.__table__
        connection.execute(sa.schema.CreateTable(table, if_not_exists=True))
        for index in table.indexes:
            connection.execute(sa.schema.CreateIndex(index, if_not_exists=True))
    return make_session_factory(own)


@dataclass(frozen=True)
class Claimed:
    id: int
    function: str
    body: str
    headers: str
    handed: str | None
    attempts: int


class Inbox(LazyListenerRunner):
    """bolt's lazy listener runner: `start` writes the row (in any process); `serve` runs the rows
    (in the process that runs the jobs), at most `capacity` at once on `executor`."""

    def __init__(self, sessions: SessionFactory, app: App, executor: Executor, *, owner: str,
                 capacity: int, lease_seconds: float = LEASE_SECONDS,
                 database: SessionFactory | None = None) -> None:
        self.sessions = sessions  # where the rows are (`open_inbox`)
        self.database = database  # the app's, when the rows are elsewhere: older rows move over
        self.engine: sa.Engine = sessions.kw["bind"]
        self.app = app
        self.logger = app.logger  # what bolt hands a lazy function as `logger`
        self.executor = executor
        self.owner = owner
        self.capacity = capacity
        self.lease = timedelta(seconds=lease_seconds)
        self.ring: Callable[[], None] = self.wake  # HTTP mode's workers ring the background process
        self._bell = threading.Event()
        self._stopping = threading.Event()
        self._running: set[int] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # bolt's side, in the process that acks

    def start(self, function: Callable[..., None], request: BoltRequest) -> None:
        """Writes the work down (bolt's call, with its copy of the request)."""
        self.write(request.lazy_function_name, request)

    def write(self, function: str, request: BoltRequest) -> None:
        """Writes the work down: one short transaction, before bolt returns the ack."""
        handed = request.context.get(AFTER_ACK)
        row = {"function": function, "body": json.dumps(request.body),
               "headers": json.dumps(request.headers), "received_at": utcnow(),
               "handed": None if handed is None else json.dumps(handed)}
        with single_statements(self.engine) as connection:  # one INSERT, no ORM in an ack
            connection.execute(sa.insert(InboxItem), row)
        self.ring()

    def run(self, function: Callable[..., None], request: BoltRequest) -> None:
        """Runs `function` (bolt calls this for a lazy-only request). Unlike bolt's runner, it
        logs no exception message (it may quote personal data), and tells `run_item` the outcome."""
        try:
            function(**build_required_kwargs(
                logger=self.logger, required_arg_names=get_arg_names_of_callable(function),
                request=request, response=None, this_func=function))
        except Exception as exc:  # noqa: BLE001 - retried or dropped by run_item
            log.error("work after an ack (%s) failed with %s at %s", request.lazy_function_name,
                      type(exc).__name__, place(exc))
            request.context[OUTCOME] = exc
        else:
            request.context[OUTCOME] = None

    # The runner's side, in the process that runs the jobs

    def serve(self) -> None:
        """Runs the inbox from now until `stop`, starting with the rows this worker id held in
        an earlier life."""
        if moved := self.move_older_rows():
            log.warning("moved %d piece(s) of work after acks to the inbox's own file", moved)
        if recovered := self.recover():
            log.warning("resumed %d piece(s) of work after acks left by a crash of this worker",
                        recovered)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._serve, name="dsr-inbox", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._bell.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Claims no more (what runs finishes on the executor)."""
        self._stopping.set()
        self._bell.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def move_older_rows(self) -> int:
        """Moves the rows an older version left in the database's table (SQLite: see the module
        docstring); written here before they are deleted there, so a crash in between runs
        their work twice at worst (at least once, as any row)."""
        if self.database is None or self.database is self.sessions:
            return 0
        with self.database() as session:
            rows = session.exec(select(InboxItem).order_by(InboxItem.id)).all()
        if not rows:
            return 0
        moved = [{"function": r.function, "body": r.body, "headers": r.headers, "handed": r.handed,
                  "received_at": r.received_at, "attempts": r.attempts} for r in rows]
        with self.engine.begin() as connection:
            connection.execute(sa.insert(InboxItem), moved)
        with transaction(self.database) as session:
            session.execute(sa.delete(InboxItem).where(InboxItem.id.in_([r.id for r in rows])))
        return len(rows)

    def recover(self) -> int:
        """Releases the rows this worker id still holds: its earlier life died holding them."""
        with transaction(self.sessions) as session:
            return session.execute(
                sa.update(InboxItem).where(InboxItem.claimed_by == self.owner)
                .values(claimed_by=None, claimed_until=None)
                .execution_options(synchronize_session=False)).rowcount

    def claim(self, limit: int) -> list[Claimed]:
        """Takes up to `limit` rows nobody holds (or whose lease ended). A row claimed more than
        MAX_ATTEMPTS times (its process died during each) is dropped instead."""
        if limit <= 0:
            return []
        now = utcnow()
        free = sa.or_(InboxItem.claimed_until.is_(None), InboxItem.claimed_until < now)
        oldest = sa.select(InboxItem.id).where(free).order_by(InboxItem.id).limit(limit)
        if self.engine.dialect.name == "postgresql":
            oldest = oldest.with_for_update(skip_locked=True)
        # One statement, so that the acks' INSERTs never wait while this process (niced) runs
        # Python between statements holding SQLite's write lock.
        take = (sa.update(InboxItem).where(InboxItem.id.in_(oldest.scalar_subquery()), free)
                .values(claimed_by=self.owner, claimed_until=now + self.lease,
                        attempts=InboxItem.attempts + 1)
                .returning(InboxItem.id, InboxItem.function, InboxItem.body, InboxItem.headers,
                           InboxItem.handed, InboxItem.attempts))
        with single_statements(self.engine) as connection:
            taken = sorted(connection.execute(take).all())
        claimed: list[Claimed] = []
        for row in taken:
            if row.attempts > MAX_ATTEMPTS:
                self._drop(row.id, row.function,
                           f"its process stopped during each of {MAX_ATTEMPTS} attempts")
            else:
                claimed.append(Claimed(row.id, row.function, row.body, row.headers, row.handed,
                                       row.attempts))
        return claimed

    def run_item(self, item: Claimed) -> bool:
        """Dispatches a claimed row through bolt; deletes it once done (or dropped), else leaves
        it for a retry. Returns whether it was done."""
        headers = json.loads(item.headers) | {"x-slack-bolt-lazy-only": ["1"],
                                              "x-slack-bolt-lazy-function-name": [item.function]}
        handed = {AFTER_ACK: json.loads(item.handed)} if item.handed is not None else None
        request = BoltRequest(body=json.loads(item.body), headers=headers, context=handed,
                              mode="socket_mode")
        response = self.app.dispatch(request)
        failure: Any = request.context.get(OUTCOME, f"not run (HTTP {response.status})")
        mine = sa.and_(InboxItem.id == item.id, InboxItem.claimed_by == self.owner)
        if failure is None:  # deleted unless another runner took it over: that one settles it
            with single_statements(self.engine) as connection:
                connection.execute(sa.delete(InboxItem).where(mine))
            return True
        reason = failure if isinstance(failure, str) else type(failure).__name__
        if item.attempts >= MAX_ATTEMPTS:
            self._drop(item.id, item.function, reason)
            return False
        with single_statements(self.engine) as connection:
            retried = connection.execute(sa.update(InboxItem).where(mine).values(
                claimed_until=utcnow() + timedelta(seconds=RETRY_SECONDS * item.attempts))).rowcount
        if retried:
            log.warning("inbox item %d (%s): attempt %d of %d failed (%s); retried later",
                        item.id, item.function, item.attempts, MAX_ATTEMPTS, reason)
        return False

    def _drop(self, item_id: int, function: str, reason: str) -> None:
        """Deletes a row this runner holds, with an audit-friendly line: which work, when it
        came, why it is given up; never its body."""
        with single_statements(self.engine) as connection:
            dropped = connection.execute(
                sa.delete(InboxItem).where(InboxItem.id == item_id, InboxItem.claimed_by == self.owner)
                .returning(InboxItem.received_at, InboxItem.attempts)).first()
        if dropped is not None:
            log.error("inbox item %d (%s, received %s) dropped after %d attempt(s): %s", item_id,
                      function, dropped.received_at.isoformat(timespec="seconds"),
                      min(dropped.attempts, MAX_ATTEMPTS), reason)

    def _serve(self) -> None:
        renewed = time.monotonic()
        while not self._stopping.is_set():
            self._bell.clear()  # before claiming: a ring during the claim is not lost
            try:
                with self._lock:
                    free = self.capacity - len(self._running)
                for item in self.claim(free):
                    with self._lock:
                        self._running.add(item.id)
                    self.executor.submit(self._run_and_free, item)
                if time.monotonic() - renewed >= RENEW_SECONDS:
                    self._renew()
                    renewed = time.monotonic()
            except Exception as exc:  # noqa: BLE001 - the database may be back at the next tick
                log.warning("the inbox could not be read: %s", type(exc).__name__)
            self._bell.wait(POLL_SECONDS)

    def _run_and_free(self, item: Claimed) -> None:
        try:
            self.run_item(item)
        except Exception as exc:  # noqa: BLE001 - its lease ends and it is run again
            log.error("inbox item %d (%s) could not be settled: %s", item.id, item.function,
                      type(exc).__name__)
        finally:
            with self._lock:
                self._running.discard(item.id)
            self._bell.set()  # a slot is free

    def _renew(self) -> None:
        with self._lock:
            running = list(self._running)
        if running:
            with transaction(self.sessions) as session:
                session.execute(
                    sa.update(InboxItem)
                    .where(InboxItem.id.in_(running), InboxItem.claimed_by == self.owner)
                    .values(claimed_until=utcnow() + self.lease)
                    .execution_options(synchronize_session=False))


class WritesLazyWork(ThreadListenerRunner):
    """bolt's listener runner, without the deep copy of each request it makes for a lazy
    listener (a thread of its own would read it later): the inbox writes the request down before
    the ack returns, from the original, so nothing needs the copy (it was a third of a click's
    acknowledgement)."""

    def _start_lazy_function(self, lazy_func: Callable[..., None], request: BoltRequest) -> None:
        self.lazy_listener_runner.write(get_name_for_callable(lazy_func), request)


def run_lazy_work_from(inbox: Inbox) -> None:
    """Makes `inbox.app` write the work after its acks to `inbox`, without bolt's copies."""
    runner = inbox.app.listener_runner
    runner.lazy_listener_runner = inbox
    runner.__class__ = WritesLazyWork  # the same runner, with the one method above replaced
