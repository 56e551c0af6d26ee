"""The data and rules of the Genesys Cloud GDPR stand-in: subjects, their data, GDPR requests.

Pure Python behind one lock; `genesys.py` puts the HTTP surface (and the results storage) in
front of it. Every answer is a fresh JSON-able copy, so callers can serialise it after the lock is
released. The references named in brackets are listed in `genesys.py`'s docstring.

How the rules read the references, and what they leave open (marked "not documented"):
- Search (`GET /api/v2/gdpr/subjects`) is a whole-value match, case-insensitive: a name must be
  the full name, an address the full address (commas and spaces do not count), a phone number
  matches on its digits (a national number matches its E.164 form when at least 10 digits agree).
  Not documented: the matching rules are ours; the search types are the SDK's [SDK-models].
- A request's subject identifies data by ANY of its identifiers, as the real service searches
  each term: an export or delete "by name" reaches everyone with that name. Send the strongest
  identifiers only (email, phone, external id), as the Genesys forum advises [Contract].
- Requests are processed asynchronously [Contract] and "it can take several days to access the
  data from a request" [Days]: a request moves by the org's clock, not by being read. It is due
  `request_seconds` after it was submitted; before that it is INITIATED for the first tenth of
  the time, SEARCHING until half, then DELETING/UPDATING/FINALIZING (the statuses of
  [SDK-models]; the split of the time between them is not documented, it is ours). At the due
  time it becomes COMPLETED and its effects apply, whether or not anyone reads it; or it ends in
  ERROR with no effect, a status [SDK-models] lists, for the requests `fail_next` marks (what
  makes a real request fail is not documented). `request_seconds` is 0 by default: a request is
  COMPLETED from its first read after the POST, so simulation mode (whose engine runs on its own
  clock, which the stand-in cannot see) finishes promptly. `clock` (seconds since the epoch) is
  the rehearsal clock: tests give the stand-in and the connector the same one and move it by
  days.
- An export's results are archive files [SDK-models: resultsUrls "if multiple archive files
  created"]: one zip per subject found (one with no records when nothing matched), holding JSON.
  The archive's inner layout is not documented; ours is `request.json` and `records.json` in a
  folder named after the request.
"""

from __future__ import annotations

import copy
import io
import json
import random
import re
import secrets
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from services.sandbox.people import Person

SEARCH_TYPES = ("NAME", "ADDRESS", "PHONE", "EMAIL", "TWITTER", "INSTAGRAM", "FACEBOOK",
                "APPLE_MESSAGES", "WHATSAPP", "EXTERNAL_ID")
TERM_TYPES = SEARCH_TYPES  # ReplacementTerm.type takes the same values in the SDK
SOCIAL_TYPES = ("TWITTER", "INSTAGRAM", "FACEBOOK", "APPLE_MESSAGES", "WHATSAPP")
REQUEST_TYPES = ("GDPR_EXPORT", "GDPR_UPDATE", "GDPR_DELETE")
WORK_STAGE = {"GDPR_EXPORT": "FINALIZING", "GDPR_UPDATE": "UPDATING", "GDPR_DELETE": "DELETING"}
INITIATED, SEARCHING, COMPLETED, ERROR = "INITIATED", "SEARCHING", "COMPLETED", "ERROR"
FINAL = (COMPLETED, ERROR)
# The permission each call needs: "Requires ANY permissions" in [SDK-api-doc].
SUBJECT_VIEW, REQUEST_ADD, REQUEST_VIEW = "gdpr:subject:view", "gdpr:request:add", "gdpr:request:view"
ALL_PERMISSIONS = (REQUEST_ADD, REQUEST_VIEW, SUBJECT_VIEW)

# Seed data lives in a fixed past, so the same seed always yields the same timestamps.
EPOCH = datetime(2024, 1, 8, 9, 0, tzinfo=UTC)
CHANNELS = ("voice", "chat", "email", "message")
AGENTS = ("Jordan Avery", "Sam Okafor", "Priya Raman", "Lukas Berg", "Ana Sousa", "Mei Tanaka")
CUSTOMER_LINES = (
    "Hi, this is {name}.",
    "My email address is {email}.",
    "You can call me back on {phone}.",
    "My address is {address}.",
    "My customer number is {external_id}.",
)
AGENT_LINES = (
    "Thanks {name}, I have found your account.",
    "Thank you for contacting us, {name}. How can I help?",
    "I have noted that, {name}. Anything else?",
)


class GenesysError(Exception):
    """An answer in Genesys' error format: the HTTP layer renders status, code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def bad_request(message: str = "Invalid data") -> GenesysError:
    return GenesysError(400, "bad.request", message)


def iso(moment: datetime) -> str:
    """Genesys' timestamp format: UTC with milliseconds and a Z."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Matching -------------------------------------------------------------------------------------

def _fold(value: str) -> str:
    return " ".join(value.split()).casefold()


def _address_key(value: str) -> str:
    return " ".join(re.split(r"[\s,]+", value.strip())).casefold()


def _digits(value: str) -> str:
    return "".join(c for c in value if c.isdigit())


def _handle(value: str) -> str:
    return value.strip().lstrip("@").casefold()


def phones_match(a: str, b: str) -> bool:
    da, db = _digits(a), _digits(b)
    if not da or not db:
        return False
    short, long = sorted((da, db), key=len)
    return da == db or (len(short) >= 10 and long.endswith(short))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


# Records ----------------------------------------------------------------------------------------

@dataclass
class SubjectRecord:
    """One person known to the org, with the data the GDPR API reaches for them."""

    key: str  # internal, stable: orders snapshots
    name: str
    emails: list[str]
    phones: list[str]
    addresses: list[str]
    external_id: str
    external_contact_id: str
    user_id: str | None = None  # agents are users of the org
    twitter: str | None = None  # screen name, without "@"
    dialer_contact: dict[str, str] | None = None
    journey_customer: dict[str, str] | None = None
    conversations: list[dict[str, Any]] = field(default_factory=list)
    recordings: list[dict[str, Any]] = field(default_factory=list)
    external_contact: dict[str, Any] = field(default_factory=dict)

    def as_subject(self) -> dict[str, Any]:
        """The GDPRSubject the search answers with (only what is known)."""
        subject: dict[str, Any] = {"name": self.name}
        if self.user_id:
            subject["userId"] = self.user_id
        subject["externalContactId"] = self.external_contact_id
        if self.dialer_contact:
            subject["dialerContactId"] = dict(self.dialer_contact)
        if self.journey_customer:
            subject["journeyCustomer"] = dict(self.journey_customer)
        if self.twitter:
            subject["socialHandle"] = {"type": "TWITTER", "value": self.twitter}
        subject["externalId"] = self.external_id
        subject["addresses"] = list(self.addresses)
        subject["phoneNumbers"] = list(self.phones)
        subject["emailAddresses"] = list(self.emails)
        return subject

    def as_data(self) -> dict[str, Any]:
        """Everything held about the subject: what an export contains."""
        return {
            "subject": self.as_subject(),
            "externalContact": copy.deepcopy(self.external_contact),
            "conversations": copy.deepcopy(self.conversations),
            "recordings": copy.deepcopy(self.recordings),
        }

    def matches(self, search_type: str, value: str) -> bool:
        if search_type == "NAME":
            return _fold(self.name) == _fold(value)
        if search_type == "EMAIL":
            return any(_fold(e) == _fold(value) for e in self.emails)
        if search_type == "PHONE":
            return any(phones_match(p, value) for p in self.phones)
        if search_type == "ADDRESS":
            return any(_address_key(a) == _address_key(value) for a in self.addresses)
        if search_type == "TWITTER":
            return bool(self.twitter) and _handle(self.twitter or "") == _handle(value)
        if search_type == "EXTERNAL_ID":
            return _fold(self.external_id) == _fold(value)
        return False  # INSTAGRAM, FACEBOOK, APPLE_MESSAGES, WHATSAPP: no such data here

    def identified_by(self, subject: dict[str, Any]) -> bool:
        """Whether any identifier of a request's (cleaned) subject points at this record."""
        checks: list[bool] = []
        if "name" in subject:
            checks.append(self.matches("NAME", subject["name"]))
        if "externalId" in subject:
            checks.append(self.matches("EXTERNAL_ID", subject["externalId"]))
        checks += [self.matches("EMAIL", v) for v in subject.get("emailAddresses", [])]
        checks += [self.matches("PHONE", v) for v in subject.get("phoneNumbers", [])]
        checks += [self.matches("ADDRESS", v) for v in subject.get("addresses", [])]
        if "userId" in subject:
            checks.append(self.user_id == subject["userId"])
        if "externalContactId" in subject:
            checks.append(self.external_contact_id == subject["externalContactId"])
        if "socialHandle" in subject:
            handle = subject["socialHandle"]
            checks.append(self.matches(handle.get("type", ""), handle.get("value", "")))
        for key, held in (("dialerContactId", self.dialer_contact),
                          ("journeyCustomer", self.journey_customer)):
            if key in subject and held:
                checks.append(all(held.get(k) == v for k, v in subject[key].items()))
        return any(checks)


@dataclass
class GdprRequestRecord:
    id: str
    request_type: str
    subject: dict[str, Any]
    replacement_terms: list[dict[str, str]] | None
    name: str | None
    created_by: dict[str, str]
    created_date: str
    created_at: float  # clock seconds
    due_at: float  # when it completes (or ends in ERROR)
    fails: bool = False  # ends in ERROR (`fail_next`)
    status: str = INITIATED
    archives: list[bytes] = field(default_factory=list)  # an export's results, zip files

    def render(self, results_urls: list[str]) -> dict[str, Any]:
        """The GDPRRequest as the API answers it [SDK-models], with its results' URLs."""
        body: dict[str, Any] = {"id": self.id}
        if self.name is not None:
            body["name"] = self.name
        body["createdBy"] = dict(self.created_by)
        if self.replacement_terms is not None:
            body["replacementTerms"] = copy.deepcopy(self.replacement_terms)
        body["requestType"] = self.request_type
        body["createdDate"] = self.created_date
        body["status"] = self.status
        body["subject"] = copy.deepcopy(self.subject)
        if results_urls:
            # resultsUrl: "the location where the results of the request can be retrieved";
            # resultsUrls: "... if multiple archive files created" [SDK-models].
            body["resultsUrl"] = results_urls[0]
            body["resultsUrls"] = list(results_urls)
        body["selfUri"] = self.self_uri
        return body

    @property
    def self_uri(self) -> str:
        return f"/api/v2/gdpr/requests/{self.id}"


# Synthetic data ---------------------------------------------------------------------------------

def build_record(*, key: str, seed: int, index: int, name: str, emails: list[str],
                 phones: list[str], addresses: list[str], external_id: str) -> SubjectRecord:
    """A subject with interaction data, the same for the same seed and index."""
    rng = random.Random(f"genesys:{seed}:{index}")
    record = SubjectRecord(
        key=key, name=name, emails=emails, phones=phones, addresses=addresses,
        external_id=external_id, external_contact_id=_uuid(rng),
    )
    if rng.random() < 0.2:
        record.user_id = _uuid(rng)
    if rng.random() < 0.3:
        slug = re.sub(r"[^a-z0-9]", "", name.casefold().encode("ascii", "ignore").decode())
        record.twitter = f"{slug[:10] or 'user'}_{index}"
    if rng.random() < 0.25:
        record.dialer_contact = {"id": f"{rng.getrandbits(64):016x}", "contactListId": _uuid(rng)}
    if rng.random() < 0.25:
        record.journey_customer = {"type": "cookie", "id": _uuid(rng)}
    first, _, last = name.partition(" ")
    created = EPOCH - timedelta(days=rng.randint(30, 700))
    contact: dict[str, Any] = {"id": record.external_contact_id, "firstName": first,
                               "lastName": last}
    if emails:
        contact["workEmail"] = emails[0]
    if len(emails) > 1:
        contact["otherEmail"] = emails[1]
    if phones:
        contact["cellPhone"] = {"display": phones[0], "e164": phones[0]}
    if addresses:
        contact["address"] = {"address1": addresses[0]}
    if record.twitter:
        contact["twitterId"] = {"screenName": record.twitter}
    contact["externalIds"] = [{"externalSource": {"name": "CRM"}, "value": external_id}]
    contact["createdDate"] = iso(created)
    contact["modifiedDate"] = iso(created + timedelta(days=rng.randint(0, 25)))
    contact["selfUri"] = f"/api/v2/externalcontacts/contacts/{record.external_contact_id}"
    record.external_contact = contact

    facts = {"name": name, "email": emails[0] if emails else "",
             "phone": phones[0] if phones else "", "address": addresses[0] if addresses else "",
             "external_id": external_id}
    usable = [line for line in CUSTOMER_LINES
              if all(facts[k] for k in re.findall(r"{(\w+)}", line))]
    for _ in range(rng.randint(1, 4)):
        channel = rng.choice(CHANNELS)
        if channel == "email" and not emails or channel in ("voice", "message") and not phones:
            channel = "chat"
        start = EPOCH + timedelta(days=rng.randint(0, 300), minutes=rng.randint(0, 600))
        end = start + timedelta(seconds=rng.randint(60, 1800))
        agent = rng.choice(AGENTS)
        conversation_id = _uuid(rng)
        customer: dict[str, Any] = {"purpose": "customer", "name": name}
        if channel in ("voice", "message"):
            customer["address"] = phones[0]
        elif channel == "email":
            customer["address"] = emails[0]
        lines = []
        for turn in range(rng.randint(2, 5)):
            offset = timedelta(seconds=20 * turn)
            if turn % 2 == 0:
                text = rng.choice(usable).format(**facts)
                lines.append({"participant": "customer", "time": iso(start + offset),
                              "text": text})
            else:
                lines.append({"participant": "agent", "time": iso(start + offset),
                              "text": rng.choice(AGENT_LINES).format(name=name)})
        record.conversations.append({
            "id": conversation_id,
            "startTime": iso(start),
            "endTime": iso(end),
            "channel": channel,
            "participants": [
                customer,
                {"purpose": "agent", "name": agent,
                 "userId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"genesys-agent:{seed}:{agent}"))},
            ],
            "transcript": lines,
            "selfUri": f"/api/v2/conversations/{conversation_id}",
        })
        if channel == "voice":
            recording_id = _uuid(rng)
            record.recordings.append({
                "id": recording_id,
                "conversationId": conversation_id,
                "mediaType": "audio",
                "fileState": "AVAILABLE",
                "startTime": iso(start),
                "durationMs": int((end - start).total_seconds() * 1000),
                "selfUri": f"/api/v2/conversations/{conversation_id}/recordings/{recording_id}",
            })
    return record


def _replace_strings(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, list):
        return [_replace_strings(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: (v if k in ("id", "selfUri", "userId", "conversationId")
                    else _replace_strings(v, old, new)) for k, v in value.items()}
    return value


# Validation -------------------------------------------------------------------------------------

_STRING_FIELDS = ("name", "userId", "externalContactId", "externalId")
_LIST_FIELDS = ("addresses", "phoneNumbers", "emailAddresses")
_OBJECT_FIELDS = {"dialerContactId": ("id", "contactListId"), "journeyCustomer": ("type", "id"),
                  "socialHandle": ("type", "value")}


def clean_subject(raw: Any) -> dict[str, Any]:
    """The request's subject with only what is known; 400 when nothing identifies anyone."""
    if raw is None:
        raise bad_request("A GDPR request needs a subject")
    if not isinstance(raw, dict):
        raise bad_request()
    subject: dict[str, Any] = {}
    for key in _STRING_FIELDS:
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            raise bad_request()
        if value and value.strip():
            subject[key] = value.strip()
    for key, parts in _OBJECT_FIELDS.items():
        value = raw.get(key)
        if value is None:
            continue
        if not isinstance(value, dict) or any(
                not isinstance(value.get(p, ""), str) for p in parts):
            raise bad_request()
        kept = {p: value[p].strip() for p in parts if value.get(p, "").strip()}
        if key == "socialHandle":
            if kept and (kept.get("type") not in SOCIAL_TYPES or "value" not in kept):
                raise bad_request()
            if kept:
                subject[key] = kept
        elif "id" in kept:  # a dialer contact or journey customer is identified by its id
            subject[key] = kept
    for key in _LIST_FIELDS:
        value = raw.get(key)
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad_request()
        kept_values = [v.strip() for v in value if v.strip()]
        if kept_values:
            subject[key] = kept_values
    if not subject:
        raise bad_request("The subject has no identifier: give a name, an email address, a "
                          "phone number, an address, a social handle or an id")
    return subject


def clean_terms(raw: Any) -> list[dict[str, str]]:
    if not isinstance(raw, list) or not raw:
        raise bad_request("A GDPR_UPDATE request needs replacementTerms")
    terms = []
    for term in raw:
        if not isinstance(term, dict) or term.get("type") not in TERM_TYPES:
            raise bad_request()
        existing, updated = term.get("existingValue"), term.get("updatedValue")
        if not isinstance(existing, str) or not isinstance(updated, str) or not (
                existing.strip() and updated.strip()):
            raise bad_request()
        terms.append({"type": term["type"], "existingValue": existing.strip(),
                      "updatedValue": updated.strip()})
    return terms


# State --------------------------------------------------------------------------------------

class GenesysState:
    """Subjects, GDPR requests and access tokens of one stand-in org, behind one lock.

    `clock` (seconds since the epoch) is the org's time: it dates requests, moves them on and
    expires tokens and results URLs. Tests and rehearsals replace it to move days in a moment.
    `permissions` are those granted to the OAuth client (see ALL_PERMISSIONS).
    """

    def __init__(self, *, seed: int = 0, request_seconds: float = 0.0,
                 created_by: dict[str, str] | None = None,
                 clock: Callable[[], float] = time.time,
                 permissions: Iterable[str] = ALL_PERMISSIONS) -> None:
        self.seed = seed
        self.request_seconds = request_seconds
        self.clock = clock
        self.permissions = set(permissions)
        self.keep_names = True  # not documented whether a client-supplied name is kept
        nobody = str(uuid.UUID(int=0))
        self.created_by = created_by or {"id": nobody, "selfUri": f"/api/v2/oauth/clients/{nobody}"}
        self.lock = threading.RLock()
        self.subjects: dict[str, SubjectRecord] = {}
        self.requests: dict[str, GdprRequestRecord] = {}
        self._tokens: dict[str, float] = {}  # token -> expiry (clock seconds)
        self._next_index = 0
        self._failing = 0  # how many of the next requests end in ERROR
        self._ids = random.Random(f"genesys-requests:{seed}")

    # Subjects

    def add_people(self, people: Iterable[Person]) -> None:
        for person in people:
            self.add_subject(person.name, emails=[person.email], phones=[person.phone],
                             addresses=[person.address], external_id=person.external_id)

    def add_subject(self, name: str, emails: Iterable[str] = (), phones: Iterable[str] = (),
                    addresses: Iterable[str] = (), external_id: str | None = None
                    ) -> dict[str, Any]:
        """Add a subject (with synthetic interaction data); returns it as the search shows it."""
        with self.lock:
            index = self._next_index
            self._next_index += 1
            record = build_record(
                key=f"subject-{index:05d}", seed=self.seed, index=index, name=name,
                emails=list(emails), phones=list(phones), addresses=list(addresses),
                external_id=external_id or f"CUST-{self.seed:03d}-{index:05d}",
            )
            self.subjects[record.key] = record
            return record.as_subject()

    def search(self, search_type: str, value: str) -> list[dict[str, Any]]:
        if search_type not in SEARCH_TYPES:
            raise GenesysError(
                400, "invalid.value",
                f"Value [{search_type}] is not valid for field type [searchType]. "
                f"Allowable values are: {', '.join(SEARCH_TYPES)}",
            )
        with self.lock:
            self._settle()
            return [r.as_subject() for r in self.subjects.values() if r.matches(search_type, value)]

    # Requests

    def create_request(self, body: Any, *, delete_confirmed: bool) -> GdprRequestRecord:
        """Validate and record a GDPRRequest (status INITIATED)."""
        if not isinstance(body, dict):
            raise GenesysError(400, "bad.request", "The request could not be understood by the "
                                                   "server due to malformed syntax.")
        request_type = body.get("requestType")
        if request_type not in REQUEST_TYPES:
            raise bad_request(f"requestType must be one of {', '.join(REQUEST_TYPES)}")
        terms = body.get("replacementTerms")
        if request_type != "GDPR_UPDATE" and terms not in (None, []):
            raise bad_request()  # 400 "Invalid data" for terms on an export or delete [Contract]
        subject = clean_subject(body.get("subject"))
        cleaned_terms = clean_terms(terms) if request_type == "GDPR_UPDATE" else None
        if request_type == "GDPR_DELETE" and not delete_confirmed:  # deleteConfirmed [Contract]
            raise bad_request("A GDPR_DELETE request must be confirmed with deleteConfirmed=true")
        name = body.get("name")
        with self.lock:
            self._settle()
            now = self.clock()
            fails = self._failing > 0
            self._failing -= int(fails)
            record = GdprRequestRecord(
                id=_uuid(self._ids), request_type=request_type, subject=subject,
                replacement_terms=cleaned_terms,
                name=name if isinstance(name, str) and self.keep_names else None,
                created_by=dict(self.created_by),
                created_date=iso(datetime.fromtimestamp(now, UTC)),
                created_at=now, due_at=now + max(0.0, self.request_seconds), fails=fails,
            )
            self.requests[record.id] = record
            return copy.deepcopy(record)

    def fail_next(self, count: int = 1) -> None:
        """The next `count` requests submitted end in ERROR (with no effect) when due."""
        with self.lock:
            self._failing += count

    def read_request(self, request_id: str) -> GdprRequestRecord:
        """A request as it stands now (reading it does not move it on)."""
        with self.lock:
            self._settle()
            return copy.deepcopy(self._request(request_id))

    def list_requests(self, page_size: int, page_number: int
                      ) -> tuple[list[GdprRequestRecord], int]:
        """One page of requests, oldest first, and the total."""
        with self.lock:
            self._settle()
            records = list(self.requests.values())
            start = (page_number - 1) * page_size
            return copy.deepcopy(records[start:start + page_size]), len(records)

    def archive(self, request_id: str, part: int) -> bytes | None:
        """Results archive `part` (from 1) of a completed export; None if there is none."""
        with self.lock:
            self._settle()
            record = self.requests.get(request_id)
            if record is None or record.status != COMPLETED or not (
                    1 <= part <= len(record.archives)):
                return None
            return record.archives[part - 1]

    def _request(self, request_id: str) -> GdprRequestRecord:
        record = self.requests.get(request_id)
        if record is None:
            raise GenesysError(404, "not.found", "The requested resource was not found.")
        return record

    def _settle(self) -> None:
        """Under the lock: move every open request to where the clock says it is, completing
        those that are due in the order they fall due."""
        now = self.clock()
        open_requests = sorted((r for r in self.requests.values() if r.status not in FINAL),
                               key=lambda r: r.due_at)
        for record in open_requests:
            if now >= record.due_at:
                if record.fails:
                    record.status = ERROR
                else:
                    self._complete(record, record.due_at)
                continue
            share = (now - record.created_at) / (record.due_at - record.created_at)
            record.status = (INITIATED if share < 0.1 else SEARCHING if share < 0.5
                             else WORK_STAGE[record.request_type])

    def _complete(self, record: GdprRequestRecord, at: float) -> None:
        matched = [r for r in self.subjects.values() if r.identified_by(record.subject)]
        if record.request_type == "GDPR_DELETE":
            for subject in matched:
                del self.subjects[subject.key]
        elif record.request_type == "GDPR_UPDATE":
            for subject in matched:
                for term in record.replacement_terms or []:
                    _apply_term(subject, term)
        else:
            record.archives = export_archives(record, [[s.as_data()] for s in matched] or [[]],
                                              at)
        record.status = COMPLETED

    # Tokens

    def issue_token(self, ttl: int) -> str:
        token = secrets.token_urlsafe(32)
        with self.lock:
            self._tokens[token] = self.clock() + ttl
        return token

    def token_valid(self, token: str) -> bool:
        with self.lock:
            expiry = self._tokens.get(token)
            if expiry is not None and expiry <= self.clock():
                del self._tokens[token]
                expiry = None
            return expiry is not None

    def expire_tokens(self) -> None:
        with self.lock:
            self._tokens.clear()

    # Inspection

    def snapshot(self) -> dict[str, Any]:
        """Subjects with their data, and requests without ids or dates; JSON-able, ordered."""
        with self.lock:
            self._settle()
            subjects = [self.subjects[key].as_data() for key in sorted(self.subjects)]
            requests = [{"requestType": r.request_type, "status": r.status,
                         "subject": copy.deepcopy(r.subject),
                         "replacementTerms": copy.deepcopy(r.replacement_terms)}
                        for r in self.requests.values()]
        requests.sort(key=lambda r: json.dumps(r, sort_keys=True))
        return {"subjects": subjects, "requests": requests}


def export_archives(record: GdprRequestRecord, parts: list[list[dict[str, Any]]],
                    at: float) -> list[bytes]:
    """One zip per part, each holding JSON (the layout inside is ours, not documented)."""
    generated = datetime.fromtimestamp(at, UTC)
    stamp = max(generated.timetuple()[:6], (1980, 1, 1, 0, 0, 0))  # zip dates start in 1980
    archives = []
    for n, records in enumerate(parts, start=1):
        folder = f"gdpr-export-{record.id}-{n}"
        about = {"requestId": record.id, "requestType": record.request_type,
                 "subject": copy.deepcopy(record.subject), "generatedDate": iso(generated),
                 "part": n, "parts": len(parts)}
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, content in (("request.json", about), ("records.json", records)):
                archive.writestr(zipfile.ZipInfo(f"{folder}/{name}", stamp),
                                 json.dumps(content, ensure_ascii=False, indent=1),
                                 compress_type=zipfile.ZIP_DEFLATED)
        archives.append(buffer.getvalue())
    return archives


def _apply_term(subject: SubjectRecord, term: dict[str, str]) -> None:
    """Replace the subject's value(s) matching term.existingValue, everywhere they appear."""
    kind, existing, updated = term["type"], term["existingValue"], term["updatedValue"]
    if not subject.matches(kind, existing):
        return
    if kind == "NAME":
        old = [subject.name]
        subject.name = updated
        first, _, last = updated.partition(" ")
        subject.external_contact.update(firstName=first, lastName=last)
    elif kind == "EMAIL":
        old = [e for e in subject.emails if _fold(e) == _fold(existing)]
        subject.emails = [updated if e in old else e for e in subject.emails]
    elif kind == "PHONE":
        old = [p for p in subject.phones if phones_match(p, existing)]
        subject.phones = [updated if p in old else p for p in subject.phones]
    elif kind == "ADDRESS":
        old = [a for a in subject.addresses if _address_key(a) == _address_key(existing)]
        subject.addresses = [updated if a in old else a for a in subject.addresses]
    elif kind == "TWITTER":
        old = [subject.twitter or ""]
        subject.twitter = updated.lstrip("@")
        updated = subject.twitter
    else:  # EXTERNAL_ID
        old = [subject.external_id]
        subject.external_id = updated
    for value in old:
        subject.conversations = _replace_strings(subject.conversations, value, updated)
        subject.recordings = _replace_strings(subject.recordings, value, updated)
        subject.external_contact = _replace_strings(subject.external_contact, value, updated)
