"""What a listener is called with, without bolt: a recording Slack client, `ack` and `respond`
that remember their calls, and a world of a real RequestService on the test database whose
`context` carries the Deps (handlers.deps.DEPS), as the middleware would set it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from handlers.deps import DEPS, Deps
from services import engine as eng
from services.connectors.base import Failed, PlannedStep, SubjectMatch
from services.data_map import DataMap
from services.errors import PermissionDenied
from services.lookup import IdentifierLookup
from services.policy import Policy
from services.requests import RequestService
from services.vocabulary import RequestStatus, RequestType
from storage.db import SessionFactory, transaction
from storage.models import DsrRequest
from storage.queries import list_jurisdictions
from tests.conftest import ManualClock
from tests.connector_driver import MemorySink
from tests.factories import add_request, new_request
from tests.fakes import ScriptedConnector

REQUESTER, APPROVER, APPROVER2, STRANGER = "U_REQUESTER", "U_APPROVER1", "U_APPROVER2", "U_STRANGER"
CHANNEL, THREAD = "C_APPROVALS", "1700000000.000100"
MATCHES = tuple(SubjectMatch("zendesk", str(1000 + n), f"Jane Doe {n}", {"id": 1000 + n})
                for n in range(16))  # an erasure's plan of them: 16 lines, two pages


class Calls(list):
    """(name, kwargs) of each call, in order."""

    def named(self, name: str) -> list[dict[str, Any]]:
        return [kwargs for called, kwargs in self if called == name]

    def names(self) -> list[str]:
        return [called for called, _ in self]


class FakeClient:
    """slack_sdk's WebClient as far as the listeners use it: every method is recorded, and
    answers what the code reads from it."""

    ANSWERS = {
        "chat_postMessage": lambda kw: {"ok": True, "channel": kw.get("channel"), "ts": "1700000001.000200"},
        "conversations_open": lambda kw: {"ok": True, "channel": {"id": "D1"}},
    }

    def __init__(self) -> None:
        self.calls = Calls()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        def method(**kwargs: Any) -> dict[str, Any]:
            self.calls.append((name, kwargs))
            return self.ANSWERS.get(name, lambda kw: {"ok": True})(kwargs)

        return method


class FakeAck:
    """bolt's Ack: `response` stays None until it is called (handlers.deps.replies_errors)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.response: dict[str, Any] | None = None

    def __call__(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)
        self.response = kwargs

    @property
    def only(self) -> dict[str, Any]:
        assert len(self.calls) == 1, self.calls
        return self.calls[0]


class FakeRespond:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)

    @property
    def only(self) -> dict[str, Any]:
        assert len(self.calls) == 1, self.calls
        return self.calls[0]


class FakeDeliverables:
    """Records what was sent; an export only to its requester, as the real one refuses."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    def export_until(self, request: DsrRequest) -> date | None:
        return date(2026, 4, 1) if request.closed_at else None

    def send_export(self, reference: str, user: str) -> None:
        if user != REQUESTER:
            raise PermissionDenied("Only the requester and managers receive an export.")
        self.sent.append(("export", reference, user))

    def send_record(self, reference: str, user: str) -> None:
        self.sent.append(("record", reference, user))


@dataclass
class World:
    sessions: SessionFactory
    service: RequestService
    deps: Deps
    clock: ManualClock
    connectors: dict[str, ScriptedConnector]
    woken: list[int] = field(default_factory=list)
    client: FakeClient = field(default_factory=FakeClient)
    ack: FakeAck = field(default_factory=FakeAck)
    respond: FakeRespond = field(default_factory=FakeRespond)
    context: dict[str, Any] = field(default_factory=dict)  # as bolt hands it: the Deps in it

    def __post_init__(self) -> None:
        self.context[DEPS] = self.deps

    def reset(self) -> None:
        """New fakes for the next call, so each call's effects are seen alone."""
        self.client, self.ack, self.respond = FakeClient(), FakeAck(), FakeRespond()

    def status(self, reference: str) -> RequestStatus:
        return RequestStatus(self.service.get(reference).status)

    def filed(self, *, kind: RequestType = RequestType.ACCESS, requester: str = REQUESTER,
              matches: Sequence[SubjectMatch] = MATCHES[:1], **overrides: Any) -> str:
        """A request with a message in the approvals channel, its records confirmed: an
        access pending approval, an erasure in review (its plan: one line a match)."""
        request = self.service.create(new_request(type=kind, requester=requester, **overrides))
        self.service.set_thread(request.reference, channel=CHANNEL, ts=THREAD)
        systems = overrides.get("systems", ("zendesk",))
        self.service.confirm(request.reference, {s: list(matches) for s in systems},
                             actor=requester)
        return request.reference

    def many(self, count: int) -> None:
        """`count` requests received, in one go (lists that page)."""
        with transaction(self.sessions) as session:
            for _ in range(count):
                add_request(session, self.clock.now())

    def pending(self, kind: RequestType = RequestType.ACCESS, requester: str = REQUESTER) -> str:
        """Filed and awaiting approval (an erasure's plan sent as proposed)."""
        reference = self.filed(kind=kind, requester=requester)
        if kind is RequestType.ERASURE:
            self.service.submit_plan(reference, actor=requester)
        return reference

    def approved(self, kind: RequestType = RequestType.ACCESS) -> str:
        reference = self.pending(kind)
        if kind is RequestType.ERASURE:
            self.service.decide(reference, approver=APPROVER2, approve=True)
        self.service.decide(reference, approver=APPROVER, approve=True)
        return reference

    def needing_attention(self, kind: RequestType = RequestType.ACCESS) -> str:
        """Approved, and its one step failed: a person must look."""
        reference = self.approved(kind)
        self.connectors["zendesk"].script["export"] = [Failed("the vendor said no")]
        worker = eng.Worker(self.sessions, self.provide, lambda request, system: MemorySink(),
                            self.clock, worker_id="listener-tests")
        assert worker.run_once(10) == 1
        assert self.status(reference) == RequestStatus.NEEDS_ATTENTION
        return reference

    def provide(self, system: str, simulation: bool) -> ScriptedConnector:
        return self.connectors[system]

    def body(self, user: str, **extra: Any) -> dict[str, Any]:
        return {"user": {"id": user}, "trigger_id": "T_TRIGGER", **extra}


class Discovering(ScriptedConnector):
    """A system whose erasure plan needs a read-only search first (still to run)."""

    def discover(self, spec: Any) -> list[PlannedStep]:
        return [PlannedStep("find_tickets", {})]


def _times_out(identifiers: Any) -> list[SubjectMatch]:
    raise TimeoutError("the vendor did not answer")


def build_world(sessions: SessionFactory) -> World:
    clock = ManualClock(datetime(2026, 3, 2, 9, tzinfo=UTC))
    zendesk = ScriptedConnector("zendesk", ["export"])
    zendesk.supported_types = frozenset({RequestType.ACCESS, RequestType.ERASURE})
    zendesk.search_subjects = lambda identifiers: MATCHES[:1]
    genesys = Discovering("genesys", ["export"])
    genesys.search_subjects = _times_out
    connectors = {"zendesk": zendesk, "genesys": genesys}
    policy = Policy(requesters=frozenset({REQUESTER}), approvers=frozenset({APPROVER, APPROVER2}),
                    managers=frozenset({"U_MANAGER"}), erasure_approvals=2)
    service = RequestService(sessions, lambda system, simulation: connectors[system], policy, clock,
                             ZoneInfo("UTC"), lookup=IdentifierLookup(b"listener tests"))
    woken: list[int] = []

    def jurisdictions() -> list:
        with sessions() as session:
            return list_jurisdictions(session=session)

    deps = Deps(service=service, approvals_channel=CHANNEL, systems=["genesys", "zendesk"],
                live_systems={"genesys"}, jurisdictions=jurisdictions,
                wake_worker=lambda: woken.append(1), deliverables=FakeDeliverables(),
                data_map=DataMap(sessions, policy, clock))
    return World(sessions, service, deps, clock, connectors, woken)
