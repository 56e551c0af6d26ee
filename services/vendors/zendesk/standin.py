"""The Zendesk Support API stand-in: Flask routes over `ZendeskState`, behind `TrafficControl`.

    sandbox = ZendeskSandbox(seed=7, people=40)
    with server.serve(sandbox.wsgi) as running:
        ...  # the API is at f"{running.url}/api/v2/", every path with and without `.json`

Follows `shared/docs/zendesk.md` and Zendesk's reference (OpenAPI operations and help-center
articles, cited beside each rule): Basic auth (`{email}/token`, the token) or Bearer, Zendesk's
bodies and errors, offset paging (`page`, `per_page`, full `next_page` URLs, 400 past 10,000
records) and cursor paging (`page[size]`, `meta`, `links`), search capped at 1,000 results,
bulk calls answered with jobs, the account-wide rate limit with `Retry-After` and the
`X-Rate-Limit`/`ratelimit-*` headers (TrafficControl), and the per-endpoint limits (permanent user
deletion, ticket deletion, search export); both limits are off when `requests_per_minute` is
None. Time (export cursors, limits) comes from the injectable `clock`.

Tickets, as Zendesk keeps them: closed ones refuse updates and the old redactions; archived ones
(closed, `add_ticket(archived=True)`) are still shown by id, by search and the export, not by the
user ticket lists; comments may hold inline images (listed with `include_inline_images=true`),
voice comments (`VoiceComment` with `data`) and attachments, which redact to an empty
`redacted.txt`; side conversations (`/tickets/{id}/side_conversations`) hold their own messages;
custom fields (`custom_fields`, `fields`) are found by free text and `custom_field_<id>:`.
The account settings `agent_workspace` and `can_delete_tickets` gate what needs them (403).

`/search/export` takes the type only in `filter[type]`: a `type:` in its query is refused
(ExportSearchResults: "Searches with type in the query string will result in an error"), its
cursors expire after an hour and it has its own limit of 100 requests a minute.

Where the reference is silent, this stand-in answers as follows:
- `DELETE /deleted_tickets/{id}` answers a job, as Zendesk does (404 at once if the ticket is
  not soft-deleted); failed job entries read `"errors": "RecordNotFound: Not found"` and the like;
- a soft-deleted user is still shown by `GET /users/{id}` (`active: false`) and
  `/deleted_users/{id}`, but no longer found by searches or changed by updates (404); once
  permanently deleted, `GET /users/{id}` is 404 and only `GET /deleted_users` lists what is left;
- the refusals whose status and body the reference does not give (a type in an export's query,
  an expired or foreign export cursor) are 400 in the Search API's error format
  `{"error": "invalid", "description": ...}`;
- a search property this stand-in does not know (`organization:`...) finds nothing.

Test faults, not vendor behaviour: `FaultPlan` (injected 429/5xx; answers lost after the call
was processed), `fail_next_job()` (the next job ends `failed`) and `lose_writes(kinds)` (writes
answer 200 as if applied, nothing changes: a misbehaving proxy), so that callers which trust an
answer without reading back are caught.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import threading
import time
import uuid
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter

from services.sandbox.people import people as synthetic_people
from services.sandbox.traffic import FaultPlan, TrafficControl
from services.vendors.zendesk.standin_state import (
    MAX_IDS,
    WRITE_KINDS,
    AccountSettings,
    Record,
    ZendeskError,
    ZendeskState,
    bad_request,
    export_terms,
    parse_ids,
    search_invalid,
)

OFFSET_LIMIT = 10_000  # records reachable with offset paging
SEARCH_LIMIT = 1_000  # results reachable with /search
PAGE_SIZE = 100
EXPORT_PAGE_LIMIT = 1_000  # ExportSearchResults: "a maximum of 1000 records per page"
EXPORT_CURSOR_LIFETIME = 3_600.0  # ExportSearchResults: the after_cursor "expires after one hour"
# name -> (calls, seconds): Zendesk's limits on single endpoints (shared/docs/zendesk.md);
# ticket deletion: DeleteTicket "400 tickets every 1 minute"; search export: ExportSearchResults
# "rate-limited to 100 requests per minute per account" (it counts towards the account limit too).
ENDPOINT_LIMITS = {"permanent_user_deletion": (700, 600.0), "ticket_deletion": (400, 60.0),
                   "search_export": (100, 60.0)}


def zendesk_limit_headers(limit: int, remaining: int, reset: int) -> list[tuple[str, str]]:
    """The account limit's headers: "x-rate-limit, ratelimit-limit, x-rate-limit-remaining,
    ratelimit-remaining, ratelimit-reset" (Best practices for avoiding rate limiting; zenpy's
    recorded answers carry the same five)."""
    return [("X-Rate-Limit", str(limit)), ("X-Rate-Limit-Remaining", str(remaining)),
            ("ratelimit-limit", str(limit)), ("ratelimit-remaining", str(remaining)),
            ("ratelimit-reset", str(reset))]


def zendesk_error_body(status: int, retry_after: int | None) -> tuple[str, bytes]:
    """The body Zendesk sends with a 429 (plain text) or a 5xx (JSON)."""
    if status == 429:
        return "text/plain; charset=utf-8", b"Rate limit exceeded"
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    body = {"error": reason.replace(" ", ""), "description": f"{reason}: please retry later"}
    return "application/json; charset=utf-8", json.dumps(body).encode()


class EndpointLimits:
    """Sliding windows for the endpoints Zendesk limits on their own."""

    def __init__(self, enabled: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = enabled
        self.clock = clock
        self._calls: dict[str, deque[float]] = {name: deque() for name in ENDPOINT_LIMITS}
        self._lock = threading.Lock()

    def retry_after(self, name: str) -> int | None:
        """Count a call; the seconds to wait if it is over the limit, else None."""
        if not self.enabled:
            return None
        limit, period = ENDPOINT_LIMITS[name]
        with self._lock:
            now, calls = self.clock(), self._calls[name]
            while calls and now - calls[0] >= period:
                calls.popleft()
            if len(calls) >= limit:
                return max(1, int(period - (now - calls[0])) + 1)
            calls.append(now)
            return None


class _RateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after


@dataclass
class _Account:
    state: ZendeskState
    email: str
    token: str
    limits: EndpointLimits
    clock: Callable[[], float]


class _HexConverter(BaseConverter):
    regex = "[0-9a-fA-F]+"


bp = Blueprint("zendesk", __name__, url_prefix="/api/v2")


def _route(rule: str, method: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a view on `rule` and on `rule.json`."""
    def register(view: Callable[..., Any]) -> Callable[..., Any]:
        bp.add_url_rule(rule, view_func=view, methods=[method])
        bp.add_url_rule(f"{rule}.json", endpoint=f"{view.__name__}_json", view_func=view,
                        methods=[method])
        return view

    return register


def _account() -> _Account:
    account: _Account = current_app.extensions["zendesk"]
    return account


def _state() -> ZendeskState:
    return _account().state


def _limit(name: str) -> None:
    retry_after = _account().limits.retry_after(name)
    if retry_after is not None:
        raise _RateLimited(retry_after)


@bp.before_request
def _authenticate() -> Response | None:
    account = _account()
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer":
        valid = hmac.compare_digest(credentials.strip(), account.token)
    elif scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(credentials).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user, password = "", ""
        valid = (hmac.compare_digest(user, f"{account.email}/token")
                 and hmac.compare_digest(password, account.token))
    else:
        valid = False
    if valid:
        return None
    response = _json({"error": "Couldn't authenticate you"}, 401)
    response.headers["WWW-Authenticate"] = 'Basic realm="Web Password"'
    return response


# --- rendering ------------------------------------------------------------------------------

def _json(body: Any, status: int = 200) -> Response:
    return current_app.response_class(json.dumps(body, ensure_ascii=False), status=status,
                                      content_type="application/json; charset=utf-8")


def _no_content() -> Response:
    response = Response(status=204)
    del response.headers["Content-Type"]
    return response


def _base() -> str:
    return f"{request.host_url}api/v2"


def _user(user: Record) -> Record:
    return {**user, "url": f"{_base()}/users/{user['id']}.json"}


def _deleted_user(user: Record) -> Record:
    return {**user, "url": f"{_base()}/deleted_users/{user['id']}.json"}


def _identity(identity: Record) -> Record:
    return {**identity,
            "url": f"{_base()}/users/{identity['user_id']}/identities/{identity['id']}.json"}


def _ticket(ticket: Record) -> Record:
    return {**ticket, "url": f"{_base()}/tickets/{ticket['id']}.json"}


_TOKEN_PATH = "/attachments/token/"


def _host() -> str:
    return request.host_url.rstrip("/")


def _attachment(attachment: Record) -> Record:
    """The state keeps content URLs relative to the server; Zendesk answers them whole."""
    content_url = f"{_host()}{attachment['content_url']}"
    return {"url": f"{_base()}/attachments/{attachment['id']}.json", **attachment,
            "content_url": content_url, "mapped_content_url": content_url}


def _comment(comment: Record) -> Record:
    html_body = comment["html_body"].replace(f'src="{_TOKEN_PATH}', f'src="{_host()}{_TOKEN_PATH}')
    return {**comment, "html_body": html_body,
            "attachments": [_attachment(a) for a in comment["attachments"]]}


def _stored(text: str) -> str:
    """A URL or html_body as the client has it, with this server's attachment URLs made
    relative again, as the state keeps them."""
    return text.replace(f"{_host()}{_TOKEN_PATH}", _TOKEN_PATH)


def _side_conversation(conversation: Record) -> Record:
    return {**conversation, "url": f"{_base()}/tickets/{conversation['ticket_id']}"
                                   f"/side_conversations/{conversation['id']}"}


def _side_event(event: Record) -> Record:
    # Side Conversation Events, JSON format: `url` is "The API url of the side conversation"
    return {**event, "url": f"{_base()}/tickets/{event['ticket_id']}"
                            f"/side_conversations/{event['side_conversation_id']}"}


def _job(job: Record) -> Record:
    return {**job, "url": f"{_base()}/job_statuses/{job['id']}.json"}


def _result(result: Record) -> Record:
    return _ticket(result) if result["result_type"] == "ticket" else _user(result)


# --- request parsing and paging ---------------------------------------------------------------

def _int_arg(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise bad_request("InvalidValue", f"{name} must be an integer") from None


def _body(key: str) -> Any:
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict) or key not in payload:
        raise bad_request("InvalidValue", f'expected a JSON object with a "{key}" key')
    return payload[key]


def _url(**replace: Any) -> str:
    """This request's URL with some query parameters replaced (None drops one)."""
    params = [(k, v) for k, v in request.args.items(multi=True) if k not in replace]
    params += [(k, str(v)) for k, v in replace.items() if v is not None]
    return f"{request.base_url}?{urlencode(params)}" if params else request.base_url


def _offset_window() -> tuple[int, int, int]:
    """page, per_page (at most 100) and the offset of the page's first record."""
    page, per_page = _int_arg("page", 1), min(_int_arg("per_page", PAGE_SIZE), PAGE_SIZE)
    if page < 1 or per_page < 1:
        raise bad_request("InvalidValue", "page and per_page must be positive")
    return page, per_page, (page - 1) * per_page


def _offset_links(page: int, per_page: int, total: int) -> Record:
    more = page * per_page < total
    return {"next_page": _url(page=page + 1) if more else None,
            "previous_page": _url(page=page - 1) if page > 1 else None, "count": total}


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _invalid_pagination(detail: str) -> ZendeskError:
    return ZendeskError(400, {"errors": [{"code": "InvalidPaginationParameter",
                                          "title": "Invalid Pagination Parameter",
                                          "detail": detail}]})


def _position(keys: list[tuple[Any, ...]], raw: str, find: Callable[..., int]) -> int:
    """Where the cursor `raw` falls among the sorted `keys`."""
    try:
        cursor = tuple(json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))))
        return find(keys, cursor)
    except (ValueError, TypeError, binascii.Error):  # not a cursor of this list
        raise _invalid_pagination("page[after] / page[before] is not a cursor this endpoint "
                                  "gave") from None


def _cursor_window(keys: list[tuple[Any, ...]], max_size: int) -> tuple[slice, Record]:
    """Which of `keys` (sorted, one per record) this request's cursor page holds, and its `meta`
    and `links`."""
    size = _int_arg("page[size]", PAGE_SIZE)
    if not 1 <= size <= max_size:
        raise _invalid_pagination(f"page[size] must be between 1 and {max_size}")
    if after := request.args.get("page[after]"):
        start = _position(keys, after, bisect_right)
        window, has_more = slice(start, start + size), start + size < len(keys)
    elif before := request.args.get("page[before]"):
        end = _position(keys, before, bisect_left)
        start = max(0, end - size)
        window, has_more = slice(start, end), start > 0
    else:
        window, has_more = slice(0, size), size < len(keys)
    page = keys[window]
    after_cursor = _cursor(page[-1]) if page else None
    before_cursor = _cursor(page[0]) if page else None
    meta = {"has_more": has_more, "after_cursor": after_cursor, "before_cursor": before_cursor}
    links = {
        "next": _url(**{"page[size]": size, "page[after]": after_cursor, "page[before]": None})
        if after_cursor else None,
        "prev": _url(**{"page[size]": size, "page[before]": before_cursor, "page[after]": None})
        if before_cursor else None,
    }
    return window, {"meta": meta, "links": links}


def _window(ids: list[Any]) -> tuple[slice, Record]:
    """The page a list request asks for among `ids` (one per record, in the list's order: the
    cursors are ids) and its paging fields: cursor paging when `page[...]` is given, else offset
    paging."""
    if any(name in request.args for name in ("page[size]", "page[after]", "page[before]")):
        return _cursor_window([(i,) for i in ids], PAGE_SIZE)
    number, per_page, start = _offset_window()
    if start >= OFFSET_LIMIT:
        raise bad_request("InvalidPaginationParameter",
                          "Offset pagination is limited to the first 10,000 records: "
                          "use cursor pagination (page[size]) to go further")
    return slice(start, start + per_page), _offset_links(number, per_page, len(ids))


def _listing(name: str, records: list[Record], render: Callable[[Record], Record]) -> Response:
    """A list endpoint over `records` (see `_window`)."""
    window, paging = _window([r["id"] for r in records])
    return _json({name: [render(r) for r in records[window]], **paging})


# --- users and identities ---------------------------------------------------------------------

@_route("/users/me", "GET")
def show_me() -> Response:
    """The authenticated agent (the API token's owner)."""
    return _json({"user": _user(_state().user(_state().api_user_id))})


@_route("/users/<int:user_id>", "GET")
def show_user(user_id: int) -> Response:
    return _json({"user": _user(_state().user(user_id))})


@_route("/users/show_many", "GET")
def show_many_users() -> Response:
    users = _state().users_many(parse_ids(request.args.get("ids")))
    return _json({"users": [_user(u) for u in users]})


@_route("/users/search", "GET")
def search_users() -> Response:
    users = _state().search_users(query=request.args.get("query"),
                                  external_id=request.args.get("external_id"))
    return _listing("users", users, _user)


@_route("/users/<int:user_id>", "PUT")
def update_user(user_id: int) -> Response:
    return _json({"user": _user(_state().update_user(user_id, _body("user")))})


@_route("/users/update_many", "PUT")
def update_many_users() -> Response:
    """`?ids=` with `{"user": {...}}` for the same change, or `{"users": [{"id": ...}, ...]}`."""
    if "ids" in request.args:
        changes = _body("user")
        by_id = {user_id: changes for user_id in parse_ids(request.args["ids"])}
    else:
        users = _body("users")
        if not isinstance(users, list) or not all(isinstance(u, dict) and "id" in u for u in users):
            raise bad_request("InvalidValue", 'users must be a list of objects with an "id"')
        if len(users) > MAX_IDS:
            raise bad_request("TooManyValues", f"users takes at most {MAX_IDS} values")
        by_id = {int(u["id"]): {k: v for k, v in u.items() if k != "id"} for u in users}
    return _json({"job_status": _job(_state().update_users_job(by_id))})


@_route("/users/<int:user_id>", "DELETE")
def delete_user(user_id: int) -> Response:
    return _json({"user": _user(_state().soft_delete_user(user_id))})


@_route("/users/destroy_many", "DELETE")
def destroy_many_users() -> Response:
    ids = parse_ids(request.args.get("ids"))
    return _json({"job_status": _job(_state().destroy_users_job(ids))})


@_route("/deleted_users", "GET")
def list_deleted_users() -> Response:
    return _listing("deleted_users", _state().deleted_users(), _deleted_user)


@_route("/deleted_users/<int:user_id>", "GET")
def show_deleted_user(user_id: int) -> Response:
    return _json({"deleted_user": _deleted_user(_state().deleted_user(user_id))})


@_route("/deleted_users/<int:user_id>", "DELETE")
def purge_user(user_id: int) -> Response:
    _limit("permanent_user_deletion")
    return _json({"deleted_user": _deleted_user(_state().purge_user(user_id))})


@_route("/users/<int:user_id>/identities", "GET")
def list_identities(user_id: int) -> Response:
    return _listing("identities", _state().user_identities(user_id), _identity)


@_route("/users/<int:user_id>/identities/<int:identity_id>", "GET")
def show_identity(user_id: int, identity_id: int) -> Response:
    return _json({"identity": _identity(_state().identity(user_id, identity_id))})


@_route("/users/<int:user_id>/identities/<int:identity_id>", "PUT")
def update_identity(user_id: int, identity_id: int) -> Response:
    identity = _state().update_identity(user_id, identity_id, _body("identity"))
    return _json({"identity": _identity(identity)})


@_route("/users/<int:user_id>/identities/<int:identity_id>", "DELETE")
def delete_identity(user_id: int, identity_id: int) -> Response:
    _state().delete_identity(user_id, identity_id)
    return _no_content()


@_route("/users/<int:user_id>/tickets/<any(requested, ccd, assigned):relation>", "GET")
def user_tickets(user_id: int, relation: str) -> Response:
    """List Tickets of a user: the page is picked among the user's ticket ids and only its
    tickets are copied, both at one moment."""
    state = _state()
    with state.locked():
        ids = state.user_ticket_ids(user_id, relation)
        window, paging = _window(ids)
        tickets = state.tickets_many(ids[window])
    return _json({"tickets": [_ticket(t) for t in tickets], **paging})


# --- tickets and comments ---------------------------------------------------------------------

@_route("/tickets/<int:ticket_id>", "GET")
def show_ticket(ticket_id: int) -> Response:
    return _json({"ticket": _ticket(_state().ticket(ticket_id))})


@_route("/tickets/show_many", "GET")
def show_many_tickets() -> Response:
    ids = parse_ids(request.args.get("ids"))
    return _json({"tickets": [_ticket(t) for t in _state().tickets_many(ids)]})


@_route("/tickets/<int:ticket_id>", "PUT")
def update_ticket(ticket_id: int) -> Response:
    """UpdateTicket: answers TicketUpdateResponse, the ticket and the audit of the change."""
    answer = _state().update_ticket(ticket_id, _body("ticket"))
    return _json({"ticket": _ticket(answer["ticket"]), "audit": answer["audit"]})


@_route("/tickets/<int:ticket_id>/comments", "GET")
def list_comments(ticket_id: int) -> Response:
    """ListTicketComments; `include_inline_images=true` lists inline images as attachments."""
    inline = request.args.get("include_inline_images", "").lower() == "true"
    comments = _state().ticket_comments(ticket_id, include_inline_images=inline)
    if request.args.get("sort_order") == "desc":
        comments.reverse()
    return _listing("comments", comments, _comment)


@_route("/tickets/<int:ticket_id>/comments/<int:comment_id>/redact", "PUT")
def redact_comment(ticket_id: int, comment_id: int) -> Response:
    """RedactStringInComment: `{"text": ...}`, answers TicketCommentResponse."""
    comment = _state().redact_comment(ticket_id, comment_id, _body("text"))
    return _json({"comment": _comment(comment)})


@_route("/tickets/<int:ticket_id>/comments/<int:comment_id>/attachments/<int:attachment_id>"
        "/redact", "PUT")
def redact_attachment(ticket_id: int, comment_id: int, attachment_id: int) -> Response:
    """RedactCommentAttachment (zenpy: `attachments.redact(ticket, comment, attachment_id)`,
    which sends `{}`); answers AttachmentResponse."""
    attachment = _state().redact_attachment(ticket_id, comment_id, attachment_id)
    return _json({"attachment": _attachment(attachment)})


@_route("/attachments/<int:attachment_id>", "GET")
def show_attachment(attachment_id: int) -> Response:
    """ShowAttachment: AttachmentResponse."""
    return _json({"attachment": _attachment(_state().attachment_by_id(attachment_id))})


@_route("/comment_redactions/<int:comment_id>", "PUT")
def redact_comment_html(comment_id: int) -> Response:
    """RedactTicketCommentInAgentWorkspace: body `ticket_id` (required), `html_body` and
    `external_attachment_urls` (optional); answers TicketCommentResponse."""
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict) or not isinstance(payload.get("ticket_id"), int):
        raise bad_request("InvalidValue", "ticket_id is required: the ID of the ticket")
    html_body = payload.get("html_body")
    urls = payload.get("external_attachment_urls")
    if urls is not None and not (isinstance(urls, list) and all(isinstance(u, str) for u in urls)):
        raise bad_request("InvalidValue", "external_attachment_urls must be a list of URLs")
    comment = _state().redact_comment_html(
        comment_id, payload["ticket_id"],
        _stored(html_body) if isinstance(html_body, str) else html_body,
        [_stored(url) for url in urls or []])
    return _json({"comment": _comment(comment)})


@_route("/tickets/<int:ticket_id>/side_conversations", "GET")
def list_side_conversations(ticket_id: int) -> Response:
    """Side Conversations API, List Side Conversations."""
    conversations = _state().ticket_side_conversations(ticket_id)
    return _listing("side_conversations", conversations, _side_conversation)


@_route("/tickets/<int:ticket_id>/side_conversations/<uuid:conversation_id>", "GET")
def show_side_conversation(ticket_id: int, conversation_id: uuid.UUID) -> Response:
    conversation = _state().side_conversation(ticket_id, str(conversation_id))
    return _json({"side_conversation": _side_conversation(conversation)})


@_route("/tickets/<int:ticket_id>/side_conversations/<uuid:conversation_id>/events", "GET")
def list_side_conversation_events(ticket_id: int, conversation_id: uuid.UUID) -> Response:
    """Side Conversation Events: the messages (subject, body, html_body, from, to)."""
    events = _state().side_conversation_events(ticket_id, str(conversation_id))
    return _listing("events", events, _side_event)


@_route("/tickets/<int:ticket_id>", "DELETE")
def delete_ticket(ticket_id: int) -> Response:
    _limit("ticket_deletion")
    _state().soft_delete_ticket(ticket_id)
    return _no_content()


@_route("/tickets/destroy_many", "DELETE")
def destroy_many_tickets() -> Response:
    ids = parse_ids(request.args.get("ids"))
    return _json({"job_status": _job(_state().destroy_tickets_job(ids))})


@_route("/deleted_tickets", "GET")
def list_deleted_tickets() -> Response:
    return _listing("deleted_tickets", _state().deleted_ticket_list(), dict)


@_route("/deleted_tickets/<int:ticket_id>", "DELETE")
def purge_ticket(ticket_id: int) -> Response:
    job = _state().purge_tickets_job([ticket_id], must_exist=True)
    return _json({"job_status": _job(job)})


@_route("/deleted_tickets/destroy_many", "DELETE")
def purge_many_tickets() -> Response:
    ids = parse_ids(request.args.get("ids"))
    return _json({"job_status": _job(_state().purge_tickets_job(ids))})


# --- search and jobs --------------------------------------------------------------------------

@_route("/search", "GET")
def search() -> Response:
    page, per_page, start = _offset_window()
    if start >= SEARCH_LIMIT:
        raise ZendeskError(422, {"error": "invalid", "description":
                                 "Invalid search: Requested response size was greater than "
                                 "Search Response Limits"})
    results, count = _state().search(request.args.get("query", ""),
                                     sort_by=request.args.get("sort_by", "created_at"),
                                     descending=request.args.get("sort_order") == "desc",
                                     start=start, size=per_page)
    return _json({"results": [_result(r) for r in results], "facets": None,
                  **_offset_links(page, per_page, count)})


@_route("/search/count", "GET")
def search_count() -> Response:
    return _json({"count": _state().search(request.args.get("query", ""), size=0)[1]})


@_route("/search/export", "GET")
def search_export() -> Response:
    """ExportSearchResults: one type, in `filter[type]` only; cursor paging forward only ("The
    `prev` property is always null because backward pagination is not supported"), at most 1,000
    a page, ordered by `created_at`, no `count`; each `after_cursor` expires after one hour; 100
    requests a minute per account."""
    _limit("search_export")
    kind = request.args.get("filter[type]")
    if kind not in ("ticket", "user", "organization", "group"):
        raise bad_request("InvalidValue",
                          "filter[type] is required: ticket, user, organization or group")
    size = _int_arg("page[size]", PAGE_SIZE)
    if not 1 <= size <= EXPORT_PAGE_LIMIT:
        raise _invalid_pagination(f"page[size] must be between 1 and {EXPORT_PAGE_LIMIT}")
    if "page[before]" in request.args:
        raise search_invalid("Invalid search: backward pagination is not supported")
    terms = export_terms(request.args.get("query", ""))
    after = request.args.get("page[after]")
    page, has_more = _state().search_export(terms, kind, size=size,
                                            after=_export_position(after) if after else None)
    after_cursor = (_cursor([page[-1]["created_at"], page[-1]["id"], _account().clock()])
                    if page else None)
    links = {"next": _url(**{"page[size]": size, "page[after]": after_cursor})
             if has_more else None, "prev": None}
    meta = {"has_more": has_more, "after_cursor": after_cursor, "before_cursor": None}
    return _json({"results": [_result(r) for r in page], "facets": None, "meta": meta,
                  "links": links})


def _export_position(raw: str) -> tuple[Any, ...]:
    """Where an export cursor points, if this export gave it less than an hour ago."""
    try:
        created_at, record_id, issued = json.loads(
            base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        position = (str(created_at), int(record_id))
        issued = float(issued)
    except (ValueError, TypeError, binascii.Error):
        raise search_invalid("Invalid search: page[after] is not a cursor of this export") \
            from None
    if _account().clock() - issued >= EXPORT_CURSOR_LIFETIME:
        raise search_invalid("Invalid search: the cursor has expired; cursors of an export "
                             "live one hour, start the export again")
    return position


@_route("/job_statuses/<hex:job_id>", "GET")
def show_job(job_id: str) -> Response:
    return _json({"job_status": _job(_state().read_job(job_id))})


@_route("/job_statuses/show_many", "GET")
def show_many_jobs() -> Response:
    raw = [part.strip() for part in request.args.get("ids", "").split(",") if part.strip()]
    if not raw or len(raw) > MAX_IDS:
        raise bad_request("TooManyValues" if raw else "InvalidValue",
                          f"ids takes 1 to {MAX_IDS} job ids")
    return _json({"job_statuses": [_job(j) for j in _state().read_jobs(raw)]})


# --- the app ----------------------------------------------------------------------------------

def _attachment_content(token: str) -> Response:
    attachment = _state().attachment(token)
    if attachment is None:
        return _json({"error": "RecordNotFound", "description": "Not found"}, 404)
    if attachment["size"] == 0:  # a redacted attachment: the empty "redacted.txt"
        return Response(b"", mimetype="text/plain")
    content = f"Sandbox attachment {attachment['file_name']} (synthetic data)\n".encode()
    return Response(content, mimetype=attachment["content_type"])


def create_app(state: ZendeskState, *, email: str, token: str, endpoint_limits: bool = True,
               clock: Callable[[], float] = time.monotonic) -> Flask:
    """The stand-in's Flask app over `state`; `endpoint_limits` turns on the per-endpoint 429s;
    `clock` (seconds) times those limits and the export cursors."""
    app = Flask(__name__)
    app.url_map.converters["hex"] = _HexConverter
    app.extensions["zendesk"] = _Account(state, email, token,
                                         EndpointLimits(endpoint_limits, clock=clock), clock)
    app.register_blueprint(bp)
    app.add_url_rule("/attachments/token/<token>/", view_func=_attachment_content)

    @app.errorhandler(ZendeskError)
    def zendesk_error(error: ZendeskError) -> Response:
        return _json(error.body, error.status)

    @app.errorhandler(_RateLimited)
    def rate_limited(error: _RateLimited) -> Response:
        content_type, body = zendesk_error_body(429, error.retry_after)
        return Response(body, status=429, content_type=content_type,
                        headers={"Retry-After": str(error.retry_after)})

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        if status in (404, 405):
            return _json({"error": "InvalidEndpoint", "description": "Not found"}, 404)
        return _json({"error": error.name.replace(" ", ""), "description": error.description},
                     status)

    return app


class ZendeskSandbox:
    """A seeded Zendesk account served as WSGI (`wsgi`), for simulation mode and tests.

    `clock` (seconds, monotonic) drives the rate limits and export cursor expiry, so tests move
    time instead of waiting. `agent_workspace` and `can_delete_tickets` are the account settings
    (`settings`, changeable later). `lost_writes` names kinds of write (WRITE_KINDS) that answer
    as if applied but change nothing: a test fault, not Zendesk behaviour.
    """

    def __init__(self, *, seed: int = 0, people: int = 40,
                 requests_per_minute: int | None = 700, faults: FaultPlan | None = None,
                 job_polls: int = 2, email: str = "agent@example.com",
                 token: str = "sandbox-token", clock: Callable[[], float] = time.monotonic,
                 agent_workspace: bool = True, can_delete_tickets: bool = True,
                 lost_writes: Iterable[str] = ()) -> None:
        settings = AccountSettings(agent_workspace=agent_workspace,
                                   can_delete_tickets=can_delete_tickets)
        self.state = ZendeskState(seed=seed, job_polls=job_polls, api_email=email,
                                  settings=settings)
        self.state.seed_people(synthetic_people(people, seed))
        self.state.lose(lost_writes)
        self.app = create_app(self.state, email=email, token=token,
                              endpoint_limits=requests_per_minute is not None, clock=clock)
        self.traffic = TrafficControl(self.app, zendesk_error_body,
                                      requests_per_minute=requests_per_minute, faults=faults,
                                      clock=clock, limit_headers=zendesk_limit_headers)
        self.wsgi = self.traffic

    @property
    def settings(self) -> AccountSettings:
        """The account settings; assign their fields to change them (`can_delete_tickets`...)."""
        return self.state.settings

    def lose_writes(self, kinds: Iterable[str] = WRITE_KINDS) -> None:
        """Test fault: from now on these kinds of write answer as if applied and change nothing
        (all of WRITE_KINDS by default; `()` ends the fault). `sandbox.state.lost` lists them."""
        self.state.lose(kinds)

    def fail_next_job(self, message: str = "Failed: the job could not be completed") -> None:
        """Test fault: the next bulk job ends `failed` with `message`, without effect."""
        self.state.fail_next_job(message)

    def add_user(self, name: str, email: str | None = None, phone: str | None = None,
                 external_id: str | None = None, role: str = "end-user") -> Record:
        return self.state.add_user(name, email, phone, external_id, role)

    def add_ticket(self, requester_id: int, *, subject: str, description: str,
                   status: str = "open", collaborator_ids: Iterable[int] = (),
                   assignee_id: int | None = None, comments: Iterable[str] = (),
                   attachment: bool = False, archived: bool = False,
                   inline_image: bool = False, side_conversations: Iterable[str] = (),
                   voice_comment: bool = False,
                   custom_fields: Mapping[int, Any] | None = None) -> Record:
        """A ticket (see ZendeskState.add_ticket); the extras are off unless asked for."""
        return self.state.add_ticket(requester_id, subject=subject, description=description,
                                     status=status, collaborator_ids=tuple(collaborator_ids),
                                     assignee_id=assignee_id, comments=tuple(comments),
                                     attachment=attachment, archived=archived,
                                     inline_image=inline_image,
                                     side_conversations=tuple(side_conversations),
                                     voice_comment=voice_comment,
                                     custom_fields=dict(custom_fields or {}))

    def snapshot(self) -> Record:
        """Users, identities, tickets, comments, deletions and suspensions; no volatile data."""
        return self.state.snapshot()
