"""Legal deadlines, computed from the jurisdiction's row: the law is data, not branches.

Days are counted in the privacy team's time zone from the day after receipt. A month is a
calendar month; where the target month has no such day, the period ends on its last day
(31 January + 1 month = 28 or 29 February). Business days skip weekends and the public
holidays of the jurisdiction's calendar.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays
from dateutil.relativedelta import relativedelta
from sqlmodel import Session, update

from services import audit
from services.errors import ConcurrentUpdate, ExtensionNotAllowed
from services.lifecycle import TERMINAL
from services.vocabulary import PeriodUnit
from storage.models import DsrRequest, Jurisdiction


@dataclass(frozen=True)
class Deadlines:
    due_on: date
    ack_due_on: date | None


@lru_cache(maxsize=32)
def _holiday_calendar(country: str | None, subdivision: str | None) -> holidays.HolidayBase:
    if country is None:
        return holidays.HolidayBase()  # weekends only
    return holidays.country_holidays(country, subdiv=subdivision)


def add_period(
    start: date,
    amount: int,
    unit: PeriodUnit,
    *,
    country: str | None = None,
    subdivision: str | None = None,
) -> date:
    if unit is PeriodUnit.MONTHS:
        return start + relativedelta(months=amount)  # clamps to the month's last day
    if unit is PeriodUnit.DAYS:
        return start + timedelta(days=amount)
    return _holiday_calendar(country, subdivision).get_nth_working_day(start, amount)


def received_on(received_at: datetime, zone: ZoneInfo) -> date:
    """The legal day of receipt: the date in the team's time zone."""
    return received_at.astimezone(zone).date()


def compute(jurisdiction: Jurisdiction, received: date) -> Deadlines:
    ack = None
    if jurisdiction.ack_amount is not None and jurisdiction.ack_unit is not None:
        ack = add_period(
            received,
            jurisdiction.ack_amount,
            PeriodUnit(jurisdiction.ack_unit),
            country=jurisdiction.holiday_country,
            subdivision=jurisdiction.holiday_subdivision,
        )
    due = add_period(received, jurisdiction.response_amount, PeriodUnit(jurisdiction.response_unit))
    return Deadlines(due_on=due, ack_due_on=ack)


def extended_due(jurisdiction: Jurisdiction, received: date) -> date:
    """The deadline after the one extension: response and extension counted from receipt."""
    if jurisdiction.extension_unit == jurisdiction.response_unit:
        return add_period(
            received,
            jurisdiction.response_amount + jurisdiction.extension_amount,
            PeriodUnit(jurisdiction.response_unit),
        )
    first = compute(jurisdiction, received).due_on
    return add_period(first, jurisdiction.extension_amount, PeriodUnit(jurisdiction.extension_unit))


def extend(
    session: Session,
    request: DsrRequest,
    jurisdiction: Jurisdiction,
    *,
    reason: str,
    actor: str,
    at: datetime,
    zone: ZoneInfo,
) -> date:
    """Extend the deadline once, with a reason, before it passes; audited. Returns the new date."""
    reason = reason.strip()
    if request.status in TERMINAL:
        raise ExtensionNotAllowed(f"{request.reference} is {request.status}: nothing to extend.")
    if not reason:
        raise ExtensionNotAllowed(
            "An extension needs a reason: the subject must be told why the answer takes longer."
        )
    if jurisdiction.max_extensions < 1 or jurisdiction.extension_amount < 1:
        raise ExtensionNotAllowed(f"{jurisdiction.name} allows no extension of the deadline.")
    if request.extended_due_on is not None:
        raise ExtensionNotAllowed(
            f"{request.reference} was already extended (to {request.extended_due_on}); "
            f"{jurisdiction.name} allows one extension."
        )
    today = at.astimezone(zone).date()
    if today > request.due_on:
        raise ExtensionNotAllowed(
            f"The deadline of {request.reference} passed on {request.due_on}; an extension must "
            "be decided and told to the subject before the deadline."
        )
    new_due = extended_due(jurisdiction, received_on(request.received_at, zone))
    result = session.execute(
        update(DsrRequest)
        .where(DsrRequest.id == request.id, DsrRequest.extended_due_on.is_(None))
        .values(
            extended_due_on=new_due,
            extension_reason=reason,
            extended_at=at,
            extended_by=actor,
            updated_at=at,
        )
    )
    if result.rowcount != 1:
        raise ConcurrentUpdate(f"{request.reference} was extended by someone else meanwhile.")
    audit.record(
        session,
        action="request.deadline_extended",
        actor=actor,
        at=at,
        request_id=request.id,
        details={"from": request.due_on.isoformat(), "to": new_due.isoformat(), "reason": reason},
    )
    return new_due
