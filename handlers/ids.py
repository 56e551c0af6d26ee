"""Every callback_id, block_id and action_id the app uses: one place, so views and listeners agree."""

from __future__ import annotations

from enum import StrEnum


class Callback(StrEnum):
    NEW_REQUEST = "dsr_new_request"
    REJECT_REASON = "dsr_reject_reason"
    CONFIRM_MATCHES = "dsr_confirm_matches"
    REVIEW_PLAN = "dsr_review_plan"
    SYSTEM = "dsr_system"  # a system of the data map, added or edited


class Block(StrEnum):
    NAME = "subject_name"
    EMAILS = "subject_emails"
    PHONES = "subject_phones"
    VENDOR_IDS = "subject_vendor_ids"
    TYPE = "request_type"
    JURISDICTION = "jurisdiction"
    SYSTEMS = "systems"
    REAL_API = "real_api"
    VERIFICATION = "identity_verification"
    NEW_VALUES = "new_values"
    SEARCH_TERMS = "search_terms"
    NOTES = "notes"
    RECEIVED = "received_on"
    REASON = "reason"
    MATCHES = "matches"
    # A system of the data map: a block each of services.data_map.FIELDS.
    SYSTEM_NAME = "system_name"
    SYSTEM_LABEL = "system_label"
    SYSTEM_REACH = "system_reach"
    SYSTEM_OWNER = "system_owner"
    SYSTEM_CATEGORIES = "system_categories"
    SYSTEM_TYPES = "system_request_types"
    SYSTEM_INSTRUCTIONS = "system_instructions"
    SYSTEM_WEBHOOK = "system_webhook_url"


class Action(StrEnum):
    INPUT = "value"  # the single input inside an input block
    CONFIRM_MATCHES = "confirm_matches"
    PICK_MATCHES = "pick_matches"
    CANCEL = "cancel_request"
    APPROVE = "approve"
    REJECT = "reject"
    RETRY = "retry"
    SEND_EXPORT = "send_export"
    SEND_RECORD = "send_record"
    NEW_REQUEST = "new_request"
    SHOW = "show_request"
    REVIEW_PLAN = "review_plan"  # opens the plan's review (requester) or view (approvers)
    PLAN_LINE = "plan_line"  # the action of one line
    PLAN_GROUP = "plan_group"  # one action for every line of a group
    PLAN_PAGE = "plan_page"  # Next / Previous
    REVIEW_AGAIN = "review_again"  # an erasure that needs attention goes back to review
    LIST_PAGE = "list_page"  # Previous / Next of a list of requests
    LIST_OPEN = "list_open"  # a Home group's "N more": the whole list in a modal
    LIST_CSV = "list_csv"  # the list as a CSV file, by DM
    MATCH_PAGE = "match_page"  # Previous / Next of a system's matches
    MATCH_FILTER = "match_filter"  # the filter above a system's matches
