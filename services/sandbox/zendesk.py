"""The Zendesk Support API stand-in: Flask routes over `ZendeskState`, behind `TrafficControl`.

    sandbox = ZendeskSandbox(seed=7, people=40)
    with server.serve(sandbox.wsgi) as running:
        ...  # the API is at f"{running.url}/api/v2/", every path with and without `.json`

Follows `shared/docs/zendesk.md`: Basic auth (`{email}/token`, the token) or Bearer, Zendesk's
bodies and errors, offset paging (`page`, `per_page`, full `next_page` URLs, 400 past 10,000
records) and cursor paging (`page[size]`, `meta`, `links`), search capped at 1,000 results,
bulk calls answered with jobs, the account-wide rate limit with `Retry-After` (TrafficControl)
and the per-endpoint limits of the contract (permanent user deletion, ticket deletion); both
limits are off when `requests_per_minute` is None.

Where the contract is silent, this stand-in answers as follows:
- `DELETE /deleted_tickets/{id}` answers a job, as Zendesk does (404 at once if the ticket is
  not soft-deleted); failed job entries read `"errors": "RecordNotFound: Not found"` and the like;
- a soft-deleted user is still shown by `GET /users/{id}` (`active: false`) and
  `/deleted_users/{id}`, but no longer found by searches or changed by updates (404); once
  permanently deleted, `GET /users/{id}` is 404 and only `GET /deleted_users` lists what is left;
- `/search/export` takes `type:` in the query if it agrees with `filter[type]` (zenpy sends both);
- a search property this stand-in does not know (`organization:`...) finds nothing.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import threading
import time
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter

from services.sandbox.people import people as synthetic_people
from services.sandbox.traffic import FaultPlan, TrafficControl
from services.sandbox.zendesk_state import (
    MAX_IDS,
    Record,
    ZendeskError,
    ZendeskState,
    bad_request,
    parse_ids,
)

OFFSET_LIMIT = 10_000  # records reachable with offset paging
SEARCH_LIMIT = 1_000  # results reachable with /search
PAGE_SIZE = 100
# name -> (calls, seconds): Zendesk's limits on single endpoints (shared/docs/zendesk.md)
ENDPOINT_LIMITS = {"permanent_user_deletion": (700, 600.0), "ticket_deletion": (400, 60.0)}


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


def _comment(comment: Record) -> Record:
    host = request.host_url.rstrip("/")
    attachments = [{**a, "content_url": f"{host}{a['content_url']}"}
                   for a in comment["attachments"]]
    return {**comment, "attachments": attachments}


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


def _cursor_page(records: list[Record], key: Callable[[Record], tuple[Any, ...]],
                 max_size: int) -> tuple[list[Record], Record]:
    """One page of `records` (sorted by `key`) and its `meta` and `links`."""
    size = _int_arg("page[size]", PAGE_SIZE)
    if not 1 <= size <= max_size:
        raise _invalid_pagination(f"page[size] must be between 1 and {max_size}")
    keys = [key(r) for r in records]
    if after := request.args.get("page[after]"):
        start = _position(keys, after, bisect_right)
        page, has_more = records[start:start + size], start + size < len(records)
    elif before := request.args.get("page[before]"):
        end = _position(keys, before, bisect_left)
        start = max(0, end - size)
        page, has_more = records[start:end], start > 0
    else:
        page, has_more = records[:size], size < len(records)
    after_cursor = _cursor(key(page[-1])) if page else None
    before_cursor = _cursor(key(page[0])) if page else None
    meta = {"has_more": has_more, "after_cursor": after_cursor, "before_cursor": before_cursor}
    links = {
        "next": _url(**{"page[size]": size, "page[after]": after_cursor, "page[before]": None})
        if after_cursor else None,
        "prev": _url(**{"page[size]": size, "page[before]": before_cursor, "page[after]": None})
        if before_cursor else None,
    }
    return page, {"meta": meta, "links": links}


def _by_id(record: Record) -> tuple[Any, ...]:
    return (record["id"],)


def _listing(name: str, records: list[Record], render: Callable[[Record], Record]) -> Response:
    """A list endpoint: cursor paging when `page[...]` is given, else offset paging."""
    if any(name in request.args for name in ("page[size]", "page[after]", "page[before]")):
        page, paging = _cursor_page(records, _by_id, PAGE_SIZE)
        return _json({name: [render(r) for r in page], **paging})
    number, per_page, start = _offset_window()
    if start >= OFFSET_LIMIT:
        raise bad_request("InvalidPaginationParameter",
                          "Offset pagination is limited to the first 10,000 records: "
                          "use cursor pagination (page[size]) to go further")
    return _json({name: [render(r) for r in records[start:start + per_page]],
                  **_offset_links(number, per_page, len(records))})


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
    return _listing("tickets", _state().user_tickets(user_id, relation), _ticket)


# --- tickets and comments ---------------------------------------------------------------------

@_route("/tickets/<int:ticket_id>", "GET")
def show_ticket(ticket_id: int) -> Response:
    return _json({"ticket": _ticket(_state().ticket(ticket_id))})


@_route("/tickets/show_many", "GET")
def show_many_tickets() -> Response:
    ids = parse_ids(request.args.get("ids"))
    return _json({"tickets": [_ticket(t) for t in _state().tickets_many(ids)]})


@_route("/tickets/<int:ticket_id>/comments", "GET")
def list_comments(ticket_id: int) -> Response:
    comments = _state().ticket_comments(ticket_id)
    if request.args.get("sort_order") == "desc":
        comments.reverse()
    return _listing("comments", comments, _comment)


@_route("/tickets/<int:ticket_id>/comments/<int:comment_id>/redact", "PUT")
def redact_comment(ticket_id: int, comment_id: int) -> Response:
    comment = _state().redact_comment(ticket_id, comment_id, _body("text"))
    return _json({"comment": _comment(comment)})


@_route("/comment_redactions/<int:comment_id>", "PUT")
def redact_comment_html(comment_id: int) -> Response:
    ticket_id = _body("ticket_id")
    if not isinstance(ticket_id, int):
        raise bad_request("InvalidValue", "ticket_id must be an integer")
    comment = _state().redact_comment_html(comment_id, ticket_id, _body("html_body"))
    return _json({"comment": _comment(comment)})


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
    results = _state().search(request.args.get("query", ""),
                              sort_by=request.args.get("sort_by", "created_at"),
                              descending=request.args.get("sort_order") == "desc")
    page, per_page, start = _offset_window()
    if start >= SEARCH_LIMIT:
        raise ZendeskError(422, {"error": "invalid", "description":
                                 "Invalid search: Requested response size was greater than "
                                 "Search Response Limits"})
    return _json({"results": [_result(r) for r in results[start:start + per_page]],
                  "facets": None, **_offset_links(page, per_page, len(results))})


@_route("/search/count", "GET")
def search_count() -> Response:
    return _json({"count": len(_state().search(request.args.get("query", "")))})


@_route("/search/export", "GET")
def search_export() -> Response:
    kind = request.args.get("filter[type]")
    if kind not in ("ticket", "user", "organization", "group"):
        raise bad_request("InvalidValue",
                          "filter[type] is required: ticket, user, organization or group")
    results = _state().search(request.args.get("query", ""), only_type=kind)
    page, paging = _cursor_page(results, lambda r: (r["created_at"], r["id"]), max_size=1000)
    return _json({"results": [_result(r) for r in page], "facets": None, **paging})


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
    content = f"Sandbox attachment {attachment['file_name']} (synthetic data)\n".encode()
    return Response(content, mimetype=attachment["content_type"])


def create_app(state: ZendeskState, *, email: str, token: str,
               endpoint_limits: bool = True) -> Flask:
    """The stand-in's Flask app over `state`; `endpoint_limits` turns on the per-endpoint 429s."""
    app = Flask(__name__)
    app.url_map.converters["hex"] = _HexConverter
    app.extensions["zendesk"] = _Account(state, email, token, EndpointLimits(endpoint_limits))
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
    """A seeded Zendesk account served as WSGI (`wsgi`), for simulation mode and tests."""

    def __init__(self, *, seed: int = 0, people: int = 40,
                 requests_per_minute: int | None = 700, faults: FaultPlan | None = None,
                 job_polls: int = 2, email: str = "agent@example.com",
                 token: str = "sandbox-token") -> None:
        self.state = ZendeskState(seed=seed, job_polls=job_polls, api_email=email)
        self.state.seed_people(synthetic_people(people, seed))
        self.app = create_app(self.state, email=email, token=token,
                              endpoint_limits=requests_per_minute is not None)
        self.traffic = TrafficControl(self.app, zendesk_error_body,
                                      requests_per_minute=requests_per_minute, faults=faults)
        self.wsgi = self.traffic

    def add_user(self, name: str, email: str | None = None, phone: str | None = None,
                 external_id: str | None = None, role: str = "end-user") -> Record:
        return self.state.add_user(name, email, phone, external_id, role)

    def add_ticket(self, requester_id: int, *, subject: str, description: str,
                   status: str = "open", collaborator_ids: Iterable[int] = (),
                   assignee_id: int | None = None, comments: Iterable[str] = (),
                   attachment: bool = False) -> Record:
        return self.state.add_ticket(requester_id, subject=subject, description=description,
                                     status=status, collaborator_ids=tuple(collaborator_ids),
                                     assignee_id=assignee_id, comments=tuple(comments),
                                     attachment=attachment)

    def snapshot(self) -> Record:
        """Users, identities, tickets, comments, deletions and suspensions; no volatile data."""
        return self.state.snapshot()
