"""People in the compliance record: named as Slack showed them when it was made, by id alone
when Slack could not say, and records made before names still read."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from datetime import UTC, datetime

import pypdf
import pytest

from services.export_store import DatabaseStore
from services.labels import TYPE_LABELS, is_user_id, person
from services.record_pdf import render_pdf
from services.records import build_record, parse_record, record_json
from services.vocabulary import RequestType
from tests.services.test_records import _file, completed, make_world

MADE = datetime(2026, 4, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def world(session_factory):
    return make_world(session_factory)
NAMES = {"U_REQUESTER": "Rita Ramos", "U_APPROVER1": "Ana Lima", "U_APPROVER2": "Ben Okafor",
         "U_MANAGER": "Mia Chen"}


class Directory:
    """`People` as a recorder: the names it knows, and the ids it was asked for."""

    def __init__(self, known: dict[str, str]) -> None:
        self.known, self.asked = known, []

    def names(self, ids: Iterable[str]) -> dict[str, str]:
        ids = list(ids)
        self.asked.append(ids)
        return {i: self.known[i] for i in ids if i in self.known}


def _build(session_factory, ref, people):
    with session_factory() as session:
        return build_record(session, ref, exports=DatabaseStore(session_factory), now=MADE,
                            people=people)


def _pdf_text(pdf: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    return " ".join(" ".join(page.extract_text() for page in reader.pages).split())


def test_the_record_names_each_person_with_their_id(world, session_factory) -> None:
    service, connectors, clock = world
    ref = completed(service, connectors, clock, session_factory)  # extended by U_MANAGER
    directory = Directory(NAMES)
    record = _build(session_factory, ref, directory)
    body = json.loads(record_json(record))
    # Ids stay where the trail has them; the names of the day sit beside them, once each.
    assert body["version"] == 2 and body["people"] == NAMES
    assert body["requester"] == "U_REQUESTER" and body["extension"]["extended_by"] == "U_MANAGER"
    # Asked once, for Slack users only: DSR Desk's own actors are no people.
    assert directory.asked == [sorted(NAMES)]
    assert {e["actor"] for e in body["trail"]} - set(NAMES) == {"dsr-desk"}

    text = _pdf_text(render_pdf(record))
    for shown in ("Filed by Rita Ramos (U_REQUESTER)", "by Mia Chen (U_MANAGER)",
                  "Ana Lima (U_APPROVER1)", "Ben Okafor (U_APPROVER2)",
                  "People are named as Slack showed them when this record was made"):
        assert shown in text, shown
    assert "by dsr-desk (" in text  # closed by the engine: no person, shown as it is


def test_someone_slack_cannot_name_keeps_the_bare_id(world, session_factory) -> None:
    service, connectors, clock = world
    ref = completed(service, connectors, clock, session_factory)
    record = _build(session_factory, ref, Directory({"U_APPROVER1": "Ana Lima"}))
    assert record.people == {"U_APPROVER1": "Ana Lima"}
    text = _pdf_text(render_pdf(record))
    assert "Filed by U_REQUESTER" in text and "(U_REQUESTER)" not in text
    assert "Ana Lima (U_APPROVER1)" in text


def test_a_record_made_before_names_still_reads(world, session_factory) -> None:
    service, connectors, clock = world
    ref = completed(service, connectors, clock, session_factory)
    body = json.loads(record_json(_build(session_factory, ref, Directory(NAMES))))
    del body["people"]
    body["version"] = 1
    old = parse_record(json.dumps(body))
    assert old.people == {} and old.who("U_REQUESTER") == "U_REQUESTER"
    text = _pdf_text(render_pdf(old))
    assert "Filed by U_REQUESTER" in text and "People are named by their Slack user ids." in text


def test_who_is_a_person() -> None:
    assert [is_user_id(a) for a in ("U0ANA", "W0GRID", "U_REQ", "dsr-desk", "dsr-desk:retention",
                                     "S0GROUP", "", None)] == [True, True, True] + [False] * 5
    assert person("U0ANA", {"U0ANA": "Ana"}) == "Ana (U0ANA)"
    assert person("U0BEN", {"U0ANA": "Ana"}) == "U0BEN"
    assert person(None, {}) == "—"


def test_the_pdf_uses_the_one_label_of_the_request_type(world, session_factory) -> None:
    service, _, clock = world
    ref = _file(service, clock, type=RequestType.ACCESS)
    service.cancel(ref, actor="U_REQUESTER", reason="duplicate")
    text = _pdf_text(render_pdf(_build(session_factory, ref, None)))
    assert f"Request type {TYPE_LABELS['access']}" in text
    assert set(TYPE_LABELS) == {t.value for t in RequestType}
