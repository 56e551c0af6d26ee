"""Vendor connectors: one class per vendor behind `base.Connector`, found by name here."""

from __future__ import annotations

from services.connectors.base import Connector
from services.connectors.genesys import GenesysConnector
from services.connectors.zendesk import ZendeskConnector
from services.errors import ConfigurationError

CONNECTORS: dict[str, type[Connector]] = {
    GenesysConnector.name: GenesysConnector,
    ZendeskConnector.name: ZendeskConnector,
}


def connector_class(system: str) -> type[Connector]:
    try:
        return CONNECTORS[system]
    except KeyError:
        known = ", ".join(sorted(CONNECTORS))
        raise ConfigurationError(
            f"Unknown system {system!r}; known: {known}. A new vendor is a class in "
            "services/connectors/ registered in CONNECTORS (services/connectors/__init__.py)."
        ) from None
