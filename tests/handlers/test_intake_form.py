"""The intake form's parsing: bad input becomes errors on the fields."""

from __future__ import annotations

from datetime import date

import pytest

from handlers.ids import Block
from handlers.intake import parse_intake
from services.vocabulary import IdentifierKind, RequestType
from tests.forms import form

TODAY = date(2026, 11, 23)
SYSTEMS = ["genesys", "zendesk"]


def test_a_good_form_becomes_a_request() -> None:
    new, errors = parse_intake(form(**{
        Block.NAME: "Jane Doe", Block.PHONES: "+46 70 123 45 67", Block.EMAILS: "Jane@Example.COM",
        Block.VENDOR_IDS: "zendesk:1000032", Block.REAL_API: ["real"],
        Block.SEARCH_TERMS: "order 4711\nJD-77", Block.RECEIVED: "2026-11-20"}),
        "U1", SYSTEMS, TODAY)
    assert errors == {}
    assert [(i.kind, i.value, i.system) for i in new.identifiers] == [
        (IdentifierKind.NAME, "Jane Doe", None), (IdentifierKind.EMAIL, "Jane@example.com", None),
        (IdentifierKind.PHONE, "+46701234567", None),
        (IdentifierKind.VENDOR_USER_ID, "1000032", "zendesk")]
    assert new.simulation is False and new.search_terms == ("order 4711", "JD-77")
    assert new.received_at.date() == date(2026, 11, 20)


@pytest.mark.parametrize(("fields", "block", "message"), [
    ({Block.EMAILS: "jane@"}, Block.EMAILS, "is not an email address"),
    ({Block.PHONES: "0701234567"}, Block.PHONES, "with its country code"),
    ({Block.EMAILS: ""}, Block.NAME, "at least one: name, email, phone or vendor user id"),
    ({Block.VENDOR_IDS: "salesforce:12"}, Block.VENDOR_IDS, "write system:id"),
    ({Block.TYPE: "rectification"}, Block.NEW_VALUES, "needs the corrected values"),
    ({Block.TYPE: "rectification", Block.NEW_VALUES: "shoe size: 42"}, Block.NEW_VALUES,
     "field one of name, email, phone, address"),
    ({Block.TYPE: "rectification", Block.NEW_VALUES: "email: nope"}, Block.NEW_VALUES,
     "not an email address"),
    ({Block.RECEIVED: "2026-12-01"}, Block.RECEIVED, "in the future"),
])
def test_bad_input_is_an_error_on_its_field(fields, block, message) -> None:
    new, errors = parse_intake(form(**fields), "U1", SYSTEMS, TODAY)
    assert new is None
    assert message in errors[block]


def test_rectification_values_keep_commas() -> None:
    new, errors = parse_intake(form(**{Block.TYPE: "rectification",
                                       Block.NEW_VALUES: "name: Doe, Jane\nphone: +15550001111"}),
                               "U1", SYSTEMS, TODAY)
    assert errors == {} and new.type is RequestType.RECTIFICATION
    assert [(v.kind, v.value) for v in new.new_values] == [
        (IdentifierKind.NAME, "Doe, Jane"), (IdentifierKind.PHONE, "+15550001111")]
