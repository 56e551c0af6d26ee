"""GenesysConnector over real localhost sockets against the Genesys stand-in (API host and its
results storage, a host of its own)."""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet, MultiFernet

from services.connectors.base import Continue, Done, Failed, PlanEntry, RequestSpec, StepRun, Waiting
from services.connectors.http import Limits, VendorBusy, VendorError
from services.errors import InvalidRequest
from services.export_store import FolderStore
from services.exports import SealedSink, archive_chunks, package
from services.sandbox.server import serve
from services.sandbox.traffic import FaultPlan, LoseAnswers
from services.subjects import Identifier
from services.vendors.genesys.connector import GenesysConnector
from services.vendors.genesys.standin import GenesysSandbox
from services.vocabulary import IdentifierKind as K
from services.vocabulary import PlanAction, RequestType
from tests.connector_driver import MemorySink, drive, summaries
from tests.fakes import EpochClock as Clock

FAST = Limits(backoff_base=0.001, backoff_max=0.01)
DAY = 86400.0


class Spy:
    """WSGI middleware that records each request's headers (and may answer for the app)."""

    def __init__(self) -> None:
        self.app: Any = None
        self.seen: list[dict[str, str]] = []
        self.answer: Any = None  # a WSGI app to answer the next request instead

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        self.seen.append({k[5:].lower(): v for k, v in environ.items() if k.startswith("HTTP_")})
        answer, self.answer = self.answer, None
        return (answer or self.app)(environ, start_response)


@pytest.fixture
def sandbox() -> Iterator[GenesysSandbox]:
    with GenesysSandbox(seed=11, people=8) as box:
        yield box


def connect(client: httpx.Client, url: str, **options: Any) -> GenesysConnector:
    return GenesysConnector(client, url, login_url=url, client_id="sandbox-client",
                            client_secret="sandbox-secret", sleep=lambda s: None,
                            **{"limits": FAST, **options})


@pytest.fixture
def connector(sandbox):
    with serve(sandbox.wsgi) as running, httpx.Client() as client:
        yield connect(client, running.url)


def person(sandbox, n=0) -> dict:
    return sandbox.snapshot()["subjects"][n]["subject"]


def confirmed(connector, subject) -> dict:
    match = connector.search_subjects([Identifier(K.EMAIL, subject["emailAddresses"][0])])[0]
    return {"record_id": match.record_id, "label": match.label, "details": match.details}


def spec(kind, subject_match, **extra) -> RequestSpec:
    """An erasure comes with its approved plan: the confirmed subject deleted."""
    if kind is RequestType.ERASURE:
        extra.setdefault("plan", (PlanEntry("subject", subject_match["record_id"],
                                            PlanAction.DELETE),))
    return RequestSpec(reference="DSR-000042", type=kind, identifiers=(), confirmed=(subject_match,),
                       **extra)


def records_in(archive: bytes) -> list[dict[str, Any]]:
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        [name] = [n for n in opened.namelist() if n.endswith("/records.json")]
        return json.loads(opened.read(name))


def test_search_by_each_identifier(connector, sandbox) -> None:
    subject = person(sandbox, 2)
    for identifier in (Identifier(K.EMAIL, subject["emailAddresses"][0].upper()),
                       Identifier(K.PHONE, subject["phoneNumbers"][0]),
                       Identifier(K.NAME, subject["name"]),
                       Identifier(K.EXTERNAL_ID, subject["externalId"])):
        matches = connector.search_subjects([identifier])
        assert [m.label for m in matches] == [subject["name"]], identifier.kind
        assert matches[0].record_id.startswith(("userId:", "externalContactId:"))
    assert connector.search_subjects([Identifier(K.EMAIL, "nobody@example.invalid")]) == []


def test_export_posts_polls_and_streams_the_archive_as_it_is(connector, sandbox) -> None:
    subject = person(sandbox)
    sink = MemorySink()
    trace = drive(connector, spec(RequestType.ACCESS, confirmed(connector, subject)), sink)
    assert [type(o) for _, o in trace] == [Continue, Waiting, Done]
    [summary] = summaries(trace).values()
    assert summary["request_type"] == "GDPR_EXPORT" and summary["status"] == "COMPLETED"
    assert summary["archives"] == 1 and list(sink.files) == ["genesys/0/results-1.zip"]
    [posted] = sandbox.state.requests.values()
    assert sink.files["genesys/0/results-1.zip"] == posted.archives[0], "stored byte for byte"
    [record] = records_in(sink.files["genesys/0/results-1.zip"])
    assert record["subject"] == subject and record["conversations"]
    assert posted.request_type == "GDPR_EXPORT"
    # Only strong identifiers target the subject: never the name, which strangers may share.
    assert "name" not in posted.subject and "addresses" not in posted.subject


def test_the_bearer_token_goes_to_the_api_host_only() -> None:
    storage_spy, api_spy = Spy(), Spy()
    with serve(storage_spy) as storage, GenesysSandbox(seed=11, people=8,
                                                       storage_url=storage.url) as box, \
            serve(api_spy) as api, httpx.Client() as client:
        storage_spy.app, api_spy.app = box.storage_wsgi, box.wsgi
        connector = connect(client, api.url)
        sink = MemorySink()
        drive(connector, spec(RequestType.ACCESS, confirmed(connector, person(box))), sink)
    assert list(sink.files) == ["genesys/0/results-1.zip"]
    assert storage.port != api.port  # another origin: what the connector goes by
    api_calls = [h for h in api_spy.seen if "authorization" in h]
    assert len(api_calls) == len(api_spy.seen) >= 4 and all(
        h["authorization"].startswith(("Bearer ", "Basic ")) for h in api_calls)
    assert len(storage_spy.seen) == 1 and "authorization" not in storage_spy.seen[0]


def test_a_request_of_three_days_costs_a_few_polls_a_day() -> None:
    clock = Clock()
    box = GenesysSandbox(seed=11, people=8, request_seconds=3 * DAY, clock=clock)
    first, longest = 30.0, 1800.0
    with box, serve(box.wsgi) as running, httpx.Client() as client:
        connector = connect(client, running.url, poll_seconds=first, poll_max_seconds=longest,
                            clock=clock)
        request = spec(RequestType.ACCESS, confirmed(connector, person(box)))
        [step] = connector.plan(request)
        sink, checkpoint, notes, waits = MemorySink(), None, [], []
        for _ in range(1000):
            outcome = connector.run_step(StepRun(step.action, step.params, checkpoint, request,
                                                 {}, sink))
            if isinstance(outcome, Done):
                break
            assert isinstance(outcome, (Continue, Waiting)), outcome
            checkpoint = outcome.checkpoint
            if isinstance(outcome, Waiting):
                notes.append(outcome.note)
                waits.append(outcome.seconds)
                clock.now += outcome.seconds
        request_id = checkpoint["request_id"]
        sent = box.traffic.stats.calls[f"GET /api/v2/gdpr/requests/{request_id}"]

    # Doubling from 30 s to the 30-minute cap takes log2(60) polls, then one every 30 minutes.
    bound = math.ceil(math.log2(longest / first)) + 1 + math.ceil(3 * DAY / longest) + 1
    polls = len(waits)  # the first wait follows the POST; the last poll found it COMPLETED
    assert polls <= bound == 152  # polling every 15 s would have been 17,280 calls
    assert sent == polls + 3, "plus one repeat a day, after the day-long token is renewed"
    assert waits[:4] == [30, 30, 60, 120] and max(waits) == longest
    assert waits.count(longest) >= polls - 8, "the 30-minute spacing holds once reached"
    assert notes[0].endswith("submitted; checking it in 30 s")
    assert notes[-1].endswith("is FINALIZING; checking again in 30 min")
    assert outcome.summary["status"] == "COMPLETED" and outcome.summary["archives"] == 1
    assert records_in(sink.files["genesys/0/results-1.zip"])[0]["subject"]["name"] == (
        person(box)["name"])
    assert box.traffic.stats.calls["POST /oauth/token"] == 4, "a token a day (TTL one day)"


@pytest.mark.parametrize("withheld", ["gdpr:request:add", "gdpr:request:view"])
def test_a_missing_permission_fails_the_step_and_names_it(connector, sandbox, withheld) -> None:
    request = spec(RequestType.ERASURE, confirmed(connector, person(sandbox)))
    sandbox.permissions = sandbox.permissions - {withheld}
    *_, (_, outcome) = drive(connector, request)
    assert isinstance(outcome, Failed)
    assert "(403 missing.any.permissions)" in outcome.reason
    assert f"needs the permission {withheld}" in outcome.reason


def test_a_search_without_permission_says_which_is_missing(connector, sandbox) -> None:
    sandbox.permissions = {"gdpr:request:add", "gdpr:request:view"}
    with pytest.raises(VendorError, match="needs the permission gdpr:subject:view") as refused:
        connector.search_subjects([Identifier(K.EMAIL, "anyone@example.com")])
    assert refused.value.status == 403


def test_a_request_ending_in_error_fails_the_step(connector, sandbox) -> None:
    subject = person(sandbox, 1)
    sandbox.fail_next()
    *_, (_, outcome) = drive(connector, spec(RequestType.ERASURE, confirmed(connector, subject)))
    assert isinstance(outcome, Failed)
    [posted] = sandbox.state.requests.values()
    assert f"GDPR request {posted.id} in ERROR, so it did not complete" in outcome.reason
    assert connector.search_subjects([Identifier(K.EMAIL, subject["emailAddresses"][0])])


def test_delete_removes_the_subject(connector, sandbox) -> None:
    subject = person(sandbox, 1)
    trace = drive(connector, spec(RequestType.ERASURE, confirmed(connector, subject)))
    assert summaries(trace)["gdpr_request"]["request_type"] == "GDPR_DELETE"
    assert connector.search_subjects([Identifier(K.EMAIL, subject["emailAddresses"][0])]) == []
    assert len(sandbox.snapshot()["subjects"]) == 7


def test_update_replaces_terms(connector, sandbox) -> None:
    subject = person(sandbox, 3)
    old = subject["emailAddresses"][0]
    request = spec(RequestType.RECTIFICATION, confirmed(connector, subject),
                   new_values=(Identifier(K.EMAIL, "corrected@example.org"),))
    request = RequestSpec(**{**request.__dict__, "identifiers": (Identifier(K.EMAIL, old),)})
    drive(connector, request)
    [posted] = sandbox.state.requests.values()
    assert posted.replacement_terms == [
        {"type": "EMAIL", "existingValue": old, "updatedValue": "corrected@example.org"}]
    assert connector.search_subjects([Identifier(K.EMAIL, old)]) == []
    assert [m.label for m in connector.search_subjects(
        [Identifier(K.EMAIL, "corrected@example.org")])] == [subject["name"]]


def test_expired_token_is_renewed(connector, sandbox) -> None:
    subject = person(sandbox)
    connector.search_subjects([Identifier(K.EMAIL, subject["emailAddresses"][0])])
    sandbox.expire_tokens()
    assert connector.search_subjects([Identifier(K.EMAIL, subject["emailAddresses"][0])])


def test_crash_after_posting_does_not_post_twice() -> None:
    clock = Clock()
    with GenesysSandbox(seed=11, people=8, clock=clock, request_seconds=DAY) as box, \
            serve(box.wsgi) as running, httpx.Client() as client:
        connector = connect(client, running.url, clock=clock)
        request = spec(RequestType.ERASURE, confirmed(connector, person(box)))
        [step] = connector.plan(request)

        def run(checkpoint):
            return connector.run_step(StepRun(step.action, step.params, checkpoint, request, {},
                                              MemorySink()))

        posting = run(None)
        assert posting == Continue({"posting": True, "since": clock.now},
                                   note="posting the GDPR request")
        submitted = run(posting.checkpoint)
        assert isinstance(submitted, Waiting)
        clock.now += 3600
        # The process dies before it saves the request id: the step resumes from {"posting": True}
        # and finds the request, with its age (from createdDate) for the next wait.
        resumed = run(posting.checkpoint)
        assert resumed.checkpoint == submitted.checkpoint
        assert resumed.seconds == 1800 and len(box.state.requests) == 1


def test_faults_do_not_change_the_outcome(sandbox) -> None:
    clean = GenesysSandbox(seed=11, people=8)
    sandbox.traffic.set_faults(FaultPlan(error_rate=0.3, retry_after=0, seed=4))
    for box in (clean, sandbox):
        with serve(box.wsgi) as running, httpx.Client() as client:
            connector = connect(client, running.url,
                                limits=Limits(attempts=10, backoff_base=0.001, backoff_max=0.01))
            for n in (0, 2):
                subject = person(box, n)
                drive(connector, spec(RequestType.ERASURE, confirmed(connector, subject)))
    clean.close()
    assert sum(sandbox.traffic.stats.injected.values()) > 0
    assert sandbox.snapshot()["subjects"] == clean.snapshot()["subjects"]


def test_an_expired_link_is_tried_again_with_fresh_ones() -> None:
    spy = Spy()
    with serve(spy) as storage, GenesysSandbox(seed=11, people=8, storage_url=storage.url) as box, \
            serve(box.wsgi) as api, httpx.Client() as client:
        spy.app = box.storage_wsgi

        def expired(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            start_response("403 Forbidden", [("Content-Type", "application/xml")])
            return [b"<?xml version='1.0' encoding='UTF-8'?>\n<Error><Code>AccessDenied</Code>"
                    b"<Message>Request has expired</Message></Error>"]

        connector = connect(client, api.url)
        request = spec(RequestType.ACCESS, confirmed(connector, person(box)))
        [step] = connector.plan(request)
        sink = MemorySink()
        trace = drive(connector, request, sink)  # posted, then done: the checkpoint to resume
        spy.answer = expired
        rerun = StepRun(step.action, step.params, trace[-2][1].checkpoint, request, {}, MemorySink())
        with pytest.raises(VendorBusy, match=r"answered 403 \(AccessDenied\); trying again"):
            connector.run_step(rerun)
        assert rerun.sink.files == {}
        assert isinstance(connector.run_step(rerun), Done)
        assert rerun.sink.files == sink.files


def test_a_download_that_breaks_off_stores_nothing_and_is_tried_again() -> None:
    spy = Spy()
    with serve(spy) as storage, GenesysSandbox(seed=11, people=8, storage_url=storage.url) as box, \
            serve(box.wsgi) as api, httpx.Client() as client:
        spy.app = box.storage_wsgi

        def broken(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
            start_response("200 OK", [("Content-Type", "application/zip"),
                                      ("Content-Length", "100000")])
            yield b"PK\x03\x04" + b"\0" * 1000
            raise ConnectionResetError("storage went away")

        connector = connect(client, api.url)
        request = spec(RequestType.ACCESS, confirmed(connector, person(box)))
        [step] = connector.plan(request)
        trace = drive(connector, request, MemorySink())
        spy.answer = broken
        rerun = StepRun(step.action, step.params, trace[-2][1].checkpoint, request, {}, MemorySink())
        with pytest.raises(VendorBusy, match="broke off"):
            connector.run_step(rerun)
        assert rerun.sink.files == {}
        assert isinstance(connector.run_step(rerun), Done)


def test_the_archive_reaches_the_subjects_zip_unchanged(sandbox, tmp_path) -> None:
    keys = MultiFernet([Fernet(Fernet.generate_key())])
    store = FolderStore(tmp_path)  # to see the bytes at rest (the database store: test_exports)
    sink = SealedSink(store, "DSR-000042", keys)
    with serve(sandbox.wsgi) as running, httpx.Client() as client:
        connector = connect(client, running.url)
        drive(connector, spec(RequestType.ACCESS, confirmed(connector, person(sandbox))), sink)
    assert sink.exists("genesys/0/results-1.zip") and sink.count("genesys/0/") == 1
    [posted] = sandbox.state.requests.values()
    made = package(store, "DSR-000042", keys, readme="r", at=datetime(2026, 3, 2, tzinfo=UTC))
    on_disk = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert posted.archives[0] not in on_disk, "sealed at rest"
    with zipfile.ZipFile(io.BytesIO(b"".join(archive_chunks(store, made.archive, keys,
                                                            sha256=made.sha256)))) as archive:
        assert archive.read("genesys/0/results-1.zip") == posted.archives[0]
        manifest = json.loads(archive.read("manifest.json"))
    assert [f["name"] for f in manifest["files"]] == ["genesys/0/results-1.zip"]
    assert manifest["files"][0]["bytes"] == len(posted.archives[0])


def test_plans_refuse_what_genesys_cannot_do(connector) -> None:
    with pytest.raises(InvalidRequest, match="no API for objection"):
        connector.plan(RequestSpec("DSR-1", RequestType.OBJECTION, ()))
    with pytest.raises(InvalidRequest, match="a name or an address alone"):
        connector.plan(RequestSpec("DSR-1", RequestType.ERASURE, (Identifier(K.NAME, "Ann Lee"),)))
    with pytest.raises(InvalidRequest, match="needs the current value"):
        connector.plan(RequestSpec("DSR-1", RequestType.RECTIFICATION,
                                   (Identifier(K.EMAIL, "a@example.com"),),
                                   new_values=(Identifier(K.PHONE, "+15550000"),)))


def test_a_lost_answer_to_the_post_adopts_the_request_genesys_created() -> None:
    clock = Clock()
    with GenesysSandbox(seed=11, people=8, clock=clock) as box, serve(box.wsgi) as running, \
            httpx.Client() as client:
        box.state.keep_names = False  # not documented to be kept: not relied upon
        connector = connect(client, running.url, clock=clock)
        box.traffic.set_faults(FaultPlan(lose=(LoseAnswers("POST", "/api/v2/gdpr/requests"),)))
        trace = drive(connector, spec(RequestType.ERASURE, confirmed(connector, person(box))))
        assert [type(o) for _, o in trace] == [Continue, Waiting, Done]
        assert box.traffic.stats.lost == {"POST /api/v2/gdpr/requests": 1}
        assert box.traffic.stats.calls["POST /api/v2/gdpr/requests"] == 1
        [posted] = box.state.requests
        assert trace[-1][1].summary["genesys_request"] == posted


def test_only_our_own_request_is_adopted() -> None:
    """Someone else (another OAuth client) posts the same request at the same moment: ours is
    found by its creator, not theirs."""
    clock = Clock()
    with GenesysSandbox(seed=11, people=8, clock=clock) as box, serve(box.wsgi) as running, \
            httpx.Client() as client:
        box.state.keep_names = False
        connector = connect(client, running.url, clock=clock)
        request = spec(RequestType.ACCESS, confirmed(connector, person(box)))
        [step] = connector.plan(request)

        def run(checkpoint):
            return connector.run_step(StepRun(step.action, step.params, checkpoint, request, {},
                                              MemorySink()))

        posting = run(None)
        ours_by = box.state.created_by
        box.state.created_by = {"id": "another-client", "selfUri": "/api/v2/oauth/clients/x"}
        theirs = box.state.create_request({"requestType": "GDPR_EXPORT",
                                           "subject": step.params["subject"]},
                                          delete_confirmed=False)
        box.state.created_by = ours_by
        box.traffic.set_faults(FaultPlan(lose=(LoseAnswers("POST", "/api/v2/gdpr/requests"),)))
        submitted = run(posting.checkpoint)
        assert isinstance(submitted, Waiting)
        assert submitted.checkpoint["request_id"] != theirs.id
        assert len(box.state.requests) == 2


def test_an_ambiguous_failure_of_a_post_that_did_nothing_is_posted_again_later() -> None:
    """A gateway answers 502 and the request never reached Genesys: nothing shows, so the step
    tries again later, looks once more, and only then posts again."""
    clock = Clock()
    spy = Spy()
    with GenesysSandbox(seed=11, people=8, clock=clock) as box, httpx.Client() as client:
        spy.app = box.wsgi

        def refuse_posts(environ, start_response):
            if environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"].startswith("/api/"):
                start_response("502 Bad Gateway", [("Content-Type", "application/json")])
                return [b'{"status": 502, "code": "bad.gateway"}']
            return box.wsgi(environ, start_response)

        with serve(spy) as running:
            connector = connect(client, running.url, clock=clock)
            request = spec(RequestType.ERASURE, confirmed(connector, person(box)))
            [step] = connector.plan(request)

            def run(checkpoint):
                return connector.run_step(StepRun(step.action, step.params, checkpoint, request,
                                                  {}, MemorySink()))

            posting = run(None)
            spy.app = refuse_posts
            with pytest.raises(VendorBusy, match="does not show yet") as raised:
                run(posting.checkpoint)
            assert "@" not in str(raised.value) and not box.state.requests
            spy.app = box.wsgi
            assert isinstance(run(posting.checkpoint), Waiting)
            assert len(box.state.requests) == 1
