"""Genesys Cloud GDPR API stand-in: the login and API routes of one org, on one server.

Simulation mode and the tests run the real connector (and the official Python SDK,
`PureCloudPlatformClientV2`) against it over a localhost socket:

    sandbox = GenesysSandbox(seed=7)
    with serve(sandbox.wsgi) as server:          # services.sandbox.server
        client = ApiClient(host=server.url)      # or configuration.host = server.url
        client.get_client_credentials_token("sandbox-client", "sandbox-secret")

The SDK derives the login host from the API host by replacing `//api.` with `//login.`; a host
like `http://127.0.0.1:PORT` has no `api.`, so the token call goes to the same server's
`/oauth/token`, which is why both are served here. (Behind a name such as `api.localhost`, set a
gateway with `ApiClient.set_gateway(...)` instead.)

Routes (shared/docs/genesys.md): `POST /oauth/token`; `GET /api/v2/gdpr/subjects`;
`POST /api/v2/gdpr/requests` (202 Accepted, as the published API lists for this asynchronous
call); `GET /api/v2/gdpr/requests/{id}`; `GET /api/v2/gdpr/requests`; and the export documents at
`GET /api/v2/gdpr/requests/{id}/results/{n}.json` (same bearer token). Errors use Genesys' body
(`message`, `code`, `status`, `messageParams`, `contextId`, `details`, `errors`), and every answer
carries the `ININ-Correlation-Id` header that the body's `contextId` repeats.

Rate limits and faults come from `TrafficControl`. `/oauth/token` is exempt from both: in Genesys
Cloud it is a separate service (login.{region}) whose limits are its own, and the per-token API
limit does not count token requests.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from services.sandbox.genesys_state import GenesysError, GenesysState, bad_request
from services.sandbox.people import people as make_people
from services.sandbox.traffic import ErrorBody, FaultPlan, TrafficControl

LOGIN_PATH = "/oauth/token"
MAX_PAGE_SIZE = 100

# Genesys' standard answers by status (code, message), as its API reference words them.
STANDARD_ERRORS = {
    400: ("bad.request",
          "The request could not be understood by the server due to malformed syntax."),
    401: ("authentication.required",
          "No authentication bearer token specified in authorization header."),
    403: ("not.authorized", "You are not authorized to perform the requested action."),
    404: ("not.found", "The requested resource was not found."),
    405: ("method.not.allowed", "The requested method is not allowed on this resource."),
    413: ("request.entity.too.large", "The request is over the size limit."),
    415: ("unsupported.media.type", "Unsupported Media Type - Unsupported or incorrect media "
                                    "type, such as an incorrect Content-Type value in the header."),
    500: ("internal.server.error", "The server encountered an unexpected condition which "
                                   "prevented it from fulfilling the request."),
    502: ("bad.gateway", "The server received an invalid response from an upstream server."),
    503: ("service.unavailable", "Service Unavailable - The server is currently unavailable "
                                 "(because it is overloaded or down for maintenance)."),
    504: ("request.timeout", "The request timed out."),
}


def error_document(status: int, code: str, message: str,
                   context_id: str | None = None) -> dict[str, Any]:
    """Genesys' ErrorBody, in the order the service writes it."""
    return {"status": status, "code": code, "message": message, "messageParams": {},
            "contextId": context_id or str(uuid.uuid4()), "details": [], "errors": []}


def traffic_error_body(requests_per_minute: int | None) -> ErrorBody:
    """Bodies of the 429s and 5xx answered by TrafficControl, in Genesys' format."""

    def body(status: int, retry_after: int | None) -> tuple[str, bytes]:
        if status == 429:
            code = "too.many.requests"
            if requests_per_minute:
                message = (f"Rate limit exceeded the maximum [{requests_per_minute}] requests "
                           "within [60] seconds")
            else:
                message = ("Rate limit exceeded the maximum. Retry the request in "
                           f"[{retry_after or 0}] seconds")
        else:
            code, message = STANDARD_ERRORS.get(status, STANDARD_ERRORS[500])
        return "application/json", json.dumps(error_document(status, code, message)).encode()

    return body


def listing(entities: list[dict[str, Any]], *, path: str, params: dict[str, str],
            page_size: int, page_number: int, total: int) -> dict[str, Any]:
    """A Genesys entity listing, with relative URIs to its pages."""
    pages = math.ceil(total / page_size) if total else 0

    def uri(number: int) -> str:
        return f"{path}?{urlencode({**params, 'pageSize': page_size, 'pageNumber': number})}"

    body: dict[str, Any] = {"entities": entities, "pageSize": page_size,
                            "pageNumber": page_number, "total": total,
                            "firstUri": uri(1), "selfUri": uri(page_number)}
    if page_number < pages:
        body["nextUri"] = uri(page_number + 1)
    if page_number > 1:
        body["previousUri"] = uri(min(page_number - 1, max(pages, 1)))
    body["lastUri"] = uri(max(pages, 1))
    body["pageCount"] = pages
    return body


def _page_param(name: str, default: int, maximum: int | None = None) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be a whole number") from None
    if value < 1 or (maximum is not None and value > maximum):
        bound = f"between 1 and {maximum}" if maximum else "at least 1"
        raise bad_request(f"{name} must be {bound}")
    return value


def _bool_param(name: str) -> bool:
    raw = request.args.get(name, "false").strip().lower()
    if raw not in ("true", "false"):
        raise bad_request(f"{name} must be true or false")
    return raw == "true"


def _json_body() -> Any:
    if not request.is_json:
        raise GenesysError(415, *STANDARD_ERRORS[415])
    body = request.get_json(silent=True)
    if body is None:
        raise GenesysError(400, *STANDARD_ERRORS[400])
    return body


def _error_response(status: int, code: str, message: str) -> tuple[Response, int]:
    return jsonify(error_document(status, code, message, g.get("context_id"))), status


def _oauth_error(status: int, error: str, description: str) -> tuple[Response, int]:
    # The login service's own format (not the API's ErrorBody).
    return jsonify(error=error, description=description, error_description=description), status


def _credentials_match(header: str, client_id: str, client_secret: str) -> bool:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    given_id, colon, given_secret = decoded.partition(":")
    return bool(colon) and all([  # both compared, always: no early exit to time
        hmac.compare_digest(given_id.encode(), client_id.encode()),
        hmac.compare_digest(given_secret.encode(), client_secret.encode()),
    ])


def create_app(state: GenesysState, *, client_id: str, client_secret: str,
               token_ttl: int) -> Flask:
    """The Flask app of the stand-in (without traffic control)."""
    app = Flask("genesys-sandbox")
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep Genesys' field order

    @app.before_request
    def authenticate() -> None:
        g.context_id = str(uuid.uuid4())
        if not request.path.startswith("/api/"):
            return
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise GenesysError(401, *STANDARD_ERRORS[401])
        if not state.token_valid(token.strip()):
            raise GenesysError(401, "bad.credentials", "Invalid login credentials.")

    @app.after_request
    def correlate(response: Response) -> Response:
        response.headers["ININ-Correlation-Id"] = g.get("context_id", "")
        return response

    @app.errorhandler(GenesysError)
    def genesys_error(exc: GenesysError) -> tuple[Response, int]:
        return _error_response(exc.status, exc.code, exc.message)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        code, message = STANDARD_ERRORS.get(status, STANDARD_ERRORS[500])
        return _error_response(status, code, message)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        app.logger.exception("Genesys stand-in failed on %s %s", request.method, request.path)
        return _error_response(500, *STANDARD_ERRORS[500])

    @app.post(LOGIN_PATH)
    def token() -> Any:
        if not _credentials_match(request.headers.get("Authorization", ""), client_id,
                                  client_secret):
            return _oauth_error(401, "invalid_client", "authentication failed")
        grant_type = request.form.get("grant_type")
        if not grant_type:
            return _oauth_error(400, "invalid_request", "grant_type is required")
        if grant_type != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "grant type not supported")
        access_token = state.issue_token(token_ttl)
        return jsonify(access_token=access_token, token_type="bearer", expires_in=token_ttl)

    @app.get("/api/v2/gdpr/subjects")
    def search_subjects() -> Any:
        search_type = request.args.get("searchType", "")
        value = request.args.get("searchValue", "")
        if not search_type or not value.strip():
            raise bad_request("searchType and searchValue are required")
        entities = state.search(search_type, value)
        return jsonify(listing(
            entities, path=request.path,
            params={"searchType": search_type, "searchValue": value},
            page_size=max(25, len(entities)), page_number=1, total=len(entities),
        ))

    @app.post("/api/v2/gdpr/requests")
    def submit_request() -> Any:
        body = _json_body()
        record = state.create_request(body, delete_confirmed=_bool_param("deleteConfirmed"))
        return jsonify(record.render(request.host_url)), 202

    @app.get("/api/v2/gdpr/requests/<request_id>")
    def get_request(request_id: str) -> Any:
        return jsonify(state.read_request(request_id).render(request.host_url))

    @app.get("/api/v2/gdpr/requests")
    def list_requests() -> Any:
        page_size = _page_param("pageSize", 25, MAX_PAGE_SIZE)
        page_number = _page_param("pageNumber", 1)
        records, total = state.list_requests(page_size, page_number)
        return jsonify(listing(
            [r.render(request.host_url) for r in records], path=request.path, params={},
            page_size=page_size, page_number=page_number, total=total,
        ))

    @app.get("/api/v2/gdpr/requests/<request_id>/results/<int:part>.json")
    def export_results(request_id: str, part: int) -> Any:
        response = jsonify(state.export_document(request_id, part))
        response.headers["Content-Disposition"] = (
            f'attachment; filename="gdpr-export-{request_id}-{part}.json"'
        )
        return response

    return app


class GenesysSandbox:
    """A Genesys Cloud org for simulation mode and tests: serve `.wsgi` on a localhost socket.

    Seeded with `people(people, seed)`: each person is a subject with interaction data. The
    OAuth client `client_id`/`client_secret` gets tokens valid for `token_ttl` seconds. Requests
    complete on their `request_polls`-th read. `requests_per_minute` and `faults` go to the
    TrafficControl in front of the app.
    """

    def __init__(self, *, seed: int = 0, people: int = 40,
                 requests_per_minute: int | None = 300, faults: FaultPlan | None = None,
                 request_polls: int = 3, client_id: str = "sandbox-client",
                 client_secret: str = "sandbox-secret", token_ttl: int = 86400) -> None:
        client_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"genesys-sandbox:client:{client_id}"))
        self.state = GenesysState(
            seed=seed, request_polls=request_polls,
            created_by={"id": client_uuid, "selfUri": f"/api/v2/oauth/clients/{client_uuid}"},
        )
        self.state.add_people(make_people(people, seed))
        self.app = create_app(self.state, client_id=client_id, client_secret=client_secret,
                              token_ttl=token_ttl)
        self.traffic = TrafficControl(
            self.app, traffic_error_body(requests_per_minute),
            requests_per_minute=requests_per_minute, faults=faults,
            exempt=lambda path: path == LOGIN_PATH,
        )
        self.wsgi = self.traffic

    def add_subject(self, name: str, emails: Sequence[str] = (), phones: Sequence[str] = (),
                    addresses: Sequence[str] = (), external_id: str | None = None
                    ) -> dict[str, Any]:
        """Add a subject with synthetic data; returns the GDPRSubject the search would show."""
        return self.state.add_subject(name, emails=emails, phones=phones, addresses=addresses,
                                      external_id=external_id)

    def expire_tokens(self) -> None:
        """Invalidate every token issued so far (the next API call answers 401)."""
        self.state.expire_tokens()

    def snapshot(self) -> dict[str, Any]:
        """The org's data, without request ids or dates: equal for equal histories."""
        return self.state.snapshot()
