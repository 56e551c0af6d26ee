"""A vendor's rate limit kept across processes: two replicas (two budgets, two VendorHTTPs over
one database) together never exceed the vendor's per-minute limit, on both databases."""

from __future__ import annotations

import threading
from collections.abc import Iterable

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import select

from bot.app import build_core
from bot.settings import Settings
from services.connectors.budget import WINDOW_SLOTS, SharedBudget, allowance
from services.connectors.http import Limits, VendorHTTP
from services.sandbox.server import serve
from services.subjects import Identifier
from services.vocabulary import IdentifierKind
from storage.models import VendorBudget

PER_MINUTE = 96


class DrivenClock:
    """Seconds since the epoch, moved on by whoever sleeps (every process shares it)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


def most_in_a_minute(times: Iterable[float]) -> int:
    ordered = sorted(times)
    return max((sum(1 for t in ordered[i:] if t < start + 60) for i, start in enumerate(ordered)),
               default=0)


def test_two_replicas_together_keep_to_the_limit(session_factory) -> None:
    clock = DrivenClock()
    replicas = [SharedBudget(session_factory, clock=clock, sleep=clock.sleep) for _ in range(2)]
    granted: list[float] = []
    for n in range(400):  # taking turns, as fast as they can
        replicas[n % 2].acquire("Zendesk Support https://acme.zendesk.com", PER_MINUTE)
        granted.append(clock())
    assert most_in_a_minute(granted) <= PER_MINUTE
    elapsed = granted[-1] - granted[0]
    assert 400 / (elapsed / 60) > 0.9 * PER_MINUTE  # most of the limit stays usable
    with session_factory() as session:  # a minute's slots are kept, older ones deleted
        slots = session.exec(select(VendorBudget.slot)).all()
    assert max(slots) - min(slots) < WINDOW_SLOTS


def test_racing_threads_of_two_replicas_share_one_minute(session_factory) -> None:
    """Eight threads in two processes reach for a minute's calls at once: each call is given
    once, and no more than the minute allows."""
    clock = DrivenClock()

    class SlotSpent(Exception):
        pass

    def no_wait(_: float) -> None:
        raise SlotSpent

    replicas = [SharedBudget(session_factory, clock=clock, sleep=no_wait) for _ in range(2)]
    got: list[int] = []
    start = threading.Barrier(8)

    def reach(budget: SharedBudget) -> None:
        start.wait()
        for _ in range(4):
            try:
                budget.acquire("Genesys Cloud https://api.mypurecloud.ie", 20)
            except SlotSpent:
                return
            got.append(1)

    threads = [threading.Thread(target=reach, args=(replicas[n % 2],)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == allowance(20) == 19  # 32 tried


@pytest.fixture
def vendor():
    """A vendor on a socket that records when (on the driven clock) each call arrived."""
    clock, arrived = DrivenClock(), []

    def app(environ, start_response):  # noqa: ANN001, ANN202
        arrived.append(clock())
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    with serve(app) as running:
        yield running.url, clock, arrived


def test_vendor_calls_of_two_replicas_keep_to_the_limit(vendor, session_factory) -> None:
    url, clock, arrived = vendor
    with httpx.Client() as client:
        replicas = [VendorHTTP(client, vendor="Zendesk Support", base_url=url, sleep=clock.sleep,
                               limits=Limits(requests_per_minute=PER_MINUTE, budget=SharedBudget(
                                   session_factory, clock=clock, sleep=clock.sleep)))
                    for _ in range(2)]
        for n in range(300):
            replicas[n % 2].call("GET", "/api/v2/users/1")
    assert len(arrived) == 300 and most_in_a_minute(arrived) <= PER_MINUTE


def test_every_process_of_the_app_counts_vendor_calls_in_the_database(database_url,
                                                                      tmp_path) -> None:
    """The app's connectors (what the Slack workers search with, and what the background
    process runs steps with) take their calls from the shared budget, not a budget of their own."""
    settings = Settings(_env_file=None, DATABASE_URL=database_url, DSR_DATA_DIR=str(tmp_path))
    first = build_core(settings, worker_id="replica-1")
    shared = settings.with_sandbox_urls({  # the same vendor account, as replicas would have
        "zendesk": first.registry.sandboxes.url("zendesk")})
    second = build_core(shared, worker_id="replica-2")
    try:
        for core in (first, second):
            core.registry("zendesk", True).search_subjects(
                [Identifier(IdentifierKind.EMAIL, "nobody@example.org")])
        with first.service.sessions() as session:
            keys = session.exec(select(VendorBudget.vendor).distinct()).all()
            counted = session.exec(select(sa.func.sum(VendorBudget.used))).one()
        assert len(keys) == 1 and counted >= 2
    finally:
        first.registry.sandboxes.stop()
