"""The contract every vendor connector follows.

A connector searches a vendor for a subject, plans the steps of a request, and runs one step
at a time. A step is resumable: it receives the checkpoint it last returned and must be safe to
run again after a crash at any point (re-read the vendor's state; treat "already gone" as done),
so that a restarted worker deletes nothing twice and skips nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from services.subjects import Identifier
from services.vocabulary import IdentifierKind, PlanAction, RequestType


@dataclass(frozen=True)
class SubjectMatch:
    """A record in a vendor that may belong to the subject; the requester confirms it."""

    system: str
    record_id: str  # the vendor's id, as a string
    label: str  # what the team sees to recognise it (name, masked where shown in channels)
    details: dict[str, Any] = field(default_factory=dict)  # vendor data kept for planning


@dataclass(frozen=True)
class PlanEntry:
    """One approved line of an erasure plan: do `action` to the record."""

    kind: str  # ticket, user, subject
    record_id: str
    action: PlanAction


@dataclass(frozen=True)
class Candidate:
    """A record an erasure would touch, found by a read-only discovery step. A person reviews
    it: `found` says how it matched (masked), `proposed` is the default, `allowed` the choices."""

    kind: str
    record_id: str
    group: str  # how the subject relates to it; the review applies bulk choices per group
    vendor_status: str
    found: tuple[str, ...]
    proposed: PlanAction
    allowed: tuple[PlanAction, ...]
    warning: str = ""


@dataclass(frozen=True)
class Verified:
    """What reading the vendor back showed after an action on one plan line."""

    kind: str
    record_id: str
    note: str


@dataclass(frozen=True)
class RequestSpec:
    """What a connector needs to know about a request."""

    reference: str
    type: RequestType
    identifiers: Sequence[Identifier]
    confirmed: Sequence[Mapping[str, Any]] = ()  # the SubjectMatch records confirmed (as dicts)
    new_values: Sequence[Identifier] = ()  # rectification
    search_terms: Sequence[str] = ()  # erasure: more strings to find the subject's data
    plan: Sequence[PlanEntry] = ()  # erasure: the approved plan's lines for this system

    def values(self, kind: IdentifierKind) -> list[str]:
        return [i.value for i in self.identifiers if i.kind is kind]


@dataclass(frozen=True)
class PlannedStep:
    action: str
    params: dict[str, Any] = field(default_factory=dict)


class ExportSink(Protocol):
    """Where an access request's data goes: written piece by piece, never held whole."""

    def write(self, name: str, document: Any) -> None: ...

    def write_stream(self, name: str, chunks: Iterable[bytes]) -> None:
        """An opaque file, e.g. a vendor's archive, stored as-is (never parsed) under `name`."""
        ...

    def exists(self, name: str) -> bool:
        """Written already (by this run or one before a crash)."""
        ...

    def count(self, prefix: str) -> int:
        """How many documents were written under `prefix`."""
        ...


@dataclass(frozen=True)
class StepRun:
    action: str
    params: dict[str, Any]
    checkpoint: dict[str, Any] | None
    spec: RequestSpec
    earlier_results: Mapping[str, Mapping[str, Any]]  # action -> result of this system's done steps
    sink: ExportSink


# Outcomes of running one step once.
@dataclass(frozen=True)
class Done:
    summary: dict[str, Any]
    candidates: tuple[Candidate, ...] = ()  # a discovery step's findings, for review
    verified: tuple[Verified, ...] = ()


@dataclass(frozen=True)
class Continue:
    """Progress saved; run again at once (keeps a long step resumable)."""

    checkpoint: dict[str, Any]
    note: str = ""
    verified: tuple[Verified, ...] = ()


@dataclass(frozen=True)
class Waiting:
    """Waiting on the vendor (a job, a ticket to be closed); poll again after `seconds`."""

    checkpoint: dict[str, Any]
    seconds: float
    note: str
    verified: tuple[Verified, ...] = ()


@dataclass(frozen=True)
class RetryLater:
    """A transient fault that outlasted the inline retries (429, 5xx, timeouts)."""

    seconds: float
    reason: str


@dataclass(frozen=True)
class Failed:
    """Will not succeed by retrying; a person must look. `reason` is shown to the team.
    `checkpoint`, if given, is where a retry by a person starts (e.g. a vendor job that ended in
    error is submitted anew, not polled again); None keeps the step's checkpoint."""

    reason: str
    checkpoint: dict[str, Any] | None = None


Outcome = Done | Continue | Waiting | RetryLater | Failed


class Connector(Protocol):
    name: ClassVar[str]
    label: ClassVar[str]

    def search_subjects(self, identifiers: Sequence[Identifier]) -> list[SubjectMatch]:
        """Records in this system that match any of the identifiers."""
        ...

    def plan(self, spec: RequestSpec) -> list[PlannedStep]:
        """The ordered steps that carry out the request in this system (an erasure: its
        approved plan, `spec.plan`, and nothing else)."""
        ...

    # A connector that must find what an erasure would touch before anyone can review it also
    # has `discover(spec) -> list[PlannedStep]`: read-only steps, run while the request is in
    # review, whose Done carries the candidates. Without it, each confirmed record is one line.

    def run_step(self, run: StepRun) -> Outcome:
        """Run (or resume) one step."""
        ...
