"""Zendesk Support (the customer service desk): its connector, settings and stand-in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.vendors.base import Account, Vendor
from services.vendors.zendesk.connector import ZendeskConnector
from services.vendors.zendesk.settings import ZendeskSettings

# The stand-in's own API token (services/vendors/zendesk/standin.py): simulation needs no secret.
STANDIN_CREDENTIALS = {"email": "agent@example.com", "token": "sandbox-token"}


def _standin(*, seed: int, people: int, clock: Callable[[], float],  # noqa: ARG001 - its own clock
             settings: ZendeskSettings) -> Any:  # noqa: ARG001 - none of them concern it
    from services.vendors.zendesk.standin import ZendeskSandbox

    return ZendeskSandbox(seed=seed, people=people)


VENDOR = Vendor(
    connector=ZendeskConnector,
    settings=ZendeskSettings,
    missing="Zendesk is not configured: set ZENDESK_SUBDOMAIN, ZENDESK_EMAIL and "
            "ZENDESK_API_TOKEN (an admin's API token).",
    doctor_hint="use an admin's email and API token (Admin Center > Apps and integrations > "
                "Zendesk API); check ZENDESK_SUBDOMAIN",
    export_text="Zendesk Support (our customer service desk): users-001.json is your profile, "
                "tickets-001.json, -002.json, ... your requests with every reply",
    standin=_standin,
    standin_account=lambda url: Account(url, STANDIN_CREDENTIALS),
)
