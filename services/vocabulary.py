"""The words of the domain: a request's types and statuses, an identifier's kinds, a plan's
actions, a step's states. Connectors, views and services name things with these; storage keeps
them (storage/models.py imports them), so nothing needs the storage layer to name a request type.
"""

from __future__ import annotations

from enum import StrEnum


class RequestType(StrEnum):
    ACCESS = "access"  # access and portability: export the subject's data
    ERASURE = "erasure"
    RECTIFICATION = "rectification"
    OBJECTION = "objection"  # objection / restriction: stop processing, keep the data


class RequestStatus(StrEnum):
    RECEIVED = "received"  # intake done; matching records being confirmed
    IN_REVIEW = "in_review"  # erasure: what would be destroyed is found, then reviewed as a plan
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    IN_PROGRESS = "in_progress"
    NEEDS_ATTENTION = "needs_attention"  # a step failed for good; a retry resumes it
    COMPLETED = "completed"
    REJECTED = "rejected"
    CANCELED = "canceled"


OPEN_STATUSES = tuple(s.value for s in RequestStatus
                      if s not in (RequestStatus.COMPLETED, RequestStatus.REJECTED, RequestStatus.CANCELED))


class IdentifierKind(StrEnum):
    NAME = "name"
    EMAIL = "email"
    PHONE = "phone"
    ADDRESS = "address"
    EXTERNAL_ID = "external_id"
    VENDOR_USER_ID = "vendor_user_id"  # with `system` naming the vendor
    TEXT = "text"  # a free search term


class IdentifierPurpose(StrEnum):
    IDENTIFIES = "identifies"  # how we find the subject
    NEW_VALUE = "new_value"  # rectification: the corrected value of that kind
    SEARCH_TERM = "search_term"  # erasure: extra terms to find the subject's data in tickets


class PeriodUnit(StrEnum):
    DAYS = "days"
    BUSINESS_DAYS = "business_days"
    MONTHS = "months"


class ApprovalDecision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class StepPhase(StrEnum):
    DISCOVERY = "discovery"  # read-only: finds what an erasure would touch, before review
    EXECUTION = "execution"  # runs only once the request (and its plan) is approved


class PlanAction(StrEnum):
    """What an approved erasure plan does to one record."""

    DELETE = "delete"  # the whole record goes (a ticket: deleted, then permanently)
    REDACT = "redact"  # the subject's strings and images are removed; the record stays
    REDACT_CLOSE = "redact_close"  # redact, then solve and close it (its requester can then go)
    LEAVE = "leave"  # untouched


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"  # on a vendor job; polled again at next_run_at
    DONE = "done"
    FAILED = "failed"
    CANCELED = "canceled"


# The largest request id: `dsr_request.id` is a 4-byte INTEGER on PostgreSQL (SQLite's would hold
# more), so a larger reference names no request on either, rather than failing on one.
MAX_REQUEST_ID = 2**31 - 1


def format_reference(request_id: int | None) -> str:
    if request_id is None:
        raise ValueError("the request has no id yet: flush it first")
    return f"DSR-{request_id:06d}"


class Reach(StrEnum):
    """How DSR Desk reaches a system of the data map."""

    CONNECTOR = "connector"  # a vendor's API, through its connector (services/vendors/)
    ASSISTED = "assisted"  # a task for the system's owner, in Slack
    WEBHOOK = "webhook"  # a signed POST to an in-house service, answered at a callback
