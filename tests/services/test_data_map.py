"""The data map (services/data_map.py): systems declared, edited, retired and round-tripped as a
file by managers, every change audited; bad declarations refused with what to fix."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlmodel import select

from services import audit
from services.data_map import DataMap, spec_of
from services.errors import InvalidRequest, NotFound, PermissionDenied
from services.policy import Policy
from services.vocabulary import Reach, RequestType
from storage.models import AuditEvent
from tests.conftest import ManualClock

PAYROLL = {"name": "payroll", "label": "Payroll (Personio)", "reach": "assisted",
           "owner": "U0HRLEAD", "categories": "contact details, payslips, bank details",
           "request_types": ["access", "erasure"],
           "instructions": "Search by email in Personio > Employees; export the profile as PDF."}
ZENDESK = {"name": "zendesk", "label": "Zendesk Support", "reach": "connector", "owner": "S0SUPPORT",
           "categories": ["tickets", "contact details"], "request_types": ["access", "erasure"]}
SHOP = {"name": "shop-db", "label": "Web shop database", "reach": "webhook", "owner": "U0DEV",
        "categories": ["orders"], "request_types": ["access", "erasure", "rectification"],
        "webhook_url": "https://shop.internal.example/dsr"}


@pytest.fixture
def data_map(session_factory):
    policy = Policy(requesters=frozenset({"U_REQ"}), approvers=frozenset(),
                    managers=frozenset({"U_MGR"}))
    return DataMap(session_factory, policy, ManualClock(datetime(2026, 12, 2, 9, tzinfo=UTC)))


def names(data_map, **options) -> list[str]:
    return [s.name for s in data_map.systems(viewer="U_REQ", **options)]


def test_managers_declare_edit_and_retire_systems_each_change_audited(data_map, session_factory):
    for raw in (PAYROLL, ZENDESK, SHOP):
        data_map.add(spec_of(raw), actor="U_MGR")
    assert names(data_map) == ["payroll", "shop-db", "zendesk"]
    payroll = data_map.systems(viewer="U_REQ")[0]
    assert (payroll.reach, payroll.categories, payroll.request_types) == (
        Reach.ASSISTED, ["contact details", "payslips", "bank details"], ["access", "erasure"])
    with pytest.raises(PermissionDenied):
        data_map.add(spec_of(PAYROLL | {"name": "crm"}), actor="U_REQ")
    with pytest.raises(InvalidRequest, match="already has a system `payroll`"):
        data_map.add(spec_of(PAYROLL), actor="U_MGR")

    data_map.edit(spec_of(PAYROLL | {"owner": "S0HR"}), actor="U_MGR")
    data_map.edit(spec_of(PAYROLL | {"owner": "S0HR"}), actor="U_MGR")  # no change: no event
    data_map.retire("shop-db", actor="U_MGR", reason="replaced by the new shop")
    assert names(data_map) == ["payroll", "zendesk"]
    assert names(data_map, retired=True) == ["payroll", "shop-db", "zendesk"]
    with pytest.raises(InvalidRequest, match="`shop-db` is retired"):
        data_map.edit(spec_of(SHOP), actor="U_MGR")
    with pytest.raises(NotFound, match="no system `crm`"):
        data_map.retire("crm", actor="U_MGR", reason="")

    with session_factory() as session:
        events = session.exec(select(AuditEvent).order_by(AuditEvent.seq)).all()
        assert audit.verify(session).ok
    assert [(e.action, e.actor) for e in events] == [
        ("system.added", "U_MGR")] * 3 + [("system.edited", "U_MGR"), ("system.retired", "U_MGR")]
    assert events[3].details == {"system": "payroll",
                                 "changes": {"owner": {"from": "U0HRLEAD", "to": "S0HR"}}}
    assert events[4].details["reason"] == "replaced by the new shop"


def test_the_map_round_trips_as_a_file_and_an_import_is_all_or_nothing(data_map, session_factory):
    data_map.add(spec_of(PAYROLL), actor="U_MGR")
    data_map.add(spec_of(ZENDESK), actor="U_MGR")
    exported = data_map.export(viewer="U_REQ")
    document = json.loads(exported)
    assert document["format"] == 1 and [s["name"] for s in document["systems"]] == ["payroll", "zendesk"]
    assert data_map.import_file(exported, actor="U_MGR").unchanged == ["payroll", "zendesk"]

    document["systems"][0]["owner"] = "S0HR"
    document["systems"].append(SHOP)
    result = data_map.import_file(json.dumps(document), actor="U_MGR")
    assert (result.added, result.changed, result.unchanged) == (["shop-db"], ["payroll"], ["zendesk"])
    assert json.loads(data_map.export(viewer="U_REQ"))["systems"][0]["owner"] == "S0HR"

    broken = {"format": 1, "systems": [PAYROLL | {"owner": "U0OTHER"},
                                       SHOP | {"name": "crm", "reach": "fax"}]}
    with pytest.raises(InvalidRequest, match="System `crm`: reach must be connector, assisted, webhook"):
        data_map.import_file(json.dumps(broken), actor="U_MGR")
    assert data_map.systems(viewer="U_REQ")[0].owner == "S0HR"  # nothing of it was applied
    for text, message in (("not json", "not JSON"), ('{"systems": []}', "not a data map"),
                          (json.dumps({"format": 1, "systems": [PAYROLL, PAYROLL]}), "more than once")):
        with pytest.raises(InvalidRequest, match=message):
            data_map.import_file(text, actor="U_MGR")
    data_map.retire("shop-db", actor="U_MGR", reason="gone")
    with pytest.raises(InvalidRequest, match="is retired: a retired system is not brought back"):
        data_map.import_file(json.dumps({"format": 1, "systems": [SHOP]}), actor="U_MGR")
    with pytest.raises(PermissionDenied):
        data_map.import_file(exported, actor="U_REQ")


@pytest.mark.parametrize(("change", "message"), [
    ({"name": "Pay Roll"}, "is not a system name"),
    ({"label": ""}, "label of 1 to 80"),
    ({"owner": "hr-team"}, "Slack user id"),
    ({"categories": []}, "categories of personal data"),
    ({"categories": ["x" * 61]}, "up to 60 characters"),
    ({"request_types": ["deletion"]}, "request types are access, erasure"),
    ({"instructions": ""}, "needs instructions for its owner"),
    ({"webhook_url": "https://x.example"}, "only a webhook system has a webhook_url"),
    ({"reach": "webhook", "webhook_url": "http://shop.example/dsr"}, "needs an https:// URL"),
    ({"reach": "connector"}, "no connector is called `payroll`"),
    ({"colour": "blue"}, "unknown field(s) colour"),
])
def test_a_bad_declaration_says_what_to_fix(change, message) -> None:
    with pytest.raises(InvalidRequest, match=message.replace("(", r"\(").replace(")", r"\)")):
        spec_of(PAYROLL | change)


def test_a_connector_system_takes_only_what_its_connector_does() -> None:
    with pytest.raises(InvalidRequest, match="cannot carry out objection"):
        spec_of(ZENDESK | {"name": "genesys", "request_types": ["objection"]})
    local = spec_of(SHOP | {"webhook_url": "http://127.0.0.1:8080/dsr"})  # the reference receiver
    assert local.request_types == (RequestType.ACCESS, RequestType.ERASURE, RequestType.RECTIFICATION)
