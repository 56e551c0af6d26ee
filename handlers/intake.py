"""The intake form: its fields read and checked, the request filed, its subject searched for."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from datetime import UTC, date, datetime, time
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from handlers.deps import AFTER_ACK, deps_of, hand_over
from handlers.edge import FIELD_ERROR_LIMIT, FieldError, field_value, parse_day, text, too_long
from handlers.ids import Block, Callback
from handlers.matches import present_matches
from handlers.views.common import clip
from handlers.views.request import done_modal, searching_modal
from services.errors import (
    AlreadyFiled,
    DsrError,
    InvalidRequest,
    PermissionDenied,
    UnknownJurisdiction,
)
from services.intake import NewRequest
from services.subjects import Identifier, normalise_email, normalise_phone
from services.vocabulary import IdentifierKind, RequestType
from storage.models import SubjectIdentifier

NEW_VALUE_KINDS = {"name": IdentifierKind.NAME, "email": IdentifierKind.EMAIL,
                   "phone": IdentifierKind.PHONE, "address": IdentifierKind.ADDRESS}
# Each identifier, search term and corrected value is one row: no longer than its column.
IDENTIFIER_LIMIT = SubjectIdentifier.__table__.c.value.type.length  # 1,000
JURISDICTION_CODE = re.compile(r"[A-Z][A-Z0-9_]{1,15}")  # as in the jurisdiction table


def _lines(typed: str, *, commas: bool = True) -> list[str]:
    if commas:
        typed = typed.replace(",", "\n")
    return [line.strip() for line in typed.splitlines() if line.strip()]


def parse_intake(values: dict[str, Any], user: str, systems: list[str],
                 today: date) -> tuple[NewRequest | None, dict[str, str]]:
    """The form as a NewRequest, or the errors to show on its fields. Every field is checked
    here, as the modal would (it need not have been our modal): texts within their limits and
    the columns', choices among the options offered, dates the calendar can count from."""
    errors: dict[str, str] = {}
    identifiers: list[Identifier] = []

    def read(block: Block, kind: type) -> Any:
        try:
            value = field_value(values, block)
        except FieldError as exc:
            errors[block] = str(exc)
            return kind()
        return value if isinstance(value, kind) else kind()

    def lines(block: Block, *, commas: bool = True) -> list[str]:
        found = _lines(read(block, str), commas=commas)
        if any(too_long(line, IDENTIFIER_LIMIT) for line in found):
            errors[block] = f"At most {IDENTIFIER_LIMIT:,} characters a line, please."
            return []
        return found

    def each(block: Block, kind: IdentifierKind, normalise) -> None:  # noqa: ANN001
        for line in lines(block):
            try:
                identifiers.append(Identifier(kind, normalise(line)))
            except InvalidRequest as exc:
                errors[block] = str(exc)

    if name := read(Block.NAME, str):
        identifiers.append(Identifier(IdentifierKind.NAME, name))
    each(Block.EMAILS, IdentifierKind.EMAIL, normalise_email)
    each(Block.PHONES, IdentifierKind.PHONE, normalise_phone)
    for line in lines(Block.VENDOR_IDS):
        system, _, record = line.partition(":")
        if system.strip().lower() not in systems or not record.strip():
            errors[Block.VENDOR_IDS] = (f"{line!r}: write system:id, with system one of "
                                        f"{', '.join(systems)}.")
        else:
            identifiers.append(Identifier(IdentifierKind.VENDOR_USER_ID, record.strip(),
                                          system.strip().lower()))
    if not identifiers and not errors:
        errors[Block.NAME] = "Give at least one: name, email, phone or vendor user id."

    request_type = read(Block.TYPE, str)
    if request_type not in {t.value for t in RequestType}:
        errors[Block.TYPE] = "Choose a request type from the list."
    new_values: list[Identifier] = []
    for line in lines(Block.NEW_VALUES, commas=False):
        field, _, value = line.partition(":")
        kind = NEW_VALUE_KINDS.get(field.strip().lower())
        if kind is None or not value.strip():
            errors[Block.NEW_VALUES] = f"{line!r}: write field: value, field one of " \
                                       f"{', '.join(NEW_VALUE_KINDS)}."
            continue
        try:
            value = {IdentifierKind.EMAIL: normalise_email,
                     IdentifierKind.PHONE: normalise_phone}.get(kind, str.strip)(value)
        except InvalidRequest as exc:
            errors[Block.NEW_VALUES] = str(exc)
            continue
        new_values.append(Identifier(kind, value))
    if request_type == RequestType.RECTIFICATION and not new_values and Block.NEW_VALUES not in errors:
        errors[Block.NEW_VALUES] = "A rectification needs the corrected values."

    jurisdiction, chosen, modes = (read(Block.JURISDICTION, str), read(Block.SYSTEMS, list),
                                   read(Block.REAL_API, list))
    if not JURISDICTION_CODE.fullmatch(jurisdiction):
        errors[Block.JURISDICTION] = "Choose a jurisdiction from the list."
    if any(system not in systems for system in chosen):
        errors[Block.SYSTEMS] = f"Choose among the systems offered: {', '.join(systems)}."
    if any(mode != "real" for mode in modes):
        errors[Block.REAL_API] = "Tick the box, or leave it unticked."

    search_terms = lines(Block.SEARCH_TERMS)
    verification, notes = read(Block.VERIFICATION, str), read(Block.NOTES, str)

    received_at = None
    if received := read(Block.RECEIVED, str):
        try:
            day = parse_day(received, "The day received")
        except InvalidRequest as exc:
            errors[Block.RECEIVED] = str(exc)
        else:
            if day > today:
                errors[Block.RECEIVED] = "The request cannot have been received in the future."
            elif day < today:
                received_at = datetime.combine(day, time(12), tzinfo=UTC)

    if errors:
        return None, {block: clip(message, FIELD_ERROR_LIMIT) for block, message in errors.items()}
    return NewRequest(
        type=RequestType(request_type),
        jurisdiction=jurisdiction,
        requester=user,
        systems=tuple(chosen),
        identifiers=tuple(identifiers),
        simulation="real" not in modes,
        new_values=tuple(new_values),
        search_terms=tuple(search_terms),
        identity_verification=verification,
        notes=notes,
        received_at=received_at,
    ), {}


def intake_key(view: dict[str, Any]) -> str:
    """The modal's id, which every submission of one intake form shares; hashed if it is not
    shaped like Slack's (V…), so a forged one still fits its column and still matches itself."""
    view_id = text(view.get("id"))
    if not re.fullmatch(r"V[A-Z0-9]{1,40}", view_id):
        view_id = hashlib.sha256(view_id.encode()).hexdigest()
    return f"view:{view_id}"


# The form is answered in its ack (filed, or its errors); the search for the subject's records
# runs after it, from the inbox (bolt's lazy listeners, bot.inbox).

def submit_intake(ack: Ack, body: dict[str, Any], view: dict[str, Any],
                  context: BoltContext) -> None:
    service = deps_of(context).service
    user = body["user"]["id"]
    new, errors = parse_intake(view["state"]["values"], user, deps_of(context).systems,
                               service.today())
    if new is not None:
        try:  # keyed by the modal: a replayed or resent submission files nothing more
            request = service.create(replace(new, intake_key=intake_key(view)))
        except AlreadyFiled as exc:
            ack(response_action="update", view=done_modal(f":information_source: {exc}").to_dict())
            return
        except PermissionDenied as exc:  # no field is wrong: the person may not file
            ack(response_action="update", view=done_modal(f":warning: {exc}").to_dict())
            return
        except UnknownJurisdiction as exc:
            errors = {Block.JURISDICTION: clip(str(exc), FIELD_ERROR_LIMIT)}
        except DsrError as exc:
            errors = {Block.SYSTEMS: clip(str(exc), FIELD_ERROR_LIMIT)}
    if errors:
        ack(response_action="errors", errors=errors)
        return
    ack(response_action="update", view=searching_modal(request.reference).to_dict())
    hand_over(context, reference=request.reference, view_id=view["id"])


def show_matches(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    """After the ack: the connected systems searched, their matches shown in the modal."""
    if handed := context.get(AFTER_ACK):
        present_matches(deps_of(context), client, handed["view_id"], handed["reference"],
                        body["user"]["id"])


def register(app: App) -> None:
    app.view(Callback.NEW_REQUEST)(ack=submit_intake, lazy=[show_matches])
