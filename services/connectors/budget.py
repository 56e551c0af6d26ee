"""A vendor's per-minute rate limit kept by every process and replica together.

Each process counting its own calls would let N replicas (and, in HTTP mode, the processes
answering Slack, which search) send N times the vendor's limit. So calls are counted in the
database, in slots of SLOT_SECONDS, and a call is allowed only while the slots a sliding minute
can touch (WINDOW_SLOTS, the current one included) hold fewer calls than the limit, less one
slot's share kept back for hosts whose clocks disagree by up to a slot. Every minute-long
window is then within the limit, whoever made the calls, and a burst may still use a whole
minute's allowance at once, as the vendors allow. A process takes a few calls at a time (one
database round trip for several calls) and, when the minute is spent, waits for the next slot.
The current slot's row is locked while it is counted, so processes take their calls in turn.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlmodel import select

from storage.db import SessionFactory, transaction
from storage.models import VendorBudget

SLOT_SECONDS = 2
WINDOW_SLOTS = 60 // SLOT_SECONDS + 1  # the slots one sliding minute can touch
TRIPS_PER_MINUTE = 64  # a process takes 1/64 of the minute's allowance per round trip


def allowance(per_minute: int) -> int:
    """Calls a minute may hold, across all processes: the limit less one slot's share."""
    return max(1, per_minute - max(1, per_minute // WINDOW_SLOTS))


class SharedBudget:
    """`acquire(key, per_minute)` blocks until one more call to `key` fits the limit."""

    def __init__(self, sessions: SessionFactory, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.sessions = sessions
        self.clock = clock
        self.sleep = sleep
        self._held: dict[str, tuple[int, int]] = {}  # key -> (slot, calls taken, not yet made)
        self._lock = threading.Lock()

    def acquire(self, key: str, per_minute: int) -> None:
        while True:
            now = self.clock()
            slot = int(now // SLOT_SECONDS)
            with self._lock:
                held_slot, left = self._held.get(key, (slot, 0))
                if held_slot != slot or left == 0:  # calls are spent in the slot they were taken
                    left = self._take(key, slot, per_minute)
                if left > 0:
                    self._held[key] = (slot, left - 1)
                    return
                self._held[key] = (slot, 0)
            self.sleep(max(0.01, (slot + 1) * SLOT_SECONDS - now))

    def _take(self, key: str, slot: int, per_minute: int) -> int:
        """Take up to a share of the minute's calls in the database; how many were taken."""
        allowed = allowance(per_minute)
        for _ in range(3):  # the slot's row may be inserted by another process meanwhile
            try:
                with transaction(self.sessions) as session:
                    row = session.exec(select(VendorBudget).where(
                        VendorBudget.vendor == key, VendorBudget.slot == slot)
                        .with_for_update()).first()
                    if row is None:
                        session.execute(sa.delete(VendorBudget).where(
                            VendorBudget.vendor == key,
                            VendorBudget.slot <= slot - WINDOW_SLOTS))
                        row = VendorBudget(vendor=key, slot=slot, used=0)
                        session.add(row)
                        session.flush()  # a racing insert fails here, and is tried again
                    recent = session.exec(select(sa.func.sum(VendorBudget.used)).where(
                        VendorBudget.vendor == key,
                        VendorBudget.slot > slot - WINDOW_SLOTS)).one() or 0
                    taken = min(max(1, allowed // TRIPS_PER_MINUTE), allowed - recent)
                    if taken <= 0:
                        return 0
                    row.used += taken
                    session.add(row)
                return taken
            except sa.exc.IntegrityError:
                continue
        return 0
