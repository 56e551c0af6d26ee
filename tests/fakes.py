"""Fakes for service tests that are not about vendors (vendors have their own stand-ins)."""

from __future__ import annotations

import threading
from collections import defaultdict

from services.connectors.base import Done, PlannedStep, StepRun


class ScriptedConnector:
    """Plans `actions`; each run pops the next scripted outcome for that action (default Done)."""

    label = "Scripted"

    def __init__(self, name: str, actions: list[str]) -> None:
        self.name = name
        self.actions = actions
        self.script: dict[str, list] = defaultdict(list)
        self.runs: list[tuple[str, str, dict | None]] = []
        self.lock = threading.Lock()

    def search_subjects(self, identifiers):
        return []

    def plan(self, spec):
        return [PlannedStep(a, {"n": i}) for i, a in enumerate(self.actions)]

    def run_step(self, run: StepRun):
        with self.lock:
            self.runs.append((run.spec.reference, run.action, run.checkpoint))
            script = self.script[run.action]
            outcome = script.pop(0) if script else Done({"action": run.action})
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


class EpochClock:
    """A rehearsal clock in seconds since the epoch (a vendor's time, a connector's): moved by
    the tests, never waited on."""

    def __init__(self, now: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self.now = now

    def __call__(self) -> float:
        return self.now
