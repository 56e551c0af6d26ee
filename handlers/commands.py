"""The `/dsr` slash command."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from handlers.deps import Deps, replies_errors
from handlers.edge import parse_day, text, too_long
from handlers.views.common import as_dicts, escape, section
from handlers.views.intake import intake_modal
from handlers.views.request import detail_blocks, help_blocks, list_blocks
from services.errors import InvalidRequest
from services.lifecycle import TERMINAL
from services.requests import RequestFilter
from services.subjects import Identifier, mask
from storage.models import DsrRequest, IdentifierKind, RequestStatus, RequestType
from storage.queries import parse_reference

# The longest reason a command may give: what the column of an extension's reason holds (a
# cancellation's, which goes to the audit trail, is held to the same).
REASON_LIMIT = DsrRequest.__table__.c.extension_reason.type.length
ECHO_LIMIT = 40  # how much of an unknown word a reply quotes


def parse_filters(words: list[str], user: str) -> RequestFilter:
    statuses, types = [], []
    received_from = received_to = None
    requester = None
    iterator = iter(words)
    for word in iterator:
        lowered = word.lower()
        if lowered in {s.value for s in RequestStatus}:
            statuses.append(RequestStatus(lowered))
        elif lowered in {t.value for t in RequestType}:
            types.append(RequestType(lowered))
        elif lowered == "open":
            statuses += [s for s in RequestStatus if s not in TERMINAL]
        elif lowered == "mine":
            requester = user
        elif lowered in ("from", "to"):
            value = next(iterator, "")
            day = parse_day(value, f"`{lowered} {_echo(value)}`")
            received_from, received_to = (day, received_to) if lowered == "from" else (
                received_from, day)
        else:
            raise InvalidRequest(f"`{_echo(word)}` is not a status, a type, `mine`, `from` or `to`.")
    return RequestFilter(statuses=statuses, types=types, received_from=received_from,
                         received_to=received_to, requester=requester)


def register(app: App, deps: Deps) -> None:
    service = deps.service

    @replies_errors
    def dsr(ack: Ack, command: dict[str, Any]) -> None:
        """Answers in the acknowledgement; `new` and `search` are finished by `after_ack`."""
        user = command["user_id"]
        word, rest = _words(command)

        if word == "new":
            ack()
            return
        if word in ("", "help"):
            ack(response_type="ephemeral", blocks=as_dicts(help_blocks()), text="DSR Desk help")
            return
        if word == "list":
            today = service.today()
            requests = service.list(parse_filters(rest.split(), user), viewer=user)
            ack(response_type="ephemeral", text="Requests",
                blocks=as_dicts(list_blocks(requests, today, f"Requests ({len(requests)} shown)")))
            return
        if word in ("show", "extend", "cancel", "ack", "report"):
            ref, _, reason = rest.partition(" ")
            if parse_reference(ref) is None:
                ack(response_type="ephemeral", text="Which request?", blocks=as_dicts(help_blocks(
                    f"`/dsr {word}` needs a reference such as DSR-000042.")))
                return
            if problem := too_long(reason, REASON_LIMIT):
                ack(response_type="ephemeral", text=f":warning: The reason: {problem}")
                return
            if word == "show":
                detail = service.detail(ref, viewer=user)
                ack(response_type="ephemeral", text=detail.request.reference,
                    blocks=as_dicts(detail_blocks(detail, service.today(),
                                                  deps.deliverables.export_until(detail.request))))
            elif word == "report":
                service.policy.require(service.policy.is_requester(user), "read compliance records")
                ack(response_type="ephemeral",
                    text=f":page_facing_up: Preparing the compliance record of {ref.upper()}…")
            elif word == "extend":
                new_due = service.extend(ref, actor=user, reason=reason)
                ack(response_type="ephemeral",
                    text=f":calendar: {ref.upper()} now due {new_due:%d %b %Y}. Tell the subject "
                         "about the extension and its reason.")
            elif word == "ack":
                request = service.acknowledge(ref, actor=user)
                ack(response_type="ephemeral",
                    text=f":incoming_envelope: Receipt of {request.reference} recorded as "
                         "acknowledged to the subject; no more acknowledgement reminders.")
            else:
                request = service.cancel(ref, actor=user, reason=reason)
                ack(response_type="ephemeral", text=f":x: {request.reference} canceled.")
            return
        if word == "search":
            if not rest:
                ack(response_type="ephemeral", text="`/dsr search` needs an email, a phone or a name.")
                return
            service.policy.require(service.policy.is_requester(user), "search for subjects")
            ack(response_type="ephemeral", text=":mag: Searching the connected systems…")
            return
        ack(response_type="ephemeral", text="DSR Desk help",
            blocks=as_dicts(help_blocks(f"`/dsr {_echo(word)}` is not a command.")))

    @replies_errors
    def after_ack(command: dict[str, Any], client: WebClient, respond: Respond) -> None:
        """The slow part of `new` (opening the form), `search` (asking every system) and
        `report` (making the record)."""
        user = command["user_id"]
        word, rest = _words(command)
        if word == "new":
            service.policy.require(service.policy.is_requester(user), "file data subject requests")
            client.views_open(trigger_id=command["trigger_id"],
                              view=intake_modal(deps.jurisdictions(), deps.systems).to_dict())
        elif word == "search" and rest and service.policy.is_requester(user):
            _search(deps, rest, respond)
        elif word == "report" and service.policy.is_requester(user):  # else refused in the ack
            ref = rest.partition(" ")[0]
            deps.deliverables.send_record(ref, user)
            respond(text=f":page_facing_up: The compliance record of {ref.upper()} is in your direct "
                         "messages (PDF and JSON).", response_type="ephemeral", replace_original=False)

    # Only the commands with work after the ack get a lazy listener: bolt copies the request and
    # starts a thread for each, which the others (such as the frequent `list`) need not pay.
    app.command("/dsr", matchers=[_finished_after_ack])(ack=dsr, lazy=[after_ack])
    app.command("/dsr")(dsr)


def _finished_after_ack(command: dict[str, Any]) -> bool:
    return _words(command)[0] in ("new", "search", "report")


def _words(command: dict[str, Any]) -> tuple[str, str]:
    """The subcommand and the rest: the one place the command's text is read."""
    word, _, rest = text(command.get("text")).partition(" ")
    return word.lower(), rest.strip()


def _echo(typed: str) -> str:
    """What someone typed, quoted in a reply: escaped for mrkdwn and kept short."""
    return escape(typed[:ECHO_LIMIT] + ("…" if len(typed) > ECHO_LIMIT else ""))


def _search(deps: Deps, text: str, respond: Respond) -> None:
    if "@" in text:
        kind = IdentifierKind.EMAIL
    elif text.lstrip("+").replace(" ", "").isdigit():
        kind = IdentifierKind.PHONE
    else:
        kind = IdentifierKind.NAME
    identifier = Identifier(kind, text)
    lines = []
    for system in deps.systems:
        simulated = system not in deps.live_systems
        try:
            matches = deps.service.search_identifiers(system, [identifier], simulation=simulated)
        except Exception as exc:  # noqa: BLE001 - one system failing must not hide the others
            lines.append(f"*{system}*: search failed ({type(exc).__name__}); try again later.")
            continue
        shown = ", ".join(f"{escape(m.label)} ({escape(m.record_id)})"
                          for m in matches[:20]) or "no match"
        lines.append(f"*{system}*{' (simulation)' if simulated else ''}: {shown}")
    respond(response_type="ephemeral", replace_original=True,
            text=f"Results for {mask(identifier)}", blocks=as_dicts([section("\n".join(lines))]))
