"""Genesys Cloud: subject search and the GDPR request API (export, delete, update).

A GDPR request is processed by Genesys asynchronously and can take days: the step posts it once,
then polls it until COMPLETED or ERROR, waiting longer the older the request is (from
`poll_seconds` after posting, doubling, up to `poll_max_seconds`), so a request of three days
costs about fifty polls a day, not one every few seconds. For an export it then downloads the
archive files behind the request's `resultsUrls`, each streamed as it is into the export (never
parsed): those URLs are pre-signed and usually on a storage host, so our bearer token goes to
the API host only and the files are fetched with no credentials at all (shared/docs/genesys.md).
Posting is the one call that is not safe to repeat: a second POST is a second request (a second
deletion). The step saves a `posting` checkpoint (with the time) before it posts, and whenever
it cannot know whether a POST was processed (its answer lost: AnswerLost; or a crash before the
id was saved) it looks the request up in Genesys and adopts it, and posts only when none is
found (see `_find_posted`). A call the OAuth client lacks a permission for (403) fails the step,
naming the permission.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any, ClassVar

import httpx

from services.connectors.base import (
    Continue,
    Done,
    Failed,
    Outcome,
    PlannedStep,
    RequestSpec,
    StepRun,
    SubjectMatch,
    Verified,
    Waiting,
)
from services.connectors.http import (
    AnswerLost,
    Limits,
    VendorBusy,
    VendorError,
    VendorHTTP,
    error_from,
)
from services.errors import InvalidRequest
from services.subjects import Identifier
from services.vocabulary import IdentifierKind, PlanAction, RequestType

REQUEST_TYPES = {
    RequestType.ACCESS: "GDPR_EXPORT",
    RequestType.ERASURE: "GDPR_DELETE",
    RequestType.RECTIFICATION: "GDPR_UPDATE",
}
SEARCH_TYPES = {
    IdentifierKind.NAME: "NAME",
    IdentifierKind.EMAIL: "EMAIL",
    IdentifierKind.PHONE: "PHONE",
    IdentifierKind.ADDRESS: "ADDRESS",
    IdentifierKind.EXTERNAL_ID: "EXTERNAL_ID",
}
SUBJECT_LISTS = {IdentifierKind.EMAIL: "emailAddresses", IdentifierKind.PHONE: "phoneNumbers"}
FINAL = {"COMPLETED", "ERROR"}
# What may go into a request's subject. Genesys acts on every record matching any one field, so
# a name or an address (shared by strangers) would widen an export or a deletion to them.
TARGETING_FIELDS = ("userId", "externalContactId", "externalId", "dialerContactId",
                    "journeyCustomer", "socialHandle", "emailAddresses", "phoneNumbers")
GENESYS_LIMITS = Limits(requests_per_minute=300)  # the plan's default; settings override it
# The permission each call needs ("Requires ANY permissions", the SDK's API reference).
SEARCH, SUBMIT, READ = "gdpr:subject:view", "gdpr:request:add", "gdpr:request:view"
CHUNK_BYTES = 64 * 1024
DEFAULT_PORTS = {"http": 80, "https": 443}
# How far Genesys' clock (createdDate) may be behind ours when we look for a request we posted.
CLOCK_SKEW = 60.0
PLAIN_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")


class GenesysAuth(httpx.Auth):
    """OAuth client credentials: a cached token, renewed before expiry and on a 401."""

    requires_response_body = True

    def __init__(self, login_url: str, client_id: str, client_secret: str, *,
                 clock: Callable[[], float] = time.monotonic, margin: float = 60.0) -> None:
        self.token_url = login_url.rstrip("/") + "/oauth/token"
        self.credentials = httpx.BasicAuth(client_id, client_secret)
        self.clock = clock
        self.margin = margin
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def _token_request(self) -> httpx.Request:
        request = httpx.Request("POST", self.token_url,
                                data={"grant_type": "client_credentials"})
        return next(self.credentials.auth_flow(request))

    def _store(self, response: httpx.Response) -> None:
        if response.status_code != 200:
            raise error_from(response, "Genesys Cloud refused the client credentials")
        body = response.json()
        self._token = body["access_token"]
        self._expires_at = self.clock() + float(body.get("expires_in", 0))

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        with self._lock:
            if self._token is None or self.clock() >= self._expires_at - self.margin:
                self._store((yield self._token_request()))
            token = self._token
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            with self._lock:
                if self._token == token:  # nobody renewed it meanwhile
                    self._store((yield self._token_request()))
                token = self._token
            request.headers["Authorization"] = f"Bearer {token}"
            yield request


class GenesysConnector:
    name: ClassVar[str] = "genesys"
    label: ClassVar[str] = "Genesys Cloud"
    # Genesys Cloud has no API to restrict processing: objections are not offered for it.
    supported_types: ClassVar[frozenset[RequestType]] = frozenset(REQUEST_TYPES)

    def __init__(
        self,
        client: httpx.Client,
        base_url: str,
        *,
        login_url: str,
        client_id: str,
        client_secret: str,
        limits: Limits = GENESYS_LIMITS,
        sleep: Callable[[float], None] = time.sleep,
        poll_seconds: float = 30.0,
        poll_max_seconds: float = 1800.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_id = client_id  # our OAuth client: the `createdBy` of the requests we post
        self.http = VendorHTTP(client, vendor=self.label, base_url=base_url.rstrip("/") + "/api/v2",
                               auth=GenesysAuth(login_url, client_id, client_secret),
                               limits=limits, sleep=sleep)
        # Results URLs: no credentials, and not counted against the API's rate limit.
        self.storage = VendorHTTP(client, vendor=f"{self.label} results storage",
                                  limits=replace(limits, requests_per_minute=None), sleep=sleep)
        self.api_origin = _origin(base_url)
        self.poll_seconds = poll_seconds
        self.poll_max_seconds = max(poll_seconds, poll_max_seconds)
        self.clock = clock  # seconds since the epoch: a request's age is kept in the checkpoint

    # Search

    def search_subjects(self, identifiers: Sequence[Identifier]) -> list[SubjectMatch]:
        found: dict[str, dict[str, Any]] = {}
        for identifier in identifiers:
            search_type = SEARCH_TYPES.get(identifier.kind)
            if search_type is None:
                continue
            body = self._call("GET", "/gdpr/subjects", SEARCH, params={
                "searchType": search_type, "searchValue": identifier.value}).json()
            for subject in body.get("entities") or []:
                found[_subject_key(subject)] = subject
        return [
            SubjectMatch(system=self.name, record_id=key, label=subject.get("name") or "(no name)",
                         details=subject)
            for key, subject in found.items()
        ]

    # Planning and running

    def plan(self, spec: RequestSpec) -> list[PlannedStep]:
        if spec.type not in REQUEST_TYPES:
            raise InvalidRequest(f"{self.label} has no API for {spec.type.value} requests.")
        if spec.type is RequestType.RECTIFICATION:
            _replacement_terms(spec)  # refuse at planning what the API would refuse later
        confirmed = [c for c in spec.confirmed if c.get("details")]
        if spec.type is RequestType.ERASURE and confirmed:  # the approved plan: a line left stays
            approved = {e.record_id for e in spec.plan if e.action is PlanAction.DELETE}
            confirmed = [c for c in confirmed if str(c["record_id"])[:64] in approved]
            if not confirmed:
                return []
        subjects = [(str(c["record_id"])[:64], _targeting(c["details"])) for c in confirmed]
        subjects = subjects or [("", _subject_from_identifiers(spec.identifiers))]
        if not all(subject for _, subject in subjects):
            raise InvalidRequest(
                f"{self.label} needs an email, a phone number or an id to target the subject: "
                "a name or an address alone could match other people."
            )
        return [PlannedStep("gdpr_request", {"subject": subject, "index": n, "record": record})
                for n, (record, subject) in enumerate(subjects)]

    def run_step(self, run: StepRun) -> Outcome:
        if run.action != "gdpr_request":
            return Failed(f"{self.label} has no step {run.action!r}")
        try:
            return self._gdpr_request(run)
        except MissingPermission as exc:
            return Failed(str(exc))

    def _gdpr_request(self, run: StepRun) -> Outcome:
        cp = run.checkpoint or {}
        name = f"{run.spec.reference} dsr-desk #{run.params.get('index', 0)}"
        request_id = cp.get("request_id")
        if request_id is None and cp.get("posting"):
            # We may have crashed, or lost the answer, right after posting.
            posted = self._find_posted(run, name, cp.get("since"))
            if posted is not None:
                request_id = posted["id"]
                cp = {"request_id": request_id,
                      "submitted_at": _timestamp(posted.get("createdDate")) or self.clock()}
        if request_id is None:
            if not cp.get("posting"):
                return Continue({"posting": True, "since": self.clock()},
                                note="posting the GDPR request")
            request_id = self._post_or_adopt(run, name, cp.get("since"))
            cp = {"request_id": request_id, "submitted_at": self.clock()}
            return Waiting(cp, self.poll_seconds,
                           f"{self.label} GDPR request {request_id} submitted; "
                           f"checking it in {_duration(self.poll_seconds)}")
        cp = {"request_id": request_id, "submitted_at": cp.get("submitted_at") or self.clock()}
        gdpr = self._call("GET", f"/gdpr/requests/{request_id}", READ).json()
        status = gdpr.get("status")
        if status == "ERROR":
            return Failed(f"{self.label} ended GDPR request {request_id} in ERROR, so it did "
                          "not complete. Ask Genesys Cloud support about it (quote the request "
                          "id), then retry the request here", checkpoint={})  # posts anew
        if status not in FINAL:
            wait = self._next_poll(cp["submitted_at"])
            return Waiting(cp, wait, f"{self.label} GDPR request {request_id} is {status}; "
                                     f"checking again in {_duration(wait)}")
        if gdpr.get("requestType") in ("GDPR_DELETE", "GDPR_UPDATE"):
            return self._read_back(run, gdpr)
        urls = gdpr.get("resultsUrls") or ([gdpr["resultsUrl"]] if gdpr.get("resultsUrl") else [])
        folder = f"genesys/{run.params.get('index', 0)}"
        for n, url in enumerate(urls, start=1):
            file_name = f"{folder}/{_file_name(url, n)}"
            if not run.sink.exists(file_name):  # fetched before a crash
                self._download(url, file_name, run)
        return Done({"genesys_request": request_id, "request_type": gdpr.get("requestType"),
                     "status": status, "archives": len(urls)})

    def _read_back(self, run: StepRun, gdpr: dict[str, Any]) -> Outcome:
        """A completed deletion or update counts only once a subject search shows it: nobody
        found by the deleted subject's identifiers, the subject found by each new value."""
        request_id, kind = gdpr["id"], gdpr["requestType"]
        if kind == "GDPR_DELETE":
            searches = [(SEARCH_TYPES[k], v) for k, field in SUBJECT_LISTS.items()
                        for v in run.params["subject"].get(field) or ()]
            left = [t for t, v in searches if self._found(t, v)]
            if left:
                return Failed(f"{self.label} reports GDPR request {request_id} COMPLETED, but a "
                              f"subject search still finds the subject by {', '.join(left)}: "
                              "nothing is reported done. Check it in Genesys Cloud, then retry")
            note = (f"read back: no subject found by its {', '.join(sorted({t for t, _ in searches}))}"
                    if searches else "completed (no email or phone to search it by)")
        else:
            missing = [t["type"] for t in _replacement_terms(run.spec)
                       if not self._found(t["type"], t["updatedValue"])]
            if missing:
                return Failed(f"{self.label} reports GDPR request {request_id} COMPLETED, but a "
                              f"subject search does not find the new {', '.join(missing)}: "
                              "nothing is reported done. Check it in Genesys Cloud, then retry")
            note = "read back: the subject is found by each new value"
        return Done({"genesys_request": request_id, "request_type": kind, "status": "COMPLETED",
                     "verified": note}, verified=(Verified("subject", run.params.get("record", ""),
                                                           note),))

    def _found(self, search_type: str, value: str) -> bool:
        return bool(self._call("GET", "/gdpr/subjects", SEARCH, params={
            "searchType": search_type, "searchValue": value}).json().get("entities"))

    def _next_poll(self, submitted_at: float) -> float:
        """Wait as long as the request is old: polls double their spacing up to the maximum."""
        age = max(0.0, self.clock() - submitted_at)
        return min(self.poll_max_seconds, max(self.poll_seconds, age))

    def _download(self, url: str, name: str, run: StepRun) -> None:
        """Stream one results file into the export as it is. The bearer token goes only to the
        API host: any other host (a pre-signed URL) gets a request with no credentials."""
        if not url.startswith(("http://", "https://")):
            url = self.http.base_url.removesuffix("/api/v2") + "/" + url.lstrip("/")
        on_api = _origin(url) == self.api_origin
        http = self.http if on_api else self.storage
        with http.stream("GET", url) as response:
            if response.status_code != 200:
                response.read()  # a small error document
                if on_api:
                    raise error_from(response, f"{self.label} refused GET")
                raise _storage_error(self.storage.vendor, response, retry_after=self.poll_seconds)
            try:
                run.sink.write_stream(name, response.iter_bytes(CHUNK_BYTES))
            except (httpx.TransportError, httpx.StreamError) as exc:
                raise VendorBusy(f"{self.label}: the download of a results file broke off "
                                 f"({type(exc).__name__}); it starts again on the next try",
                                 retry_after=max(self.poll_seconds, 1.0)) from None

    def _call(self, method: str, path: str, permission: str, **kwargs: Any) -> httpx.Response:
        """An API call; a 403 names the permission the call needs."""
        try:
            return self.http.call(method, path, **kwargs)
        except VendorError as exc:
            if exc.status == 403:
                raise MissingPermission(
                    f"{self.label} refused {method} /api/v2{path.split('?')[0]} (403 "
                    f"{exc.code or 'forbidden'}): the OAuth client needs the permission "
                    f"{permission}. Add it to the client's role (Admin > Roles / Permissions), "
                    "then retry", status=403, code=exc.code) from None
            raise

    def _post(self, run: StepRun, name: str) -> str:
        request_type = REQUEST_TYPES[run.spec.type]
        body: dict[str, Any] = {"name": name, "requestType": request_type,
                                "subject": run.params["subject"]}
        params = {}
        if request_type == "GDPR_DELETE":
            params["deleteConfirmed"] = "true"
        if request_type == "GDPR_UPDATE":
            body["replacementTerms"] = _replacement_terms(run.spec)
        return self._call("POST", "/gdpr/requests", SUBMIT, params=params, json=body).json()["id"]

    def _post_or_adopt(self, run: StepRun, name: str, since: float | None) -> str:
        """Post the request. If its answer is lost, Genesys may hold it all the same: adopt it
        if it shows; if not, try again later, and look again before posting (it may show late)."""
        try:
            return self._post(run, name)
        except AnswerLost as exc:
            posted = self._find_posted(run, name, since)
            if posted is None:
                raise VendorBusy(f"{self.label}: the answer to posting the GDPR request was "
                                 "lost and the request does not show yet; looking for it again "
                                 "before posting", retry_after=max(exc.retry_after,
                                                                   self.poll_seconds)) from None
            return posted["id"]

    def _find_posted(self, run: StepRun, name: str, since: float | None) -> dict[str, Any] | None:
        """The request this step posted, if Genesys holds it. GDPRRequest lists `name` without
        saying that a name given by the client is kept, so the name alone cannot be trusted to
        find it: a request is ours when it has our name, or no name and `createdBy` our OAuth
        client (an OAuth client's id is its client id: GET /api/v2/oauth/clients/{clientId});
        and its type and subject are those we post, and it was created no earlier than the
        step began posting (`since`, less CLOCK_SKEW), and not ended in ERROR. The earliest
        such request is taken."""
        request_type = REQUEST_TYPES[run.spec.type]
        sent = run.params["subject"]
        ours = []
        for entity in self._requests():
            created = _timestamp(entity.get("createdDate"))
            mine = entity.get("name") == name or (
                not entity.get("name") and (entity.get("createdBy") or {}).get("id") == self.client_id)
            # One that ended in ERROR did nothing: posting anew is the remedy, not adopting it.
            if (mine and entity.get("status") != "ERROR"
                    and entity.get("requestType") == request_type
                    and _same_subject(sent, entity.get("subject") or {})
                    and (since is None or (created is not None and created >= since - CLOCK_SKEW))):
                ours.append((created or 0.0, entity))
        return min(ours, key=lambda pair: pair[0])[1] if ours else None

    def _requests(self) -> Generator[dict[str, Any], None, None]:
        """Every GDPR request of the org, page by page."""
        page = 1
        while True:
            body = self._call("GET", "/gdpr/requests", READ,
                              params={"pageSize": 100, "pageNumber": page}).json()
            yield from body.get("entities") or []
            if page >= (body.get("pageCount") or 1):
                return
            page += 1


class MissingPermission(VendorError):
    """Genesys Cloud answered 403: the OAuth client lacks a permission; the message names it."""


def _origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port: a results URL on any other origin gets no credentials."""
    parsed = httpx.URL(url)
    return parsed.scheme, parsed.host, parsed.port or DEFAULT_PORTS.get(parsed.scheme)


def _file_name(url: str, n: int) -> str:
    """`results-<n>` with the URL's extension (e.g. `.zip`) when it has a plain one."""
    suffix = PurePosixPath(httpx.URL(url).path).suffix
    return f"results-{n}" + (suffix if PLAIN_SUFFIX.fullmatch(suffix) else "")


def _storage_error(vendor: str, response: httpx.Response, *, retry_after: float) -> VendorError:
    """A refusal from the results storage. A 403 (an expired or refused pre-signed URL) is
    tried again later, with fresh URLs from the request; anything else needs a person."""
    code = re.search(rb"<Code>([A-Za-z.]{1,64})</Code>", response.content[:4096])
    what = f" ({code.group(1).decode()})" if code else ""
    message = (f"{vendor} refused GET {response.request.url.host}{response.request.url.path}: "
               f"answered {response.status_code}{what}")
    if response.status_code == 403:
        return VendorBusy(message + "; trying again with fresh links",
                          retry_after=max(retry_after, 1.0), status=403)
    return VendorError(message, status=response.status_code)


def _timestamp(value: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(value)).timestamp() if value else None
    except ValueError:
        return None


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _same_subject(sent: dict[str, Any], held: dict[str, Any]) -> bool:
    """Whether Genesys' copy of a request's subject holds what we sent (compared without case,
    spacing or phone punctuation, which the service may normalise)."""
    return all(_normalised(key, value) == _normalised(key, held.get(key))
               for key, value in sent.items())


def _normalised(key: str, value: Any) -> Any:
    if isinstance(value, list):
        return sorted({_normalised(key, v) for v in value})
    if isinstance(value, dict):
        return {k: _normalised(k, v) for k, v in value.items()}
    if isinstance(value, str):
        return "".join(c for c in value if c.isdigit()) if key == "phoneNumbers" else \
            value.strip().casefold()
    return value


def _subject_key(subject: dict[str, Any]) -> str:
    for key in ("userId", "externalContactId", "externalId"):
        if subject.get(key):
            return f"{key}:{subject[key]}"
    digest = hashlib.sha256(json.dumps(subject, sort_keys=True).encode()).hexdigest()[:16]
    return f"subject:{digest}"


def _targeting(subject: dict[str, Any]) -> dict[str, Any]:
    return {k: subject[k] for k in TARGETING_FIELDS if subject.get(k)}


def _subject_from_identifiers(identifiers: Sequence[Identifier]) -> dict[str, Any]:
    """A GDPRSubject with only the strong identifiers that are known."""
    subject: dict[str, Any] = {}
    for identifier in identifiers:
        if identifier.kind is IdentifierKind.EXTERNAL_ID:
            subject.setdefault("externalId", identifier.value)
        elif identifier.kind in SUBJECT_LISTS:
            subject.setdefault(SUBJECT_LISTS[identifier.kind], []).append(identifier.value)
    return subject


def _replacement_terms(spec: RequestSpec) -> list[dict[str, str]]:
    terms = []
    for new in spec.new_values:
        term_type = SEARCH_TYPES.get(new.kind)
        current = spec.values(new.kind)
        if term_type is None or term_type == "EXTERNAL_ID" or not current:
            raise InvalidRequest(
                f"{new.kind.value}: Genesys Cloud can only replace a name, address, phone or "
                "email, and needs the current value beside the new one."
            )
        terms.append({"type": term_type, "existingValue": current[0], "updatedValue": new.value})
    return terms
