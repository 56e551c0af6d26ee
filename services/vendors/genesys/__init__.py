"""Genesys Cloud (the contact centre): its GDPR API's connector, settings and stand-in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.vendors.base import Account, Vendor
from services.vendors.genesys.connector import GenesysConnector
from services.vendors.genesys.settings import GenesysSettings

# The stand-in's own OAuth client (services/vendors/genesys/standin.py): simulation needs no secret.
STANDIN_CREDENTIALS = {"client_id": "sandbox-client", "client_secret": "sandbox-secret"}


def _standin(*, seed: int, people: int, clock: Callable[[], float],
             settings: GenesysSettings) -> Any:
    from services.vendors.genesys.standin import GenesysSandbox

    return GenesysSandbox(seed=seed, people=people, clock=clock,
                          request_seconds=settings.sandbox_request_seconds)


VENDOR = Vendor(
    connector=GenesysConnector,
    settings=GenesysSettings,
    missing="Genesys Cloud is not configured: set GENESYS_CLIENT_ID and GENESYS_CLIENT_SECRET "
            "(an OAuth client with gdpr:request:add, gdpr:request:view and gdpr:subject:view).",
    doctor_hint="the OAuth client needs gdpr:request:add, gdpr:request:view and "
                "gdpr:subject:view (Admin > OAuth); check GENESYS_REGION",
    export_text="Genesys Cloud (our contact centre: calls, chats, messages): the archive "
                "file(s) Genesys Cloud made, unchanged (open each .zip; inside is JSON)",
    standin=_standin,
    standin_account=lambda url: Account(url, {"login_url": url, **STANDIN_CREDENTIALS}),
)
