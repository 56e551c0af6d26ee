"""Lists of requests (`/dsr list`, the Home tab's groups, a list's CSV): which requests a filter
selects, and the columns a list shows of them.

A page of a list is read in a Slack ack, where building the SELECT each time cost more than the
database's work. So the statements are built once for each shape of filter (which of its fields
are set), with bound parameters, and the filter only supplies their values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import select

from services.vocabulary import OPEN_STATUSES, RequestStatus, RequestType, format_reference
from storage.models import IS_OPEN, Approval, DsrRequest, SubjectIdentifier
from storage.queries import EFFECTIVE_DUE


@dataclass(frozen=True)
class RequestFilter:
    """Which requests a list shows. Every field narrows it; none set: every request."""

    statuses: Sequence[RequestStatus] = ()
    types: Sequence[RequestType] = ()
    received_from: date | None = None
    received_to: date | None = None
    requester: str | None = None
    due_from: date | None = None  # open requests due on or after
    due_before: date | None = None  # open requests due before
    awaiting: str | None = None  # requests this approver may still decide
    subject: Sequence[str] = ()  # lookup hashes of a subject's identifier (services.lookup)

    @property
    def open_only(self) -> bool:
        return set(self.statuses) == set(OPEN_STATUSES)

    @property
    def by_deadline(self) -> bool:
        """Lists of open requests by deadline (the next one first); the others newest first."""
        return bool(self.due_from or self.due_before or self.awaiting)


@dataclass(frozen=True)
class RequestLine:
    """What a list shows of a request (handlers.views.common.one_line), read as plain columns:
    a page of these costs a fraction of ORM objects with their time zone conversions."""

    id: int
    type: RequestType
    jurisdiction_code: str
    status: RequestStatus
    due_on: date
    extended_due_on: date | None
    simulation: bool

    @property
    def reference(self) -> str:
        return format_reference(self.id)

    @property
    def effective_due_on(self) -> date:
        return self.extended_due_on or self.due_on


LINE_COLUMNS = (DsrRequest.id, DsrRequest.type, DsrRequest.jurisdiction_code, DsrRequest.status,
                DsrRequest.due_on, DsrRequest.extended_due_on, DsrRequest.simulation)


@dataclass(frozen=True)
class RequestPage:
    requests: list[RequestLine]
    total: int  # how many match, of which these are from `offset` on
    offset: int


@dataclass(frozen=True)
class Shape:
    """Which of a filter's fields are set: what its statements are built from."""

    open_only: bool
    set_fields: frozenset[str]
    by_deadline: bool


def shape_of(filters: RequestFilter) -> Shape:
    return Shape(filters.open_only, frozenset(f.name for f in fields(filters)
                                              if getattr(filters, f.name)), filters.by_deadline)


def parameters(filters: RequestFilter, zone: ZoneInfo) -> dict[str, Any]:
    """The values of the bound parameters of `filters`' statements."""
    values: dict[str, Any] = {f.name: getattr(filters, f.name) for f in fields(filters)}
    values["statuses"], values["types"] = list(filters.statuses), list(filters.types)
    values["subject"] = list(filters.subject)
    if filters.received_from:
        values["received_from"] = _start_of(filters.received_from, zone)
    if filters.received_to:  # up to the end of that day
        values["received_to"] = _start_of(date.fromordinal(filters.received_to.toordinal() + 1), zone)
    return values


@lru_cache(maxsize=256)  # 2^9 shapes at most, of which a team uses a few
def page_statements(shape: Shape) -> tuple[sa.Select, sa.Select]:
    """The count of a list's requests, and a page of their lines (parameters `offset` and
    `limit`). Two statements, not one with a window count: that count makes SQLite evaluate
    every match where the page alone stops after `limit` rows."""
    selected = requests_of(shape)
    count = sa.select(sa.func.count()).select_from(
        selected.with_only_columns(DsrRequest.id).subquery())
    page = (selected.with_only_columns(*LINE_COLUMNS)
            .offset(sa.bindparam("offset")).limit(sa.bindparam("limit")))
    return count, page


@lru_cache(maxsize=256)
def requests_of(shape: Shape) -> sa.Select:
    """The requests a filter of this shape selects, in the list's order."""
    query = select(DsrRequest)
    given = shape.set_fields
    if shape.open_only:
        query = query.where(IS_OPEN)  # as written, so that SQLite uses its partial index
    elif "statuses" in given:
        query = query.where(DsrRequest.status.in_(sa.bindparam("statuses", expanding=True)))
    if "types" in given:
        query = query.where(DsrRequest.type.in_(sa.bindparam("types", expanding=True)))
    if "requester" in given:
        query = query.where(DsrRequest.requester_slack_id == sa.bindparam("requester"))
    if "received_from" in given:
        query = query.where(DsrRequest.received_at >= sa.bindparam("received_from"))
    if "received_to" in given:
        query = query.where(DsrRequest.received_at < sa.bindparam("received_to"))
    if "due_from" in given or "due_before" in given:
        query = query.where(IS_OPEN)
    if "due_from" in given:
        query = query.where(sa.bindparam("due_from") <= EFFECTIVE_DUE)
    if "due_before" in given:
        query = query.where(sa.bindparam("due_before") > EFFECTIVE_DUE)
    if "awaiting" in given:  # the caller checked that `awaiting` is an approver
        approver = sa.bindparam("awaiting")
        decided = select(Approval.request_id).where(Approval.approver_slack_id == approver)
        query = query.where(DsrRequest.status == RequestStatus.PENDING_APPROVAL,
                            DsrRequest.requester_slack_id != approver,
                            DsrRequest.id.not_in(decided))
    if "subject" in given:
        query = query.where(DsrRequest.id.in_(select(SubjectIdentifier.request_id).where(
            SubjectIdentifier.lookup.in_(sa.bindparam("subject", expanding=True)))))
    if shape.by_deadline:
        return query.order_by(EFFECTIVE_DUE, DsrRequest.id)
    return query.order_by(DsrRequest.id.desc())


def _start_of(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=zone)
