"""The Genesys Cloud GDPR stand-in, over real localhost sockets: its API host and the storage
host its results URLs point at.

The official SDK (`PureCloudPlatformClientV2`) is pointed at the server with
`ApiClient(host=server.url)`: the SDK derives its login host by replacing `//api.` with `//login.`
in the host, which leaves `http://127.0.0.1:PORT` unchanged, so `get_client_credentials_token`
posts to the same server's `/oauth/token`. No gateway configuration is needed. Time is a
rehearsal clock the tests move: nothing waits on the wall clock.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import xml.etree.ElementTree as ElementTree
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from PureCloudPlatformClientV2 import (
    ApiClient,
    GDPRRequest,
    GDPRSubject,
    GeneralDataProtectionRegulationApi,
    ReplacementTerm,
)
from PureCloudPlatformClientV2.rest import ApiException

from services.sandbox.server import RunningServer, serve
from services.sandbox.traffic import FaultPlan
from services.vendors.genesys.standin import GenesysSandbox, Presigner, results_path
from tests.fakes import EpochClock as Clock

ERROR_KEYS = {"message", "code", "status", "messageParams", "contextId", "details", "errors"}
RATE_LIMITED_KEYS = ERROR_KEYS - {"messageParams"}  # the normalized 429 body
CLIENT = ("sandbox-client", "sandbox-secret")
PERMISSIONS = {"gdpr:request:add", "gdpr:request:view", "gdpr:subject:view"}
DAY = 86400.0


class Switch:
    """The WSGI app of the module's one server: it serves whichever sandbox a test made.

    Stopping a server takes half a second (socketserver's poll interval), so the tests share one
    instead of starting one each.
    """

    def __init__(self) -> None:
        self.app: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.app(environ, start_response)


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[Switch, RunningServer]]:
    switch = Switch()
    with serve(switch) as running:
        yield switch, running


@pytest.fixture
def host(shared: tuple[Switch, RunningServer]) -> Iterator[Any]:
    """Call `host(sandbox)` to serve a sandbox; answers the running server. The sandboxes are
    closed (their results storage stopped) after the test."""
    switch, running = shared
    served: list[GenesysSandbox] = []

    def use(sandbox: GenesysSandbox) -> RunningServer:
        switch.app = sandbox.wsgi
        served.append(sandbox)
        return running

    yield use
    switch.app = None
    for sandbox in served:
        sandbox.close()


@pytest.fixture
def sandbox() -> Iterator[GenesysSandbox]:
    with GenesysSandbox(seed=11, people=12, requests_per_minute=None) as box:
        yield box


@pytest.fixture
def server(sandbox: GenesysSandbox, host: Any) -> RunningServer:
    return host(sandbox)


@pytest.fixture
def http(server: RunningServer) -> Iterator[httpx.Client]:
    """An httpx client that already holds a bearer token."""
    with httpx.Client(base_url=server.url, timeout=5) as client:
        client.headers["Authorization"] = f"Bearer {fetch_token(client)}"
        yield client


def fetch_token(client: httpx.Client, secret: str = CLIENT[1]) -> str:
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                           headers={"Authorization": basic(CLIENT[0], secret)})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def subjects(sandbox: GenesysSandbox) -> list[dict[str, Any]]:
    return [s["subject"] for s in sandbox.snapshot()["subjects"]]


def assert_error(response: httpx.Response, status: int, code: str,
                 message: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == (RATE_LIMITED_KEYS if status == 429 else ERROR_KEYS)
    assert (body["status"], body["code"]) == (status, code)
    assert body.get("messageParams", {}) == {} and body["details"] == [] and body["errors"] == []
    assert body["contextId"] == response.headers["ININ-Correlation-Id"]
    if message is not None:
        assert body["message"] == message
    return body


def s3_error(response: httpx.Response, status: int, code: str) -> dict[str, str]:
    """S3's XML error document, as {element: text}."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/xml")
    root = ElementTree.fromstring(response.content)
    assert root.tag == "Error"
    elements = {child.tag: child.text or "" for child in root}
    assert elements["Code"] == code and elements["RequestId"] and elements["HostId"]
    return elements


def archive_records(content: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(request.json, records.json) of a results archive."""
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        names = archive.namelist()
        [about] = [n for n in names if n.endswith("/request.json")]
        [records] = [n for n in names if n.endswith("/records.json")]
        return json.loads(archive.read(about)), json.loads(archive.read(records))


def search(http: httpx.Client, search_type: str, value: str) -> list[dict[str, Any]]:
    response = http.get("/api/v2/gdpr/subjects",
                        params={"searchType": search_type, "searchValue": value})
    assert response.status_code == 200, response.text
    return response.json()["entities"]


def submit(http: httpx.Client, body: dict[str, Any], **params: str) -> dict[str, Any]:
    response = http.post("/api/v2/gdpr/requests", json=body, params=params)
    assert response.status_code == 202, response.text
    return response.json()


def poll(http: httpx.Client, request_id: str) -> list[dict[str, Any]]:
    """Read a request until it completes; every answer, in order."""
    answers = []
    for _ in range(10):
        response = http.get(f"/api/v2/gdpr/requests/{request_id}")
        assert response.status_code == 200, response.text
        answers.append(response.json())
        if answers[-1]["status"] == "COMPLETED":
            return answers
    raise AssertionError(f"request never completed: {[a['status'] for a in answers]}")


def assert_deserialized(model: Any, raw: Any, where: str = "") -> None:
    """Every field the server sent arrived in the SDK model: not None, not an unknown enum."""
    if isinstance(raw, list):
        assert isinstance(model, list) and len(model) == len(raw), where
        for n, (item, raw_item) in enumerate(zip(model, raw, strict=True)):
            assert_deserialized(item, raw_item, f"{where}[{n}]")
        return
    if not hasattr(model, "attribute_map"):
        assert model is not None and model != "outdated_sdk_version", where
        return
    by_key = {key: attr for attr, key in model.attribute_map.items()}
    for key, value in raw.items():
        assert key in by_key, f"{where}.{key} is not in the SDK's {type(model).__name__}"
        assert_deserialized(getattr(model, by_key[key]), value, f"{where}.{key}")


def sdk_raw(client: ApiClient) -> Any:
    return json.loads(client.last_response.data)


# The official SDK ------------------------------------------------------------------------------

def test_sdk_runs_every_call_and_deserializes_every_answer(host: Any) -> None:
    clock = Clock()
    sandbox = GenesysSandbox(seed=11, people=12, requests_per_minute=None, clock=clock,
                             request_seconds=100)
    server = host(sandbox)
    client = ApiClient(host=server.url).get_client_credentials_token(*CLIENT)
    assert client.access_token
    api = GeneralDataProtectionRegulationApi(client)
    first, second, third = subjects(sandbox)[:3]

    found = api.get_gdpr_subjects("EMAIL", first["emailAddresses"][0].upper())
    assert_deserialized(found, sdk_raw(client))
    assert [s.external_id for s in found.entities] == [first["externalId"]]
    assert found.entities[0].name == first["name"]
    assert found.entities[0].external_contact_id == first["externalContactId"]

    def sdk_subject(**fields: Any) -> GDPRSubject:
        subject = GDPRSubject()
        for name, value in fields.items():
            setattr(subject, name, value)
        return subject

    def sdk_request(request_type: str, subject: GDPRSubject,
                    terms: list[ReplacementTerm] | None = None) -> GDPRRequest:
        body = GDPRRequest()
        body.request_type, body.subject = request_type, subject
        if terms:
            body.replacement_terms = terms
        return body

    def run(body: GDPRRequest, **kwargs: Any) -> Any:
        created = api.post_gdpr_requests(body, **kwargs)
        assert client.last_response.status == 202
        assert_deserialized(created, sdk_raw(client))
        assert created.status == "INITIATED" and created.id and created.created_date
        assert created.created_by.id and created.self_uri.endswith(created.id)
        statuses = []
        while not statuses or statuses[-1] != "COMPLETED":
            clock.now += 40  # the org's time moves the request; reading it does not
            current = api.get_gdpr_request(created.id)
            assert_deserialized(current, sdk_raw(client))
            statuses.append(current.status)
        return current, statuses

    export, statuses = run(sdk_request(
        "GDPR_EXPORT", sdk_subject(email_addresses=first["emailAddresses"])))
    assert statuses == ["SEARCHING", "FINALIZING", "COMPLETED"]
    assert export.results_url == export.results_urls[0]
    assert export.results_url.startswith(sandbox.storage_url + "/gdpr-results/")
    assert not sandbox.storage_url.startswith(server.url), "the results live on another host"

    _, statuses = run(sdk_request("GDPR_DELETE", sdk_subject(phone_numbers=second["phoneNumbers"])),
                      delete_confirmed=True)
    assert statuses == ["SEARCHING", "DELETING", "COMPLETED"]
    assert api.get_gdpr_subjects("PHONE", second["phoneNumbers"][0]).entities == []

    term = ReplacementTerm()
    term.type, term.existing_value = "EMAIL", third["emailAddresses"][0]
    term.updated_value = "renamed@example.net"
    update, statuses = run(sdk_request(
        "GDPR_UPDATE", sdk_subject(external_id=third["externalId"]), [term]))
    assert statuses == ["SEARCHING", "UPDATING", "COMPLETED"]
    assert update.replacement_terms[0].updated_value == "renamed@example.net"
    moved = api.get_gdpr_subjects("EMAIL", "renamed@example.net")
    assert [s.external_id for s in moved.entities] == [third["externalId"]]

    page = api.get_gdpr_requests(page_size=2, page_number=1)
    assert_deserialized(page, sdk_raw(client))
    assert (page.total, page.page_count, len(page.entities)) == (3, 2, 2)
    assert [r.request_type for r in page.entities] == ["GDPR_EXPORT", "GDPR_DELETE"]
    assert page.entities[0].results_urls[0].startswith(sandbox.storage_url)
    assert page.next_uri and page.previous_uri is None


def test_sdk_sees_refusals_as_api_exceptions(server: RunningServer) -> None:
    with pytest.raises(ApiException) as refused:
        ApiClient(host=server.url).get_client_credentials_token(CLIENT[0], "wrong")
    assert refused.value.status == 401
    assert json.loads(refused.value.body)["error"] == "invalid_client"

    client = ApiClient(host=server.url).get_client_credentials_token(*CLIENT)
    body = GDPRRequest()
    body.request_type = "GDPR_DELETE"
    body.subject = GDPRSubject()
    body.subject.email_addresses = ["nobody@example.com"]
    with pytest.raises(ApiException) as unconfirmed:
        GeneralDataProtectionRegulationApi(client).post_gdpr_requests(body)
    assert unconfirmed.value.status == 400
    assert json.loads(unconfirmed.value.body)["code"] == "bad.request"


def test_sdk_calls_without_their_permission_are_refused_with_403(
        sandbox: GenesysSandbox, server: RunningServer) -> None:
    client = ApiClient(host=server.url).get_client_credentials_token(*CLIENT)
    api = GeneralDataProtectionRegulationApi(client)
    body = GDPRRequest()
    body.request_type, body.subject = "GDPR_EXPORT", GDPRSubject()
    body.subject.email_addresses = ["someone@example.com"]
    created = api.post_gdpr_requests(body)
    calls = {"gdpr:request:add": lambda: api.post_gdpr_requests(body),
             "gdpr:request:view": lambda: api.get_gdpr_request(created.id),
             "gdpr:subject:view": lambda: api.get_gdpr_subjects("EMAIL", "someone@example.com")}
    calls_too = {"gdpr:request:view": lambda: api.get_gdpr_requests()}
    for permission, call in [*calls.items(), *calls_too.items()]:
        sandbox.permissions = PERMISSIONS - {permission}
        with pytest.raises(ApiException) as refused:
            call()
        assert refused.value.status == 403, permission
        error = json.loads(refused.value.body)
        assert error["code"] == "missing.any.permissions"
        assert error["message"] == ("Unable to perform the requested action. You must have at "
                                    "least one of the following permissions assigned: "
                                    f"[{permission}]")
        assert refused.value.headers["ININ-Correlation-Id"] == error["contextId"]
    sandbox.permissions = PERMISSIONS
    assert api.get_gdpr_request(created.id).status == "COMPLETED"


# Auth -------------------------------------------------------------------------------------------

def test_token_endpoint_answers_like_the_login_service(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        form = {"grant_type": "client_credentials"}
        ok = client.post("/oauth/token", data=form, headers={"Authorization": basic(*CLIENT)})
        assert ok.status_code == 200
        assert ok.json()["token_type"] == "bearer" and ok.json()["expires_in"] == 86400
        for headers in ({"Authorization": basic(CLIENT[0], "wrong")},
                        {"Authorization": basic("other-client", CLIENT[1])},
                        {"Authorization": "Basic not-base64!"}, {}):
            refused = client.post("/oauth/token", data=form, headers=headers)
            assert refused.status_code == 401
            assert refused.json() == {"error": "invalid_client",
                                      "description": "authentication failed",
                                      "error_description": "authentication failed"}
        wrong_grant = client.post("/oauth/token", data={"grant_type": "password"},
                                  headers={"Authorization": basic(*CLIENT)})
        assert wrong_grant.status_code == 400
        assert wrong_grant.json()["error"] == "unsupported_grant_type"


def test_api_calls_need_a_valid_bearer_token(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        params = {"searchType": "NAME", "searchValue": "x"}
        missing = client.get("/api/v2/gdpr/subjects", params=params)
        body = assert_error(missing, 401, "authentication.required",
                            "No authentication bearer token specified in authorization header.")
        assert body["contextId"] == missing.headers["ININ-Correlation-Id"]
        unknown = client.get("/api/v2/gdpr/subjects", params=params,
                             headers={"Authorization": "Bearer made-up"})
        assert_error(unknown, 401, "bad.credentials", "Invalid login credentials.")
        basic_auth = client.get("/api/v2/gdpr/requests", headers={"Authorization": basic(*CLIENT)})
        assert_error(basic_auth, 401, "authentication.required")


def test_expired_tokens_are_refused_and_a_new_one_works(
        sandbox: GenesysSandbox, http: httpx.Client) -> None:
    assert http.get("/api/v2/gdpr/requests").status_code == 200
    sandbox.expire_tokens()
    assert_error(http.get("/api/v2/gdpr/requests"), 401, "bad.credentials")
    http.headers["Authorization"] = f"Bearer {fetch_token(http)}"
    assert http.get("/api/v2/gdpr/requests").status_code == 200


def test_tokens_expire_after_their_ttl(host: Any) -> None:
    sandbox = GenesysSandbox(seed=1, people=2, token_ttl=60)
    now = [1_000_000.0]
    sandbox.state.clock = lambda: now[0]
    with httpx.Client(base_url=host(sandbox).url) as client:
        response = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                               headers={"Authorization": basic(*CLIENT)})
        assert response.json()["expires_in"] == 60
        bearer = {"Authorization": f"Bearer {response.json()['access_token']}"}
        now[0] += 59
        assert client.get("/api/v2/gdpr/requests", headers=bearer).status_code == 200
        now[0] += 1
        assert_error(client.get("/api/v2/gdpr/requests", headers=bearer), 401, "bad.credentials")


@pytest.mark.parametrize(("method", "path", "permission"), [
    ("GET", "/api/v2/gdpr/subjects?searchType=NAME&searchValue=x", "gdpr:subject:view"),
    ("POST", "/api/v2/gdpr/requests", "gdpr:request:add"),
    ("GET", "/api/v2/gdpr/requests", "gdpr:request:view"),
    ("GET", "/api/v2/gdpr/requests/3f0a8a52-0000-4000-8000-000000000000", "gdpr:request:view"),
])
def test_calls_without_their_permission_answer_403_naming_it(
        sandbox: GenesysSandbox, http: httpx.Client, method: str, path: str,
        permission: str) -> None:
    sandbox.permissions = PERMISSIONS - {permission}
    body = {"requestType": "GDPR_EXPORT", "subject": {"emailAddresses": ["a@example.com"]}}
    refused = http.request(method, path, json=body if method == "POST" else None)
    assert_error(refused, 403, "missing.any.permissions",
                 "Unable to perform the requested action. You must have at least one of the "
                 f"following permissions assigned: [{permission}]")
    assert sandbox.state.requests == {}
    with httpx.Client(base_url=http.base_url) as anonymous:  # no token: 401 comes first
        assert_error(anonymous.request(method, path), 401, "authentication.required")
    sandbox.permissions = {permission}
    assert http.request(method, path, json=body if method == "POST" else None).status_code in (
        200, 202, 404)


# Search -----------------------------------------------------------------------------------------

def test_search_matches_whole_values_case_insensitively(
        sandbox: GenesysSandbox, http: httpx.Client) -> None:
    person = subjects(sandbox)[3]
    expected = [person["externalId"]]

    def ids(search_type: str, value: str) -> list[str]:
        return [s["externalId"] for s in search(http, search_type, value)]

    assert ids("NAME", person["name"].upper()) == expected
    assert ids("EMAIL", person["emailAddresses"][0].title()) == expected
    assert ids("ADDRESS", person["addresses"][0].lower()) == expected
    assert ids("EXTERNAL_ID", person["externalId"].lower()) == expected
    digits = person["phoneNumbers"][0].lstrip("+")  # "1555000000N"
    assert ids("PHONE", f"+{digits[0]} ({digits[1:4]}) {digits[4:7]}-{digits[7:]}") == expected
    assert ids("PHONE", digits[1:]) == expected  # the national number
    assert ids("PHONE", digits[-4:]) == []
    assert ids("NAME", person["name"].split()[0]) == []
    assert ids("INSTAGRAM", person["name"]) == []

    tweeter = next(s for s in subjects(sandbox) if "socialHandle" in s)
    handle = tweeter["socialHandle"]["value"]
    assert ids("TWITTER", f"@{handle.upper()}") == [tweeter["externalId"]]

    listing = http.get("/api/v2/gdpr/subjects",
                       params={"searchType": "NAME", "searchValue": person["name"]}).json()
    assert (listing["total"], listing["pageNumber"], listing["pageCount"]) == (1, 1, 1)
    assert listing["entities"][0] == person


def test_search_refuses_unknown_types_and_missing_values(http: httpx.Client) -> None:
    unknown = http.get("/api/v2/gdpr/subjects", params={"searchType": "SHOE_SIZE",
                                                        "searchValue": "44"})
    body = assert_error(unknown, 400, "invalid.value")
    assert "SHOE_SIZE" in body["message"] and "EXTERNAL_ID" in body["message"]
    assert_error(http.get("/api/v2/gdpr/subjects", params={"searchType": "EMAIL"}),
                 400, "bad.request")


def test_added_subjects_are_searchable(sandbox: GenesysSandbox, http: httpx.Client) -> None:
    added = sandbox.add_subject("Zoë Example", emails=["zoe@example.org", "z@example.net"],
                                phones=["+46701234567"], external_id="EXT-42")
    assert added["emailAddresses"] == ["zoe@example.org", "z@example.net"]
    assert search(http, "EMAIL", "Z@example.net") == [added]
    assert search(http, "PHONE", "0046 70 123 45 67") == [added]


# Requests: validation ---------------------------------------------------------------------------

EMAIL_SUBJECT = {"emailAddresses": ["someone@example.com"]}
TERMS = [{"type": "EMAIL", "existingValue": "someone@example.com",
          "updatedValue": "other@example.com"}]


@pytest.mark.parametrize(("body", "params", "message"), [
    ({"requestType": "GDPR_EXPORT", "subject": EMAIL_SUBJECT, "replacementTerms": TERMS}, {},
     "Invalid data"),
    ({"requestType": "GDPR_DELETE", "subject": EMAIL_SUBJECT, "replacementTerms": TERMS},
     {"deleteConfirmed": "true"}, "Invalid data"),
    ({"requestType": "GDPR_DELETE", "subject": EMAIL_SUBJECT}, {}, None),
    ({"requestType": "GDPR_DELETE", "subject": EMAIL_SUBJECT}, {"deleteConfirmed": "false"}, None),
    ({"requestType": "GDPR_UPDATE", "subject": EMAIL_SUBJECT}, {}, None),
    ({"requestType": "GDPR_UPDATE", "subject": EMAIL_SUBJECT, "replacementTerms": [
        {"type": "EMAIL", "existingValue": "someone@example.com"}]}, {}, None),
    ({"requestType": "GDPR_EXPORT", "subject": {}}, {}, None),
    ({"requestType": "GDPR_EXPORT", "subject": {"emailAddresses": [], "name": " "}}, {}, None),
    ({"requestType": "GDPR_EXPORT"}, {}, None),
    ({"requestType": "GDPR_ERASE", "subject": EMAIL_SUBJECT}, {}, None),
    ({"subject": EMAIL_SUBJECT}, {}, None),
    ({"requestType": "GDPR_EXPORT", "subject": {"emailAddresses": "one@example.com"}}, {}, None),
], ids=["terms-on-export", "terms-on-delete", "delete-unconfirmed", "delete-confirmed-false",
        "update-without-terms", "term-without-update", "empty-subject", "blank-subject",
        "no-subject", "unknown-type", "no-type", "email-not-a-list"])
def test_invalid_requests_are_refused_and_not_recorded(
        sandbox: GenesysSandbox, http: httpx.Client, body: dict[str, Any],
        params: dict[str, str], message: str | None) -> None:
    response = http.post("/api/v2/gdpr/requests", json=body, params=params)
    assert_error(response, 400, "bad.request", message)
    assert sandbox.state.requests == {}


def test_request_bodies_must_be_json(sandbox: GenesysSandbox, http: httpx.Client) -> None:
    as_form = http.post("/api/v2/gdpr/requests", data={"requestType": "GDPR_EXPORT"})
    assert_error(as_form, 415, "unsupported.media.type")
    broken = http.post("/api/v2/gdpr/requests", content=b"{not json",
                       headers={"Content-Type": "application/json"})
    assert_error(broken, 400, "bad.request")
    assert sandbox.state.requests == {}


def test_unknown_requests_and_routes_are_not_found(http: httpx.Client) -> None:
    assert_error(http.get("/api/v2/gdpr/requests/3f0a8a52-0000-4000-8000-000000000000"),
                 404, "not.found")
    assert_error(http.get("/api/v2/gdpr/nothing-here"), 404, "not.found")


# Requests: processing ---------------------------------------------------------------------------

@pytest.mark.parametrize(("request_type", "stage"), [
    ("GDPR_EXPORT", "FINALIZING"), ("GDPR_DELETE", "DELETING"), ("GDPR_UPDATE", "UPDATING")])
def test_requests_move_by_the_clock_not_by_reads(
        host: Any, request_type: str, stage: str) -> None:
    clock = Clock()
    sandbox = GenesysSandbox(seed=11, people=12, requests_per_minute=None, clock=clock,
                             request_seconds=3 * DAY, token_ttl=int(7 * DAY))
    with httpx.Client(base_url=host(sandbox).url) as http:
        http.headers["Authorization"] = f"Bearer {fetch_token(http)}"
        person = subjects(sandbox)[0]
        body: dict[str, Any] = {"requestType": request_type,
                                "subject": {"emailAddresses": person["emailAddresses"]}}
        if request_type == "GDPR_UPDATE":
            body["replacementTerms"] = [{"type": "NAME", "existingValue": person["name"],
                                         "updatedValue": "Renamed Person"}]
        created = submit(http, body, deleteConfirmed="true")
        assert created["status"] == "INITIATED"
        assert set(created) >= {"id", "createdBy", "requestType", "createdDate", "subject",
                                "selfUri"}
        assert created["subject"] == body["subject"]
        assert created["selfUri"] == f"/api/v2/gdpr/requests/{created['id']}"

        def status() -> str:
            return http.get(created["selfUri"]).json()["status"]

        assert [status() for _ in range(20)] == ["INITIATED"] * 20, "reads do not move it"
        seen = []
        for hours in (6, 24, 36, 48, 71):  # a tenth, then half of three days: the stages
            clock.now = 1_767_225_600.0 + hours * 3600
            seen.append(status())
            assert search(http, "EMAIL", person["emailAddresses"][0]) == [person]  # not yet
        assert seen == ["INITIATED", "SEARCHING", stage, stage, stage]
        listed = http.get("/api/v2/gdpr/requests").json()["entities"]
        assert [r["status"] for r in listed] == [stage] and "resultsUrl" not in listed[0]

        clock.now = 1_767_225_600.0 + 3 * DAY  # due: the effects apply, read or not
        after = search(http, "EMAIL", person["emailAddresses"][0])
        if request_type == "GDPR_EXPORT":
            assert after == [person]
        elif request_type == "GDPR_DELETE":
            assert after == []
        else:
            assert [s["name"] for s in after] == ["Renamed Person"]
        assert status() == "COMPLETED"
        assert ("resultsUrl" in http.get(created["selfUri"]).json()) is (
            request_type == "GDPR_EXPORT")


def test_by_default_a_request_completes_at_its_first_read(http: httpx.Client) -> None:
    created = submit(http, {"requestType": "GDPR_EXPORT", "subject": {"name": "Nobody Known"}})
    assert created["status"] == "INITIATED" and "resultsUrl" not in created
    assert [a["status"] for a in poll(http, created["id"])] == ["COMPLETED"]


def test_a_request_can_end_in_error_with_no_effect(
        sandbox: GenesysSandbox, http: httpx.Client) -> None:
    person = subjects(sandbox)[2]
    sandbox.fail_next()
    failed = submit(http, {"requestType": "GDPR_DELETE",
                           "subject": {"externalId": person["externalId"]}},
                    deleteConfirmed="true")
    answer = http.get(failed["selfUri"]).json()
    assert answer["status"] == "ERROR" and "resultsUrl" not in answer
    assert search(http, "EXTERNAL_ID", person["externalId"]) == [person]
    again = submit(http, {"requestType": "GDPR_DELETE",
                          "subject": {"externalId": person["externalId"]}},
                   deleteConfirmed="true")
    assert [a["status"] for a in poll(http, again["id"])] == ["COMPLETED"]  # only the next one
    assert search(http, "EXTERNAL_ID", person["externalId"]) == []


# Export results: archives on a storage host of their own ------------------------------------------

def completed_export(http: httpx.Client, subject: dict[str, Any]) -> dict[str, Any]:
    created = submit(http, {"requestType": "GDPR_EXPORT", "subject": subject})
    return poll(http, created["id"])[-1]


def test_export_results_are_presigned_archives_on_another_host(
        sandbox: GenesysSandbox, server: RunningServer, http: httpx.Client) -> None:
    person = subjects(sandbox)[5]
    done = completed_export(http, {"phoneNumbers": person["phoneNumbers"]})
    [url] = done["resultsUrls"]
    assert done["resultsUrl"] == url
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == sandbox.storage_url != server.url
    assert parts.path == f"/gdpr-results/{done['id']}/gdpr-export-{done['id']}-1.zip"
    query = dict(parse_qsl(parts.query))
    assert set(query) == {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                          "X-Amz-SignedHeaders", "X-Amz-Signature"}
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256" and query["X-Amz-Expires"] == "3600"

    with httpx.Client() as anonymous:  # no credentials: the URL carries them
        archive = anonymous.get(url)
    assert archive.status_code == 200, archive.text
    assert archive.headers["Content-Type"] == "application/zip"
    assert "ININ-Correlation-Id" not in archive.headers, "not the API host"
    about, records = archive_records(archive.content)
    assert (about["requestId"], about["part"], about["parts"]) == (done["id"], 1, 1)
    [record] = records
    assert record["subject"] == person
    assert record["externalContact"]["id"] == person["externalContactId"]
    assert record["conversations"], "every seeded subject has interactions"
    for conversation in record["conversations"]:
        assert {"id", "startTime", "endTime", "channel", "participants", "transcript"} <= set(
            conversation)
        assert any(p.get("name") == person["name"] for p in conversation["participants"])
    assert person["name"] in json.dumps([c["transcript"] for c in record["conversations"]])
    assert_error(http.get(f"{done['selfUri']}/results/1.json"), 404, "not.found")


def test_results_links_refuse_a_bearer_token_as_s3_does(
        sandbox: GenesysSandbox, http: httpx.Client) -> None:
    done = completed_export(http, {"emailAddresses": subjects(sandbox)[1]["emailAddresses"]})
    token = http.headers["Authorization"]
    refused = s3_error(httpx.get(done["resultsUrl"], headers={"Authorization": token}), 400,
                       "InvalidArgument")
    assert refused["Message"] == (
        "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature "
        "query string parameter or the Authorization header should be specified")
    assert refused["ArgumentName"] == "Authorization"
    bare = done["resultsUrl"].split("?")[0]
    assert s3_error(httpx.get(bare), 403, "AccessDenied")["Message"] == "Access Denied"
    assert s3_error(httpx.get(bare, headers={"Authorization": token}), 400,
                    "InvalidArgument")["Message"] == "Unsupported Authorization Type"


def test_results_links_expire(host: Any) -> None:
    clock = Clock()
    sandbox = GenesysSandbox(seed=3, people=3, requests_per_minute=None, clock=clock,
                             results_url_seconds=600)
    with httpx.Client(base_url=host(sandbox).url) as http:
        http.headers["Authorization"] = f"Bearer {fetch_token(http)}"
        done = completed_export(http, {"emailAddresses": subjects(sandbox)[0]["emailAddresses"]})
        clock.now += 600
        assert httpx.get(done["resultsUrl"]).status_code == 200
        clock.now += 1
        expired = s3_error(httpx.get(done["resultsUrl"]), 403, "AccessDenied")
        assert expired["Message"] == "Request has expired" and expired["X-Amz-Expires"] == "600"
        assert expired["Expires"] == "2026-01-01T00:10:00Z"
        assert expired["ServerTime"] == "2026-01-01T00:10:01Z"
        fresh = http.get(done["selfUri"]).json()["resultsUrl"]  # each read signs anew
        assert httpx.get(fresh).status_code == 200


def test_altered_links_are_refused(sandbox: GenesysSandbox, http: httpx.Client) -> None:
    people = subjects(sandbox)
    url = completed_export(http, {"emailAddresses": people[0]["emailAddresses"]})["resultsUrl"]
    other = completed_export(http, {"emailAddresses": people[1]["emailAddresses"]})
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    base = f"{parts.scheme}://{parts.netloc}"

    def with_query(**changes: str) -> str:
        return f"{base}{parts.path}?{urlencode({**query, **changes})}"

    signature = query["X-Amz-Signature"]
    flipped = signature[:-1] + ("1" if signature.endswith("0") else "0")
    for altered in (with_query(**{"X-Amz-Signature": flipped}),
                    with_query(**{"X-Amz-Expires": "604800"}),  # a longer life, same signature
                    f"{base}{urlsplit(other['resultsUrl']).path}?{parts.query}"):  # another file
        s3_error(httpx.get(altered), 403, "SignatureDoesNotMatch")
    missing = {k: v for k, v in query.items() if k != "X-Amz-Credential"}
    s3_error(httpx.get(f"{base}{parts.path}?{urlencode(missing)}"), 400,
             "AuthorizationQueryParametersError")
    assert httpx.get(url).status_code == 200


def test_presigned_urls_are_signature_version_4() -> None:
    """The signing matches the example in AWS' S3 API reference (sigv4-query-string-auth)."""
    signer = Presigner("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    url = signer.presign("https://examplebucket.s3.amazonaws.com", "/test.txt",
                         now=datetime(2013, 5, 24, tzinfo=UTC).timestamp(), expires=86400)
    assert url == (
        "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")


def test_export_of_an_unknown_subject_completes_with_no_data(http: httpx.Client) -> None:
    done = completed_export(http, {"emailAddresses": ["nobody@example.invalid"]})
    assert len(done["resultsUrls"]) == 1
    about, records = archive_records(httpx.get(done["resultsUrl"]).content)
    assert records == [] and about["parts"] == 1


def test_results_are_not_available_before_completion(host: Any) -> None:
    clock = Clock()
    sandbox = GenesysSandbox(seed=3, people=3, requests_per_minute=None, clock=clock,
                             request_seconds=DAY)
    with httpx.Client(base_url=host(sandbox).url) as http:
        http.headers["Authorization"] = f"Bearer {fetch_token(http)}"
        created = submit(http, {"requestType": "GDPR_EXPORT", "subject": {"name": "Anyone"}})
        assert "resultsUrl" not in http.get(created["selfUri"]).json()
        # A well-signed link to the file that does not exist yet.
        early = sandbox.presigner.presign(sandbox.storage_url, results_path(created["id"], 1),
                                          now=clock.now, expires=3600)
        assert s3_error(httpx.get(early), 404, "NoSuchKey")["Key"] == (
            f"{created['id']}/gdpr-export-{created['id']}-1.zip")


def test_delete_removes_all_of_the_subjects_data_and_nothing_else(
        sandbox: GenesysSandbox, http: httpx.Client) -> None:
    before = subjects(sandbox)
    target = before[4]
    created = submit(http, {"requestType": "GDPR_DELETE",
                            "subject": {"externalId": target["externalId"]}},
                     deleteConfirmed="true")
    poll(http, created["id"])
    for search_type, value in (("EMAIL", target["emailAddresses"][0]), ("NAME", target["name"]),
                               ("PHONE", target["phoneNumbers"][0]),
                               ("EXTERNAL_ID", target["externalId"])):
        assert search(http, search_type, value) == []
    assert subjects(sandbox) == [s for s in before if s != target]
    assert target["name"] not in json.dumps(sandbox.snapshot()["subjects"])


def test_a_delete_that_matches_nothing_changes_nothing(
        sandbox: GenesysSandbox, http: httpx.Client) -> None:
    before = sandbox.snapshot()["subjects"]
    created = submit(http, {"requestType": "GDPR_DELETE",
                            "subject": {"phoneNumbers": ["+44 20 7946 0000"]}},
                     deleteConfirmed="true")
    assert poll(http, created["id"])[-1]["status"] == "COMPLETED"
    assert sandbox.snapshot()["subjects"] == before


def test_update_replaces_each_term_everywhere(sandbox: GenesysSandbox, http: httpx.Client) -> None:
    person = subjects(sandbox)[6]
    old_email, old_phone = person["emailAddresses"][0], person["phoneNumbers"][0]
    terms = [
        {"type": "NAME", "existingValue": person["name"].lower(), "updatedValue": "Ada Updated"},
        {"type": "EMAIL", "existingValue": old_email, "updatedValue": "ada@example.org"},
        {"type": "PHONE", "existingValue": old_phone[2:], "updatedValue": "+15559999999"},
        {"type": "ADDRESS", "existingValue": person["addresses"][0],
         "updatedValue": "1 New Street, Newtown"},
        {"type": "EMAIL", "existingValue": "not-theirs@example.com",
         "updatedValue": "ignored@example.com"},
    ]
    created = submit(http, {"requestType": "GDPR_UPDATE",
                            "subject": {"externalContactId": person["externalContactId"]},
                            "replacementTerms": terms})
    assert created["replacementTerms"] == terms
    poll(http, created["id"])

    [updated] = search(http, "EXTERNAL_ID", person["externalId"])
    assert updated["name"] == "Ada Updated"
    assert updated["emailAddresses"] == ["ada@example.org"]
    assert updated["phoneNumbers"] == ["+15559999999"]
    assert updated["addresses"] == ["1 New Street, Newtown"]
    assert search(http, "EMAIL", old_email) == []
    assert search(http, "EMAIL", "ada@example.org") == [updated]
    [data] = [s for s in sandbox.snapshot()["subjects"] if s["subject"] == updated]
    text = json.dumps(data)
    for old in (person["name"], old_email, old_phone, person["addresses"][0]):
        assert old not in text
    assert data["externalContact"]["firstName"] == "Ada"
    assert data["externalContact"]["workEmail"] == "ada@example.org"


# Requests: listing ------------------------------------------------------------------------------

def test_requests_listing_pages(sandbox: GenesysSandbox, http: httpx.Client) -> None:
    ids = [submit(http, {"requestType": "GDPR_EXPORT", "subject": {"name": f"Person {n}"}})["id"]
           for n in range(5)]
    first = http.get("/api/v2/gdpr/requests", params={"pageSize": 2}).json()
    assert (first["pageSize"], first["pageNumber"], first["total"], first["pageCount"]) == (
        2, 1, 5, 3)
    assert first["firstUri"] == "/api/v2/gdpr/requests?pageSize=2&pageNumber=1"
    assert first["lastUri"] == "/api/v2/gdpr/requests?pageSize=2&pageNumber=3"
    assert "previousUri" not in first

    seen, page = [], first
    while True:
        seen += [r["id"] for r in page["entities"]]
        if "nextUri" not in page:
            break
        page = http.get(page["nextUri"]).json()
    assert seen == ids
    assert page["pageNumber"] == 3
    assert page["previousUri"] == "/api/v2/gdpr/requests?pageSize=2&pageNumber=2"

    default = http.get("/api/v2/gdpr/requests").json()
    assert (default["pageSize"], len(default["entities"])) == (25, 5)
    beyond = http.get("/api/v2/gdpr/requests", params={"pageNumber": 9, "pageSize": 2}).json()
    assert beyond["entities"] == [] and beyond["total"] == 5
    for bad in ({"pageSize": 0}, {"pageSize": 101}, {"pageNumber": 0}, {"pageSize": "ten"}):
        assert_error(http.get("/api/v2/gdpr/requests", params=bad), 400, "bad.request")
    assert all(r["resultsUrls"][0].startswith(sandbox.storage_url) for r in default["entities"])


# Traffic ----------------------------------------------------------------------------------------

def test_rate_limit_answers_429_with_retry_after(host: Any) -> None:
    sandbox = GenesysSandbox(seed=3, people=2, requests_per_minute=3)
    with httpx.Client(base_url=host(sandbox).url) as client:
        client.headers["Authorization"] = f"Bearer {fetch_token(client)}"
        for count in ("1", "2", "3"):
            response = client.get("/api/v2/gdpr/requests")
            assert response.status_code == 200
            assert response.headers["inin-ratelimit-allowed"] == "3"
            assert response.headers["inin-ratelimit-count"] == count
            assert 1 <= int(response.headers["inin-ratelimit-reset"]) <= 60
            assert "X-Rate-Limit" not in response.headers
        limited = client.get("/api/v2/gdpr/requests")
        body = assert_error(limited, 429, "too.many.requests.retry.after")
        retry_after = int(limited.headers["Retry-After"])
        assert 1 <= retry_after <= 61
        assert body["message"] == ("Rate limit exceeded the maximum. Retry the request in "
                                   f"[{retry_after}] seconds")
        assert fetch_token(client), "the login service has limits of its own"
    assert sandbox.traffic.stats.rate_limited == 1


def run_workflow(sandbox: GenesysSandbox, host: Any) -> dict[str, Any]:
    """A connector-like run: every call retried on 429/5xx until it goes through."""
    people = subjects(sandbox)
    faults_seen: list[dict[str, Any]] = []
    with httpx.Client(base_url=host(sandbox).url) as client:

        def call(method: str, url: str, **kwargs: Any) -> httpx.Response:
            for _ in range(50):
                response = client.request(method, url, **kwargs)
                if response.status_code not in (429, 500, 502, 503, 504):
                    return response
                faults_seen.append(response.json())
            raise AssertionError("never got through")

        client.headers["Authorization"] = f"Bearer {fetch_token(client)}"

        def complete(body: dict[str, Any], **params: str) -> dict[str, Any]:
            created = call("POST", "/api/v2/gdpr/requests", json=body, params=params)
            assert created.status_code == 202, created.text
            while True:
                current = call("GET", created.json()["selfUri"]).json()
                if current["status"] == "COMPLETED":
                    return current

        for person in people[:3]:
            found = call("GET", "/api/v2/gdpr/subjects",
                         params={"searchType": "EMAIL", "searchValue": person["emailAddresses"][0]})
            assert found.json()["total"] == 1
        complete({"requestType": "GDPR_DELETE",
                  "subject": {"emailAddresses": people[0]["emailAddresses"]}},
                 deleteConfirmed="true")
        complete({"requestType": "GDPR_UPDATE", "subject": {"externalId": people[1]["externalId"]},
                  "replacementTerms": [{"type": "PHONE",
                                        "existingValue": people[1]["phoneNumbers"][0],
                                        "updatedValue": "+15558888888"}]})
        export = complete({"requestType": "GDPR_EXPORT", "subject": {"name": people[2]["name"]}})
        _, records = archive_records(httpx.get(export["resultsUrl"]).content)  # no token
        assert records[0]["subject"]["externalId"] == people[2]["externalId"]
    for fault in faults_seen:
        assert fault["status"] in (429, 500, 502, 503, 504)
        assert set(fault) == (RATE_LIMITED_KEYS if fault["status"] == 429 else ERROR_KEYS)
    return {"snapshot": sandbox.snapshot(), "faults": len(faults_seen)}


def test_injected_faults_leave_the_state_unchanged(host: Any) -> None:
    clean = run_workflow(GenesysSandbox(seed=4, people=6, requests_per_minute=None), host)
    faulty_sandbox = GenesysSandbox(seed=4, people=6, requests_per_minute=None,
                                    faults=FaultPlan(error_rate=0.4, seed=9))
    faulty = run_workflow(faulty_sandbox, host)
    assert clean["faults"] == 0
    assert faulty["faults"] == sum(faulty_sandbox.traffic.stats.injected.values()) > 0
    assert set(faulty_sandbox.traffic.stats.injected) & {500, 502, 503, 504}
    assert faulty["snapshot"] == clean["snapshot"]
    assert faulty_sandbox.traffic.stats.calls["POST /oauth/token"] == 1, "login is not faulted"


def test_concurrent_clients_are_served_consistently(
        sandbox: GenesysSandbox, server: RunningServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        bearer = {"Authorization": f"Bearer {fetch_token(client)}"}
    people = subjects(sandbox)
    errors: list[Exception] = []

    def work(person: dict[str, Any]) -> None:
        try:
            with httpx.Client(base_url=server.url, headers=bearer, timeout=10) as client:
                created = submit(client, {"requestType": "GDPR_DELETE",
                                          "subject": {"externalId": person["externalId"]}},
                                 deleteConfirmed="true")
                poll(client, created["id"])
        except Exception as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(p,)) for p in people[:8]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert subjects(sandbox) == people[8:]
    assert len(sandbox.state.requests) == 8


# Determinism ------------------------------------------------------------------------------------

def test_same_seed_same_data_and_different_seeds_differ() -> None:
    one, same, other = (GenesysSandbox(seed=s, people=8).snapshot() for s in (21, 21, 22))
    assert one == same
    assert json.loads(json.dumps(one)) == one, "the snapshot is JSON-able"
    assert one != other
    assert len(one["subjects"]) == 8 and one["requests"] == []
    assert all(s["conversations"] for s in one["subjects"])
    assert any("userId" in s["subject"] for s in GenesysSandbox(seed=1).snapshot()["subjects"])
