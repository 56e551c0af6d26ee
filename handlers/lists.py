"""Lists of requests: `/dsr list` and `/dsr find` (answered in the ack), their Previous / Next
buttons, a Home group's "N more" (the whole list in a modal) and the CSV of a list, by DM.

A list is named by the words of `/dsr list` (`open erasure mine`, `overdue`): parsed here into a
RequestFilter, and carried as they are by the buttons, so every page is the same list."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from typing import Any

from slack_bolt import App, BoltContext, Respond
from slack_sdk import WebClient

from handlers.deps import Deps, acknowledge, deps_of, opens_a_modal, replies_errors
from handlers.edge import parse_day, text
from handlers.ids import Action
from handlers.views.common import TYPE_LABELS, as_dicts, escape
from handlers.views.lists import PAGE_SIZE, list_blocks, list_modal, read_list_value
from services.errors import InvalidRequest
from services.lifecycle import TERMINAL
from services.request_lists import RequestFilter, RequestPage
from services.vocabulary import RequestStatus, RequestType

ECHO_LIMIT = 40  # how much of an unknown word a reply quotes
SUBJECT = re.compile(r"subject:([0-9a-f]{64})")  # a subject's lookup hash (`/dsr find`)
DUE_SOON_DAYS = 7


def parse_filters(words: str, user: str, deps: Deps) -> RequestFilter:
    """The filter `/dsr list` words name; InvalidRequest quoting the first word that is none."""
    statuses, types, subject = [], [], []
    received_from = received_to = due_from = due_before = None
    requester = awaiting = None
    today = deps.service.today()
    iterator = iter(words.split())
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
        elif lowered == "awaiting":
            awaiting = user
        elif lowered == "overdue":
            due_before = today
        elif lowered == "due-soon":
            due_from, due_before = today, today + timedelta(days=DUE_SOON_DAYS + 1)
        elif match := SUBJECT.fullmatch(lowered):
            subject.append(match.group(1))
        elif lowered in ("from", "to"):
            value = next(iterator, "")
            day = parse_day(value, f"`{lowered} {echo(value)}`")
            received_from, received_to = (day, received_to) if lowered == "from" else (
                received_from, day)
        else:
            raise InvalidRequest(f"`{echo(word)}` is not a status, a type, `mine`, `awaiting`, "
                                 "`overdue`, `due-soon`, `from` or `to`.")
    return RequestFilter(statuses=statuses, types=types, received_from=received_from,
                         received_to=received_to, requester=requester, due_from=due_from,
                         due_before=due_before, awaiting=awaiting, subject=subject)


def echo(typed: str) -> str:
    """What someone typed, quoted in a reply: escaped for mrkdwn and kept short."""
    return escape(typed[:ECHO_LIMIT] + ("…" if len(typed) > ECHO_LIMIT else ""))


def page_of(deps: Deps, user: str, words: str, offset: int = 0) -> RequestPage:
    """The page of the list `words` name, from `offset`."""
    return deps.service.page(parse_filters(words, user, deps), viewer=user, offset=offset,
                             limit=PAGE_SIZE)


def list_reply(deps: Deps, user: str, words: str, offset: int = 0) -> dict[str, Any]:
    """A page of a list as an ephemeral reply (the ack of `/dsr list`, or its replacement)."""
    blocks = list_blocks(page_of(deps, user, words, offset), deps.service.today(),
                         title_of(words), words)
    return {"response_type": "ephemeral", "text": title_of(words), "blocks": as_dicts(blocks)}


def title_of(words: str) -> str:
    if SUBJECT.search(words):
        return "Requests of the subject you searched for"
    return f"Requests: {escape(words)}" if words else "Requests"


def modal_of(deps: Deps, user: str, words: str, offset: int = 0) -> dict[str, Any]:
    """A page of a list as a modal (opened from the Home)."""
    page = page_of(deps, user, words, offset)
    return list_modal(page, deps.service.today(), title_of(words), words).to_dict()


@replies_errors
def turn_page(body: dict[str, Any], action: dict[str, Any], client: WebClient,
              respond: Respond, context: BoltContext) -> None:
    """Previous / Next: the reply replaced (a `/dsr list` answer) or the modal updated."""
    deps, user = deps_of(context), body["user"]["id"]
    offset, words = read_list_value(text(action.get("value")))
    if body.get("container", {}).get("type") == "view":
        client.views_update(view_id=body["view"]["id"], view=modal_of(deps, user, words, offset))
    else:
        respond(replace_original=True, **list_reply(deps, user, words, offset))


@replies_errors
def open_list(body: dict[str, Any], action: dict[str, Any], client: WebClient,
              respond: Respond, context: BoltContext) -> None:
    """A Home group's "N more": its whole list, in a modal that pages."""
    _, words = read_list_value(text(action.get("value")))
    client.views_open(trigger_id=body["trigger_id"],
                      view=modal_of(deps_of(context), body["user"]["id"], words))


@replies_errors
def send_csv_button(body: dict[str, Any], action: dict[str, Any], client: WebClient,
                    respond: Respond, context: BoltContext) -> None:
    _, words = read_list_value(text(action.get("value")))
    send_csv(deps_of(context), client, body["user"]["id"], words)
    respond(text=":bookmark_tabs: The list is in your direct messages as a CSV file.",
            response_type="ephemeral", replace_original=False)


CSV_COLUMNS = ("reference", "type", "jurisdiction", "status", "received_at", "due_on",
               "extended_due_on", "closed_at", "requester", "simulation")


def requests_csv(requests: Any) -> bytes:
    """The rows as CSV (UTF-8 with a byte-order mark, which spreadsheets need to read it as
    such). No subject data: a list names requests, as the channel does."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for r in requests:
        closed = r.closed_at.isoformat(timespec="seconds") if r.closed_at else ""
        writer.writerow([r.reference, TYPE_LABELS[r.type], r.jurisdiction_code,
                         RequestStatus(r.status).value, r.received_at.isoformat(timespec="seconds"),
                         r.due_on, r.extended_due_on or "", closed, r.requester_slack_id,
                         "yes" if r.simulation else "no"])
    return ("\ufeff" + out.getvalue()).encode()


def send_csv(deps: Deps, client: WebClient, user: str, words: str) -> None:
    filters = parse_filters(words, user, deps)
    content = requests_csv(deps.service.each(filters, viewer=user))
    channel = client.conversations_open(users=user)["channel"]["id"]
    name = "-".join(["dsr-requests", *re.findall(r"[a-z0-9-]+", words.lower())])[:80]
    client.files_upload_v2(channel=channel, content=content, filename=f"{name}.csv",
                           title=title_of(words),
                           initial_comment=f":bookmark_tabs: {title_of(words)}, as CSV.")


def register(app: App) -> None:
    app.action(re.compile(f"^{Action.LIST_PAGE}:"))(ack=acknowledge, lazy=[turn_page])
    app.action(re.compile(f"^{Action.LIST_OPEN}:"))(opens_a_modal(open_list))
    app.action(Action.LIST_CSV)(ack=acknowledge, lazy=[send_csv_button])

