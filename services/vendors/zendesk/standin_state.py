"""The Zendesk stand-in's data and rules: users, identities, tickets, comments and bulk jobs.

No HTTP here: `zendesk.py` maps the API's routes onto these methods. Records are kept as Zendesk
renders them, minus the `url` fields (they depend on the server's address, the routes add them)
and with attachment URLs relative to the server. Every public method holds the one lock, so the
threaded server may call them concurrently, and returns copies, never the stored records.

Rules that matter for privacy, as Zendesk applies them (each cites its reference where applied):
- a soft-deleted ticket is hidden from search, user ticket lists and `GET /tickets`; only
  `/deleted_tickets` shows it, until a permanent deletion removes it and its comments;
- closed tickets cannot be updated, nor redacted with the old endpoints (string or attachment);
  `comment_redactions` works on closed and archived tickets, in the agent workspace only;
- archived tickets (closed ones, after 120 days) are still shown by `GET /tickets/{id}`, their
  comments and search; the user ticket lists and `/deleted_tickets` leave them out;
- inline images are listed in a comment's `attachments` only with `include_inline_images`;
  a redacted attachment becomes an empty `redacted.txt` and its old URL serves nothing;
- a user who is the requester of a ticket that is not closed (and not deleted) cannot be deleted;
- a user is permanently deleted only after the soft delete: what is left is a record named
  "Permanently deleted user" without contact data or identities, and the tickets that named the
  user (`via.source.from`) name the placeholder instead;
- bulk calls answer a job; their effect is applied when the job completes, after `job_polls`
  reads of its status. Jobs run in the background whether anyone reads them or not (a job
  whose answer never reached its caller still runs): an account's jobs complete in the order
  they were queued, so a job completing first completes those queued before it (the order is
  not documented; Zendesk describes jobs as queued, "Job Statuses": queued, working, completed).

A page of a list or of a search export costs what the page holds, not what the account holds:
only the page's records are copied; tickets and users are indexed in (created_at, id) order,
which search export walks from its cursor, stopping once the page is full; and each user's
ticket lists (requested, ccd, assigned) are indexed, for those lists and for user deletion.

Test faults (not vendor behaviour): `fail_next_job` makes the next job end `failed` without
effect; `lost_writes` makes the named kinds of write answer as if applied while nothing changes
(a misbehaving proxy in front of Zendesk), so a caller that trusts a 200 without reading back is
caught.
"""

from __future__ import annotations

import copy
import hashlib
import html
import itertools
import random
import re
import threading
import uuid
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import quote

from services.sandbox.people import Person
from services.vendors.zendesk import standin_seed as seedtext
from services.vendors.zendesk.standin_search import STATUSES, Matcher, Term, parse_query
from services.vendors.zendesk.standin_seed import TicketExtras

Record = dict[str, Any]

REDACTION_MARK = "\u2587"  # ▇, what Zendesk puts in place of each redacted character
DELETED_USER_NAME = "Permanently deleted user"
MAX_IDS = 100  # ids per show_many / destroy_many / update_many call
SUPPORT_ADDRESS = "support@sandbox.example.com"
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
REDACTED_FILE_NAME = "redacted.txt"  # RedactCommentAttachment: "replaced with an empty file"
# The writes that `lost_writes` can make vanish (a test fault, see the module docstring).
WRITE_KINDS = frozenset({
    "redact_comment",  # PUT /tickets/{tid}/comments/{cid}/redact
    "comment_redaction",  # PUT /comment_redactions/{cid}
    "redact_attachment",  # PUT /tickets/{tid}/comments/{cid}/attachments/{aid}/redact
    "update_ticket",  # PUT /tickets/{id}
    "update_user",  # PUT /users/{id}
    "update_identity",  # PUT /users/{id}/identities/{iid}
    "delete_ticket",  # DELETE /tickets/{id}
    "delete_tickets_job",  # DELETE /tickets/destroy_many
    "purge_tickets_job",  # DELETE /deleted_tickets/{id}, /deleted_tickets/destroy_many
    "delete_user",  # DELETE /users/{id}
    "delete_users_job",  # DELETE /users/destroy_many
    "purge_user",  # DELETE /deleted_users/{id}
})

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


def forbidden() -> ZendeskError:
    """403: the agent lacks a permission or the account a feature (contract, "Paging, limits,
    errors"); the wording is Zendesk's "Access Denied" text (zenpy issue #336 quotes it)."""
    return ZendeskError(403, {
        "error": "Forbidden",
        "description": "You do not have access to this page. Please contact the account owner "
                       "of this help desk for further help.",
    })


def closed_prevents_update() -> ZendeskError:
    """422 for any change to a closed ticket, as Zendesk answers it (body captured in
    Speedygeek/ZendeskApi_v2 issue #59)."""
    return ZendeskError(422, {
        "error": "RecordInvalid", "description": "Record validation errors",
        "details": {"status": [{"description": "Status closed prevents ticket update"}]},
    })


def search_invalid(description: str, status: int = 400) -> ZendeskError:
    """A refusal of the search service, in the Search API's documented error format
    (ListSearchResults, "Errors JSON Format": `error` such as "invalid", and `description`)."""
    return ZendeskError(status, {"error": "invalid", "description": description})


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


# --- the state ------------------------------------------------------------------------------

@dataclass
class AccountSettings:
    """What the account and the API token's owner may do; both on by default."""

    # RedactTicketCommentInAgentWorkspace, "Allowed For": "Agent Workspace must be enabled".
    agent_workspace: bool = True
    # "Agents can delete tickets" (Admin > Settings > Agents): DeleteTicket and
    # BulkDeleteTickets ("Agents with permission to delete tickets"), RedactStringInComment
    # ("the 'Agents can delete tickets' option must be enabled"), RedactCommentAttachment and
    # RedactTicketCommentInAgentWorkspace ("deleting tickets must be enabled for agents").
    # Off models a token owned by an agent without that right.
    can_delete_tickets: bool = True


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
    kind: str = ""  # the kind of write (WRITE_KINDS) it makes
    fails_with: str | None = None  # a test fault: the job ends `failed` with this message
    lost: bool = False  # a test fault: the job answers as if applied, nothing changes


_F = TypeVar("_F", bound=Callable[..., Any])


def _locked(method: _F) -> _F:
    @wraps(method)
    def under_lock(self: ZendeskState, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return under_lock  # type: ignore[return-value]


def _stamp(moment: datetime) -> str:
    return moment.strftime(TIMESTAMP_FORMAT)


def _html(body: str, image_url: str | None = None) -> str:
    paragraph = f"<p>{html.escape(body, quote=False)}</p>"
    if image_url is not None:  # how an inline image sits in a comment's html_body
        paragraph += f'<p><img src="{html.escape(image_url)}" alt="image.png"></p>'
    return f'<div class="zd-comment" dir="auto">{paragraph}</div>'


_NO_EXTRAS = TicketExtras()
# State attributes that a lost write restores (everything a write can change, indexes too).
_STATEFUL = ("users", "identities", "tickets", "comments", "deleted_tickets", "deleted_user_ids",
             "purged_user_ids", "side_conversations", "archived", "_ticket_order", "_user_order",
             "_tickets_of")
TICKET_LISTS = ("requested", "ccd", "assigned")  # a user's ticket lists: /users/{id}/tickets/...


def _listed_in(ticket: Record) -> Iterator[tuple[str, int]]:
    """(list, user id) for each user ticket list (TICKET_LISTS) this ticket belongs in."""
    yield "requested", ticket["requester_id"]
    yield from (("ccd", user_id) for user_id in ticket["collaborator_ids"])
    if ticket["assignee_id"] is not None:
        yield "assigned", ticket["assignee_id"]


def export_terms(query: str) -> list[Term]:
    """The terms of a search export's query, which must not name a type: ExportSearchResults,
    "Searches with type in the query string will result in an error" (status and body are not
    documented: a 400 in the Search API's error format). The type goes in `filter[type]`."""
    terms = parse_query(query)
    if any(t.key == "type" for t in terms):
        raise search_invalid("Invalid search: type is not allowed in the query of an export; "
                             "give it in filter[type]")
    return terms


class ZendeskState:
    """Users, identities, tickets and comments of one Zendesk account, and its bulk jobs."""

    def __init__(self, *, seed: int = 0, job_polls: int = 2,
                 api_email: str = "agent@example.com",
                 settings: AccountSettings | None = None) -> None:
        self.seed = seed
        self.job_polls = job_polls
        self.settings = settings or AccountSettings()
        self.users: dict[int, Record] = {}
        self.identities: dict[int, Record] = {}
        self.tickets: dict[int, Record] = {}  # live and soft-deleted
        self.comments: dict[int, list[Record]] = {}  # ticket id -> its comments, oldest first
        self.side_conversations: dict[int, list[Record]] = {}  # ticket id -> with their events
        self.archived: set[int] = set()  # closed tickets moved to the archive
        self.deleted_tickets: dict[int, Record] = {}  # soft-deleted: id -> deleted_at, actor...
        self.deleted_user_ids: set[int] = set()  # soft-deleted, not yet permanently
        self.purged_user_ids: set[int] = set()  # permanently deleted
        # Indexes (see the module docstring): (created_at, id) of every ticket (live and deleted)
        # and of every user, sorted; list -> user id -> the ids of the tickets in that user ticket
        # list, deleted and archived ones too, ascending (a dict as an ordered set: ticket ids
        # only grow, and a permanent deletion drops one in O(1)).
        self._ticket_order: list[tuple[str, int]] = []
        self._user_order: list[tuple[str, int]] = []
        self._tickets_of: dict[str, dict[int, dict[int, None]]] = {name: {} for name in TICKET_LISTS}
        self.jobs: dict[str, Job] = {}
        self.lost_writes: set[str] = set()  # test fault: these kinds of write do nothing
        self.lost: list[tuple[str, Any]] = []  # (kind, target) of each write that was lost
        self._failing_jobs: list[str] = []  # test fault: messages of the next jobs to fail
        self._lock = threading.RLock()
        self._clock = _CLOCK_START
        self._next = {kind: itertools.count(start) for kind, start in (
            ("user", 1_000_001), ("identity", 2_000_001), ("comment", 3_000_001),
            ("attachment", 4_000_001), ("ticket", 1), ("job", 1), ("audit", 5_000_001),
            ("event", 6_000_001), ("uuid", 1))}
        hired = _stamp(_SEED_START - timedelta(days=90))
        self.api_user_id = self._new_user("Sandbox Admin", api_email, None, None, "admin",
                                          created_at=hired)["id"]
        self.agent_ids = [
            self._new_user(name, email, None, None, "agent", created_at=hired)["id"]
            for name, email in (("Sam Rivera", "sam.rivera@support.example.com"),
                                ("Robin Okafor", "robin.okafor@support.example.com"))
        ]

    # --- test faults ----------------------------------------------------------------------------

    @_locked
    def lose(self, kinds: Iterable[str]) -> None:
        """From now on, the writes of these kinds (see WRITE_KINDS) answer but change nothing."""
        kinds = set(kinds)
        if unknown := kinds - WRITE_KINDS:
            raise ValueError(f"unknown write kinds {sorted(unknown)}; known: {sorted(WRITE_KINDS)}")
        self.lost_writes = kinds

    @_locked
    def fail_next_job(self, message: str) -> None:
        self._failing_jobs.append(message)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the lock across several calls (a route that reads twice sees one state)."""
        with self._lock:
            yield

    @contextmanager
    def _write(self, kind: str, target: Any, *, lost: bool | None = None) -> Iterator[None]:
        """Around one write: when it is to be lost, the state is put back once it has answered."""
        if not (kind in self.lost_writes if lost is None else lost):
            yield
            return
        saved = {name: copy.deepcopy(getattr(self, name)) for name in _STATEFUL}
        try:
            yield
        finally:
            for name, value in saved.items():
                setattr(self, name, value)
        self.lost.append((kind, target))

    def _require_delete_permission(self) -> None:
        if not self.settings.can_delete_tickets:
            raise forbidden()

    # --- building data ----------------------------------------------------------------------

    def seed_people(self, persons: Sequence[Person]) -> None:
        """Each person becomes an end user with 0..6 tickets that mention them; some cc others.

        Some tickets also hold an inline image, a side conversation, a voice comment or custom
        fields (an order number, an email), and about half of the closed ones are archived; these
        extras come from a generator of their own (zendesk_seed), so that the main draws, and
        with them the tickets of a seed, stay what they were before the extras existed.
        """
        rng = random.Random(self.seed)
        extras = random.Random(f"zendesk-extras:{self.seed}")
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
                self._seed_ticket(rng, extras, person, user_id, cc, moment)

    def _seed_ticket(self, rng: random.Random, extras: random.Random, person: Person,
                     user_id: int, cc: tuple[Person, int] | None, moment: datetime) -> None:
        subject, problem = rng.choice(seedtext.SUBJECTS)
        status = rng.choices(STATUSES, weights=(1, 3, 2, 1, 2, 3))[0]
        assignee = None if status == "new" else rng.choice(self.agent_ids)
        first = person.name.split()[0]
        facts = {"name": person.name, "first": first, "email": person.email,
                 "phone": person.phone, "problem": problem}
        comments = [(user_id, rng.choice(seedtext.OPENINGS).format(**facts))]
        if cc is not None:
            cc_person, cc_id = cc
            comments.append((user_id, f"I am adding {cc_person.name} ({cc_person.email}) in copy, "
                                      "they can answer for me."))
            comments.append((cc_id, f"Hello, {cc_person.name} here. Call me on {cc_person.phone} "
                                    "if you need anything."))
        for index in range(rng.randint(0, 3)):
            if assignee is not None and index % 2 == 0:
                comments.append((assignee, rng.choice(seedtext.REPLIES).format(**facts)))
            else:
                comments.append((user_id, rng.choice(seedtext.FOLLOW_UPS).format(**facts)))
        attachment = None
        if rng.random() < 0.2:
            slug = person.email.split("@")[0]
            attachment = rng.choice([(f"passport-{slug}.pdf", "application/pdf"),
                                     (f"photo-{slug}.jpg", "image/jpeg"),
                                     ("receipt.pdf", "application/pdf")])
        plan = seedtext.plan_extras(extras, person, status)
        voice = (seedtext.transcription(person, problem), person.phone) if plan.voice_comment \
            else None
        self._new_ticket(user_id, subject, status, assignee, [cc[1]] if cc else [], comments,
                         attachment, moment, plan, voice=voice)

    def _tick(self) -> str:
        self._clock += timedelta(seconds=1)
        return _stamp(self._clock)

    def _uuid(self, kind: str) -> str:
        """A deterministic UUID (side conversations and their events have UUID ids)."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL,
                              f"zendesk-sandbox:{self.seed}:{kind}:{next(self._next['uuid'])}"))

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
        insort(self._user_order, (created_at, user["id"]))
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
                    attachment: tuple[str, str] | None, created: datetime | None,
                    extras: TicketExtras = _NO_EXTRAS, *,
                    voice: tuple[str, str] | None = None) -> Record:
        """A ticket; `voice` (transcription, caller's number) adds a VoiceComment at the end."""
        count = len(comments) + (voice is not None)
        moment = created or (self._clock + timedelta(seconds=1))
        if created is None:  # a later ticket: the clock moves past its comments
            self._clock = moment + timedelta(minutes=count + len(extras.side_conversations))
        requester = self.users[requester_id]
        ticket_id = next(self._next["ticket"])
        fields = [{"id": field_id, "value": value}
                  for field_id, value in sorted(extras.custom_fields.items())]
        ticket = {
            "id": ticket_id, "subject": subject, "raw_subject": subject,
            "description": comments[0][1], "status": status, "priority": None, "type": None,
            "requester_id": requester_id, "submitter_id": requester_id,
            "assignee_id": assignee_id, "organization_id": None,
            "collaborator_ids": list(collaborator_ids), "email_cc_ids": list(collaborator_ids),
            "tags": [], "is_public": True, "has_incidents": False,
            # Tickets API, JSON format: custom_fields, and fields (the same list, older name)
            "custom_fields": fields, "fields": copy.deepcopy(fields),
            "via": {"channel": "email", "source": {
                "from": {"address": requester["email"], "name": requester["name"]},
                "to": {"address": SUPPORT_ADDRESS, "name": "Support"}, "rel": None}},
            "created_at": _stamp(moment), "updated_at": _stamp(moment),
        }
        self.tickets[ticket_id] = ticket
        insort(self._ticket_order, (ticket["created_at"], ticket_id))
        for name, user_id in _listed_in(ticket):
            self._tickets_of[name].setdefault(user_id, {})[ticket_id] = None
        self.comments[ticket_id] = []
        self.side_conversations[ticket_id] = []
        if extras.archived:
            self.archived.add(ticket_id)
        slug = (requester["email"] or "customer").split("@")[0]
        for index, (author_id, body) in enumerate(comments):
            files = [attachment] if attachment and index == 0 else []
            inline = f"screenshot-{slug}.png" if extras.inline_image and index == 0 else None
            self._new_comment(ticket_id, author_id, body, files, moment + timedelta(minutes=index),
                              inline_image=inline)
        if voice is not None:
            self._new_voice_comment(ticket_id, assignee_id or self.agent_ids[0], *voice,
                                    moment + timedelta(minutes=len(comments)))
        for index, body in enumerate(extras.side_conversations):
            self._new_side_conversation(ticket, assignee_id or self.agent_ids[0], body,
                                        moment + timedelta(minutes=count + index))
        return ticket

    def _new_attachment(self, file_name: str, content_type: str, *, inline: bool) -> Record:
        """An attachment as List Comments shows it (fields as Zendesk answered them in zenpy's
        recorded tests/test_api/betamax/TestAttachmentUpload.test_redact_attachment)."""
        attachment_id = next(self._next["attachment"])
        image = content_type.startswith("image/")
        return {
            "id": attachment_id, "file_name": file_name,
            "content_url": self._content_url(f"{self.seed}:{attachment_id}", file_name),
            "content_type": content_type, "size": 10_000 + attachment_id % 90_000,
            "width": 640 if image else None, "height": 480 if image else None,
            "inline": inline, "deleted": False, "malware_access_override": False,
            "malware_scan_result": "not_scanned", "thumbnails": [],
        }

    @staticmethod
    def _content_url(key: str, file_name: str) -> str:
        token = hashlib.sha1(key.encode()).hexdigest()[:24]
        return f"/attachments/token/{token}/?name={quote(file_name)}"

    def _new_comment(self, ticket_id: int, author_id: int, body: str,
                     files: Iterable[tuple[str, str]], moment: datetime, *,
                     inline_image: str | None = None) -> Record:
        attachments = [self._new_attachment(name, kind, inline=False) for name, kind in files]
        image_url = None
        if inline_image is not None:  # listed with include_inline_images=true only
            image = self._new_attachment(inline_image, "image/png", inline=True)
            attachments.append(image)
            image_url = image["content_url"]
        comment = {"id": next(self._next["comment"]), "type": "Comment", "author_id": author_id,
                   "body": body, "html_body": _html(body, image_url), "plain_body": body,
                   "public": True, "attachments": attachments, "created_at": _stamp(moment)}
        self.comments[ticket_id].append(comment)
        return comment

    def _new_voice_comment(self, ticket_id: int, agent_id: int, transcription: str,
                           caller: str, moment: datetime) -> Record:
        """A call logged on the ticket: Ticket Comments, JSON format, `type` "VoiceComment" with
        `data` as "Adding voice comments to tickets" lists it (from, to, recording_url,
        started_at, call_duration, answered_by_id, transcription_text, location). Zendesk keeps
        only a link to the recording, so `recording_url` points outside (a reserved domain)."""
        number = next(self._next["comment"])
        duration = 60 + number % 240
        started = _stamp(moment)
        body = (f"Inbound call from {caller}\nTime of call: {started}\n"
                f"Length of phone call: {duration} seconds\nTranscription: {transcription}")
        comment = {
            "id": number, "type": "VoiceComment", "author_id": agent_id, "body": body,
            "html_body": _html(body), "plain_body": body, "public": False, "trusted": True,
            "attachments": [], "formatted_from": caller,
            "formatted_to": seedtext.SUPPORT_PHONE, "transcription_visible": True,
            "data": {"from": caller, "to": seedtext.SUPPORT_PHONE,
                     "recording_url": f"https://recordings.example.com/calls/{number}.mp3",
                     "started_at": started, "call_duration": duration,
                     "answered_by_id": agent_id, "transcription_text": transcription,
                     "location": "Springfield, United States"},
            "created_at": started,
        }
        self.comments[ticket_id].append(comment)
        return comment

    def _participant(self, user_id: int | None, name: str, email: str) -> Record:
        return {"user_id": user_id, "name": name, "email": email}

    def _new_side_conversation(self, ticket: Record, agent_id: int, body: str,
                               moment: datetime) -> Record:
        """A side conversation to an outsider with its first message (Side Conversations and
        Side Conversation Events, JSON format)."""
        agent = self.users[agent_id]
        sender = self._participant(agent_id, agent["name"], agent["email"])
        outsider = self._participant(None, "Warehouse team", seedtext.PARTNER_ADDRESS)
        stamp = _stamp(moment)
        conversation_id = self._uuid("side_conversation")
        subject = f"Re: {ticket['subject']}"
        message = {"subject": subject, "preview_text": body[:100], "body": body,
                   "html_body": _html(body), "from": sender, "to": [outsider],
                   "external_ids": {}}
        event = {"id": self._uuid("side_conversation_event"),
                 "side_conversation_id": conversation_id, "ticket_id": ticket["id"],
                 "actor": sender, "type": "create", "via": "email", "created_at": stamp,
                 "message": message, "updates": {}}
        conversation = {
            "id": conversation_id, "ticket_id": ticket["id"], "subject": subject,
            "preview_text": body[:100], "state": "open", "participants": [sender, outsider],
            "external_ids": {}, "created_at": stamp, "updated_at": stamp,
            "message_added_at": stamp, "state_updated_at": stamp, "events": [event],
        }
        self.side_conversations[ticket["id"]].append(conversation)
        return conversation

    @_locked
    def add_user(self, name: str, email: str | None = None, phone: str | None = None,
                 external_id: str | None = None, role: str = "end-user") -> Record:
        return copy.deepcopy(self._new_user(name, email, phone, external_id, role))

    @_locked
    def add_ticket(self, requester_id: int, *, subject: str, description: str,
                   status: str = "open", collaborator_ids: Sequence[int] = (),
                   assignee_id: int | None = None, comments: Sequence[str] = (),
                   attachment: bool = False, archived: bool = False,
                   inline_image: bool = False, side_conversations: Sequence[str] = (),
                   voice_comment: bool = False,
                   custom_fields: dict[int, Any] | None = None) -> Record:
        """A ticket whose first comment is `description`; `comments` follow, by the assignee.

        `archived` (closed tickets only) moves it to the archive; `inline_image` puts an inline
        image in the first comment; each of `side_conversations` opens a side conversation with
        that message; `voice_comment` adds a call whose transcription repeats the description;
        `custom_fields` sets {field id: value}.
        """
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        if archived and status != "closed":
            raise ValueError("only closed tickets are archived (About ticket archiving)")
        for user_id in (requester_id, assignee_id, *collaborator_ids):
            if user_id is not None and user_id not in self.users:
                raise ValueError(f"no user {user_id}")
        replier = assignee_id or requester_id
        requester = self.users[requester_id]
        extras = TicketExtras(archived=archived, inline_image=inline_image,
                              side_conversations=tuple(side_conversations),
                              voice_comment=voice_comment,
                              custom_fields=dict(custom_fields or {}))
        voice = (description, requester["phone"] or "+15550000000") if voice_comment else None
        ticket = self._new_ticket(
            requester_id, subject, status, assignee_id, collaborator_ids,
            [(requester_id, description), *((replier, body) for body in comments)],
            ("attachment.pdf", "application/pdf") if attachment else None, None, extras,
            voice=voice)
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
            matcher = Matcher(self)
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
        with self._write("update_user", user_id):
            return copy.deepcopy(self._update_user(user_id, changes))

    @_locked
    def update_users_job(self, changes_by_id: dict[int, Record]) -> Record:
        def update(user_id: int) -> Record:
            return self._update_user(user_id, changes_by_id[user_id])

        return self._start_job("Bulk Update Users Job", list(changes_by_id),
                               self._job_step("update", "Updated", update))

    def _soft_delete_user(self, user_id: int) -> Record:
        user = self._active_user(user_id)
        unclosed = [i for i in self._tickets_of["requested"].get(user_id, ())
                    if i not in self.deleted_tickets and self.tickets[i]["status"] != "closed"]
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
        with self._write("delete_user", user_id):
            return copy.deepcopy(self._soft_delete_user(user_id))

    @_locked
    def destroy_users_job(self, ids: list[int]) -> Record:
        return self._start_job("Bulk Delete Users Job", ids,
                               self._job_step("delete", "Deleted", self._soft_delete_user),
                               kind="delete_users_job")

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
        with self._write("purge_user", user_id):
            return self._purge_user(user_id)

    def _purge_user(self, user_id: int) -> Record:
        if user_id not in self.deleted_user_ids:
            raise not_found()
        user = self.users[user_id]
        answer = {**self._deleted_view(user_id), "email": None, "phone": None}
        for identity_id in [i for i, rec in self.identities.items() if rec["user_id"] == user_id]:
            del self.identities[identity_id]
        user.update(name=DELETED_USER_NAME, email=None, phone=None, external_id=None, notes="",
                    details="", tags=[], user_fields={}, verified=False, updated_at=self._tick())
        for ticket_id in self._tickets_of["requested"].get(user_id, ()):  # deleted ones too
            self.tickets[ticket_id]["via"]["source"]["from"].update(address=None,
                                                                    name=DELETED_USER_NAME)
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
        with self._write("update_identity", identity_id):
            return self._update_identity(user_id, identity_id, changes)

    def _update_identity(self, user_id: int, identity_id: int, changes: Record) -> Record:
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

    def _live(self, ticket: Record) -> bool:
        return ticket["id"] not in self.deleted_tickets

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

    def _closed(self, ticket_id: int) -> bool:
        """Archived tickets are closed ones ("About ticket archiving")."""
        return self.tickets[ticket_id]["status"] == "closed" or ticket_id in self.archived

    @_locked
    def ticket(self, ticket_id: int) -> Record:
        """Archived tickets too: "Direct access ... Available" ("About ticket archiving")."""
        return copy.deepcopy(self._live_ticket(ticket_id))

    @_locked
    def tickets_many(self, ids: Iterable[int]) -> list[Record]:
        """Stand-in choice: archived tickets are shown, as by `GET /tickets/{id}` (the Show
        Multiple Tickets reference says nothing of archived tickets)."""
        return [copy.deepcopy(self.tickets[i]) for i in ids
                if i in self.tickets and i not in self.deleted_tickets]

    @_locked
    def user_ticket_ids(self, user_id: int, relation: str) -> list[int]:
        """The ids, ascending, of a user's `requested`, `ccd` or `assigned` tickets (TICKET_LISTS),
        deleted and archived ones left out; a route pages them and copies its page with
        `tickets_many`.

        These lists are the Tickets API's List Tickets; "Archived tickets are not included in the
        response" (List Tickets; "About ticket archiving").
        """
        self._user(user_id)
        return [i for i in self._tickets_of[relation].get(user_id, ())
                if i not in self.deleted_tickets and i not in self.archived]

    @_locked
    def ticket_comments(self, ticket_id: int, *, include_inline_images: bool = False) -> list[Record]:
        """Archived tickets' comments too. Inline images are in `attachments` only when asked:
        ListTicketComments, `include_inline_images`: "Default is false. When true, inline images
        are also listed as attachments in the response"."""
        self._live_ticket(ticket_id)
        comments = copy.deepcopy(self.comments[ticket_id])
        if not include_inline_images:
            for comment in comments:
                comment["attachments"] = [a for a in comment["attachments"] if not a["inline"]]
        return comments

    def _attachments(self) -> Iterator[tuple[Record, Record]]:
        """(comment, attachment) of every ticket that is not deleted."""
        for ticket in self._live_tickets():
            for comment in self.comments[ticket["id"]]:
                for attachment in comment["attachments"]:
                    yield comment, attachment

    @_locked
    def attachment(self, token: str) -> Record | None:
        """The attachment with this download token, if its ticket is still there."""
        prefix = f"/attachments/token/{token}/"
        for _, attachment in self._attachments():
            if attachment["content_url"].startswith(prefix):
                return copy.deepcopy(attachment)
        return None

    @_locked
    def attachment_by_id(self, attachment_id: int) -> Record:
        """ShowAttachment (`GET /attachments/{id}`)."""
        for _, attachment in self._attachments():
            if attachment["id"] == attachment_id:
                return copy.deepcopy(attachment)
        raise not_found()

    def _after_change(self, ticket_id: int, comment: Record | None = None) -> None:
        ticket = self.tickets[ticket_id]
        if comment is not None and self.comments[ticket_id][0] is comment:
            ticket["description"] = comment["body"]  # the description is the first comment
        ticket["updated_at"] = self._tick()

    @_locked
    def redact_comment(self, ticket_id: int, comment_id: int, text: str) -> Record:
        """RedactStringInComment: every occurrence of `text` becomes ▇s.

        "Once a ticket is closed, you can no longer redact strings from its comments" (archived
        tickets are closed), and "the 'Agents can delete tickets' option must be enabled".
        Stand-in choice: a voice comment's transcription is redacted with its body.
        """
        comment = self._comment(ticket_id, comment_id)
        self._require_delete_permission()
        if not isinstance(text, str) or not text:
            raise bad_request("InvalidValue", "text is required: the string to redact")
        if self._closed(ticket_id):
            raise record_invalid(
                "base", "TicketClosed",
                "The ticket is closed: strings can no longer be redacted from its comments "
                "with this endpoint (use PUT /api/v2/comment_redactions/{id})",
            )
        with self._write("redact_comment", (ticket_id, comment_id)):
            mark = REDACTION_MARK * len(text)
            comment["body"] = comment["body"].replace(text, mark)
            comment["plain_body"] = comment["plain_body"].replace(text, mark)
            comment["html_body"] = comment["html_body"].replace(html.escape(text, quote=False),
                                                                mark)
            if "data" in comment and comment["data"].get("transcription_text"):
                data = comment["data"]
                data["transcription_text"] = data["transcription_text"].replace(text, mark)
            self._after_change(ticket_id, comment)
            return copy.deepcopy(comment)

    def _replace_attachment(self, comment: Record, attachment: Record) -> None:
        """The attachment becomes an empty "redacted.txt" (RedactCommentAttachment: "Once
        removed from a comment, the attachment is replaced with an empty 'redacted.txt' file");
        its old content URL no longer serves anything. Stand-in choices: the placeholder keeps the
        attachment's id, and an inline image's <img> in html_body points at the placeholder."""
        old_url = attachment["content_url"]
        new_url = self._content_url(f"{self.seed}:{attachment['id']}:redacted", REDACTED_FILE_NAME)
        attachment.update(file_name=REDACTED_FILE_NAME, content_type="text/plain", size=0,
                          width=None, height=None, content_url=new_url, thumbnails=[])
        comment["html_body"] = comment["html_body"].replace(html.escape(old_url), new_url)

    @_locked
    def redact_attachment(self, ticket_id: int, comment_id: int, attachment_id: int) -> Record:
        """RedactCommentAttachment; answers the attachment as it was before the redaction, as
        Zendesk answered in zenpy's recording (TestAttachmentUpload.test_redact_attachment).

        Inline images too (their ids come with `include_inline_images`). "Once a ticket is
        closed, redacting its attachments is no longer possible"; allowed for agents when
        deleting tickets is enabled for them.
        """
        comment = self._comment(ticket_id, comment_id)
        attachment = next((a for a in comment["attachments"] if a["id"] == attachment_id), None)
        if attachment is None:
            raise not_found()
        self._require_delete_permission()
        if self._closed(ticket_id):
            raise record_invalid(
                "base", "TicketClosed",
                "The ticket is closed: its attachments can no longer be redacted")
        answer = copy.deepcopy(attachment)
        with self._write("redact_attachment", (ticket_id, comment_id, attachment_id)):
            self._replace_attachment(comment, attachment)
            self._after_change(ticket_id, comment)
        return answer

    @_locked
    def redact_comment_html(self, comment_id: int, ticket_id: int, html_body: str | None,
                            external_attachment_urls: Sequence[str] | None = None) -> Record:
        """RedactTicketCommentInAgentWorkspace (`PUT /comment_redactions/{id}`).

        `html_body` is the comment's html_body with `<redact>` tags around what goes (each
        character becomes ▇) and a `redact` attribute on elements that go ("The `redact`
        attribute only redacts the tag": an inline image's <img redact> goes, and so does its
        attachment); `external_attachment_urls` lists content URLs of the comment's attachments
        to redact. Works on closed and archived tickets; needs the agent workspace and, for
        agents, deleting tickets enabled. Both body fields are optional: with neither, nothing
        changes and the comment is answered (as Zendesk answered a body without them in zenpy's
        recording TestCommentRedaction.test_comment_redact).
        """
        comment = self._comment(ticket_id, comment_id)
        if not self.settings.agent_workspace or not self.settings.can_delete_tickets:
            raise forbidden()
        urls = list(external_attachment_urls or [])
        if html_body is not None and not isinstance(html_body, str):
            raise bad_request("InvalidValue", "html_body must be a string")
        by_url = {a["content_url"]: a for a in comment["attachments"]}
        if unknown := [u for u in urls if u not in by_url]:  # stand-in choice: refuse, not ignore
            raise record_invalid("external_attachment_urls", "InvalidValue",
                                 f"External attachment urls: not attachments of this comment: "
                                 f"{', '.join(unknown)}")
        if html_body is not None and _strip_redactions(html_body) != comment["html_body"]:
            raise record_invalid(
                "html_body", "InvalidValue",
                "Html body: must be the comment's html_body with <redact> tags added")
        with self._write("comment_redaction", (ticket_id, comment_id)):
            if html_body is not None:
                self._apply_redact_tags(comment, html_body, by_url)
            for url in urls:
                self._replace_attachment(comment, by_url[url])
            self._after_change(ticket_id, comment)
            return copy.deepcopy(comment)

    def _apply_redact_tags(self, comment: Record, html_body: str,
                           by_url: dict[str, Record]) -> None:
        secrets = [html.unescape(s) for s in re.findall(r"<redact>(.*?)</redact>", html_body, re.S)]
        result = re.sub(r"<redact>(.*?)</redact>",
                        lambda m: REDACTION_MARK * len(html.unescape(m.group(1))), html_body,
                        flags=re.S)
        while (element := _REDACT_ELEMENT.search(result)) is not None:
            name = element["name"].lower()
            src = re.search(r'src="([^"]*)"', element.group(0)) if name == "img" else None
            image = by_url.get(html.unescape(src.group(1))) if src else None
            if image is not None:  # an inline image goes with its attachment
                self._replace_attachment(comment, image)
            result = result[:element.start()] + result[element.end():]
            if name not in _VOID_ELEMENTS:  # the tag goes, what it encloses stays
                closing = re.compile(rf"</{name}\s*>", re.I).search(result, element.start())
                if closing is not None:
                    result = result[:closing.start()] + result[closing.end():]
        comment["html_body"] = result
        for secret in filter(None, secrets):
            for key in ("body", "plain_body"):
                comment[key] = comment[key].replace(secret, REDACTION_MARK * len(secret))

    @_locked
    def update_ticket(self, ticket_id: int, changes: Record) -> Record:
        """UpdateTicket (`PUT /tickets/{id}` `{"ticket": {...}}`): subject, status (any of the
        six, "closed" included: Tickets API, JSON format, `status` "Allowed values are new,
        open, pending, hold, solved, closed"), custom_fields / fields, tags, priority, type.

        A closed ticket, archived ones included, refuses every change ("Status closed prevents
        ticket update"). Answers the ticket and the audit of the change (TicketUpdateResponse).
        """
        ticket = self._live_ticket(ticket_id)
        if not isinstance(changes, dict):
            raise bad_request("InvalidValue", "ticket must be an object")
        if self._closed(ticket_id):
            raise closed_prevents_update()
        status = changes.get("status", ticket["status"])
        if status not in STATUSES:
            raise record_invalid("status", "InvalidValue", f"Status: {status} is not valid")
        fields = changes.get("custom_fields", changes.get("fields"))
        if fields is not None and not (isinstance(fields, list) and all(
                isinstance(f, dict) and isinstance(f.get("id"), int) for f in fields)):
            raise bad_request("InvalidValue", 'custom_fields must be a list of {"id", "value"}')
        with self._write("update_ticket", ticket_id):
            events: list[Record] = []

            def change(key: str, value: Any) -> None:
                if ticket[key] != value:
                    events.append({"id": next(self._next["event"]), "type": "Change",
                                   "field_name": key, "value": value,
                                   "previous_value": ticket[key]})
                    ticket[key] = value

            for key in ("subject", "status", "priority", "type", "tags"):
                if key in changes:
                    change(key, copy.deepcopy(changes[key]))
            if "subject" in changes:
                ticket["raw_subject"] = ticket["subject"]
            for item in fields or []:
                current = {f["id"]: f for f in ticket["custom_fields"]}
                previous = current.get(item["id"], {}).get("value")
                if previous != item.get("value"):
                    events.append({"id": next(self._next["event"]), "type": "Change",
                                   "field_name": str(item["id"]), "value": item.get("value"),
                                   "previous_value": previous})
                current[item["id"]] = {"id": item["id"], "value": item.get("value")}
                ticket["custom_fields"] = [current[i] for i in sorted(current)]
                ticket["fields"] = copy.deepcopy(ticket["custom_fields"])
            self._after_change(ticket_id)
            audit = {"id": next(self._next["audit"]), "ticket_id": ticket_id,
                     "created_at": ticket["updated_at"], "author_id": self.api_user_id,
                     "metadata": {"system": {}, "custom": {}}, "events": events,
                     "via": {"channel": "api", "source": {"from": {}, "to": {}, "rel": None}}}
            return {"ticket": copy.deepcopy(ticket), "audit": audit}

    @_locked
    def ticket_side_conversations(self, ticket_id: int) -> list[Record]:
        """Side Conversations API, List Side Conversations (without their events)."""
        self._live_ticket(ticket_id)
        return [{k: copy.deepcopy(v) for k, v in c.items() if k != "events"}
                for c in self.side_conversations[ticket_id]]

    def _side_conversation(self, ticket_id: int, conversation_id: str) -> Record:
        self._live_ticket(ticket_id)
        for conversation in self.side_conversations[ticket_id]:
            if conversation["id"] == conversation_id:
                return conversation
        raise not_found()

    @_locked
    def side_conversation(self, ticket_id: int, conversation_id: str) -> Record:
        conversation = self._side_conversation(ticket_id, conversation_id)
        return {k: copy.deepcopy(v) for k, v in conversation.items() if k != "events"}

    @_locked
    def side_conversation_events(self, ticket_id: int, conversation_id: str) -> list[Record]:
        """Side Conversation Events: the messages, oldest first."""
        return copy.deepcopy(self._side_conversation(ticket_id, conversation_id)["events"])

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
        """DeleteTicket; archived tickets too. Allowed for "Agents with permission to delete
        tickets"."""
        self._live_ticket(ticket_id)
        self._require_delete_permission()
        with self._write("delete_ticket", ticket_id):
            self._soft_delete_ticket(ticket_id)

    @_locked
    def destroy_tickets_job(self, ids: list[int]) -> Record:
        """BulkDeleteTickets: "Agents with permission to delete tickets", else 403 at once."""
        self._require_delete_permission()
        return self._start_job("Bulk Delete Tickets Job", ids,
                               self._job_step("delete", "Deleted", self._soft_delete_ticket),
                               kind="delete_tickets_job")

    @_locked
    def deleted_ticket_list(self) -> list[Record]:
        """ListDeletedTickets: "Archived tickets are not included in the results"."""
        return [{"id": i, "subject": self.tickets[i]["subject"], **copy.deepcopy(meta)}
                for i, meta in sorted(self.deleted_tickets.items()) if i not in self.archived]

    def _purge_ticket(self, ticket_id: int) -> None:
        if ticket_id not in self.deleted_tickets:
            raise not_found()
        ticket = self.tickets[ticket_id]
        del self._ticket_order[bisect_left(self._ticket_order, (ticket["created_at"], ticket_id))]
        for name, user_id in _listed_in(ticket):
            self._tickets_of[name][user_id].pop(ticket_id, None)  # a user cc'd twice: once
        del self.tickets[ticket_id], self.comments[ticket_id], self.deleted_tickets[ticket_id]
        del self.side_conversations[ticket_id]
        self.archived.discard(ticket_id)

    @_locked
    def purge_tickets_job(self, ids: list[int], *, must_exist: bool = False) -> Record:
        """Permanent deletion of soft-deleted tickets; `must_exist`: 404 now if one is not."""
        if must_exist and any(i not in self.deleted_tickets for i in ids):
            raise not_found()
        return self._start_job("Bulk Permanently Delete Tickets Job", ids,
                               self._job_step("delete", "Deleted", self._purge_ticket),
                               kind="purge_tickets_job")

    # --- search ---------------------------------------------------------------------------------

    @_locked
    def search(self, query: str, *, sort_by: str = "created_at", descending: bool = False,
               start: int = 0, size: int | None = None) -> tuple[list[Record], int]:
        """ListSearchResults: the results from `start` on (at most `size`), each with its
        `result_type`, and how many match in all. Tickets and users matching every term;
        archived tickets too ("About ticket archiving": search, "Available"). `type:ticket` /
        `type:user` restrict the kinds. Only the page is copied.
        """
        terms = parse_query(query)
        kinds = {t.value.lower() for t in terms if t.key == "type" and not t.negated}
        kinds = kinds or {"ticket", "user"}
        rest = [t for t in terms if t.key != "type"]
        matcher = Matcher(self)
        found: list[tuple[str, Record]] = []  # (result_type, the stored record)
        if "ticket" in kinds:
            found += [("ticket", t) for t in self.tickets.values()
                      if self._live(t) and all(matcher.ticket(t, term) for term in rest)]
        if "user" in kinds:
            found += [("user", u) for u in self.users.values()
                      if self._listed(u) and all(matcher.user(u, term) for term in rest)]
        sort_key = sort_by if sort_by in ("created_at", "updated_at") else "created_at"
        found.sort(key=lambda f: (f[1][sort_key], f[0], f[1]["id"]), reverse=descending)
        end = len(found) if size is None else start + size
        return ([{**copy.deepcopy(record), "result_type": kind} for kind, record in found[start:end]],
                len(found))

    @_locked
    def search_export(self, terms: Sequence[Term], kind: str, *, after: tuple[str, int] | None,
                      size: int) -> tuple[list[Record], bool]:
        """ExportSearchResults: the first `size` records of type `kind` matching every term (see
        `export_terms`) that come after the position `after` in (created_at, id) order, as
        copies with their `result_type`, and whether more follow. Walks the records in that order
        from `after` and stops at the first match past the page, so a page costs its own records
        and the non-matching ones between them, not the whole account.
        """
        matcher = Matcher(self)
        if kind == "ticket":
            order, records, match, listed = (self._ticket_order, self.tickets, matcher.ticket,
                                             self._live)
        elif kind == "user":
            order, records, match, listed = self._user_order, self.users, matcher.user, self._listed
        else:  # organizations and groups: this stand-in has none
            return [], False
        page: list[Record] = []
        for position in range(bisect_right(order, after) if after else 0, len(order)):
            record = records[order[position][1]]
            if listed(record) and all(match(record, term) for term in terms):
                if len(page) == size:
                    return self._results(page, kind), True
                page.append(record)
        return self._results(page, kind), False

    @staticmethod
    def _results(records: list[Record], kind: str) -> list[Record]:
        return [{**copy.deepcopy(r), "result_type": kind} for r in records]

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

    def _start_job(self, job_type: str, ids: list[int], run: Callable[[int], Record], *,
                   kind: str = "") -> Record:
        number = next(self._next["job"])
        job_id = hashlib.sha1(f"zendesk-sandbox:{self.seed}:{number}".encode()).hexdigest()[:32]
        job = Job(job_id, job_type, ids, run, kind=kind,
                  fails_with=self._failing_jobs.pop(0) if self._failing_jobs else None,
                  lost=kind in self.lost_writes)
        self.jobs[job_id] = job
        answer = self._job_view(job)
        if self.job_polls <= 0:
            self._complete_through(job)
        return answer

    def _complete_through(self, job: Job) -> None:
        """Complete `job` and, first, every job queued before it that is still open."""
        for queued in self.jobs.values():
            if queued.status not in ("completed", "failed"):
                self._complete(queued)
            if queued is job:
                return

    def _complete(self, job: Job) -> None:
        done_at = self._tick().replace("T", " ").replace("Z", " +0000")
        if job.fails_with is not None:  # a test fault: no effect, no results
            job.status, job.message = "failed", job.fails_with
            return
        with self._write(job.kind, job.id, lost=job.lost):
            job.results = [job.run(record_id) for record_id in job.ids]
        job.status = "completed"
        job.message = f"Completed at {done_at}"

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
        if job.status not in ("completed", "failed"):
            job.reads += 1
            if job.reads >= self.job_polls:
                self._complete_through(job)
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
        stamps = ("created_at", "updated_at", "message_added_at", "state_updated_at")

        def timeless(record: Record) -> Record:
            return {k: v for k, v in record.items() if k not in stamps}

        return copy.deepcopy({
            "users": [timeless(u) for _, u in sorted(self.users.items())],
            "identities": [timeless(i) for _, i in sorted(self.identities.items())],
            "tickets": [timeless(t) for _, t in sorted(self.tickets.items())],
            "comments": [{"ticket_id": ticket_id, **timeless(c)}
                         for ticket_id, comments in sorted(self.comments.items())
                         for c in comments],
            "side_conversations": [
                {**timeless(c), "events": [timeless(e) for e in c["events"]]}
                for _, conversations in sorted(self.side_conversations.items())
                for c in conversations],
            "archived_tickets": sorted(self.archived),
            "deleted_tickets": sorted(self.deleted_tickets),
            "deleted_users": sorted(self.deleted_user_ids),
            "permanently_deleted_users": sorted(self.purged_user_ids),
            "suspended_users": sorted(i for i, u in self.users.items() if u["suspended"]),
        })


_VOID_ELEMENTS = {"img", "br", "hr", "input", "source"}
# An element carrying the `redact` attribute (comment_redactions): `<img ... redact>`, `<a redact>`
_REDACT_ELEMENT = re.compile(
    r'<(?P<name>[a-zA-Z][a-zA-Z0-9]*)(?P<attrs>[^>]*?)\sredact(?:="(?:redact)?")?(?P<rest>[^>]*)>')


def _strip_redactions(html_body: str) -> str:
    """The html_body a comment_redactions request started from: without <redact> tags and
    without `redact` attributes."""
    text = re.sub(r"</?redact>", "", html_body)
    return _REDACT_ELEMENT.sub(lambda m: f"<{m['name']}{m['attrs']}{m['rest']}>", text)
