from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlmodel import select

from services import deadlines
from services.errors import ExtensionNotAllowed
from services.lifecycle import transition
from services.vocabulary import PeriodUnit, RequestStatus
from storage.db import transaction
from storage.models import AuditEvent, Jurisdiction
from storage.queries import get_jurisdiction, get_request
from tests.factories import UTC_ZONE, add_request

# The rows the migration seeds, as the law states them (kept here to test the computation alone).
GDPR = Jurisdiction(
    code="GDPR", name="EU GDPR", legal_basis="", response_amount=1,
    response_unit=PeriodUnit.MONTHS, extension_amount=2, extension_unit=PeriodUnit.MONTHS,
    max_extensions=1,
)
CCPA = Jurisdiction(
    code="CCPA", name="CCPA/CPRA", legal_basis="", response_amount=45,
    response_unit=PeriodUnit.DAYS, extension_amount=45, extension_unit=PeriodUnit.DAYS,
    max_extensions=1, ack_amount=10, ack_unit=PeriodUnit.BUSINESS_DAYS, holiday_country="US",
    holiday_subdivision="CA",
)


@pytest.mark.parametrize(
    ("received", "due"),
    [
        (date(2026, 1, 31), date(2026, 2, 28)),  # no 31 February: its last day
        (date(2028, 1, 31), date(2028, 2, 29)),  # leap year
        (date(2026, 1, 30), date(2026, 2, 28)),
        (date(2026, 3, 31), date(2026, 4, 30)),
        (date(2026, 3, 15), date(2026, 4, 15)),
        (date(2026, 12, 31), date(2027, 1, 31)),  # across the year
    ],
)
def test_gdpr_one_calendar_month(received: date, due: date) -> None:
    assert deadlines.compute(GDPR, received).due_on == due
    assert deadlines.compute(GDPR, received).ack_due_on is None


def test_gdpr_extension_is_two_further_months_from_receipt() -> None:
    assert deadlines.extended_due(GDPR, date(2026, 1, 31)) == date(2026, 4, 30)
    assert deadlines.extended_due(GDPR, date(2026, 11, 30)) == date(2027, 2, 28)


def test_ccpa_45_days_and_45_more() -> None:
    assert deadlines.compute(CCPA, date(2026, 1, 1)).due_on == date(2026, 2, 15)
    assert deadlines.compute(CCPA, date(2026, 12, 20)).due_on == date(2027, 2, 3)
    assert deadlines.extended_due(CCPA, date(2026, 1, 1)) == date(2026, 4, 1)


@pytest.mark.parametrize(
    ("received", "ack_due"),
    [
        (date(2026, 3, 2), date(2026, 3, 16)),  # Monday: two working weeks later
        (date(2026, 3, 6), date(2026, 3, 20)),  # Friday
        (date(2026, 3, 7), date(2026, 3, 20)),  # Saturday: counting starts Monday
        # Thanksgiving (26 Nov) and the day after are California holidays.
        (date(2026, 11, 20), date(2026, 12, 8)),
        # Christmas Day and New Year's Day.
        (date(2026, 12, 18), date(2027, 1, 5)),
    ],
)
def test_ccpa_acknowledgement_in_business_days(received: date, ack_due: date) -> None:
    assert deadlines.compute(CCPA, received).ack_due_on == ack_due


def test_receipt_day_is_the_teams_local_day() -> None:
    late_evening_utc = datetime(2026, 1, 31, 23, 30, tzinfo=UTC)
    assert deadlines.received_on(late_evening_utc, ZoneInfo("UTC")) == date(2026, 1, 31)
    assert deadlines.received_on(late_evening_utc, ZoneInfo("Europe/Berlin")) == date(2026, 2, 1)


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31)))
def test_month_deadline_never_overshoots_the_month(received: date) -> None:
    due = deadlines.compute(GDPR, received).due_on
    months_between = (due.year - received.year) * 12 + due.month - received.month
    assert months_between == 1
    assert due.day == received.day or (due.day < received.day and (due + timedelta(days=1)).day == 1)


@given(st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 12, 31)))
def test_business_day_ack_lands_on_a_working_day_after_at_least_two_weeks(received: date) -> None:
    ack = deadlines.compute(CCPA, received).ack_due_on
    assert ack is not None
    assert ack.weekday() < 5
    assert timedelta(days=12) <= ack - received <= timedelta(days=24)


# Seeded rows and extension rules, on both databases.


@pytest.mark.parametrize(
    ("code", "received", "due", "ack"),
    [
        ("GDPR", date(2026, 1, 31), date(2026, 2, 28), None),
        ("UK_GDPR", date(2028, 1, 31), date(2028, 2, 29), None),
        ("CCPA", date(2026, 3, 2), date(2026, 4, 16), date(2026, 3, 16)),
        ("LGPD", date(2026, 3, 2), date(2026, 3, 17), None),
        ("US_VA", date(2026, 3, 2), date(2026, 4, 16), None),
        ("US_UT", date(2026, 3, 2), date(2026, 4, 16), None),
    ],
)
def test_seeded_jurisdictions(session_factory, code, received, due, ack) -> None:
    at = datetime.combine(received, datetime.min.time(), tzinfo=UTC).replace(hour=10)
    with transaction(session_factory) as session:
        request = add_request(session, at, jurisdiction=code)
        assert (request.due_on, request.ack_due_on) == (due, ack)


def _extend(session_factory, ref: str, at: datetime, reason: str = "Complex: 14 systems") -> date:
    with transaction(session_factory) as session:
        request = get_request(session=session, ref=ref)
        jurisdiction = get_jurisdiction(session=session, code=request.jurisdiction_code)
        return deadlines.extend(
            session, request, jurisdiction, reason=reason, actor="U_LEAD", at=at, zone=UTC_ZONE
        )


def _new(session_factory, at: datetime, **overrides) -> str:
    with transaction(session_factory) as session:
        return add_request(session, at, **overrides).reference


def test_extension_once_with_reason_before_deadline_and_audited(session_factory) -> None:
    received = datetime(2026, 1, 31, 10, tzinfo=UTC)
    ref = _new(session_factory, received)

    with pytest.raises(ExtensionNotAllowed, match="needs a reason"):
        _extend(session_factory, ref, received + timedelta(days=3), reason="   ")

    on_deadline_day = datetime(2026, 2, 28, 22, tzinfo=UTC)
    assert _extend(session_factory, ref, on_deadline_day) == date(2026, 4, 30)

    with pytest.raises(ExtensionNotAllowed, match="already extended"):
        _extend(session_factory, ref, on_deadline_day)

    with session_factory() as session:
        request = get_request(session=session, ref=ref)
        assert request.effective_due_on == date(2026, 4, 30)
        assert request.extension_reason == "Complex: 14 systems"
        assert request.extended_by == "U_LEAD"
        events = session.exec(
            select(AuditEvent).where(AuditEvent.action == "request.deadline_extended")
        ).all()
        assert [(e.request_id, e.details) for e in events] == [
            (request.id, {"from": "2026-02-28", "to": "2026-04-30", "reason": "Complex: 14 systems"})
        ]


def test_extension_refused_after_the_deadline(session_factory) -> None:
    ref = _new(session_factory, datetime(2026, 1, 31, 10, tzinfo=UTC))
    with pytest.raises(ExtensionNotAllowed, match="passed on 2026-02-28"):
        _extend(session_factory, ref, datetime(2026, 3, 1, 0, 5, tzinfo=UTC))
    with session_factory() as session:
        assert get_request(session=session, ref=ref).extended_due_on is None


def test_extension_refused_where_the_law_allows_none(session_factory) -> None:
    ref = _new(session_factory, datetime(2026, 3, 2, tzinfo=UTC), jurisdiction="LGPD")
    with pytest.raises(ExtensionNotAllowed, match="LGPD .* allows no extension"):
        _extend(session_factory, ref, datetime(2026, 3, 3, tzinfo=UTC))


def test_extension_refused_for_a_closed_request(session_factory) -> None:
    at = datetime(2026, 3, 2, tzinfo=UTC)
    with transaction(session_factory) as session:
        request = add_request(session, at)
        transition(session, request, RequestStatus.CANCELED, actor="U_REQUESTER", at=at)
        ref = request.reference
    with pytest.raises(ExtensionNotAllowed, match="canceled"):
        _extend(session_factory, ref, at)
