"""The Zendesk stand-in's data and rules: users, identities, tickets, comments and bulk jobs.

No HTTP here: `zendesk.py` maps the API's routes onto these methods. Records are kept as Zendesk
renders them, minus the `url` fields (they depend on the server's address, the routes add them).
Every public method holds the one lock, so the threaded server may call them concurrently, and
returns copies, never the stored records.

Rules that matter for privacy, as Zendesk applies them:
- a soft-deleted ticket is hidden from search, user ticket lists and `GET /tickets`; only
  `/deleted_tickets` shows it, until a permanent deletion removes it and its comments;
- strings in comments of closed tickets cannot be redacted with the old endpoint
  (`comment_redactions` can);
- a user who is the requester of a ticket that is not closed (and not deleted) cannot be deleted;
- a user is permanently deleted only after the soft delete: what is left is a record named
  "Permanently deleted user" without contact data or identities, and the tickets that named the
  user (`via.source.from`) name the placeholder instead;
- bulk calls answer a job; their effect is applied when the job completes, after `job_polls`
  reads of its status.
"""

from __future__ import annotations

import copy
import hashlib
import html
import itertools
import operator
import random
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property, wraps
from typing import Any, TypeVar
from urllib.parse import quote

from services.sandbox.people import Person

Record = dict[str, Any]

STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
REDACTION_MARK = "\u2587"  # ▇, what Zendesk puts in place of each redacted character
DELETED_USER_NAME = "Permanently deleted user"
MAX_IDS = 100  # ids per show_many / destroy_many / update_many call
SUPPORT_ADDRESS = "support@sandbox.example.com"
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

_SEED_START = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)  # seeded tickets are created from here on
_CLOCK_START = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)  # later changes are stamped from here on


class ZendeskError(Exception):
    """An answer in Zendesk's error format: the routes send `body` with `status`."""

    def __init__(self, status: int, body: Record) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body

    @property
    def summary(self) -> str:
        """One line for a job result: the error and what it says."""
        details = self.body.get("details") or {}
        described = [item["description"] for items in details.values() for item in items]
        return f"{self.body.get('error')}: {'; '.join(described) or self.body.get('description')}"


def not_found() -> ZendeskError:
    return ZendeskError(404, {"error": "RecordNotFound", "description": "Not found"})


def record_invalid(field: str, error: str, description: str) -> ZendeskError:
    return ZendeskError(422, {
        "error": "RecordInvalid",
        "description": "Record validation errors",
        "details": {field: [{"description": description, "error": error}]},
    })


def bad_request(error: str, description: str) -> ZendeskError:
    return ZendeskError(400, {"error": error, "description": description})


def parse_ids(raw: str | None, *, name: str = "ids", limit: int = MAX_IDS) -> list[int]:
    """A comma-separated list of ids: required, integers, at most `limit` of them."""
    values = [part.strip() for part in (raw or "").split(",") if part.strip()]
    if not values:
        raise bad_request("InvalidValue", f"{name} is required: a comma-separated list of ids")
    if len(values) > limit:
        raise bad_request("TooManyValues", f"{name} takes at most {limit} values")
    try:
        return [int(value) for value in values]
    except ValueError:
        raise bad_request("InvalidValue", f"{name} must be integers") from None


# --- search queries -------------------------------------------------------------------------

_TOKEN = re.compile(
    r'(?P<neg>-)?(?:(?P<key>[a-z_]+)(?P<op><=|>=|:|<|>))?(?:"(?P<phrase>[^"]*)"|(?P<word>\S+))',
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Term:
    """One term of a search query: free text or `key<op>value`, possibly negated (`-`)."""

    value: str
    key: str | None = None
    op: str = ":"
    negated: bool = False

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        """Whole words, any case, any spacing; a trailing `*` matches a prefix, as in Zendesk."""
        prefix = self.value.endswith("*")
        core = r"\s+".join(re.escape(word) for word in self.value.rstrip("*").split())
        return re.compile(rf"(?<!\w){core}" + ("" if prefix else r"(?!\w)"), re.IGNORECASE)

    def finds(self, *texts: str | None) -> bool:
        pattern = self.pattern
        return any(text and pattern.search(text) for text in texts)


def parse_query(query: str) -> list[Term]:
    terms = []
    for match in _TOKEN.finditer(query or ""):
        value = match["phrase"] if match["phrase"] is not None else match["word"]
        key = match["key"].lower() if match["key"] else None
        if value or key:
            terms.append(Term(value=value, key=key, op=match["op"] or ":",
                              negated=bool(match["neg"])))
    return terms


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    ":": operator.eq, "<": operator.lt, ">": operator.gt, "<=": operator.le, ">=": operator.ge}


def _compare(left: Any, op: str, right: Any) -> bool:
    return _OPERATORS[op](left, right)


# --- the state ------------------------------------------------------------------------------

@dataclass
class Job:
    """A bulk call: `run` applies it to one id and answers that id's result entry."""

    id: str
    job_type: str
    ids: list[int]
    run: Callable[[int], Record]
    status: str = "queued"
    reads: int = 0
    results: list[Record] | None = None
    message: str | None = None


_F = TypeVar("_F", bound=Callable[..., Any])


def _locked(method: _F) -> _F:
    @wraps(method)
    def under_lock(self: ZendeskState, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return under_lock  # type: ignore[return-value]


def _stamp(moment: datetime) -> str:
    return moment.strftime(TIMESTAMP_FORMAT)


def _html(body: str) -> str:
    return f'<div class="zd-comment" dir="auto"><p>{html.escape(body, quote=False)}</p></div>'


class ZendeskState:
    """Users, identities, tickets and comments of one Zendesk account, and its bulk jobs."""

    def __init__(self, *, seed: int = 0, job_polls: int = 2,
                 api_email: str = "agent@example.com") -> None:
        self.seed = seed
        self.job_polls = job_polls
        self.users: dict[int, Record] = {}
        self.identities: dict[int, Record] = {}
        self.tickets: dict[int, Record] = {}  # live and soft-deleted
        self.comments: dict[int, list[Record]] = {}  # ticket id -> its comments, oldest first
        self.deleted_tickets: dict[int, Record] = {}  # soft-deleted: id -> deleted_at, actor...
        self.deleted_user_ids: set[int] = set()  # soft-deleted, not yet permanently
        self.purged_user_ids: set[int] = set()  # permanently deleted
        self.jobs: dict[str, Job] = {}
        self._lock = threading.RLock()
        self._clock = _CLOCK_START
        self._next = {kind: itertools.count(start) for kind, start in (
            ("user", 1_000_001), ("identity", 2_000_001), ("comment", 3_000_001),
            ("attachment", 4_000_001), ("ticket", 1), ("job", 1))}
        hired = _stamp(_SEED_START - timedelta(days=90))
        self.api_user_id = self._new_user("Sandbox Admin", api_email, None, None, "admin",
                                          created_at=hired)["id"]
        self.agent_ids = [
            self._new_user(name, email, None, None, "agent", created_at=hired)["id"]
            for name, email in (("Sam Rivera", "sam.rivera@support.example.com"),
                                ("Robin Okafor", "robin.okafor@support.example.com"))
        ]

    # --- building data ----------------------------------------------------------------------

    def seed_people(self, persons: Sequence[Person]) -> None:
        """Each person becomes an end user with 0..6 tickets that mention them; some cc others."""
        rng = random.Random(self.seed)
        users = []
        for person in persons:
            joined = _SEED_START - timedelta(days=1 + person.index % 30)
            user = self._new_user(person.name, person.email, person.phone, person.external_id,
                                  "end-user", details=person.address, created_at=_stamp(joined))
            users.append((person, user["id"]))
        moment = _SEED_START
        for position, (person, user_id) in enumerate(users):
            for _ in range(rng.choices(range(7), weights=(2, 3, 3, 2, 1, 1, 1))[0]):
                moment += timedelta(hours=rng.randint(1, 12), minutes=rng.randint(0, 59))
                cc = None
                if len(users) > 1 and rng.random() < 0.25:  # someone else, cc'd on this ticket
                    other = rng.randrange(len(users) - 1)
                    cc = users[other + (other >= position)]
                self._seed_ticket(rng, person, user_id, cc, moment)

    def _seed_ticket(self, rng: random.Random, person: Person, user_id: int,
                     cc: tuple[Person, int] | None, moment: datetime) -> None:
        subject, problem = rng.choice(_SUBJECTS)
        status = rng.choices(STATUSES, weights=(1, 3, 2, 1, 2, 3))[0]
        assignee = None if status == "new" else rng.choice(self.agent_ids)
        first = person.name.split()[0]
        facts = {"name": person.name, "first": first, "email": person.email,
                 "phone": person.phone, "problem": problem}
        comments = [(user_id, rng.choice(_OPENINGS).format(**facts))]
        if cc is not None:
            cc_person, cc_id = cc
            comments.append((user_id, f"I am adding {cc_person.name} ({cc_person.email}) in copy, "
                                      "they can answer for me."))
            comments.append((cc_id, f"Hello, {cc_person.name} here. Call me on {cc_person.phone} "
                                    "if you need anything."))
        for index in range(rng.randint(0, 3)):
            if assignee is not None and index % 2 == 0:
                comments.append((assignee, rng.choice(_REPLIES).format(**facts)))
            else:
                comments.append((user_id, rng.choice(_FOLLOW_UPS).format(**facts)))
        attachment = None
        if rng.random() < 0.2:
            slug = person.email.split("@")[0]
            attachment = rng.choice([(f"passport-{slug}.pdf", "application/pdf"),
                                     (f"photo-{slug}.jpg", "image/jpeg"),
                                     ("receipt.pdf", "application/pdf")])
        self._new_ticket(user_id, subject, status, assignee, [cc[1]] if cc else [], comments,
                         attachment, moment)

    def _tick(self) -> str:
        self._clock += timedelta(seconds=1)
        return _stamp(self._clock)

    def _new_user(self, name: str, email: str | None, phone: str | None, external_id: str | None,
                  role: str, *, details: str = "", created_at: str | None = None) -> Record:
        created_at = created_at or self._tick()
        user: Record = {
            "id": next(self._next["user"]), "name": name, "email": email, "phone": phone,
            "external_id": external_id, "role": role, "active": True, "suspended": False,
            "verified": True, "organization_id": None, "tags": [], "notes": "",
            "details": details, "user_fields": {}, "created_at": created_at,
            "updated_at": created_at,
        }
        self.users[user["id"]] = user
        for kind, value in (("email", email), ("phone_number", phone)):
            if value:
                self._new_identity(user["id"], kind, value, created_at)
        return user

    def _new_identity(self, user_id: int, kind: str, value: str, created_at: str) -> Record:
        identity: Record = {"id": next(self._next["identity"]), "user_id": user_id, "type": kind,
                    "value": value, "verified": True, "primary": True,
                    "created_at": created_at, "updated_at": created_at}
        self.identities[identity["id"]] = identity
        return identity

    def _new_ticket(self, requester_id: int, subject: str, status: str, assignee_id: int | None,
                    collaborator_ids: Sequence[int], comments: Sequence[tuple[int, str]],
                    attachment: tuple[str, str] | None, created: datetime | None) -> Record:
        moment = created or (self._clock + timedelta(seconds=1))
        if created is None:  # a later ticket: the clock moves past its comments
            self._clock = moment + timedelta(minutes=len(comments))
        requester = self.users[requester_id]
        ticket_id = next(self._next["ticket"])
        ticket = {
            "id": ticket_id, "subject": subject, "raw_subject": subject,
            "description": comments[0][1], "status": status, "priority": None, "type": None,
            "requester_id": requester_id, "submitter_id": requester_id,
            "assignee_id": assignee_id, "organization_id": None,
            "collaborator_ids": list(collaborator_ids), "email_cc_ids": list(collaborator_ids),
            "tags": [], "is_public": True, "has_incidents": False,
            "via": {"channel": "email", "source": {
                "from": {"address": requester["email"], "name": requester["name"]},
                "to": {"address": SUPPORT_ADDRESS, "name": "Support"}, "rel": None}},
            "created_at": _stamp(moment), "updated_at": _stamp(moment),
        }
        self.tickets[ticket_id] = ticket
        self.comments[ticket_id] = []
        for index, (author_id, body) in enumerate(comments):
            files = [attachment] if attachment and index == 0 else []
            self._new_comment(ticket_id, author_id, body, files, moment + timedelta(minutes=index))
        return ticket

    def _new_comment(self, ticket_id: int, author_id: int, body: str,
                     files: Iterable[tuple[str, str]], moment: datetime) -> Record:
        attachments = []
        for file_name, content_type in files:
            attachment_id = next(self._next["attachment"])
            token = hashlib.sha1(f"{self.seed}:{attachment_id}".encode()).hexdigest()[:24]
            attachments.append({
                "id": attachment_id, "file_name": file_name, "content_type": content_type,
                "content_url": f"/attachments/token/{token}/?name={quote(file_name)}",
                "size": 10_000 + attachment_id % 90_000, "inline": False,
            })
        comment = {"id": next(self._next["comment"]), "type": "Comment", "author_id": author_id,
                   "body": body, "html_body": _html(body), "plain_body": body, "public": True,
                   "attachments": attachments, "created_at": _stamp(moment)}
        self.comments[ticket_id].append(comment)
        return comment

    @_locked
    def add_user(self, name: str, email: str | None = None, phone: str | None = None,
                 external_id: str | None = None, role: str = "end-user") -> Record:
        return copy.deepcopy(self._new_user(name, email, phone, external_id, role))

    @_locked
    def add_ticket(self, requester_id: int, *, subject: str, description: str,
                   status: str = "open", collaborator_ids: Sequence[int] = (),
                   assignee_id: int | None = None, comments: Sequence[str] = (),
                   attachment: bool = False) -> Record:
        """A ticket whose first comment is `description`; `comments` follow, by the assignee."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        for user_id in (requester_id, assignee_id, *collaborator_ids):
            if user_id is not None and user_id not in self.users:
                raise ValueError(f"no user {user_id}")
        replier = assignee_id or requester_id
        ticket = self._new_ticket(
            requester_id, subject, status, assignee_id, collaborator_ids,
            [(requester_id, description), *((replier, body) for body in comments)],
            ("attachment.pdf", "application/pdf") if attachment else None, None)
        return copy.deepcopy(ticket)

    # --- users --------------------------------------------------------------------------------

    def _user(self, user_id: int) -> Record:
        if user_id not in self.users or user_id in self.purged_user_ids:
            raise not_found()
        return self.users[user_id]

    def _active_user(self, user_id: int) -> Record:
        if user_id in self.deleted_user_ids:
            raise not_found()
        return self._user(user_id)

    def _listed(self, user: Record) -> bool:
        return user["id"] not in self.deleted_user_ids and user["id"] not in self.purged_user_ids

    @_locked
    def user(self, user_id: int) -> Record:
        """Soft-deleted users are still shown (`active: false`), permanently deleted ones not."""
        return copy.deepcopy(self._user(user_id))

    @_locked
    def users_many(self, ids: Iterable[int]) -> list[Record]:
        return [copy.deepcopy(self.users[i]) for i in ids
                if i in self.users and i not in self.purged_user_ids]

    @_locked
    def search_users(self, *, query: str | None = None,
                     external_id: str | None = None) -> list[Record]:
        """`/users/search`: deleted users are not found."""
        if external_id is not None:
            found = [u for u in self.users.values() if u["external_id"] == external_id]
        elif query:
            terms = [term for term in parse_query(query) if term.key != "type"]
            matcher = _Matcher(self)
            found = [u for u in self.users.values()
                     if all(matcher.user(u, term) for term in terms)]
        else:
            raise bad_request("InvalidValue", "query or external_id is required")
        return [copy.deepcopy(u) for u in sorted(found, key=lambda u: u["id"]) if self._listed(u)]

    def _email_in_use(self, email: str, by_other_than: int) -> bool:
        return any(identity["type"] == "email" and identity["value"].lower() == email.lower()
                   and identity["user_id"] != by_other_than
                   for identity in self.identities.values())

    def _update_user(self, user_id: int, changes: Record) -> Record:
        user = self._active_user(user_id)
        if not isinstance(changes, dict):
            raise bad_request("InvalidValue", "user must be an object")
        if "name" in changes and not (isinstance(changes["name"], str) and changes["name"].strip()):
            raise record_invalid("name", "BlankValue", "Name: cannot be blank")
        if "suspended" in changes and not isinstance(changes["suspended"], bool):
            raise record_invalid("suspended", "InvalidValue", "Suspended: must be true or false")
        email = changes.get("email")
        if email and self._email_in_use(email, user_id):
            raise record_invalid("email", "DuplicateValue",
                                 f"Email: {email} is already being used by another user")
        for key in ("name", "external_id", "role", "suspended", "verified", "notes", "details",
                    "tags", "organization_id"):
            if key in changes:
                user[key] = changes[key]
        if isinstance(changes.get("user_fields"), dict):
            user["user_fields"].update(changes["user_fields"])
        for key, kind in (("email", "email"), ("phone", "phone_number")):
            if key in changes:
                self._set_primary(user, kind, changes[key])
        user["updated_at"] = self._tick()
        return user

    def _set_primary(self, user: Record, kind: str, value: str | None) -> None:
        """Changing a user's email or phone changes its primary identity of that type."""
        key = "email" if kind == "email" else "phone"
        user[key] = value or None
        mine = [i for i in self.identities.values()
                if i["user_id"] == user["id"] and i["type"] == kind]
        primary = next((i for i in mine if i["primary"]), mine[0] if mine else None)
        if not value:
            if primary is not None:
                del self.identities[primary["id"]]
        elif primary is None:
            self._new_identity(user["id"], kind, value, self._tick())
        else:
            primary.update(value=value, updated_at=self._tick())

    @_locked
    def update_user(self, user_id: int, changes: Record) -> Record:
        return copy.deepcopy(self._update_user(user_id, changes))

    @_locked
    def update_users_job(self, changes_by_id: dict[int, Record]) -> Record:
        def update(user_id: int) -> Record:
            return self._update_user(user_id, changes_by_id[user_id])

        return self._start_job("Bulk Update Users Job", list(changes_by_id),
                               self._job_step("update", "Updated", update))

    def _soft_delete_user(self, user_id: int) -> Record:
        user = self._active_user(user_id)
        unclosed = sorted(t["id"] for t in self._live_tickets()
                          if t["requester_id"] == user_id and t["status"] != "closed")
        if unclosed:
            shown = ", ".join(f"#{i}" for i in unclosed[:10]) + (", ..." * (len(unclosed) > 10))
            raise record_invalid(
                "base", "UserHasUnclosedTickets",
                f"The user is the requester of {len(unclosed)} ticket(s) that are not closed "
                f"({shown}); a user can be deleted only when every ticket it requested is closed",
            )
        user.update(active=False, updated_at=self._tick())
        self.deleted_user_ids.add(user_id)
        return user

    @_locked
    def soft_delete_user(self, user_id: int) -> Record:
        return copy.deepcopy(self._soft_delete_user(user_id))

    @_locked
    def destroy_users_job(self, ids: list[int]) -> Record:
        return self._start_job("Bulk Delete Users Job", ids,
                               self._job_step("delete", "Deleted", self._soft_delete_user))

    def _deleted_view(self, user_id: int) -> Record:
        """A `deleted_user` record: the fields Zendesk shows of a deleted user."""
        user = self.users[user_id]
        return {key: copy.deepcopy(user[key]) for key in (
            "id", "name", "email", "phone", "role", "active", "organization_id",
            "created_at", "updated_at")}

    @_locked
    def deleted_user(self, user_id: int) -> Record:
        """Only users soft-deleted and not yet permanently deleted."""
        if user_id not in self.deleted_user_ids:
            raise not_found()
        return self._deleted_view(user_id)

    @_locked
    def deleted_users(self) -> list[Record]:
        """Soft-deleted users and what is left of permanently deleted ones."""
        return [self._deleted_view(i) for i in sorted(self.deleted_user_ids | self.purged_user_ids)]

    @_locked
    def purge_user(self, user_id: int) -> Record:
        """Permanently delete a soft-deleted user; answers its name, without contact data."""
        if user_id not in self.deleted_user_ids:
            raise not_found()
        user = self.users[user_id]
        answer = {**self._deleted_view(user_id), "email": None, "phone": None}
        for identity_id in [i for i, rec in self.identities.items() if rec["user_id"] == user_id]:
            del self.identities[identity_id]
        user.update(name=DELETED_USER_NAME, email=None, phone=None, external_id=None, notes="",
                    details="", tags=[], user_fields={}, verified=False, updated_at=self._tick())
        for ticket in self.tickets.values():
            if ticket["requester_id"] == user_id:
                ticket["via"]["source"]["from"].update(address=None, name=DELETED_USER_NAME)
        self.deleted_user_ids.discard(user_id)
        self.purged_user_ids.add(user_id)
        return answer

    # --- identities ---------------------------------------------------------------------------

    def _identity(self, user_id: int, identity_id: int) -> Record:
        self._user(user_id)
        identity = self.identities.get(identity_id)
        if identity is None or identity["user_id"] != user_id:
            raise not_found()
        return identity

    @_locked
    def user_identities(self, user_id: int) -> list[Record]:
        self._user(user_id)
        return [copy.deepcopy(i) for i in sorted(self.identities.values(), key=lambda i: i["id"])
                if i["user_id"] == user_id]

    @_locked
    def identity(self, user_id: int, identity_id: int) -> Record:
        return copy.deepcopy(self._identity(user_id, identity_id))

    @_locked
    def update_identity(self, user_id: int, identity_id: int, changes: Record) -> Record:
        self._active_user(user_id)
        identity = self._identity(user_id, identity_id)
        value = changes.get("value", identity["value"]) if isinstance(changes, dict) else None
        if not (isinstance(value, str) and value.strip()):
            raise record_invalid("value", "BlankValue", "Value: cannot be blank")
        if identity["type"] == "email" and self._email_in_use(value, user_id):
            raise record_invalid("value", "DuplicateValue",
                                 f"Value: {value} is already being used by another user")
        identity.update(value=value, verified=bool(changes.get("verified", identity["verified"])),
                        updated_at=self._tick())
        user = self.users[user_id]
        if identity["primary"]:
            user["email" if identity["type"] == "email" else "phone"] = value
            user["updated_at"] = identity["updated_at"]
        return copy.deepcopy(identity)

    @_locked
    def delete_identity(self, user_id: int, identity_id: int) -> None:
        self._active_user(user_id)
        identity = self._identity(user_id, identity_id)
        del self.identities[identity_id]
        key = "email" if identity["type"] == "email" else "phone"
        user = self.users[user_id]
        if user[key] == identity["value"]:
            rest = [i for i in self.identities.values()
                    if i["user_id"] == user_id and i["type"] == identity["type"]]
            user[key] = rest[0]["value"] if rest else None
            if rest:
                rest[0]["primary"] = True
        user["updated_at"] = self._tick()

    # --- tickets and comments -------------------------------------------------------------------

    def _live_tickets(self) -> list[Record]:
        return [t for i, t in sorted(self.tickets.items()) if i not in self.deleted_tickets]

    def _live_ticket(self, ticket_id: int) -> Record:
        if ticket_id not in self.tickets or ticket_id in self.deleted_tickets:
            raise not_found()
        return self.tickets[ticket_id]

    def _comment(self, ticket_id: int, comment_id: int) -> Record:
        self._live_ticket(ticket_id)
        for comment in self.comments[ticket_id]:
            if comment["id"] == comment_id:
                return comment
        raise not_found()

    @_locked
    def ticket(self, ticket_id: int) -> Record:
        return copy.deepcopy(self._live_ticket(ticket_id))

    @_locked
    def tickets_many(self, ids: Iterable[int]) -> list[Record]:
        return [copy.deepcopy(self.tickets[i]) for i in ids
                if i in self.tickets and i not in self.deleted_tickets]

    @_locked
    def user_tickets(self, user_id: int, relation: str) -> list[Record]:
        """`requested`, `ccd` or `assigned` tickets of a user, deleted ones left out."""
        self._user(user_id)
        involved: Callable[[Record], bool] = {
            "requested": lambda t: t["requester_id"] == user_id,
            "ccd": lambda t: user_id in t["collaborator_ids"],
            "assigned": lambda t: t["assignee_id"] == user_id,
        }[relation]
        return [copy.deepcopy(t) for t in self._live_tickets() if involved(t)]

    @_locked
    def ticket_comments(self, ticket_id: int) -> list[Record]:
        self._live_ticket(ticket_id)
        return copy.deepcopy(self.comments[ticket_id])

    @_locked
    def attachment(self, token: str) -> Record | None:
        """The attachment with this download token, if its ticket is still there."""
        prefix = f"/attachments/token/{token}/"
        for ticket in self._live_tickets():
            for comment in self.comments[ticket["id"]]:
                for attachment in comment["attachments"]:
                    if attachment["content_url"].startswith(prefix):
                        return copy.deepcopy(attachment)
        return None

    def _after_redaction(self, ticket_id: int, comment: Record) -> None:
        ticket = self.tickets[ticket_id]
        if self.comments[ticket_id][0] is comment:  # the description is the first comment
            ticket["description"] = comment["body"]
        ticket["updated_at"] = self._tick()

    @_locked
    def redact_comment(self, ticket_id: int, comment_id: int, text: str) -> Record:
        """Old endpoint: every occurrence of `text` becomes ▇s; not on closed tickets."""
        comment = self._comment(ticket_id, comment_id)
        if not isinstance(text, str) or not text:
            raise bad_request("InvalidValue", "text is required: the string to redact")
        if self.tickets[ticket_id]["status"] == "closed":
            raise record_invalid(
                "base", "TicketClosed",
                "The ticket is closed: strings can no longer be redacted from its comments "
                "with this endpoint (use PUT /api/v2/comment_redactions/{id})",
            )
        mark = REDACTION_MARK * len(text)
        comment["body"] = comment["body"].replace(text, mark)
        comment["plain_body"] = comment["plain_body"].replace(text, mark)
        comment["html_body"] = comment["html_body"].replace(html.escape(text, quote=False), mark)
        self._after_redaction(ticket_id, comment)
        return copy.deepcopy(comment)

    @_locked
    def redact_comment_html(self, comment_id: int, ticket_id: int, html_body: str) -> Record:
        """New endpoint: what `html_body` wraps in <redact> becomes ▇s; works on closed tickets.

        `html_body` must be the comment's html_body with tags added. The html_body changes where
        tagged; body and plain_body lose every occurrence of each tagged string.
        """
        comment = self._comment(ticket_id, comment_id)
        if not isinstance(html_body, str):
            raise bad_request("InvalidValue", "html_body is required")
        if re.sub(r"</?redact>", "", html_body) != comment["html_body"]:
            raise record_invalid(
                "html_body", "InvalidValue",
                "Html body: must be the comment's html_body with <redact> tags added")
        tagged = re.findall(r"<redact>(.*?)</redact>", html_body, re.S)
        secrets = [html.unescape(secret) for secret in tagged]
        comment["html_body"] = re.sub(
            r"<redact>(.*?)</redact>",
            lambda m: REDACTION_MARK * len(html.unescape(m.group(1))), html_body, flags=re.S)
        for secret in filter(None, secrets):
            for key in ("body", "plain_body"):
                comment[key] = comment[key].replace(secret, REDACTION_MARK * len(secret))
        self._after_redaction(ticket_id, comment)
        return copy.deepcopy(comment)

    def _soft_delete_ticket(self, ticket_id: int) -> Record:
        ticket = self._live_ticket(ticket_id)
        admin = self.users[self.api_user_id]
        self.deleted_tickets[ticket_id] = {
            "deleted_at": self._tick(), "previous_state": ticket["status"],
            "actor": {"id": admin["id"], "name": admin["name"]},
        }
        return ticket

    @_locked
    def soft_delete_ticket(self, ticket_id: int) -> None:
        self._soft_delete_ticket(ticket_id)

    @_locked
    def destroy_tickets_job(self, ids: list[int]) -> Record:
        return self._start_job("Bulk Delete Tickets Job", ids,
                               self._job_step("delete", "Deleted", self._soft_delete_ticket))

    @_locked
    def deleted_ticket_list(self) -> list[Record]:
        return [{"id": i, "subject": self.tickets[i]["subject"], **copy.deepcopy(meta)}
                for i, meta in sorted(self.deleted_tickets.items())]

    def _purge_ticket(self, ticket_id: int) -> None:
        if ticket_id not in self.deleted_tickets:
            raise not_found()
        del self.tickets[ticket_id], self.comments[ticket_id], self.deleted_tickets[ticket_id]

    @_locked
    def purge_tickets_job(self, ids: list[int], *, must_exist: bool = False) -> Record:
        """Permanent deletion of soft-deleted tickets; `must_exist`: 404 now if one is not."""
        if must_exist and any(i not in self.deleted_tickets for i in ids):
            raise not_found()
        return self._start_job("Bulk Permanently Delete Tickets Job", ids,
                               self._job_step("delete", "Deleted", self._purge_ticket))

    # --- search ---------------------------------------------------------------------------------

    @_locked
    def search(self, query: str, *, only_type: str | None = None,
               sort_by: str = "created_at", descending: bool = False) -> list[Record]:
        """Tickets and users matching every term, each with its `result_type`.

        `type:ticket` / `type:user` restrict the kinds; `only_type` (the export's
        `filter[type]`) must agree with them.
        """
        terms = parse_query(query)
        kinds = {t.value.lower() for t in terms if t.key == "type" and not t.negated}
        if only_type is not None:
            if kinds - {only_type}:
                raise bad_request("InvalidValue", "type in the query contradicts filter[type]")
            kinds = {only_type}
        kinds = kinds or {"ticket", "user"}
        rest = [t for t in terms if t.key != "type"]
        matcher = _Matcher(self)
        results = []
        if "ticket" in kinds:
            results += [{**copy.deepcopy(t), "result_type": "ticket"} for t in self._live_tickets()
                        if all(matcher.ticket(t, term) for term in rest)]
        if "user" in kinds:
            results += [{**copy.deepcopy(u), "result_type": "user"}
                        for _, u in sorted(self.users.items())
                        if self._listed(u) and all(matcher.user(u, term) for term in rest)]
        sort_key = sort_by if sort_by in ("created_at", "updated_at") else "created_at"
        results.sort(key=lambda r: (r[sort_key], r["result_type"], r["id"]), reverse=descending)
        return results

    # --- jobs -----------------------------------------------------------------------------------

    def _job_step(self, action: str, done: str,
                  apply: Callable[[int], Any]) -> Callable[[int], Record]:
        def step(record_id: int) -> Record:
            try:
                apply(record_id)
            except ZendeskError as error:
                return {"id": record_id, "action": action, "success": False, "status": "Failed",
                        "errors": error.summary}
            return {"id": record_id, "action": action, "success": True, "status": done}

        return step

    def _start_job(self, job_type: str, ids: list[int], run: Callable[[int], Record]) -> Record:
        number = next(self._next["job"])
        job_id = hashlib.sha1(f"zendesk-sandbox:{self.seed}:{number}".encode()).hexdigest()[:32]
        job = Job(job_id, job_type, ids, run)
        self.jobs[job_id] = job
        answer = self._job_view(job)
        if self.job_polls <= 0:
            self._complete(job)
        return answer

    def _complete(self, job: Job) -> None:
        job.results = [job.run(record_id) for record_id in job.ids]
        job.status = "completed"
        job.message = f"Completed at {self._tick().replace('T', ' ').replace('Z', ' +0000')}"

    def _job_view(self, job: Job) -> Record:
        total = len(job.ids)
        done = job.status == "completed"
        progress = total if done else total * job.reads // max(self.job_polls, 1)
        return {"id": job.id, "job_type": job.job_type, "status": job.status, "total": total,
                "progress": progress, "message": job.message,
                "results": copy.deepcopy(job.results)}

    def _read_job(self, job_id: str) -> Record:
        job = self.jobs.get(job_id)
        if job is None:
            raise not_found()
        if job.status != "completed":
            job.reads += 1
            if job.reads >= self.job_polls:
                self._complete(job)
            else:
                job.status = "working"
        return self._job_view(job)

    @_locked
    def read_job(self, job_id: str) -> Record:
        """A status read: the job completes (and takes effect) on read number `job_polls`."""
        return self._read_job(job_id)

    @_locked
    def read_jobs(self, job_ids: Iterable[str]) -> list[Record]:
        return [self._read_job(job_id) for job_id in job_ids if job_id in self.jobs]

    # --- inspection -----------------------------------------------------------------------------

    @_locked
    def snapshot(self) -> Record:
        """The whole state, deterministic and JSON-able: no timestamps, urls or job ids."""
        def timeless(record: Record) -> Record:
            return {k: v for k, v in record.items() if k not in ("created_at", "updated_at")}

        return copy.deepcopy({
            "users": [timeless(u) for _, u in sorted(self.users.items())],
            "identities": [timeless(i) for _, i in sorted(self.identities.items())],
            "tickets": [timeless(t) for _, t in sorted(self.tickets.items())],
            "comments": [{"ticket_id": ticket_id, **timeless(c)}
                         for ticket_id, comments in sorted(self.comments.items())
                         for c in comments],
            "deleted_tickets": sorted(self.deleted_tickets),
            "deleted_users": sorted(self.deleted_user_ids),
            "permanently_deleted_users": sorted(self.purged_user_ids),
            "suspended_users": sorted(i for i, u in self.users.items() if u["suspended"]),
        })


class _Matcher:
    """Decides whether one record matches one search term; built per search, it caches lookups."""

    def __init__(self, state: ZendeskState) -> None:
        self.state = state
        self._refs: dict[str, set[int]] = {}
        self._identity_values: dict[int, list[str]] | None = None

    def refs(self, value: str) -> set[int]:
        """The users a `requester:`/`cc:`/`assignee:` value names: an id, an email or a name."""
        if value not in self._refs:
            lowered = value.lower()
            self._refs[value] = {int(value)} if value.isdigit() else (
                {i["user_id"] for i in self.state.identities.values()
                 if i["type"] == "email" and i["value"].lower() == lowered}
                | {u["id"] for u in self.state.users.values() if u["name"].lower() == lowered})
        return self._refs[value]

    def identity_values(self, user_id: int) -> list[str]:
        if self._identity_values is None:
            self._identity_values = {}
            for identity in self.state.identities.values():
                self._identity_values.setdefault(identity["user_id"], []).append(identity["value"])
        return self._identity_values.get(user_id, [])

    def ticket(self, ticket: Record, term: Term) -> bool:
        key, value = term.key, term.value
        comments = self.state.comments[ticket["id"]]
        if key is None:
            hit = term.finds(ticket["subject"], ticket["description"],
                             *(c["plain_body"] for c in comments))
        elif key in ("subject", "description"):
            hit = term.finds(ticket[key])
        elif key == "comment":
            hit = term.finds(*(c["plain_body"] for c in comments))
        elif key == "status":
            hit = value.lower() in STATUSES and _compare(
                STATUSES.index(ticket["status"]), term.op, STATUSES.index(value.lower()))
        elif key in ("requester", "submitter", "assignee"):
            hit = (ticket[f"{key}_id"] is None if value.lower() == "none"
                   else ticket[f"{key}_id"] in self.refs(value))
        elif key == "cc":
            hit = bool(self.refs(value) & set(ticket["collaborator_ids"]))
        elif key in ("tags", "tag"):
            hit = value.lower() in ticket["tags"]
        elif key in ("created", "updated"):
            hit = _compare(ticket[f"{key}_at"][: len(value)], term.op, value)
        else:  # a property this stand-in does not know finds nothing, rather than everything
            hit = False
        return hit != term.negated

    def user(self, user: Record, term: Term) -> bool:
        key, value = term.key, term.value
        if key is None:
            hit = term.finds(user["name"], user["email"], user["phone"], user["external_id"],
                             *self.identity_values(user["id"]))
        elif key in ("name", "email", "phone", "external_id", "notes", "details"):
            hit = term.finds(user[key])
        elif key == "role":
            hit = user["role"] == value.lower()
        elif key in ("tags", "tag"):
            hit = value.lower() in user["tags"]
        elif key in ("created", "updated"):
            hit = _compare(user[f"{key}_at"][: len(value)], term.op, value)
        else:
            hit = False
        return hit != term.negated


_SUBJECTS = [
    ("Question about my invoice", "I do not understand the last invoice I received"),
    ("Cannot log in", "I cannot log in to my account since yesterday"),
    ("Refund request", "I would like a refund for my last order"),
    ("Change of delivery address", "I moved and need to change my delivery address"),
    ("Order arrived damaged", "my order arrived damaged"),
    ("Please update my contact details", "my contact details on file are out of date"),
    ("Cancel my subscription", "I want to cancel my subscription"),
    ("Payment failed", "my card payment failed twice"),
    ("Where is my parcel?", "my parcel has not arrived after two weeks"),
]
_OPENINGS = [
    "Hello, my name is {name} and {problem}. You can reach me at {email} or on {phone}.",
    "Hi team, {problem}. Please reply to {email}. Thanks, {name}",
    "Dear support, {problem}. My phone number is {phone}. Kind regards, {name}",
]
_REPLIES = [
    "Hi {first}, thanks for reaching out. We are looking into it.",
    "Hello {first}, could you confirm the phone number on the account ({phone})?",
    "Thanks {first}, this should be sorted now. Let us know if not.",
]
_FOLLOW_UPS = [
    "Thanks! Also, my new number is {phone}.",
    "Any update? You can email me at {email}.",
    "Still waiting on this one. {name}",
]
