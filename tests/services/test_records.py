"""The compliance record of a finished request: JSON, PDF, and its anchor in the audit trail."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pypdf
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet, MultiFernet
from sqlmodel import select

from bot import cli
from services import audit
from services.connectors.base import Done, SubjectMatch
from services.errors import InvalidRequest
from services.export_store import DatabaseStore
from services.exports import SealedSink, manifest_path, package
from services.policy import Policy
from services.record_pdf import render_pdf
from services.records import build_record, check_anchor, record_json
from services.requests import RequestService
from services.subjects import Identifier
from services.vocabulary import IdentifierKind, RequestType
from storage.models import AuditChainHead, AuditEvent
from tests.conftest import ManualClock
from tests.factories import new_request, tamper_with_audit
from tests.fakes import ScriptedConnector
from tests.workflow import run_until_settled

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EMAIL, PHONE, NAME = "jane.doe@example.com", "+4670123456", "Jane Doe"
ACTIONS = {"zendesk": ["find_tickets", "redact_tickets", "delete_user"], "genesys": ["erase_subject"]}


@pytest.fixture
def world(session_factory):
    return make_world(session_factory)


def make_world(session_factory):
    """A service with scripted connectors, on a hand-moved clock."""
    clock = ManualClock(T0)
    connectors = {system: ScriptedConnector(system, actions) for system, actions in ACTIONS.items()}
    connectors["zendesk"].script["find_tickets"] = [Done({"tickets": 4, "open": 1})]
    connectors["zendesk"].script["delete_user"] = [Done({"user_id": 1001, "deleted": True})]
    policy = Policy(requesters=frozenset({"U_REQUESTER"}),
                    approvers=frozenset({"U_APPROVER1", "U_APPROVER2"}),
                    managers=frozenset({"U_MANAGER"}), erasure_approvals=2)
    service = RequestService(session_factory, lambda system, sim: connectors[system], policy, clock,
                             ZoneInfo("UTC"))
    return service, connectors, clock


def _file(service, clock, **overrides) -> str:
    values = {"type": RequestType.ERASURE, "systems": ("zendesk", "genesys"),
              "identifiers": (Identifier(IdentifierKind.NAME, NAME),
                              Identifier(IdentifierKind.EMAIL, EMAIL),
                              Identifier(IdentifierKind.PHONE, PHONE)),
              "identity_verification": f"Replied from {EMAIL} on file", **overrides}
    request = service.create(new_request(**values))
    clock.advance(hours=2)
    service.confirm(request.reference, {
        "zendesk": [SubjectMatch("zendesk", "1001", NAME, {"email": EMAIL})],
        "genesys": [SubjectMatch("genesys", "g-77", NAME, {"phone": PHONE})],
    }, actor="U_REQUESTER")
    if service.get(request.reference).status == "in_review":  # an erasure's plan, as found
        service.submit_plan(request.reference, actor="U_REQUESTER")
    return request.reference


def completed(service, connectors, clock, session_factory) -> str:
    """An erasure filed, extended, approved twice and run to completion."""
    ref = _file(service, clock)
    clock.advance(days=1)
    service.extend(ref, actor="U_MANAGER", reason="Complex: records in two systems")
    clock.advance(hours=1)
    service.decide(ref, approver="U_APPROVER1", approve=True)
    clock.advance(minutes=20)
    service.decide(ref, approver="U_APPROVER2", approve=True)
    run_until_settled(session_factory, lambda system, sim: connectors[system], clock,
                      [service.get(ref).id])
    assert service.get(ref).status == "completed"
    return ref


def _build(session_factory, ref, tmp_path):
    with session_factory() as session:
        return build_record(session, ref, exports=DatabaseStore(session_factory),
                            now=T0.replace(month=4))


def _manifest(session_factory, ref) -> list[dict]:
    """Two documents staged and packaged as an access request's steps and the job would."""
    keys = MultiFernet([Fernet(Fernet.generate_key())])
    store = DatabaseStore(session_factory)  # the default export store, in the same database
    sink = SealedSink(store, ref, keys)
    sink.write("zendesk/tickets/1.json", {"ticket": {"id": 1, "subject": "Order"}})
    sink.write("genesys/0/result_1.json", {"conversations": []})
    made = package(store, ref, keys, readme="README", at=T0)
    return [vars(f) for f in made.files]


def _pdf_text(pdf: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    return "\n".join(page.extract_text() for page in reader.pages)


def test_record_of_a_completed_request(world, session_factory, tmp_path) -> None:
    service, connectors, clock = world
    ref = completed(service, connectors, clock, session_factory)
    files = _manifest(session_factory, ref)
    record = _build(session_factory, ref, tmp_path)
    text = record_json(record)
    body = json.loads(text)

    assert body["reference"] == ref and body["outcome"] == "completed" and body["simulation"] is True
    assert body["jurisdiction"]["code"] == "GDPR" and body["jurisdiction"]["legal_basis"]
    assert body["extension"]["reason"] == "Complex: records in two systems"
    assert body["requester"] == "U_REQUESTER"
    assert [(d["approver"], d["decision"]) for d in body["decisions"]] == [
        ("U_APPROVER1", "approve"), ("U_APPROVER2", "approve")]
    assert body["decisions"][0]["decided_at"] == "2026-03-03T12:00:00Z"
    # The erasure's plan as approved: every approval names it, each line says what it did.
    assert body["plan_sha256"] and {d["plan_sha256"] for d in body["decisions"]} == {
        body["plan_sha256"]}
    assert [(p["system"], p["record_id"], p["action"]) for p in body["plan"]] == [
        ("genesys", "g-77", "delete"), ("zendesk", "1001", "delete")]
    assert [(s["system"], s["action"], s["status"]) for s in body["steps"]] == [
        (system, action, "done") for system in ("zendesk", "genesys") for action in ACTIONS[system]]
    assert body["steps"][0]["result"] == {"tickets": 4, "open": 1}
    assert all(s["started_at"].endswith("Z") and s["finished_at"].endswith("Z") for s in body["steps"])
    assert body["export_manifest"] == files
    assert body["received_at"] == "2026-03-02T09:00:00Z"

    # The subject appears masked only, in the identifiers and in free text.
    assert {i["value"] for i in body["subject"]} == {"J*** D**", "j***@e******.com", "+46******56"}
    for clear in (EMAIL, PHONE, NAME, "Jane"):
        assert clear not in text
    assert body["identity_verification"] == "Replied from j***@e******.com on file"

    # The anchor is the event that completed the request; the head is the chain's end.
    with session_factory() as session:
        closing = session.get(AuditEvent, body["anchor"]["seq"])
        head = session.get(AuditChainHead, 1)
    assert closing.action == "request.status_changed" and closing.details["to"] == "completed"
    assert closing.request_id == record.request_id and body["anchor"]["hash"] == closing.hash
    assert body["chain_head"] == {"seq": head.last_seq, "hash": head.last_hash}

    # Stable: the same record gives the same text, keys sorted.
    assert record_json(_build(session_factory, ref, tmp_path)) == text
    assert list(body) == sorted(body)


def test_pdf_reads_back(world, session_factory, tmp_path) -> None:
    service, connectors, clock = world
    ref = completed(service, connectors, clock, session_factory)
    files = _manifest(session_factory, ref)
    record = _build(session_factory, ref, tmp_path)
    pdf = render_pdf(record)
    assert pdf.startswith(b"%PDF-")
    text = _pdf_text(pdf)
    assert "Record of processing of a data subject request" in text
    assert ref in text
    for expected in ("U_APPROVER1", "U_APPROVER2", "U_REQUESTER", "Complex: records in two systems",
                     record.anchor.hash, record.chain_head.hash, "dsr-desk audit verify",
                     files[0]["sha256"], "j***@e******.com", "Simulation", "Erasure plan",
                     "NOT verified"):  # the scripted connector never reads anything back
        assert expected in text, expected
    for actions in ACTIONS.values():
        for action in actions:
            assert action in text, action
    for clear in (EMAIL, PHONE, NAME):
        assert clear not in text
    assert "Page 1 of" in text


def test_record_of_a_rejected_request(world, session_factory, tmp_path) -> None:
    service, _, clock = world
    ref = _file(service, clock, type=RequestType.ACCESS)
    clock.advance(hours=3)
    service.decide(ref, approver="U_APPROVER2", approve=False,
                   reason=f"Identity not verified: {EMAIL} is not on file")
    record = _build(session_factory, ref, tmp_path)
    body = json.loads(record_json(record))
    assert body["outcome"] == "rejected" and body["steps"] == [] and body["export_manifest"] == []
    assert body["decisions"][0]["decision"] == "reject"
    assert body["decisions"][0]["reason"] == "Identity not verified: j***@e******.com is not on file"
    assert body["close_reason"] == body["decisions"][0]["reason"]
    assert EMAIL not in record_json(record)
    assert body["closed_at"] == "2026-03-02T14:00:00Z"
    text = _pdf_text(render_pdf(record))
    assert ref in text and "Rejected" in text and "U_APPROVER2" in text


def test_open_request_is_refused(world, session_factory, tmp_path) -> None:
    service, _, clock = world
    ref = _file(service, clock)
    service.decide(ref, approver="U_APPROVER1", approve=True)  # one of two approvals
    with pytest.raises(InvalidRequest, match=f"{ref} is pending_approval: a compliance record"):
        _build(session_factory, ref, tmp_path)


def test_unreadable_manifest_is_named(world, session_factory, tmp_path) -> None:
    service, _, clock = world
    ref = _file(service, clock)
    service.cancel(ref, actor="U_REQUESTER", reason="duplicate")
    with DatabaseStore(session_factory).writer(manifest_path(ref)) as out:
        out.write(b'{"files": [{"name": "x"}]}')
    with pytest.raises(InvalidRequest, match="manifest.json is not readable"):
        _build(session_factory, ref, tmp_path)


def _check(session_factory, record) -> bool:
    with session_factory() as session:
        return check_anchor(session, record)


def test_anchor_holds_until_the_trail_is_altered(world, engine, session_factory, tmp_path) -> None:
    service, connectors, clock = world
    ref = completed(service, connectors, clock, session_factory)
    record = _build(session_factory, ref, tmp_path)
    assert _check(session_factory, record)
    # Later events do not disturb it.
    other = _file(service, clock)
    service.cancel(other, actor="U_REQUESTER", reason="duplicate")
    assert _check(session_factory, record)

    tamper_with_audit(engine,
                      f"UPDATE audit_event SET actor = 'U_SOMEONE_ELSE' WHERE seq = {record.anchor.seq}")
    assert not _check(session_factory, record)


def test_anchor_catches_a_rewritten_chain(world, engine, session_factory, tmp_path) -> None:
    """An insider who edits an event and recomputes every later hash passes `verify`, but no
    longer matches the hash the record holds."""
    service, connectors, clock = world
    ref = completed(service, connectors, clock, session_factory)
    record = _build(session_factory, ref, tmp_path)
    with session_factory() as session:
        first_approval = session.exec(select(AuditEvent).where(
            AuditEvent.action == "request.approved").order_by(AuditEvent.seq)).first().seq
    tamper_with_audit(engine, f"UPDATE audit_event SET actor = 'U_REQUESTER' WHERE seq = {first_approval}")
    with session_factory() as session:
        prev = audit.GENESIS_HASH
        rewritten = []
        for event in session.exec(select(AuditEvent).order_by(AuditEvent.seq)).all():
            event.prev_hash = prev
            event.hash = prev = audit.event_hash(event)
            rewritten.append((event.seq, event.prev_hash, event.hash))
    with engine.begin() as conn:
        # Free the unique hashes first, so that none collides half-way.
        conn.exec_driver_sql("UPDATE audit_event SET hash = 'tmp-' || CAST(seq AS VARCHAR(20))")
        conn.execute(sa.text("UPDATE audit_event SET prev_hash = :p, hash = :h WHERE seq = :s"),
                     [{"s": s, "p": p, "h": h} for s, p, h in rewritten])
        conn.execute(sa.text("UPDATE audit_chain_head SET last_hash = :h WHERE id = 1"),
                     {"h": rewritten[-1][2]})
    with session_factory() as session:
        assert audit.verify(session).ok
    assert not _check(session_factory, record)


def test_cli_verify_reports_the_records_chain_head(world, session_factory, tmp_path, database_url,
                                                   monkeypatch, capsys) -> None:
    service, connectors, clock = world
    ref = completed(service, connectors, clock, session_factory)
    record = _build(session_factory, ref, tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DSR_DATA_DIR", str(tmp_path))
    assert cli.main(["audit", "verify"]) == 0
    out = capsys.readouterr().out
    assert f"{record.chain_head.seq} events, last hash {record.chain_head.hash}" in out
