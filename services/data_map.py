"""The data map: the systems where the team holds personal data, each with its owner, the
categories of data it holds, the request types it takes part in, and how DSR Desk reaches it
(vocabulary.Reach): its vendor's connector, a task for its owner, or a signed webhook.

Managers change it (every change audited, a system retired rather than deleted); anyone with a
role reads it. As a file (`export` / `import_file`: JSON, format 1) it can be reviewed, kept
under version control, and loaded into another installation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlmodel import Session, select

from services import audit
from services.clock import Clock
from services.errors import InvalidRequest, NotFound
from services.policy import Policy
from services.vendors import VENDORS
from services.vocabulary import Reach, RequestType
from storage.db import SessionFactory, transaction
from storage.models import DataSystem

FILE_FORMAT = 1
NAME = re.compile(r"[a-z][a-z0-9-]{1,39}")  # as requests and the audit trail name a system
OWNER = re.compile(r"[UWS][A-Z0-9]{2,31}")  # a Slack user (U…, W…) or user group (S…)
MAX_CATEGORIES, CATEGORY_LENGTH = 20, 60
FIELDS = ("name", "label", "reach", "owner", "categories", "request_types", "instructions",
          "webhook_url")


@dataclass(frozen=True)
class SystemSpec:
    """A system as a manager declares it, checked (`spec_of`)."""

    name: str
    label: str
    reach: Reach
    owner: str
    categories: tuple[str, ...]
    request_types: tuple[RequestType, ...]
    instructions: str = ""
    webhook_url: str | None = None

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["categories"], values["request_types"] = list(self.categories), [
            t.value for t in self.request_types]
        return values


class InvalidSystem(InvalidRequest):
    """A declaration refused: `field` is the one to fix (a form shows the message under it)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Imported:
    added: list[str]
    changed: list[str]
    unchanged: list[str]


def spec_of(raw: Mapping[str, Any]) -> SystemSpec:
    """A declared system, checked; InvalidSystem saying what is wrong and in which field."""
    name = str(raw.get("name", "")).strip()
    if not NAME.fullmatch(name):
        raise InvalidSystem("name", f"`{name[:40]}` is not a system name: 2 to 40 lower-case letters, "
                             "digits and dashes, starting with a letter (e.g. `payroll`).")

    def wrong(field: str, problem: str) -> InvalidSystem:
        return InvalidSystem(field, f"System `{name}`: {problem}")

    unknown = set(raw) - set(FIELDS)
    if unknown:
        raise wrong("name", f"unknown field(s) {', '.join(sorted(unknown))}; the fields are "
                    f"{', '.join(FIELDS)}.")
    label = str(raw.get("label") or "").strip()
    if not 0 < len(label) <= 80:
        raise wrong("label", "give it a label of 1 to 80 characters, as people will read it.")
    try:
        reach = Reach(raw.get("reach"))
    except ValueError:
        raise wrong("reach", f"reach must be {', '.join(r.value for r in Reach)}.") from None
    owner = str(raw.get("owner") or "").strip()
    if not OWNER.fullmatch(owner):
        raise wrong("owner", "its owner must be a Slack user id (U…) or user group id (S…).")
    categories = tuple(dict.fromkeys(str(c).strip() for c in _listed(raw, "categories")))
    if not categories or len(categories) > MAX_CATEGORIES or not all(
            0 < len(c) <= CATEGORY_LENGTH for c in categories):
        raise wrong("categories", f"name 1 to {MAX_CATEGORIES} categories of personal data it holds, each up "
                    f"to {CATEGORY_LENGTH} characters (e.g. contact details, payslips).")
    try:
        types = tuple(dict.fromkeys(RequestType(t) for t in _listed(raw, "request_types")))
    except ValueError:
        raise wrong("request_types",
                    f"request types are {', '.join(t.value for t in RequestType)}.") from None
    if not types:
        raise wrong("request_types", "name the request types it takes part in.")
    instructions = str(raw.get("instructions") or "").strip()
    webhook_url = str(raw.get("webhook_url") or "").strip() or None
    if reach is Reach.CONNECTOR:
        if name not in VENDORS:
            raise wrong("reach", f"no connector is called `{name}` (there are {', '.join(sorted(VENDORS))}); "
                        "reach it by an assisted task or a webhook instead.")
        unsupported = set(types) - VENDORS[name].connector.supported_types
        if unsupported:
            raise wrong("request_types", f"its connector cannot carry out {', '.join(sorted(unsupported))}.")
    if reach is Reach.ASSISTED and not instructions:
        raise wrong("instructions", "an assisted system needs instructions for its owner: what to look for, "
                    "and how to export or erase it.")
    if len(instructions) > 3000:
        raise wrong("instructions", "its instructions are longer than 3,000 characters.")
    if reach is Reach.WEBHOOK:
        if webhook_url is None or not _safe_url(webhook_url):
            raise wrong("webhook_url",
                        "a webhook system needs an https:// URL (http:// only on this machine).")
    elif webhook_url is not None:
        raise wrong("webhook_url",
                    f"only a webhook system has a webhook_url; this one is reached by {reach}.")
    return SystemSpec(name, label, reach, owner, categories, types, instructions, webhook_url)


class DataMap:
    def __init__(self, sessions: SessionFactory, policy: Policy, clock: Clock) -> None:
        self.sessions, self.policy, self.clock = sessions, policy, clock

    def systems(self, *, viewer: str, retired: bool = False) -> list[DataSystem]:
        """The systems of the map by name; with `retired`, the retired ones too."""
        self.policy.require(self.policy.is_requester(viewer), "see the data map")
        with self.sessions() as session:
            query = select(DataSystem).order_by(DataSystem.name)
            if not retired:
                query = query.where(DataSystem.retired_at.is_(None))  # type: ignore[union-attr]
            return list(session.exec(query))

    def system(self, name: str, *, viewer: str) -> DataSystem:
        """The system `name`, in service (NotFound, or InvalidRequest if it is retired)."""
        self.policy.require(self.policy.is_requester(viewer), "see the data map")
        with self.sessions() as session:
            return self._active(session, name)

    def add(self, spec: SystemSpec, *, actor: str) -> DataSystem:
        self.require_manager(actor)
        with transaction(self.sessions) as session:
            if _named(session, spec.name) is not None:
                raise InvalidSystem("name", f"The data map already has a system `{spec.name}`: "
                                    "edit it, or choose another name.")
            return self._add(session, spec, actor)

    def edit(self, spec: SystemSpec, *, actor: str) -> DataSystem:
        """The system `spec.name` as `spec` declares it."""
        self.require_manager(actor)
        with transaction(self.sessions) as session:
            system = self._active(session, spec.name)
            self._change(session, system, spec, actor)
            return system

    def retire(self, name: str, *, actor: str, reason: str) -> DataSystem:
        """Out of the map for new requests; kept for those that name it and for the trail."""
        self.require_manager(actor)
        with transaction(self.sessions) as session:
            system, now = self._active(session, name), self.clock.now()
            system.retired_at = system.updated_at = now
            audit.record(session, action="system.retired", actor=actor, at=now,
                         details={"system": name, "reason": reason[:500]})
            return system

    def export(self, *, viewer: str) -> str:
        """The map's systems in service, as a JSON file that `import_file` reads back."""
        systems = [_spec(s).as_dict() for s in self.systems(viewer=viewer)]
        return json.dumps({"format": FILE_FORMAT, "systems": systems}, indent=2,
                          ensure_ascii=False) + "\n"

    def import_file(self, text: str, *, actor: str) -> Imported:
        """Adds the file's new systems and brings the others to what it declares, all or none.
        Systems the file does not name are left as they are (retiring is a decision of its own)."""
        self.require_manager(actor)
        specs = _read_file(text)
        added, changed, unchanged = [], [], []
        with transaction(self.sessions) as session:
            for spec in specs:
                system = _named(session, spec.name)
                if system is None:
                    self._add(session, spec, actor)
                    added.append(spec.name)
                elif system.retired_at is not None:
                    raise InvalidRequest(f"System `{spec.name}` is retired: a retired system is "
                                         "not brought back by an import (choose another name).")
                elif _spec(system) == spec:
                    unchanged.append(spec.name)
                else:
                    self._change(session, system, spec, actor)
                    changed.append(spec.name)
        return Imported(added, changed, unchanged)

    def _add(self, session: Session, spec: SystemSpec, actor: str) -> DataSystem:
        now = self.clock.now()
        system = DataSystem(**spec.as_dict(), created_at=now, updated_at=now)
        session.add(system)
        audit.record(session, action="system.added", actor=actor, at=now,
                     details=spec.as_dict())
        return system

    def _change(self, session: Session, system: DataSystem, spec: SystemSpec, actor: str) -> None:
        before, after = _spec(system).as_dict(), spec.as_dict()
        changes = {k: {"from": before[k], "to": after[k]} for k in FIELDS if before[k] != after[k]}
        if not changes:
            return
        for field, value in after.items():
            setattr(system, field, value)
        system.updated_at = now = self.clock.now()
        audit.record(session, action="system.edited", actor=actor, at=now,
                     details={"system": spec.name, "changes": changes})

    def _active(self, session: Session, name: str) -> DataSystem:
        system = _named(session, name)
        if system is None:
            raise NotFound(f"The data map has no system `{name[:40]}`.")
        if system.retired_at is not None:
            raise InvalidRequest(f"System `{name}` is retired.")
        return system

    def require_manager(self, actor: str) -> None:
        """PermissionDenied unless `actor` may change the map (before a form is even opened)."""
        self.policy.require(self.policy.is_manager(actor), "change the data map")


def _named(session: Session, name: str) -> DataSystem | None:
    return session.exec(select(DataSystem).where(DataSystem.name == name)).first()


def _spec(system: DataSystem) -> SystemSpec:
    return SystemSpec(system.name, system.label, Reach(system.reach), system.owner,
                      tuple(system.categories), tuple(RequestType(t) for t in system.request_types),
                      system.instructions, system.webhook_url)


def _listed(raw: Mapping[str, Any], field: str) -> Sequence[Any]:
    value = raw.get(field) or []
    if isinstance(value, str):  # typed in Slack: "contact details, payslips"
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, list):
        raise InvalidSystem(field, f"System `{raw.get('name')}`: {field} must be a list.")
    return value


def _safe_url(url: str) -> bool:
    parts = urlsplit(url)
    local = parts.hostname in ("127.0.0.1", "localhost", "::1")
    return bool(parts.hostname) and (parts.scheme == "https" or (parts.scheme == "http" and local))


def _read_file(text: str) -> list[SystemSpec]:
    try:
        document = json.loads(text)
    except ValueError:
        raise InvalidRequest("The file is not JSON: export the data map to see its form.") from None
    if not isinstance(document, dict) or document.get("format") != FILE_FORMAT or not isinstance(
            document.get("systems"), list):
        raise InvalidRequest(f'The file is not a data map: expected {{"format": {FILE_FORMAT}, '
                             '"systems": [...]}, as the export writes it.')
    specs = [spec_of(raw if isinstance(raw, dict) else {}) for raw in document["systems"]]
    names = [s.name for s in specs]
    if repeated := sorted({n for n in names if names.count(n) > 1}):
        raise InvalidRequest(f"The file names {', '.join(repeated)} more than once.")
    return specs
