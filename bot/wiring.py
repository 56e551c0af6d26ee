"""Builds connectors for real and simulated requests from the vendors' registry
(services/vendors), and the export store the settings name."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from bot.settings import Settings
from services.connectors.base import Connector
from services.connectors.budget import SharedBudget
from services.connectors.http import Limits
from services.errors import ConfigurationError
from services.export_store import ExportStore, open_store
from services.sandbox import server
from services.vendors import vendor
from storage.db import SessionFactory


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
        if configured := self.settings.vendor(system).sandbox_url:
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
        sandbox = vendor(system).standin(seed=self.settings.sandbox_seed,
                                         people=self.settings.sandbox_people, clock=self.clock,
                                         settings=self.settings.vendor(system))
        self.instances[system] = sandbox
        self._running[system] = server.start(sandbox.wsgi, listener=listener)

    def stop(self) -> None:
        for running in self._running.values():
            running.stop()
        self._running.clear()
        for sandbox in self.instances.values():
            getattr(sandbox, "close", lambda: None)()  # e.g. Genesys' results storage listener


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
        spec, settings = vendor(system), self.settings.vendor(system)
        if simulation:
            account = spec.standin_account(self.sandboxes.url(system))
        elif (account := settings.account()) is None:
            raise ConfigurationError(spec.missing)
        limits = Limits(requests_per_minute=settings.requests_per_minute,
                        concurrency=settings.concurrency, budget=self.budget)
        options = {"limits": limits, **account.credentials, **self.overrides}  # overrides win
        return spec.connector(self.client, account.url, **options)  # type: ignore[call-arg]


def export_store(settings: Settings, sessions: SessionFactory) -> ExportStore:
    """Where exports are kept (DSR_EXPORT_STORE): the shared database, or this host's folder."""
    return open_store(settings.export_store, sessions=sessions, folder=settings.exports_dir)
