"""Genesys Cloud: subject search and the GDPR request API (export, delete, update).

A GDPR request is processed by Genesys asynchronously: the step posts it once, then polls it
until COMPLETED or ERROR, and for an export downloads the documents behind its results URLs.
The request carries our reference and step in its `name`, so a step that crashed between
posting and saving the id finds its request again instead of posting a second one.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Generator, Sequence
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
    Waiting,
)
from services.connectors.http import Limits, VendorHTTP, error_from
from services.errors import InvalidRequest
from services.subjects import Identifier
from storage.models import IdentifierKind, RequestType

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
        poll_seconds: float = 10.0,
    ) -> None:
        self.http = VendorHTTP(client, vendor=self.label, base_url=base_url.rstrip("/") + "/api/v2",
                               auth=GenesysAuth(login_url, client_id, client_secret),
                               limits=limits, sleep=sleep)
        self.poll_seconds = poll_seconds

    # Search

    def search_subjects(self, identifiers: Sequence[Identifier]) -> list[SubjectMatch]:
        found: dict[str, dict[str, Any]] = {}
        for identifier in identifiers:
            search_type = SEARCH_TYPES.get(identifier.kind)
            if search_type is None:
                continue
            body = self.http.call("GET", "/gdpr/subjects", params={
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
        subjects = [_targeting(c["details"]) for c in spec.confirmed if c.get("details")]
        subjects = subjects or [_subject_from_identifiers(spec.identifiers)]
        if not all(subjects):
            raise InvalidRequest(
                f"{self.label} needs an email, a phone number or an id to target the subject: "
                "a name or an address alone could match other people."
            )
        return [PlannedStep("gdpr_request", {"subject": subject, "index": n})
                for n, subject in enumerate(subjects)]

    def run_step(self, run: StepRun) -> Outcome:
        if run.action != "gdpr_request":
            return Failed(f"{self.label} has no step {run.action!r}")
        cp = run.checkpoint or {}
        name = f"{run.spec.reference} dsr-desk #{run.params.get('index', 0)}"
        request_id = cp.get("request_id")
        if request_id is None and cp.get("posting"):
            request_id = self._find_posted(name)  # we may have crashed right after posting
        if request_id is None:
            if not cp.get("posting"):
                return Continue({"posting": True}, note="posting the GDPR request")
            request_id = self._post(run, name)
            return Waiting({"request_id": request_id}, self.poll_seconds,
                           f"{self.label} GDPR request {request_id} submitted")
        gdpr = self.http.call("GET", f"/gdpr/requests/{request_id}").json()
        status = gdpr.get("status")
        if status == "ERROR":
            return Failed(f"{self.label} reported ERROR for GDPR request {request_id}; "
                          "check it under Admin > GDPR in Genesys Cloud, then retry")
        if status not in FINAL:
            return Waiting({"request_id": request_id}, self.poll_seconds,
                           f"{self.label} GDPR request {request_id} is {status}")
        documents = 0
        urls = gdpr.get("resultsUrls") or ([gdpr["resultsUrl"]] if gdpr.get("resultsUrl") else [])
        for n, url in enumerate(urls):
            run.sink.write(f"genesys/{run.params.get('index', 0)}/result_{n + 1}.json",
                           self.http.call("GET", url).json())
            documents += 1
        return Done({"genesys_request": request_id, "request_type": gdpr.get("requestType"),
                     "status": status, "documents": documents})

    def _post(self, run: StepRun, name: str) -> str:
        request_type = REQUEST_TYPES[run.spec.type]
        body: dict[str, Any] = {"name": name, "requestType": request_type,
                                "subject": run.params["subject"]}
        params = {}
        if request_type == "GDPR_DELETE":
            params["deleteConfirmed"] = "true"
        if request_type == "GDPR_UPDATE":
            body["replacementTerms"] = _replacement_terms(run.spec)
        return self.http.call("POST", "/gdpr/requests", params=params, json=body).json()["id"]

    def _find_posted(self, name: str) -> str | None:
        page = 1
        while True:
            body = self.http.call("GET", "/gdpr/requests",
                              params={"pageSize": 100, "pageNumber": page}).json()
            for entity in body.get("entities") or []:
                if entity.get("name") == name:
                    return entity["id"]
            if page >= (body.get("pageCount") or 1):
                return None
            page += 1


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
