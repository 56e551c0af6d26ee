"""Genesys Cloud GDPR API stand-in: the login and API routes of one org, and the storage its
export results are downloaded from, on a host of its own.

Simulation mode and the tests run the real connector (and the official Python SDK,
`PureCloudPlatformClientV2`) against it over localhost sockets:

    sandbox = GenesysSandbox(seed=7)
    with serve(sandbox.wsgi) as server:          # services.sandbox.server
        client = ApiClient(host=server.url)      # or configuration.host = server.url
        client.get_client_credentials_token("sandbox-client", "sandbox-secret")
    sandbox.close()                              # stops the results storage, if it started

The SDK derives the login host from the API host by replacing `//api.` with `//login.`; a host
like `http://127.0.0.1:PORT` has no `api.`, so the token call goes to the same server's
`/oauth/token`, which is why both are served here. (Behind a name such as `api.localhost`, set a
gateway with `ApiClient.set_gateway(...)` instead.)

Routes [Contract]: `POST /oauth/token`; `GET /api/v2/gdpr/subjects`; `POST /api/v2/gdpr/requests`
(202 Accepted, as the published API lists for this asynchronous call); `GET
/api/v2/gdpr/requests/{id}`; `GET /api/v2/gdpr/requests`. Errors use Genesys' body (`message`,
`code`, `status`, `messageParams`, `contextId`, `details`, `errors`) [Contract], and every answer
carries the `ININ-Correlation-Id` header that the body's `contextId` repeats [Blog-logging].

Rules, each with its reference (list below); what no reference settles is marked "ours":
- A request's `createdBy` is the OAuth client that posted it ("The user that created this
  request" [SDK-models]; with client credentials no user is involved), by its client id
  [SDK-oauth]. Whether a `name` the client sends is kept is not documented (the model lists
  `name` with no description): kept by default; `sandbox.state.keep_names = False` drops it,
  so tests prove that callers do not depend on it.
- A call the OAuth client has no permission for answers 403 `missing.any.permissions`, naming
  the permission: each GDPR call "Requires ANY permissions" of one [SDK-api-doc]; code and
  wording [Errors]. Set the granted ones with `GenesysSandbox(permissions=...)` or
  `sandbox.permissions`. A missing or unknown token answers 401 first.
- Requests move by the org's clock (`clock=`, a rehearsal clock), not by being read, and can take
  days [Days]; `request_seconds` sets how long (0 by default: COMPLETED from the first read, so
  simulation mode finishes promptly). `sandbox.fail_next()` makes the next request end in ERROR,
  a status of [SDK-models]. See `genesys_state` for the stages.
- A completed export lists `resultsUrl`/`resultsUrls`, "the locations where the results of the
  request can be retrieved if multiple archive files created" [SDK-models]: pre-signed URLs
  [Contract] of zip archives, on a storage host that is not the API host (a listener of its
  own, started when the first URL is handed out; `storage_url=` names one served elsewhere from
  `sandbox.storage_wsgi`). The storage answers as S3 does to query-string auth (Signature
  Version 4) [S3-presign]: a URL is signed for `results_url_seconds` (how long Genesys' last is
  not documented: 1 hour is ours) from the moment the request is read; an expired one answers
  403 AccessDenied "Request has expired" [S3-expired], an altered one 403 SignatureDoesNotMatch
  [S3-signature], one sent with an `Authorization` header too 400 InvalidArgument "Only one auth
  mechanism allowed" [S3-one-auth]. The API host no longer serves results.
- Rate limit: over `requests_per_minute` (300 per token [Contract]) a 429 with `Retry-After` and
  the normalized body, code `too.many.requests.retry.after` [429]; answers carry
  `inin-ratelimit-count`, `-allowed` and `-reset` (seconds), as a logged Genesys answer shows
  [Blog-logging] (their exact meaning is not documented: the calls counted in the last minute,
  the limit, the seconds until the oldest leaves the window, are ours). Rate limits and faults
  come from `TrafficControl`; `/oauth/token` is exempt from both: it is a separate service
  (login.{region}) with limits of its own, and the per-token API limit does not count it.

References:
- [Contract] shared/docs/genesys.md.
- [SDK-models] PureCloudPlatformClientV2 (PyPI purecloudplatformclientv2, 269.0.0), models
  GDPRRequest (status values; resultsUrl, resultsUrls docstrings), GDPRSubject, ReplacementTerm.
- [SDK-oauth] PureCloudPlatformClientV2, OAuthApi.get_oauth_client(client_id): GET
  /api/v2/oauth/clients/{clientId}, an OAuthClient whose `id` is that client id.
- [SDK-api-doc] MyPureCloud/platform-client-sdk-python, build/docs/
  GeneralDataProtectionRegulationApi.md: get_gdpr_request and get_gdpr_requests "Requires ANY
  permissions: gdpr:request:view", get_gdpr_subjects "gdpr:subject:view", post_gdpr_requests
  "gdpr:request:add".
- [Errors] the Platform API's error codes and texts as gildas/go-gcloudcx (error.go) lists them:
  403 missing.any.permissions "Unable to perform the requested action. You must have at least
  one of the following permissions assigned: %s" (a third-party client, quoting the API).
- [429] Genesys developer forum, "Normalized Platform API 429 responses" (2021, topic 12028):
  Retry-After on every 429; body {message "Rate limit exceeded the maximum. Retry the request
  in [42] seconds", code too.many.requests.retry.after, status, contextId, details, errors}.
- [Blog-logging] MyPureCloud/developer-center-blog, source/2021-05-06/index.md ("Genesys Cloud
  SDK Configuration and Logging"): a trace of an answer with ININ-Correlation-Id and
  inin-ratelimit-count: 1, inin-ratelimit-allowed: 180, inin-ratelimit-reset: 61.
- [Days] help.mypurecloud.com, "Genesys Cloud Collaborate chat data export policy": "It can take
  several days to access the data from a request."
- [S3-presign] docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html (the
  X-Amz-* parameters; its example URL's signature is checked in the tests).
- [S3-one-auth] catalyst/moodle-tool_objectfs#303: S3's 400 InvalidArgument "Only one auth
  mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter
  or the Authorization header should be specified" (ArgumentName Authorization).
  [S3-auth-type] versity/versitygw#1512: S3 answers an unknown scheme in the Authorization
  header with 400 InvalidArgument "Unsupported Authorization Type".
- [S3-expired] aws/aws-sdk-php#1333, aws/aws-sdk-js#3493: 403 AccessDenied "Request has expired"
  with X-Amz-Expires, Expires, ServerTime. [S3-signature] boto/boto#2144: 403 Forbidden
  SignatureDoesNotMatch "The request signature we calculated does not match the signature you
  provided. Check your key and signing method." [S3-params] minio/minio cmd/api-errors.go (S3's
  wording): 400 AuthorizationQueryParametersError.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import hashlib
import hmac
import json
import math
import secrets
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit
from xml.sax.saxutils import escape

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from services.sandbox import server
from services.sandbox.people import people as make_people
from services.sandbox.traffic import ErrorBody, FaultPlan, TrafficControl
from services.vendors.genesys.standin_state import (
    ALL_PERMISSIONS,
    COMPLETED,
    REQUEST_ADD,
    REQUEST_VIEW,
    SUBJECT_VIEW,
    GdprRequestRecord,
    GenesysError,
    GenesysState,
    bad_request,
)

LOGIN_PATH = "/oauth/token"
MAX_PAGE_SIZE = 100
RESULTS_BUCKET = "gdpr-results"
RESULTS_URL_SECONDS = 3600  # ours: how long Genesys' results URLs last is not documented
CHUNK_BYTES = 64 * 1024

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

# One answer's correlation id, shared by the edge (header) and the bodies written for it.
_CONTEXT: contextvars.ContextVar[str] = contextvars.ContextVar("genesys_context_id")
CONTEXT_KEY = "genesys.context_id"


def error_document(status: int, code: str, message: str,
                   context_id: str | None = None) -> dict[str, Any]:
    """Genesys' ErrorBody [Contract], in the order the service writes it."""
    return {"status": status, "code": code, "message": message, "messageParams": {},
            "contextId": context_id or _CONTEXT.get(None) or str(uuid.uuid4()),
            "details": [], "errors": []}


def missing_permission(permission: str) -> GenesysError:
    """403 for a call the client may not make: code and wording [Errors], one permission
    required per call [SDK-api-doc]."""
    return GenesysError(403, "missing.any.permissions",
                        "Unable to perform the requested action. You must have at least one of "
                        f"the following permissions assigned: [{permission}]")


def traffic_error_body(requests_per_minute: int | None) -> ErrorBody:
    """Bodies of the 429s and 5xx answered by TrafficControl, in Genesys' format."""

    def body(status: int, retry_after: int | None) -> tuple[str, bytes]:
        if status == 429:  # the normalized 429 [429]: no messageParams
            document: dict[str, Any] = {
                "message": "Rate limit exceeded the maximum. Retry the request in "
                           f"[{retry_after or 0}] seconds",
                "code": "too.many.requests.retry.after", "status": 429,
                "contextId": _CONTEXT.get(None) or str(uuid.uuid4()), "details": [],
                "errors": []}
        else:
            document = error_document(status, *STANDARD_ERRORS.get(status, STANDARD_ERRORS[500]))
        return "application/json", json.dumps(document).encode()

    return body


def listing(entities: list[dict[str, Any]], *, path: str, params: dict[str, str],
            page_size: int, page_number: int, total: int) -> dict[str, Any]:
    """A Genesys entity listing [Contract], with relative URIs to its pages."""
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


# The permission each API route needs [SDK-api-doc].
PERMISSIONS = {"search_subjects": SUBJECT_VIEW, "submit_request": REQUEST_ADD,
               "get_request": REQUEST_VIEW, "list_requests": REQUEST_VIEW}


def create_app(state: GenesysState, *, client_id: str, client_secret: str, token_ttl: int,
               results_urls: Callable[[GdprRequestRecord], list[str]]) -> Flask:
    """The Flask app of the API and login (without traffic control). `results_urls` gives the
    pre-signed URLs of a completed export's archives."""
    app = Flask("genesys-sandbox")
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep Genesys' field order

    def render(record: GdprRequestRecord) -> dict[str, Any]:
        urls = results_urls(record) if record.status == COMPLETED and record.archives else []
        return record.render(urls)

    @app.before_request
    def authenticate() -> None:
        g.context_id = request.environ.get(CONTEXT_KEY) or str(uuid.uuid4())
        if not request.path.startswith("/api/"):
            return
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise GenesysError(401, *STANDARD_ERRORS[401])
        if not state.token_valid(token.strip()):
            raise GenesysError(401, "bad.credentials", "Invalid login credentials.")
        needed = PERMISSIONS.get(request.endpoint or "")
        if needed is not None and needed not in state.permissions:
            raise missing_permission(needed)

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
        return jsonify(render(record)), 202

    @app.get("/api/v2/gdpr/requests/<request_id>")
    def get_request(request_id: str) -> Any:
        return jsonify(render(state.read_request(request_id)))

    @app.get("/api/v2/gdpr/requests")
    def list_requests() -> Any:
        page_size = _page_param("pageSize", 25, MAX_PAGE_SIZE)
        page_number = _page_param("pageNumber", 1)
        records, total = state.list_requests(page_size, page_number)
        return jsonify(listing(
            [render(r) for r in records], path=request.path, params={},
            page_size=page_size, page_number=page_number, total=total,
        ))

    return app


class Edge:
    """What every answer of the API host carries, around TrafficControl: the correlation id
    (header and body [Blog-logging]) and Genesys' rate-limit headers [Blog-logging] in place
    of TrafficControl's X-Rate-Limit ones."""

    WINDOW = 60.0

    def __init__(self, app: Any, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.clock = clock
        self._counted: deque[float] = deque()  # answered API calls of the last minute
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        context_id = str(uuid.uuid4())
        environ[CONTEXT_KEY] = context_id
        api = environ.get("PATH_INFO", "").startswith("/api/")

        def start(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            limits = {k.lower(): v for k, v in headers if k.lower().startswith("x-rate-limit")}
            headers = [(k, v) for k, v in headers if not k.lower().startswith("x-rate-limit")]
            if api and "x-rate-limit" in limits:
                headers += self._limit_headers(int(limits["x-rate-limit"]),
                                               int(limits.get("x-rate-limit-remaining", 0)))
            if not any(k.lower() == "inin-correlation-id" for k, _ in headers):
                headers.append(("ININ-Correlation-Id", context_id))
            return start_response(status, headers, *exc)

        token = _CONTEXT.set(context_id)
        try:
            return self.app(environ, start)
        finally:
            _CONTEXT.reset(token)

    def _limit_headers(self, allowed: int, remaining: int) -> list[tuple[str, str]]:
        now = self.clock()
        with self._lock:
            self._counted.append(now)
            while self._counted and now - self._counted[0] >= self.WINDOW:
                self._counted.popleft()
            reset = math.ceil(self.WINDOW - (now - self._counted[0]))
        return [("inin-ratelimit-count", str(max(0, allowed - remaining))),
                ("inin-ratelimit-allowed", str(allowed)),
                ("inin-ratelimit-reset", str(max(1, reset)))]


# Results storage --------------------------------------------------------------------------------

def _encode(value: str) -> str:
    return quote(value, safe="-_.~")  # SigV4's URI encoding [S3-presign]


def _amz_date(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y%m%dT%H%M%SZ")


class Presigner:
    """S3 query-string authentication, AWS Signature Version 4 [S3-presign]: what a pre-signed
    URL carries, and the check the storage makes of it."""

    ALGORITHM = "AWS4-HMAC-SHA256"
    PARAMETERS = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                  "X-Amz-SignedHeaders", "X-Amz-Signature")

    def __init__(self, access_key: str, secret_key: str, region: str = "us-east-1") -> None:
        self.access_key, self.secret_key, self.region = access_key, secret_key, region

    def presign(self, base_url: str, path: str, *, now: float, expires: int) -> str:
        """The URL of `path` on the storage at `base_url`, valid for `expires` seconds."""
        parts = urlsplit(base_url)
        amz_date = _amz_date(now)
        params = [("X-Amz-Algorithm", self.ALGORITHM),
                  ("X-Amz-Credential",
                   f"{self.access_key}/{amz_date[:8]}/{self.region}/s3/aws4_request"),
                  ("X-Amz-Date", amz_date), ("X-Amz-Expires", str(expires)),
                  ("X-Amz-SignedHeaders", "host")]
        signature = self.signature("GET", parts.netloc, path, params)
        return (f"{parts.scheme}://{parts.netloc}{quote(path)}?{self._query(params)}"
                f"&X-Amz-Signature={signature}")

    def signature(self, method: str, host: str, path: str,
                  params: Sequence[tuple[str, str]]) -> str:
        values = dict(params)
        amz_date = values["X-Amz-Date"]
        scope = values["X-Amz-Credential"].split("/", 1)[1]
        date, region, service = scope.split("/")[:3]
        canonical = "\n".join([method, quote(path), self._query(params), f"host:{host}", "",
                               "host", "UNSIGNED-PAYLOAD"])
        to_sign = "\n".join([self.ALGORITHM, amz_date, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        key = f"AWS4{self.secret_key}".encode()
        for part in (date, region, service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def _query(params: Sequence[tuple[str, str]]) -> str:
        return "&".join(f"{_encode(k)}={_encode(v)}"
                        for k, v in sorted(params) if k != "X-Amz-Signature")

    def refusal(self, method: str, host: str, path: str, params: list[tuple[str, str]],
                authorization: str | None, now: float) -> tuple[int, str, str, list] | None:
        """Why S3 would refuse this request, as (status, code, message, extra elements), or
        None when the URL is good."""
        values = dict(params)
        if authorization and "X-Amz-Algorithm" in values:
            return (400, "InvalidArgument", "Only one auth mechanism allowed; only the "
                    "X-Amz-Algorithm query parameter, Signature query string parameter or the "
                    "Authorization header should be specified",
                    [("ArgumentName", "Authorization"), ("ArgumentValue", authorization)])
        if authorization:  # [S3-auth-type]
            return (400, "InvalidArgument", "Unsupported Authorization Type",
                    [("ArgumentName", "Authorization"), ("ArgumentValue", authorization)])
        if "X-Amz-Algorithm" not in values:  # a private object, no credentials at all
            return 403, "AccessDenied", "Access Denied", []
        if any(p not in values for p in self.PARAMETERS) or values[
                "X-Amz-Algorithm"] != self.ALGORITHM or not values["X-Amz-Expires"].isdigit():
            return (400, "AuthorizationQueryParametersError", "Query-string authentication "  # [S3-params]
                    "version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, "
                    "X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.", [])
        try:
            signed = datetime.strptime(values["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            expires = int(values["X-Amz-Expires"])
            expected = self.signature(method, host, path, params)
        except (ValueError, IndexError):
            return 403, "SignatureDoesNotMatch", SIGNATURE_MISMATCH, []
        if not hmac.compare_digest(expected, values["X-Amz-Signature"]):
            return 403, "SignatureDoesNotMatch", SIGNATURE_MISMATCH, []  # [S3-signature]
        if now > signed.timestamp() + expires:  # [S3-expired]
            return (403, "AccessDenied", "Request has expired",
                    [("X-Amz-Expires", str(expires)),
                     ("Expires", datetime.fromtimestamp(signed.timestamp() + expires, UTC)
                      .strftime("%Y-%m-%dT%H:%M:%SZ")),
                     ("ServerTime", datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))])
        return None


SIGNATURE_MISMATCH = ("The request signature we calculated does not match the signature you "
                      "provided. Check your key and signing method.")


def s3_error(status: int, code: str, message: str,
             extra: Iterable[tuple[str, str]] = ()) -> Response:
    """S3's XML error document (with a request id and host id, as S3 gives)."""
    elements = [("Code", code), ("Message", message), *extra,
                ("RequestId", secrets.token_hex(8).upper()),
                ("HostId", base64.b64encode(secrets.token_bytes(48)).decode())]
    body = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in elements)
    return Response(f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>{body}</Error>', status,
                    mimetype="application/xml")


def results_path(request_id: str, part: int) -> str:
    return f"/{RESULTS_BUCKET}/{request_id}/gdpr-export-{request_id}-{part}.zip"


def create_storage_app(state: GenesysState, presigner: Presigner) -> Flask:
    """The storage the results URLs point at: a bucket that only answers pre-signed GETs."""
    app = Flask("genesys-results-storage")

    @app.get(f"/{RESULTS_BUCKET}/<request_id>/<name>")
    def get_object(request_id: str, name: str) -> Response:
        refused = presigner.refusal(request.method, request.host, request.path,
                                    list(request.args.items(multi=True)),
                                    request.headers.get("Authorization"), state.clock())
        if refused is not None:
            return s3_error(*refused)
        prefix, suffix = f"gdpr-export-{request_id}-", ".zip"
        part = name[len(prefix):-len(suffix)] if name.startswith(prefix) and name.endswith(
            suffix) else ""
        data = state.archive(request_id, int(part)) if part.isdigit() else None
        if data is None:
            return s3_error(404, "NoSuchKey", "The specified key does not exist.",
                            [("Key", request.path.removeprefix(f"/{RESULTS_BUCKET}/"))])

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(data), CHUNK_BYTES):
                yield data[start:start + CHUNK_BYTES]

        return Response(chunks(), 200, mimetype="application/zip", headers={
            "Content-Length": str(len(data)), "ETag": f'"{hashlib.md5(data).hexdigest()}"',
            "Content-Disposition": f'attachment; filename="{name}"'})

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        if exc.code == 404:
            return s3_error(404, "NoSuchKey", "The specified key does not exist.")
        return s3_error(exc.code or 500, "InvalidRequest", exc.description or "Invalid request")

    return app


class GenesysSandbox:
    """A Genesys Cloud org for simulation mode and tests: serve `.wsgi` on a localhost socket.

    Seeded with `people(people, seed)`: each person is a subject with interaction data. The
    OAuth client `client_id`/`client_secret` gets tokens valid for `token_ttl` seconds and holds
    `permissions`. Requests are due `request_seconds` after they were submitted by `clock` (the
    rehearsal clock; see the module docstring). Export results are served by a storage listener
    of the sandbox's own, or at `storage_url` by whoever serves `.storage_wsgi`. `close()` (or a
    `with` block) stops that listener. `requests_per_minute` and `faults` go to the
    TrafficControl in front of the API.
    """

    def __init__(self, *, seed: int = 0, people: int = 40,
                 requests_per_minute: int | None = 300, faults: FaultPlan | None = None,
                 request_seconds: float = 0.0, clock: Callable[[], float] = time.time,
                 permissions: Iterable[str] = ALL_PERMISSIONS,
                 client_id: str = "sandbox-client", client_secret: str = "sandbox-secret",
                 token_ttl: int = 86400, results_url_seconds: int = RESULTS_URL_SECONDS,
                 storage_url: str | None = None) -> None:
        # A request is created by the OAuth client whose token posted it; the client's id is
        # its client id (the SDK's OAuthApi.get_oauth_client: /api/v2/oauth/clients/{clientId}).
        self.state = GenesysState(
            seed=seed, request_seconds=request_seconds, clock=clock, permissions=permissions,
            created_by={"id": client_id, "selfUri": f"/api/v2/oauth/clients/{client_id}"},
        )
        self.state.add_people(make_people(people, seed))
        self.results_url_seconds = results_url_seconds
        self.presigner = Presigner("ASIASANDBOXGENESYS", secrets.token_urlsafe(30))
        self.storage_wsgi = create_storage_app(self.state, self.presigner)
        self._storage_url = storage_url
        self._storage: server.RunningServer | None = None
        self._storage_lock = threading.Lock()
        self.app = create_app(self.state, client_id=client_id, client_secret=client_secret,
                              token_ttl=token_ttl, results_urls=self._results_urls)
        self.traffic = TrafficControl(
            self.app, traffic_error_body(requests_per_minute),
            requests_per_minute=requests_per_minute, faults=faults,
            exempt=lambda path: path == LOGIN_PATH,
        )
        self.wsgi = Edge(self.traffic)

    @property
    def permissions(self) -> set[str]:
        """The permissions the OAuth client holds (change the set to take some away)."""
        return self.state.permissions

    @permissions.setter
    def permissions(self, granted: Iterable[str]) -> None:
        self.state.permissions = set(granted)

    @property
    def storage_url(self) -> str:
        """Where the results are served: the sandbox's own listener, started on first use."""
        if self._storage_url is not None:
            return self._storage_url
        with self._storage_lock:
            if self._storage is None:
                self._storage = server.start(self.storage_wsgi)
                # Stopped by close(), or when the sandbox is collected (without a reference to it).
                self._finalizer = weakref.finalize(self, self._storage.stop)
            return self._storage.url

    def _results_urls(self, record: GdprRequestRecord) -> list[str]:
        base, now = self.storage_url, self.state.clock()
        return [self.presigner.presign(base, results_path(record.id, n), now=now,
                                       expires=self.results_url_seconds)
                for n in range(1, len(record.archives) + 1)]

    def close(self) -> None:
        """Stop the results storage listener, if it was started."""
        with self._storage_lock:
            if self._storage is not None:
                self._finalizer()
                self._storage = None

    def __enter__(self) -> GenesysSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_subject(self, name: str, emails: Sequence[str] = (), phones: Sequence[str] = (),
                    addresses: Sequence[str] = (), external_id: str | None = None
                    ) -> dict[str, Any]:
        """Add a subject with synthetic data; returns the GDPRSubject the search would show."""
        return self.state.add_subject(name, emails=emails, phones=phones, addresses=addresses,
                                      external_id=external_id)

    def fail_next(self, count: int = 1) -> None:
        """The next `count` GDPR requests submitted end in ERROR when due (with no effect)."""
        self.state.fail_next(count)

    def expire_tokens(self) -> None:
        """Invalidate every token issued so far (the next API call answers 401)."""
        self.state.expire_tokens()

    def snapshot(self) -> dict[str, Any]:
        """The org's data, without request ids or dates: equal for equal histories."""
        return self.state.snapshot()
