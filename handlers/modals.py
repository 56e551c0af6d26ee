"""Modal submissions: the intake form, the confirmation of matches, the rejection reason."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import replace
from datetime import UTC, date, datetime, time
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from handlers.deps import AFTER_ACK, Deps, hand_over
from handlers.edge import FIELD_ERROR_LIMIT, FieldError, parse_day, text, too_long
from handlers.ids import Action, Block, Callback
from handlers.views.common import as_dicts, clip, escape
from handlers.views.intake import max_length
from handlers.views.request import (
    approval_message,
    done_modal,
    match_key,
    matches_modal,
    searching_modal,
)
from handlers.views.review import summary_text
from services.errors import AlreadyFiled, DsrError, InvalidRequest, UnknownJurisdiction
from services.intake import NewRequest
from services.subjects import Identifier, normalise_email, normalise_phone
from storage.models import DsrRequest, IdentifierKind, RequestStatus, RequestType, SubjectIdentifier

log = logging.getLogger("dsr_desk.handlers")
NEW_VALUE_KINDS = {"name": IdentifierKind.NAME, "email": IdentifierKind.EMAIL,
                   "phone": IdentifierKind.PHONE, "address": IdentifierKind.ADDRESS}
# Each identifier, search term and corrected value is one row: no longer than its column.
IDENTIFIER_LIMIT = SubjectIdentifier.__table__.c.value.type.length  # 1,000
JURISDICTION_CODE = re.compile(r"[A-Z][A-Z0-9_]{1,15}")  # as in the jurisdiction table


def _value(values: dict[str, Any], block: str) -> Any:
    """A field as submitted: the text typed (NUL removed; FieldError beyond the field's limit),
    the options ticked, the option chosen or the date picked. A missing or malformed field
    reads as empty."""
    element = _mapping(_mapping(_mapping(values).get(block)).get(Action.INPUT))
    if "selected_options" in element:
        chosen = element["selected_options"]
        return [text(_mapping(o).get("value")) for o in chosen] if isinstance(chosen, list) else []
    if "selected_option" in element:
        return text(_mapping(element["selected_option"]).get("value"))
    if "selected_date" in element:
        return text(element["selected_date"])
    typed = text(element.get("value"))
    if problem := too_long(typed, max_length(block)):
        raise FieldError(block, problem)
    return typed


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


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
            value = _value(values, block)
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


def register(app: App, deps: Deps) -> None:
    service = deps.service

    # Each submission is answered in its ack; what follows (a search, posting for approval, an
    # announcement) runs after it, from the inbox (bolt's lazy listeners, bot.inbox).
    def submit_intake(ack: Ack, body: dict[str, Any], view: dict[str, Any],
                      context: BoltContext) -> None:
        user = body["user"]["id"]
        new, errors = parse_intake(view["state"]["values"], user, deps.systems, service.today())
        if new is not None:
            try:  # keyed by the modal: a replayed or resent submission files nothing more
                request = service.create(replace(new, intake_key=intake_key(view)))
            except AlreadyFiled as exc:
                ack(response_action="update", view=done_modal(f":information_source: {exc}")
                    .to_dict())
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

    def show_matches(client: WebClient, context: BoltContext) -> None:
        if handed := context.get(AFTER_ACK):
            _show_matches(deps, client, handed["view_id"], handed["reference"])

    def submit_matches(ack: Ack, body: dict[str, Any], view: dict[str, Any],
                       context: BoltContext) -> None:
        _, reference, _ = _confirmation(body, view)
        ack(response_action="update", view=done_modal(f":hourglass: {reference}: sending for "
                                                       "approval…").to_dict())
        hand_over(context, reference=reference, view_id=view["id"])

    def confirm(body: dict[str, Any], view: dict[str, Any], client: WebClient,
                context: BoltContext) -> None:
        if handed := context.get(AFTER_ACK):
            user, reference, picked = _confirmation(body, view)
            _confirm(deps, client, handed["view_id"], reference, user, picked)

    def submit_rejection(ack: Ack, body: dict[str, Any], view: dict[str, Any],
                         context: BoltContext) -> None:
        reason = _value(view["state"]["values"], Block.REASON)
        try:
            decision = service.decide(view["private_metadata"], approver=body["user"]["id"],
                                      approve=False, reason=reason)
        except DsrError as exc:
            ack(response_action="errors", errors={Block.REASON: str(exc)[:150]})
            return
        ack()
        hand_over(context, reference=decision.request.reference)

    def announce_rejection(body: dict[str, Any], view: dict[str, Any], client: WebClient,
                           context: BoltContext) -> None:
        if handed := context.get(AFTER_ACK):
            request = refresh_request_message(deps, client, handed["reference"])
            reason = _value(view["state"]["values"], Block.REASON)
            post_in_thread(client, request,
                           f":no_entry: Rejected by <@{body['user']['id']}>: {escape(reason)}")

    app.view(Callback.NEW_REQUEST)(ack=submit_intake, lazy=[show_matches])
    app.view(Callback.CONFIRM_MATCHES)(ack=submit_matches, lazy=[confirm])
    app.view(Callback.REJECT_REASON)(ack=submit_rejection, lazy=[announce_rejection])


def _confirmation(body: dict[str, Any], view: dict[str, Any]) -> tuple[str, str, set[str]]:
    """Who confirmed, which request, and the match keys they ticked."""
    picked = {text(_mapping(option).get("value"))
              for block in _mapping(_mapping(view.get("state")).get("values")).values()
              for element in _mapping(block).values()
              for option in _mapping(element).get("selected_options") or []}
    return body["user"]["id"], view["private_metadata"], picked


def _show_matches(deps: Deps, client: WebClient, view_id: str, reference: str) -> None:
    try:
        matches = deps.service.search(reference)
        client.views_update(view_id=view_id, view=matches_modal(reference, matches).to_dict())
    except Exception as exc:  # noqa: BLE001 - shown in the modal, logged without personal data
        log.error("search for %s failed: %s", reference, type(exc).__name__)
        client.views_update(view_id=view_id, view=done_modal(
            f":warning: {reference}: the search failed ({type(exc).__name__}: "
            f"{str(exc)[:300] if isinstance(exc, DsrError) else 'see the logs'}). The request "
            f"is recorded; cancel it with `/dsr cancel {reference}` and file it again.").to_dict())


def _confirm(deps: Deps, client: WebClient, view_id: str, reference: str, user: str,
             picked: set[str]) -> None:
    service = deps.service
    try:
        if not picked:
            service.cancel(reference, actor=user, reason="no records found")
            client.views_update(view_id=view_id, view=done_modal(
                f"{reference} canceled: no records found.").to_dict())
            return
        found = service.search(reference)
        confirmed = {system: [m for m in matches if match_key(m) in picked]
                     for system, matches in found.items()}
        request = service.confirm(reference, confirmed, actor=user)
        in_review = request.status == RequestStatus.IN_REVIEW
        # Posted without its buttons, which come once the message is saved as the request's
        # thread: a click can never arrive before the thread its answer is posted in is known.
        blocks = [b for b in request_message(deps, reference)[1] if b["type"] != "actions"]
        posted = client.chat_postMessage(
            channel=deps.approvals_channel,
            text=f"{reference} " + ("is in review" if in_review else "awaits approval"),
            blocks=blocks)
        service.set_thread(reference, channel=posted["channel"], ts=posted["ts"])
        refresh_request_message(deps, client, reference)
        if in_review:
            deps.wake_worker()  # its discovery starts now, not at the next scheduled run
        client.views_update(view_id=view_id, view=done_modal(
            f":mag_right: {reference} is in review: the bot is finding the subject's data. In its "
            f"thread in <#{deps.approvals_channel}> you then review what the erasure would do, "
            "line by line, before it goes to the approvers." if in_review else
            f":white_check_mark: {reference} is waiting for approval in <#{deps.approvals_channel}>."
        ).to_dict())
    except Exception as exc:  # noqa: BLE001 - shown in the modal, logged without personal data
        log.error("confirmation of %s failed: %s", reference, type(exc).__name__)
        message = str(exc) if isinstance(exc, DsrError) else "an internal error; see the logs"
        client.views_update(view_id=view_id, view=done_modal(
            f":warning: {reference} was not sent for approval: {message[:500]}").to_dict())


def request_message(deps: Deps, reference: str) -> tuple[DsrRequest, list[dict]]:
    """The request as it is now, and its message in the approvals channel (status, approvals,
    buttons, an erasure's plan summary)."""
    detail = deps.service.detail(reference, viewer=None)
    request = detail.request
    plan = None
    if request.type == RequestType.ERASURE:
        _, summary, discovery = deps.service.plan_summary(reference)
        plan = summary_text(summary, discovery)
    return request, as_dicts(approval_message(detail, deps.required_approvals(request.type),
                                              deps.service.today(), plan=plan))


def refresh_request_message(deps: Deps, client: WebClient, reference: str) -> DsrRequest:
    """Re-render the request's message in the approvals channel; returns the request as it is
    now."""
    request, blocks = request_message(deps, reference)
    if request.channel_id and request.thread_ts:
        client.chat_update(channel=request.channel_id, ts=request.thread_ts,
                           text=f"{reference}: {request.status}", blocks=blocks)
    return request


def post_in_thread(client: WebClient, request: DsrRequest, text: str,
                   blocks: list[dict] | None = None) -> None:
    if request.channel_id and request.thread_ts:
        client.chat_postMessage(channel=request.channel_id, thread_ts=request.thread_ts,
                                text=text, blocks=blocks)
