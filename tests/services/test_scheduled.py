"""The scheduled jobs' work, driven by a hand-moved clock on both databases: reminders at each
offset exactly once, acknowledgement reminders, overdue escalation, the digest's figures,
retention, send-once claims and the batched status updates."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet, MultiFernet
from sqlmodel import select

from services import notify
from services.export_store import DatabaseStore, FolderStore
from services.exports import SealedSink
from services.lifecycle import transition
from services.notify import Event, RecordingNotifier
from services.scheduled import deliverables, digest, dispatch, reminders, retention
from services.vocabulary import RequestStatus, RequestType
from storage.db import transaction
from storage.models import (
    IS_OPEN,
    IS_UNACKNOWLEDGED,
    AuditEvent,
    Dispatch,
    DsrRequest,
    Notice,
    RequestSystem,
    SubjectIdentifier,
)
from storage.queries import EFFECTIVE_DUE
from tests.conftest import ManualClock
from tests.factories import add_request

S = RequestStatus
UTC_ZONE = ZoneInfo("UTC")
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)  # a Monday


def make(session_factory, at: datetime, *statuses: RequestStatus, **overrides) -> int:
    """A request received at `at`, moved through `statuses` at the same time."""
    with transaction(session_factory) as session:
        request = add_request(session, at, **overrides)
        for status in statuses:
            transition(session, request, status, actor="U_APPROVER", at=at)
        return request.id


def mark_recorded(session_factory, *request_ids: int) -> None:
    """As the deliverables job does once a closed request's record is made."""
    with transaction(session_factory) as session:
        session.execute(sa.update(DsrRequest).where(DsrRequest.id.in_(request_ids))
                        .values(recorded_at=DsrRequest.closed_at))


def move(session_factory, request_id: int, at: datetime, *statuses: RequestStatus) -> None:
    with transaction(session_factory) as session:
        request = session.get(DsrRequest, request_id)
        for status in statuses:
            transition(session, request, status, actor="dsr-desk", at=at)


def set_due(session_factory, request_id: int, due_on: date) -> None:
    with transaction(session_factory) as session:
        session.execute(sa.update(DsrRequest).where(DsrRequest.id == request_id)
                        .values(due_on=due_on))


class Sweeper:
    def __init__(self, session_factory, clock, offsets=(7, 3, 1), ack_days=2, owner="replica-1"):
        self.sessions, self.clock, self.offsets, self.ack_days = session_factory, clock, offsets, ack_days
        self.owner = owner
        self.sent: list[Event] = []

    def __call__(self) -> int:
        return reminders.sweep(self.sessions, self.sent.append, today=self.clock.now().date(),
                               offsets=self.offsets, ack_days=self.ack_days, owner=self.owner,
                               now=self.clock.now())


# Reminders


def test_each_offset_reminds_exactly_once_as_the_deadline_nears(session_factory) -> None:
    clock = ManualClock(T0)
    request_id = make(session_factory, T0, S.PENDING_APPROVAL)
    set_due(session_factory, request_id, date(2026, 3, 12))  # 10 days away
    sweep = Sweeper(session_factory, clock)
    days_left_when_sent = []
    for _ in range(12):  # every day until past the deadline, four sweeps a day
        for _ in range(4):
            before = len(sweep.sent)
            sweep()
            if len(sweep.sent) > before:
                days_left_when_sent.append((date(2026, 3, 12) - clock.now().date()).days)
            clock.advance(hours=6)
    assert days_left_when_sent == [7, 3, 1]
    assert [e.kind for e in sweep.sent] == ["reminder.due"] * 3
    assert sweep.sent[0].text == ("DSR-000001 (access, GDPR) is due in 7 days, on Thu 12 Mar 2026. "
                                  "Status: pending approval.")
    assert sweep.sent[2].text.startswith("DSR-000001 (access, GDPR) is due in 1 day, on ")
    with session_factory() as session:
        keys = sorted(session.exec(select(Dispatch.key)))
    assert keys == ["due:1d:DSR-000001", "due:3d:DSR-000001", "due:7d:DSR-000001"]


def test_a_sweep_after_missed_days_sends_one_late_reminder_not_a_burst(session_factory) -> None:
    clock = ManualClock(T0)
    request_id = make(session_factory, T0, S.PENDING_APPROVAL)
    set_due(session_factory, request_id, T0.date() + timedelta(days=2))  # the bot was down
    sweep = Sweeper(session_factory, clock)
    assert sweep() == 1
    assert sweep.sent[0].text.startswith("DSR-000001 (access, GDPR) is due in 2 days")
    assert sweep() == 0
    clock.advance(days=1)
    assert sweep() == 1  # the 1-day reminder still comes


def test_finished_and_far_off_requests_get_no_reminder(session_factory) -> None:
    clock = ManualClock(T0)
    done = make(session_factory, T0, S.PENDING_APPROVAL, S.APPROVED, S.IN_PROGRESS, S.COMPLETED)
    canceled = make(session_factory, T0, S.CANCELED)
    far = make(session_factory, T0, S.PENDING_APPROVAL)
    overdue = make(session_factory, T0, S.PENDING_APPROVAL)
    for request_id in (done, canceled):
        set_due(session_factory, request_id, T0.date() + timedelta(days=1))
    set_due(session_factory, far, T0.date() + timedelta(days=8))
    set_due(session_factory, overdue, T0.date() - timedelta(days=1))
    assert Sweeper(session_factory, clock)() == 0


def test_an_extended_deadline_counts(session_factory) -> None:
    clock = ManualClock(T0)
    request_id = make(session_factory, T0, S.PENDING_APPROVAL)
    set_due(session_factory, request_id, T0.date() + timedelta(days=3))
    with transaction(session_factory) as session:
        session.execute(sa.update(DsrRequest).values(extended_due_on=T0.date() + timedelta(days=40)))
    assert Sweeper(session_factory, clock)() == 0


def test_acknowledgement_reminder_until_receipt_is_confirmed(session_factory) -> None:
    clock = ManualClock(T0)
    ccpa = make(session_factory, T0, S.PENDING_APPROVAL, jurisdiction="CCPA")
    acknowledged = make(session_factory, T0, S.PENDING_APPROVAL, jurisdiction="CCPA")
    with transaction(session_factory) as session:
        ack_due = session.get(DsrRequest, ccpa).ack_due_on
        session.execute(sa.update(DsrRequest).where(DsrRequest.id == acknowledged)
                        .values(acknowledged_at=T0))
    assert ack_due == date(2026, 3, 16)  # 10 business days
    sweep = Sweeper(session_factory, clock, ack_days=2)
    sent_on = []
    for _ in range(16):
        if sweep():
            sent_on.append(clock.now().date())
        clock.advance(days=1)
    assert sent_on == [date(2026, 3, 14)]  # two days before, once
    ack = [e for e in sweep.sent if e.kind == "reminder.ack"]
    assert [e.reference for e in ack] == ["DSR-000001"]
    assert ack[0].text == ("DSR-000001 (access, CCPA): confirm receipt to the subject by "
                           "Mon 16 Mar 2026, then record it with `/dsr ack DSR-000001`.")


def test_racing_replicas_send_each_reminder_once(session_factory) -> None:
    clock = ManualClock(T0)
    for n in range(12):
        request_id = make(session_factory, T0, S.PENDING_APPROVAL)
        set_due(session_factory, request_id, T0.date() + timedelta(days=n % 8))
    sweepers = [Sweeper(session_factory, clock, owner=f"replica-{n}") for n in range(4)]
    threads = [threading.Thread(target=s) for s in sweepers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sent = [e.reference for s in sweepers for e in s.sent]
    assert len(sent) == len(set(sent)) == 12


def test_reminders_are_read_in_batches_each_sent_once(session_factory, monkeypatch) -> None:
    """More owed than a batch, a request owing two kinds across a batch's end: each sent once."""
    monkeypatch.setattr(reminders, "BATCH", 3)
    clock = ManualClock(T0)
    ids = [make(session_factory, T0, S.PENDING_APPROVAL, jurisdiction="CCPA") for _ in range(4)]
    with transaction(session_factory) as session:
        session.execute(sa.update(DsrRequest).values(due_on=T0.date() + timedelta(days=2),
                                                     ack_due_on=T0.date() + timedelta(days=1)))
    sweep = Sweeper(session_factory, clock)
    assert sweep() == 8
    assert sorted((e.kind, e.request_id) for e in sweep.sent) == sorted(
        (kind, request_id) for request_id in ids for kind in ("reminder.ack", "reminder.due"))
    assert sweep() == 0


def test_one_offset_reminds_once(session_factory) -> None:
    clock = ManualClock(T0)
    request_id = make(session_factory, T0, S.PENDING_APPROVAL)
    set_due(session_factory, request_id, T0.date() + timedelta(days=2))
    sweep = Sweeper(session_factory, clock, offsets=(5,))
    assert sweep() == 1
    clock.advance(days=1)
    assert sweep() == 0
    with session_factory() as session:
        assert session.exec(select(Dispatch.key)).all() == ["due:5d:DSR-000001"]


# Send-once claims


def test_a_failed_send_is_released_and_retried(session_factory) -> None:
    calls = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("slack down")

    assert not dispatch.once(session_factory, "digest:C1:2026-03-02", flaky, owner="a", now=T0)
    assert dispatch.once(session_factory, "digest:C1:2026-03-02", flaky, owner="a", now=T0)
    assert not dispatch.once(session_factory, "digest:C1:2026-03-02", flaky, owner="b", now=T0)
    assert len(calls) == 2


def test_a_claim_left_by_a_dead_process_expires(session_factory) -> None:
    with transaction(session_factory) as session:
        session.add(Dispatch(key="digest:C1:2026-03-02", claimed_by="dead", claimed_at=T0))
    sent = []
    assert not dispatch.once(session_factory, "digest:C1:2026-03-02", lambda: sent.append(1),
                             owner="b", now=T0 + timedelta(minutes=5))
    assert dispatch.once(session_factory, "digest:C1:2026-03-02", lambda: sent.append(1),
                         owner="b", now=T0 + dispatch.LEASE + timedelta(seconds=1))
    assert sent == [1]


def test_a_reminder_whose_sender_died_mid_send_is_sent_by_a_later_sweep(session_factory) -> None:
    """The sweep leaves out sent reminders and live claims only: a claim older than the lease
    (its process died between claiming and sending) is taken over, so the reminder is not lost."""
    clock = ManualClock(T0)
    request_id = make(session_factory, T0, S.PENDING_APPROVAL)
    set_due(session_factory, request_id, T0.date() + timedelta(days=3))
    with transaction(session_factory) as session:
        session.add(Dispatch(key="due:3d:DSR-000001", request_id=request_id, claimed_by="dead",
                             claimed_at=T0))
    sweep = Sweeper(session_factory, clock)
    assert sweep() == 0  # the claim is live: its process may still be sending
    clock.advance(minutes=dispatch.LEASE.total_seconds() / 60 + 1)
    assert sweep() == 1 and sweep.sent[0].text.startswith("DSR-000001 (access, GDPR) is due in 3 days")
    assert sweep() == 0  # sent now: never again
    with session_factory() as session:
        claim = session.exec(select(Dispatch)).one()
    assert (claim.claimed_by, claim.sent_at) == ("replica-1", clock.now())


# Escalation


def test_overdue_lists_the_most_overdue_first(session_factory) -> None:
    for days_over, status in ((3, (S.PENDING_APPROVAL,)), (10, (S.PENDING_APPROVAL, S.APPROVED)),
                              (1, (S.CANCELED,))):
        request_id = make(session_factory, T0, *status, type=RequestType.ERASURE)
        set_due(session_factory, request_id, T0.date() - timedelta(days=days_over))
    with session_factory() as session:
        count, rows = reminders.overdue(session, today=T0.date())
    assert count == 2
    assert [(r.reference, r.days_overdue, r.status, r.type) for r in rows] == [
        ("DSR-000002", 10, "approved", "erasure"), ("DSR-000001", 3, "pending approval", "erasure")]


# Digest


def test_digest_figures_for_a_prepared_data_set(session_factory) -> None:
    now = datetime(2026, 3, 31, 9, 0, tzinfo=UTC)
    day = timedelta(days=1)
    # Completed in the window, with times to complete 2, 4, 6, 8 and 40 days; one after its deadline.
    for n, days in enumerate((2, 4, 6, 8, 40)):
        received = now - timedelta(days=days + n)
        request_id = make(session_factory, received, S.PENDING_APPROVAL, S.APPROVED, S.IN_PROGRESS)
        move(session_factory, request_id, received + timedelta(days=days), S.COMPLETED)
    # Completed 40 days ago: outside every window.
    old = make(session_factory, now - 60 * day, S.PENDING_APPROVAL, S.APPROVED, S.IN_PROGRESS)
    move(session_factory, old, now - 40 * day, S.COMPLETED)
    # Open: two pending (one for three days), one in progress due in 5 days, one overdue.
    pending_old = make(session_factory, now - 3 * day, S.PENDING_APPROVAL)
    make(session_factory, now - timedelta(hours=5), S.PENDING_APPROVAL, type=RequestType.ERASURE)
    soon = make(session_factory, now - 20 * day, S.PENDING_APPROVAL, S.APPROVED, S.IN_PROGRESS)
    set_due(session_factory, soon, now.date() + 5 * day)
    late = make(session_factory, now - 50 * day, S.PENDING_APPROVAL, S.APPROVED, S.IN_PROGRESS,
                S.NEEDS_ATTENTION)
    set_due(session_factory, late, now.date() - 2 * day)

    with session_factory() as session:
        figures = digest.build(session, now=now, zone=UTC_ZONE)
    assert figures.day == date(2026, 3, 31)
    assert figures.open_counts == {("pending_approval", "access"): 1, ("pending_approval", "erasure"): 1,
                                   ("in_progress", "access"): 1, ("needs_attention", "access"): 1}
    assert figures.open_total == 4
    assert figures.due_next_7_days == 1
    assert figures.overdue == 1
    # completed just now (the 2-day one) and exactly 24 hours ago (the 4-day one)
    assert figures.completed_last_24h == 2
    assert figures.completed_30_days == 5
    assert figures.median_days == 6.0
    assert figures.p90_days == 40.0  # nearest rank: the 5th of 5
    # GDPR gives one month: the 40-day one missed its deadline, and the open overdue one counts
    # against the share too: 4 on time of 5 completed + 1 overdue.
    assert (figures.completed_on_time, figures.on_time_base) == (4, 6)
    assert figures.on_time_share == pytest.approx(4 / 6)
    assert [ref for ref, _ in figures.awaiting_approval] == [f"DSR-{pending_old:06d}"]
    assert figures.awaiting_approval[0][1] == 3.0
    assert len(figures.series) == 30 and figures.series[-1].day == now.date()
    assert sum(d.completed for d in figures.series) == 5
    assert sum(d.on_time for d in figures.series) == 4
    # received in the window: the five completed but the 40-day one, two pending, the 20-day one
    assert sum(d.opened for d in figures.series) == 4 + 2 + 1
    # The backlog: open at the end of each day, as counted from the requests themselves.
    with session_factory() as session:
        spans = [(r.received_at, r.closed_at) for r in session.exec(select(DsrRequest))]
    for point in figures.series:
        end = datetime.combine(point.day + day, datetime.min.time(), UTC)  # the next midnight
        assert point.backlog == sum(received < end and (closed is None or closed >= end)
                                    for received, closed in spans), point
    assert [d.backlog for d in figures.series][-6:] == [6, 5, 5, 5, 4, 4]
    # The next 14 days' deadlines, each dated: the in-progress one is due in 5 days.
    assert [d for d, _ in figures.due_soon] == [now.date() + n * day for n in range(14)]
    assert [(d, n) for d, n in figures.due_soon if n] == [(now.date() + 5 * day, 1)]


def test_the_digest_is_due_at_its_local_time() -> None:
    zone = ZoneInfo("Europe/Berlin")
    at = datetime.strptime("09:00", "%H:%M").time()
    assert digest.local_day_due(datetime(2026, 3, 2, 7, 59, tzinfo=UTC), zone, at) is None
    assert digest.local_day_due(datetime(2026, 3, 2, 8, 0, tzinfo=UTC), zone, at) == date(2026, 3, 2)


# Retention


@pytest.fixture(params=["database", "folder"])
def export_store(request, session_factory, tmp_path):
    if request.param == "folder":
        return FolderStore(tmp_path / "exports")
    return DatabaseStore(session_factory)


def test_exports_are_deleted_after_retention_and_audited(session_factory, export_store) -> None:
    """In the database store (the default, in the same database) and in a folder."""
    kept = make(session_factory, T0, S.PENDING_APPROVAL, S.APPROVED, S.IN_PROGRESS, S.COMPLETED)
    unrecorded = make(session_factory, T0, S.PENDING_APPROVAL, S.APPROVED, S.IN_PROGRESS, S.COMPLETED)
    mark_recorded(session_factory, kept)
    purged_at = T0 + timedelta(days=31)
    for request_id in (kept, unrecorded):
        with export_store.writer(f"DSR-{request_id:06d}/zendesk/user.json") as out:
            out.write(b'{"name": "Jane"}')
    crashed = export_store.writer("DSR-000001/staging/half.sealed")  # a writer that never finished
    crashed.write(b"x")
    assert retention.purge_exports(session_factory, export_store, now=T0 + timedelta(days=29),
                                   days=30) == []
    assert export_store.exists("DSR-000001/zendesk/user.json")
    assert retention.purge_exports(session_factory, export_store, now=purged_at, days=30) == [kept]
    assert list(export_store.list("DSR-000001/")) == [] and export_store.delete("DSR-000001/") == 0
    # Not before its compliance record has taken the manifest's hashes.
    assert export_store.exists("DSR-000002/zendesk/user.json")
    assert retention.purge_exports(session_factory, export_store, now=purged_at, days=30) == []
    with session_factory() as session:
        event = session.exec(select(AuditEvent).where(AuditEvent.action == "export.purged")).one()
        assert event.details == {"files": 1, "bytes": 16, "retention_days": 30}
        assert session.get(DsrRequest, kept).exports_purged_at == purged_at


def test_identifiers_of_old_closed_requests_are_reduced_to_their_masks(session_factory) -> None:
    closed = make(session_factory, T0, S.CANCELED)
    still_open = make(session_factory, T0, S.PENDING_APPROVAL)
    mark_recorded(session_factory, closed)
    with transaction(session_factory) as session:
        session.execute(sa.update(RequestSystem).values(confirmed_records=[
            {"record_id": "42", "label": "Jane Doe", "details": {"email": "jane.doe@example.com"}}]))
    assert retention.reduce_identifiers(session_factory, now=T0 + timedelta(days=89), days=90) == 0
    assert retention.reduce_identifiers(session_factory, now=T0 + timedelta(days=91), days=90) == 1
    with session_factory() as session:
        values = {(i.request_id, i.value) for i in session.exec(select(SubjectIdentifier))}
        records = {s.request_id: s.confirmed_records for s in session.exec(select(RequestSystem))}
        event = session.exec(select(AuditEvent).where(AuditEvent.action == "identifiers.reduced")).one()
    assert values == {(closed, "J*** D**"), (closed, "j***@e******.com"),
                      (still_open, "Jane Doe"), (still_open, "jane.doe@example.com")}
    assert records[closed] == [{"record_id": "42"}]
    assert records[still_open][0]["label"] == "Jane Doe"
    assert (event.request_id, event.details) == (closed, {"identifiers": 2, "retention_days": 90})


# Status updates


def test_notices_are_posted_in_one_batch_per_request_and_once(session_factory) -> None:
    first = make(session_factory, T0, S.PENDING_APPROVAL)
    second = make(session_factory, T0, S.PENDING_APPROVAL)
    with transaction(session_factory) as session:
        for n in range(300):
            notify.enqueue(session, first, "step.done", f"page {n} done", T0)
        notify.enqueue(session, second, "step.done", "done", T0)
    recorder = RecordingNotifier()
    assert notify.deliver(session_factory, recorder, owner="a", now=T0) == 301
    assert [len(batch) for batch in recorder.batches] == [300, 1]
    assert [e.text for e in recorder.batches[0]][:2] == ["page 0 done", "page 1 done"]
    assert recorder.batches[0][0].simulation is True
    assert notify.deliver(session_factory, recorder, owner="b", now=T0) == 0


def test_a_failed_post_keeps_the_notices_for_the_next_run(session_factory) -> None:
    request_id = make(session_factory, T0, S.PENDING_APPROVAL)
    with transaction(session_factory) as session:
        notify.enqueue(session, request_id, "request.completed", "All done.", T0)

    class Down:
        def publish(self, events) -> None:
            raise ConnectionError("slack down")

    assert notify.deliver(session_factory, Down(), owner="a", now=T0) == 0
    recorder = RecordingNotifier()
    assert notify.deliver(session_factory, recorder, owner="a", now=T0 + timedelta(seconds=5)) == 1
    with session_factory() as session:
        assert session.exec(select(Notice)).one().sent_at == T0 + timedelta(seconds=5)


@pytest.mark.parametrize("index, condition", [
    ("ix_dsr_request_open_due", IS_OPEN),
    ("ix_dsr_request_unacknowledged", IS_UNACKNOWLEDGED),
])
def test_sweeps_read_open_requests_through_their_partial_index(engine, index, condition) -> None:
    """Not the whole table: the sweeps stay fast however many closed requests accumulate."""
    column = EFFECTIVE_DUE if index == "ix_dsr_request_open_due" else DsrRequest.ack_due_on
    query = select(DsrRequest.id).where(condition, column >= date(2026, 3, 2),
                                        column <= date(2026, 3, 9))
    compiled = query.compile(engine)
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")  # an empty table would be scanned
            plan = conn.exec_driver_sql(f"EXPLAIN {compiled}", compiled.params).all()
        else:
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}",
                                        tuple(compiled.params.values())).all()
    assert index in " ".join(str(row) for row in plan)


# Deliverables


def test_a_canceled_access_request_leaves_no_staged_data_and_gets_its_record(session_factory) -> None:
    keys = MultiFernet([Fernet(Fernet.generate_key())])
    request_id = make(session_factory, T0, S.PENDING_APPROVAL, S.APPROVED, S.IN_PROGRESS,
                      type=RequestType.ACCESS)
    store = DatabaseStore(session_factory)
    sink = SealedSink(store, f"DSR-{request_id:06d}", keys)
    sink.write("zendesk/users/1.json", {"user": {"id": 1}})
    sink.write("zendesk/tickets/2.json", {"ticket": {"id": 2}})
    move(session_factory, request_id, T0, S.NEEDS_ATTENTION, S.CANCELED)

    assert deliverables.unrecorded(session_factory) == [request_id]
    deliverables.finish(session_factory, request_id, exports=store, keys=keys, now=T0)
    assert list(store.list("")) == []
    assert deliverables.unrecorded(session_factory) == []
    with session_factory() as session:
        discarded = session.exec(select(AuditEvent).where(AuditEvent.action == "export.discarded")).one()
        assert discarded.details == {"files": 2}
        assert session.get(DsrRequest, request_id).export_packaged_at is None
        assert [n.kind for n in session.exec(select(Notice))] == ["record.made"]
