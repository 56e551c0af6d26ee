"""What arrives from Slack, made safe to use: text, dates and modal fields checked where they
are read, and the one answer to an error no listener caught (bolt's `app.error`).

Only Slack can sign a request, but a person can type anything, and a signed payload is still
checked against what we offered: so a value the databases cannot store, a date the calendar
cannot reach or an option we never showed gets a clear refusal, the same on SQLite and
PostgreSQL, never a 500.
"""

from __future__ import annotations

import logging
import traceback
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from slack_bolt import BoltResponse

from handlers.ids import Action
from handlers.views.intake import max_length
from handlers.views.request import done_modal
from services.errors import DsrError, InvalidRequest

log = logging.getLogger("dsr_desk.handlers")

DATABASE_DOWN = ":hourglass: DSR Desk cannot reach its database; try again shortly."
SOMETHING_WRONG = (":x: Something went wrong on our side. Try again, and tell the DSR Desk admins "
                   "if it persists.")
# Far enough either way for any request and any filter; beyond them the date arithmetic of
# deadlines and day ranges would overflow (9999-12-31 has no next day).
EARLIEST_DAY, LATEST_DAY = date(2000, 1, 1), date(2099, 12, 31)
FIELD_ERROR_LIMIT = 150  # what a modal shows under a field


class FieldError(InvalidRequest):
    """A modal field's value refused: shown under that field (its block)."""

    def __init__(self, block: str, message: str) -> None:
        super().__init__(message)
        self.block = block


def text(value: Any) -> str:
    """Text as typed, as both databases store it: PostgreSQL refuses NUL characters in text
    (SQLite keeps them), so they go, on both."""
    return value.replace("\x00", "").strip() if isinstance(value, str) else ""


def too_long(value: str, limit: int) -> str | None:
    """The refusal of a text longer than `limit` (a column's or a field's), or None."""
    if len(value) <= limit:
        return None
    return f"At most {limit:,} characters, please (this has {len(value):,})."


def parse_day(value: str, what: str) -> date:
    """`value` (2026-11-23) as a date between EARLIEST_DAY and LATEST_DAY; InvalidRequest
    naming `what` otherwise."""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"{what}: dates look like 2026-11-23.") from None
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        raise InvalidRequest(f"{what}: give a date from {EARLIEST_DAY} to {LATEST_DAY}.")
    return day


def field_value(values: dict[str, Any], block: str) -> Any:
    """A field as submitted: the text typed (NUL removed; FieldError beyond the field's limit),
    the options ticked, the option chosen or the date picked. A missing or malformed field
    reads as empty."""
    element = mapping(mapping(mapping(values).get(block)).get(Action.INPUT))
    if "selected_options" in element:
        chosen = element["selected_options"]
        return [text(mapping(o).get("value")) for o in chosen] if isinstance(chosen, list) else []
    if "selected_option" in element:
        return text(mapping(element["selected_option"]).get("value"))
    if "selected_date" in element:
        return text(element["selected_date"])
    typed = text(element.get("value"))
    if problem := too_long(typed, max_length(block)):
        raise FieldError(block, problem)
    return typed


def mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def database_unavailable(error: BaseException) -> bool:
    """The database is down, unreachable, read-only or out of connections: nothing the person
    did, and worth trying again shortly."""
    if isinstance(error, sa.exc.OperationalError | sa.exc.TimeoutError):
        return True  # PostgreSQL gone; SQLite unopenable, locked or read-only
    # PostgreSQL in a read-only transaction (a standby, default_transaction_read_only)
    return isinstance(error, sa.exc.DBAPIError) and getattr(error.orig, "sqlstate", None) == "25006"


def place(error: BaseException) -> str:
    """Where `error` was raised (file:line), for a log line that cannot quote personal data as
    an exception's message may."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return "?"
    frame = frames[-1]
    return f"{Path(frame.filename).name}:{frame.lineno}"


def answer_error(error: Exception, body: dict[str, Any]) -> BoltResponse | None:
    """bolt's error handler, for what escapes a listener's ack or a middleware: a refusal, or a
    database out of reach, is answered where the person looks (the command's reply, the modal's
    field); anything else is logged in one line, without its message, and answered too."""
    if isinstance(error, DsrError):
        message = str(error)
    elif database_unavailable(error):
        log.warning("database unavailable (%s at %s)", type(error).__name__, place(error))
        message = DATABASE_DOWN
    else:
        log.error("listener failed: %s at %s", type(error).__name__, place(error))
        message = SOMETHING_WRONG
    if body.get("command"):
        return BoltResponse(status=200, body={"response_type": "ephemeral", "text": message})
    if body.get("type") == "view_submission":
        block = getattr(error, "block", None) or _first_input(body.get("view") or {})
        if block:
            return BoltResponse(status=200, body={"response_action": "errors",
                                                  "errors": {block: message[:FIELD_ERROR_LIMIT]}})
        return BoltResponse(status=200, body={"response_action": "update",
                                              "view": done_modal(message).to_dict()})
    if message == DATABASE_DOWN:
        return BoltResponse(status=503, body="")  # an event: Slack delivers it again later
    return None  # bolt's 500


def _first_input(view: dict[str, Any]) -> str | None:
    return next((b["block_id"] for b in view.get("blocks") or []
                 if isinstance(b, dict) and b.get("type") == "input" and b.get("block_id")), None)
