"""The vendors' registry (services/vendors): every registered vendor is complete, its stand-in
answers its connector in simulation mode, and an unknown name is an error saying where to add it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.settings import Settings
from bot.wiring import ConnectorRegistry
from services.errors import ConfigurationError
from services.exports import subject_readme
from services.labels import system_label
from services.subjects import Identifier
from services.vendors import VENDORS, vendor
from services.vocabulary import IdentifierKind, RequestType

NOBODY = Identifier(IdentifierKind.EMAIL, "nobody@example.invalid")
NOW = datetime(2026, 12, 2, tzinfo=UTC)


@pytest.fixture
def registry(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no .env from the developer's checkout
    connectors = ConnectorRegistry(Settings(_env_file=None, DSR_DATA_DIR=str(tmp_path)))
    yield connectors
    connectors.sandboxes.stop()
    connectors.client.close()


@pytest.mark.parametrize("name", sorted(VENDORS))
def test_each_vendor_is_reached_in_simulation_and_named_everywhere(registry, name) -> None:
    spec = vendor(name)
    connector = registry(name, True)
    assert (connector.name, type(connector)) == (name, spec.connector)
    assert connector.search_subjects([NOBODY]) == []  # its stand-in accepted its credentials
    assert registry(name, True) is connector  # one per process and mode: the limits hold
    assert system_label(name) == spec.label != name
    assert f"  - {name}/: {spec.export_text}" in subject_readme("DSR-000001", [name], NOW)
    assert spec.connector.supported_types <= set(RequestType)


def test_a_real_account_not_configured_says_what_to_set(registry) -> None:
    for name, spec in VENDORS.items():
        with pytest.raises(ConfigurationError) as raised:
            registry(name, False)
        assert str(raised.value) == spec.missing


def test_an_unknown_system_is_an_error_that_says_where_to_add_it(registry) -> None:
    for build in (lambda: registry("hubspot", True), lambda: registry("hubspot", False),
                  lambda: registry.sandboxes.url("hubspot")):
        with pytest.raises(ConfigurationError, match=r"Unknown system 'hubspot'; known: genesys, "
                                                     r"zendesk\. A vendor is a package in "
                                                     r"services/vendors/"):
            build()
    assert system_label("payroll") == "payroll"  # a system of the data map, with no vendor

