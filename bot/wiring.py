"""Builds connectors for real and simulated requests (the one place that knows both), and the
export store the settings name."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from bot.settings import Settings
from services.connectors import connector_class
from services.connectors.base import Connector
from services.connectors.budget import SharedBudget
from services.connectors.genesys import GenesysConnector
from services.connectors.http import Limits
from services.connectors.zendesk import ZendeskConnector
from services.errors import ConfigurationError
from services.export_store import ExportStore, open_store
from services.sandbox import server
from storage.db import SessionFactory

# The stand-ins' own credentials (see services/sandbox): simulation needs no real secret.
SANDBOX_GENESYS = {"client_id": "sandbox-client", "client_secret": "sandbox-secret"}
SANDBOX_ZENDESK = {"email": "agent@example.com", "token": "sandbox-token"}


class Sandboxes:
    """The vendor stand-ins for simulation mode: started on localhost the first time they are
    needed, unless settings name a running one (DSR_SANDBOX_*_URL)."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock  # Genesys' stand-in times its requests by it: a rehearsal can drive it
        self._running: dict[str, server.RunningServer] = {}
        self.instances: dict[str, Any] = {}
        self._lock = threading.Lock()

    def url(self, system: str) -> str:
        configured = {"genesys": self.settings.sandbox_genesys_url,
                      "zendesk": self.settings.sandbox_zendesk_url}.get(system)
        if configured:
            return configured
        with self._lock:
            if system not in self._running:
                self._start(system)
            return self._running[system].url

    def serve(self, system: str, listener: socket.socket) -> None:
        """Serve `system`'s stand-in on a socket bound by another process (HTTP mode's arbiter),
        whose URL the settings name, so that every worker process shares this one."""
        with self._lock:
            self._start(system, listener)

    def _start(self, system: str, listener: socket.socket | None = None) -> None:
        options = {"request_seconds": self.settings.sandbox_genesys_request_seconds,
                   "clock": self.clock} if system == "genesys" else {}
        sandbox = build_sandbox(system, seed=self.settings.sandbox_seed,
                                people=self.settings.sandbox_people, **options)
        self.instances[system] = sandbox
        self._running[system] = server.start(sandbox.wsgi, listener=listener)

    def stop(self) -> None:
        for running in self._running.values():
            running.stop()
        self._running.clear()
        for sandbox in self.instances.values():
            getattr(sandbox, "close", lambda: None)()  # e.g. Genesys' results storage listener


def build_sandbox(system: str, **options: Any) -> Any:
    if system == "genesys":
        from services.sandbox.genesys import GenesysSandbox

        return GenesysSandbox(**options)
    if system == "zendesk":
        from services.sandbox.zendesk import ZendeskSandbox

        return ZendeskSandbox(**options)
    connector_class(system)  # raises the helpful error for an unknown name
    raise ConfigurationError(f"{system} has no stand-in for simulation mode")


class ConnectorRegistry:
    """`registry(system, simulation)` -> a connector; one per (system, mode) and process, so the
    per-vendor rate and concurrency limits hold across all requests of the process."""

    def __init__(self, settings: Settings, sandboxes: Sandboxes | None = None,
                 budget: SharedBudget | None = None, **overrides: Any):
        self.settings = settings
        self.sandboxes = sandboxes or Sandboxes(settings)
        self.budget = budget  # the vendors' rate limits, counted with every other process
        # e.g. sleep, limits: for tests and benchmarks
        self.overrides = {"poll_seconds": settings.poll_seconds, **overrides}
        self._cache: dict[tuple[str, bool], Connector] = {}
        self._lock = threading.Lock()
        self.client = httpx.Client(follow_redirects=False)

    def __call__(self, system: str, simulation: bool) -> Connector:
        with self._lock:
            key = (system, simulation)
            if key not in self._cache:
                self._cache[key] = self._build(system, simulation)
            return self._cache[key]

    def _build(self, system: str, simulation: bool) -> Connector:
        s = self.settings
        connector_class(system)
        if system == "genesys":
            limits = Limits(requests_per_minute=s.genesys_requests_per_minute,
                            concurrency=s.genesys_concurrency, budget=self.budget)
            if simulation:
                url = self.sandboxes.url("genesys")
                options = {"login_url": url, **SANDBOX_GENESYS}
            else:
                url, login = s.genesys_urls
                if not (s.genesys_client_id and s.genesys_client_secret):
                    raise ConfigurationError(
                        "Genesys Cloud is not configured: set GENESYS_CLIENT_ID and "
                        "GENESYS_CLIENT_SECRET (an OAuth client with gdpr:request:add, "
                        "gdpr:request:view and gdpr:subject:view)."
                    )
                options = {"login_url": login, "client_id": s.genesys_client_id,
                           "client_secret": s.genesys_client_secret.get_secret_value()}
            return GenesysConnector(self.client, url,
                                    **{"limits": limits, **options, **self.overrides})
        limits = Limits(requests_per_minute=s.zendesk_requests_per_minute,
                        concurrency=s.zendesk_concurrency, budget=self.budget)
        if simulation:
            url, options = self.sandboxes.url("zendesk"), dict(SANDBOX_ZENDESK)
        else:
            if not (s.zendesk_base_url and s.zendesk_email and s.zendesk_api_token):
                raise ConfigurationError(
                    "Zendesk is not configured: set ZENDESK_SUBDOMAIN, ZENDESK_EMAIL and "
                    "ZENDESK_API_TOKEN (an admin's API token)."
                )
            url = s.zendesk_base_url
            options = {"email": s.zendesk_email, "token": s.zendesk_api_token.get_secret_value()}
        return ZendeskConnector(self.client, url, **{"limits": limits, **options, **self.overrides})


def export_store(settings: Settings, sessions: SessionFactory) -> ExportStore:
    """Where exports are kept (DSR_EXPORT_STORE): the shared database, or this host's folder."""
    return open_store(settings.export_store, sessions=sessions, folder=settings.exports_dir)
