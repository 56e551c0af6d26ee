"""How services tell people what happened, without knowing about Slack.

`bot/` implements Notifier with slack_sdk; tests use a recorder. Event texts never hold a
subject's personal data: they name the request, the system and what was done.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Event:
    kind: str  # request.started, step.done, step.waiting, request.completed, request.needs_attention
    request_id: int
    reference: str
    simulation: bool
    text: str
    step_id: int | None = None


class Notifier(Protocol):
    def publish(self, event: Event) -> None: ...


class RecordingNotifier:
    """Keeps every event: for tests, the offline demo and the command line."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def publish(self, event: Event) -> None:
        self.events.append(event)


class LoggingNotifier:
    """Writes each event to the log: for the worker until the Slack app publishes them."""

    def __init__(self) -> None:
        self.log = logging.getLogger("dsr_desk.events")

    def publish(self, event: Event) -> None:
        marker = " [simulation]" if event.simulation else ""
        self.log.info("%s %s%s: %s", event.reference, event.kind, marker, event.text)
