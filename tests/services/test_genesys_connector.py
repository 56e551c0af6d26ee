"""GenesysConnector over a real localhost socket against the Genesys stand-in."""

from __future__ import annotations

import httpx
import pytest

from services.connectors.base import Continue, Done, RequestSpec, StepRun, Waiting
from services.connectors.genesys import GenesysConnector
from services.connectors.http import Limits
from services.errors import InvalidRequest
from services.sandbox.genesys import GenesysSandbox
from services.sandbox.server import serve
from services.sandbox.traffic import FaultPlan
from services.subjects import Identifier
from storage.models import IdentifierKind as K
from storage.models import RequestType
from tests.connector_driver import MemorySink, drive, summaries


@pytest.fixture
def sandbox() -> GenesysSandbox:
    return GenesysSandbox(seed=11, people=8, request_polls=2)


@pytest.fixture
def connector(sandbox):
    with serve(sandbox.wsgi) as running, httpx.Client() as client:
        yield GenesysConnector(client, running.url, login_url=running.url,
                               client_id="sandbox-client", client_secret="sandbox-secret",
                               limits=Limits(backoff_base=0.001, backoff_max=0.01),
                               sleep=lambda s: None)


def person(sandbox, n=0) -> dict:
    return sandbox.snapshot()["subjects"][n]["subject"]


def confirmed(connector, subject) -> RequestSpec:
    match = connector.search_subjects([Identifier(K.EMAIL, subject["emailAddresses"][0])])[0]
    return {"record_id": match.record_id, "label": match.label, "details": match.details}


def spec(kind, subject_match, **extra) -> RequestSpec:
    return RequestSpec(reference="DSR-000042", type=kind, identifiers=(), confirmed=(subject_match,),
                       **extra)


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


def test_export_posts_polls_and_downloads(connector, sandbox) -> None:
    subject = person(sandbox)
    sink = MemorySink()
    trace = drive(connector, spec(RequestType.ACCESS, confirmed(connector, subject)), sink)
    assert [type(o) for _, o in trace] == [Continue, Waiting, Waiting, Done]
    [summary] = summaries(trace).values()
    assert summary["request_type"] == "GDPR_EXPORT" and summary["status"] == "COMPLETED"
    assert summary["documents"] == len(sink.files) >= 1
    document = next(iter(sink.files.values()))
    assert document["records"], "the export holds the subject's records"
    [posted] = [r for r in sandbox.state.requests.values()]
    assert posted.request_type == "GDPR_EXPORT"
    # Only strong identifiers target the subject: never the name, which strangers may share.
    assert "name" not in posted.subject and "addresses" not in posted.subject


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


def test_crash_after_posting_does_not_post_twice(connector, sandbox) -> None:
    match = confirmed(connector, person(sandbox))
    request = spec(RequestType.ERASURE, match)
    [step] = connector.plan(request)

    def run(checkpoint):
        return connector.run_step(StepRun(step.action, step.params, checkpoint, request, {},
                                          MemorySink()))

    posting = run(None)
    assert posting == Continue({"posting": True}, note="posting the GDPR request")
    submitted = run(posting.checkpoint)
    assert isinstance(submitted, Waiting)
    # The process dies before it saves the request id: the step resumes from {"posting": True}.
    resumed = run(posting.checkpoint)
    assert resumed.checkpoint == submitted.checkpoint
    assert len(sandbox.state.requests) == 1


def test_faults_do_not_change_the_outcome(sandbox) -> None:
    clean = GenesysSandbox(seed=11, people=8, request_polls=2)
    sandbox.traffic.set_faults(FaultPlan(error_rate=0.3, retry_after=0, seed=4))
    for box in (clean, sandbox):
        with serve(box.wsgi) as running, httpx.Client() as client:
            connector = GenesysConnector(
                client, running.url, login_url=running.url, client_id="sandbox-client",
                client_secret="sandbox-secret", sleep=lambda s: None,
                limits=Limits(attempts=10, backoff_base=0.001, backoff_max=0.01))
            for n in (0, 2):
                subject = person(box, n)
                drive(connector, spec(RequestType.ERASURE, confirmed(connector, subject)))
    assert sum(sandbox.traffic.stats.injected.values()) > 0
    assert sandbox.snapshot()["subjects"] == clean.snapshot()["subjects"]


def test_plans_refuse_what_genesys_cannot_do(connector) -> None:
    with pytest.raises(InvalidRequest, match="no API for objection"):
        connector.plan(RequestSpec("DSR-1", RequestType.OBJECTION, ()))
    with pytest.raises(InvalidRequest, match="a name or an address alone"):
        connector.plan(RequestSpec("DSR-1", RequestType.ERASURE, (Identifier(K.NAME, "Ann Lee"),)))
    with pytest.raises(InvalidRequest, match="needs the current value"):
        connector.plan(RequestSpec("DSR-1", RequestType.RECTIFICATION,
                                   (Identifier(K.EMAIL, "a@example.com"),),
                                   new_values=(Identifier(K.PHONE, "+15550000"),)))
