"""Zendesk Support: search, export, rectify, suspend, and erase in the order Zendesk documents.

Erasure happens in two parts, as Zendesk's privacy guide asks ("review each conversation and
confirm the data belongs to the user: it may be another person with the same name"):
1. Discovery (read-only, `discover`): every ticket the subject requested, is cc'd or assigned
   on, or that holds one of the subject's identifiers or extra terms, found with search export
   (which reaches archived tickets), and for each one how it matched and a proposed action:
   the subject's closed tickets deleted, their open ones redacted then closed, someone else's
   ticket redacted and never deleted, a name-only match left unless a reviewer says otherwise.
2. Execution (`plan` of the approved plan and nothing else): redactions (comment redaction,
   inline images and the subject's files, subject line and fields), deletions in bulk jobs,
   permanent deletions, then the user soft- and permanently deleted. Every action is read back
   before it counts: a redaction answered 200 but not applied fails the step.

Each step re-reads Zendesk before it writes, so running it again after a crash skips what is
already done; Zendesk's "not found" for something we are deleting counts as done.

Every write is a PUT or a DELETE, which VendorHTTP sends again when its answer is lost. Sent
again, a write that was applied the first time can be refused: a second DELETE of a user is a
404, a second close of a ticket a 422 ("Status closed prevents ticket update"), a second comment
redaction no longer matches the comment. Each such refusal is reconciled by reading Zendesk
back, never taken for a failure or a success on its own. A bulk job sent twice runs twice; the
second finds its ids gone ("not found"), which counts as done, and the read-back decides.
"""

from __future__ import annotations

import html
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import httpx

from services.connectors.base import (
    Candidate,
    Continue,
    Done,
    Failed,
    Outcome,
    PlannedStep,
    RequestSpec,
    StepRun,
    SubjectMatch,
    Verified,
    Waiting,
)
from services.connectors.findings import Finder, describe, subject_terms
from services.connectors.http import Limits, VendorError, VendorHTTP, error_from
from services.subjects import Identifier
from services.vocabulary import IdentifierKind, PlanAction, RequestType

# Ids per bulk call: Bulk Delete Tickets and Bulk Permanently Delete Tickets take "a
# comma-separated list of up to 100 ticket ids"; so do the show_many reads.
BULK = 100
SEARCH_PAGE = 100  # Search Users: "per_page" at most 100
SEARCH_RESULTS_LIMIT = 1_000  # no search returns more (Search API, "Results limit")
# Bulk jobs in flight at once. "Only a certain number of jobs can be queued or running at the
# same time" (Bulk Delete Tickets; Rate limits, "Job limit": 30 in an account), and Zendesk
# logs the last 100 jobs, each for an hour (Job Statuses). 10 (1,000 tickets a wave) leaves the
# account's other users most of the 30; one show_many reads them all.
MAX_JOBS = 10
# Job status reads: the first FIRST_POLL seconds after the jobs were submitted, the delay then
# growing by POLL_GROWTH while no job finishes, up to the connector's poll_seconds.
FIRST_POLL = 0.5
POLL_GROWTH = 1.5
# A wait handed to the engine lasts until a worker looks again (`dsr-desk worker` idles 2 s, the
# bot's execute job runs every 2 s): the delays up to this are slept in the step instead.
INLINE_POLL = 2.0
RELATIONS = ("requester", "cc", "assignee")  # search keywords for the subject's tickets
TICKETS = "zendesk/tickets/"  # where exported tickets go in the archive
REDACTION_MARK = "\u2587"  # what Zendesk shows in place of each redacted character


ZENDESK_LIMITS = Limits(requests_per_minute=400)  # the plan's default; settings override it


class ZendeskConnector:
    name: ClassVar[str] = "zendesk"
    label: ClassVar[str] = "Zendesk Support"
    supported_types: ClassVar[frozenset[RequestType]] = frozenset(RequestType)

    def __init__(
        self,
        client: httpx.Client,
        base_url: str,
        *,
        email: str,
        token: str,
        limits: Limits = ZENDESK_LIMITS,
        sleep: Callable[[float], None] = time.sleep,
        poll_seconds: float = 5.0,
        unclosed_recheck_seconds: float = 3600.0,
    ) -> None:
        self.http = VendorHTTP(client, vendor=self.label, base_url=base_url.rstrip("/") + "/api/v2",
                               auth=httpx.BasicAuth(f"{email}/token", token), limits=limits,
                               sleep=sleep)
        self.sleep = sleep
        self.poll_seconds = poll_seconds
        self.unclosed_recheck_seconds = unclosed_recheck_seconds

    # HTTP

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return self.http.call(method, path, **kwargs).json()

    def _pages(self, path: str, key: str, params: dict[str, Any] | None = None,
               after: str | None = None) -> Iterator[tuple[list[dict[str, Any]], str | None]]:
        """Cursor pages of `key`: yields (records, cursor for the next page or None)."""
        query = {**(params or {}), "page[size]": BULK}
        while True:
            if after:
                query["page[after]"] = after
            body = self._json("GET", path, params=query)
            meta = body.get("meta") or {}
            after = meta.get("after_cursor") if meta.get("has_more") else None
            yield body.get(key, []), after
            if not after:
                return

    # Search

    def search_subjects(self, identifiers: Sequence[Identifier]) -> list[SubjectMatch]:
        found: dict[int, dict[str, Any]] = {}
        for identifier in identifiers:
            if identifier.kind is IdentifierKind.VENDOR_USER_ID:
                if identifier.system in (None, self.name) and identifier.value.isdigit():
                    response = self.http.call("GET", f"/users/{identifier.value}", ok=(200, 404))
                    if response.status_code == 200:
                        user = response.json()["user"]
                        found[user["id"]] = user
                continue
            if identifier.kind is IdentifierKind.EXTERNAL_ID:
                params = {"external_id": identifier.value}
            elif identifier.kind in (IdentifierKind.EMAIL, IdentifierKind.PHONE, IdentifierKind.NAME):
                params = {"query": identifier.value}
            else:
                continue
            for user in self._searched_users(params):
                found[user["id"]] = user
        return [
            SubjectMatch(
                system=self.name,
                record_id=str(user["id"]),
                label=user.get("name") or f"user {user['id']}",
                details={k: user.get(k) for k in ("id", "name", "email", "phone", "external_id",
                                                  "role", "active", "suspended")},
            )
            for user in found.values()
        ]

    def _searched_users(self, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every user a search finds, page by page: Search Users takes offset paging only
        (`page`, `per_page` up to 100, `next_page`), and no search returns more than 1,000
        (developer.zendesk.com/api-reference/ticketing/users/users/#search-users; Search API,
        "Results limit")."""
        for number in range(1, SEARCH_RESULTS_LIMIT // SEARCH_PAGE + 1):
            body = self._json("GET", "/users/search",
                              params={**params, "per_page": SEARCH_PAGE, "page": number})
            yield from body.get("users", [])
            if not body.get("next_page"):
                return

    # Planning

    def plan(self, spec: RequestSpec) -> list[PlannedStep]:
        if spec.type is RequestType.ERASURE:
            return self._erasure_plan(spec)
        users = [int(c["record_id"]) for c in spec.confirmed]
        steps = {
            RequestType.ACCESS: ["export_users", "export_tickets"],
            RequestType.RECTIFICATION: ["rectify_users"],
            RequestType.OBJECTION: ["suspend_users"],
        }[spec.type]
        return [PlannedStep(action, {"users": users}) for action in steps]

    def run_step(self, run: StepRun) -> Outcome:
        handler = getattr(self, f"_step_{run.action}", None)
        if handler is None:
            return Failed(f"{self.label} has no step {run.action!r}")
        try:
            return handler(run, [int(u) for u in run.params.get("users", [])],
                           run.checkpoint or {})
        except VendorError as exc:
            if exc.status != 403:
                raise
            return Failed(f"{exc}. The agent whose API token DSR Desk uses lacks a permission "
                          "this needs (deleting tickets, which Zendesk also requires for "
                          "redaction and for deleting users), or the account lacks the feature: "
                          "grant it, then retry. What was done so far stays done.")

    # Access

    def _step_export_users(self, run: StepRun, users: list[int], _: dict) -> Outcome:
        identities = 0
        for user_id in users:
            user = self._json("GET", f"/users/{user_id}")["user"]
            ids = self._json("GET", f"/users/{user_id}/identities").get("identities", [])
            run.sink.write(f"zendesk/users/{user_id}.json", {"user": user, "identities": ids})
            identities += len(ids)
        return Done({"users": len(users), "identities": identities})

    def _step_export_tickets(self, run: StepRun, users: list[int], cp: dict) -> Outcome:
        """One page of one search per run (the subject as requester, cc, assignee: search
        export reaches archived tickets, which the user ticket lists leave out); the checkpoint
        says where to resume. A ticket found twice is exported once: the sink knows what it
        holds, so the checkpoint stays small however many tickets the subject has. Each ticket
        goes with its comments (inline images listed) and its side conversations."""
        position = cp.get("position", 0)  # index into users x RELATIONS
        if position >= len(users) * len(RELATIONS):
            return Done({"tickets": run.sink.count(TICKETS)})
        user_id = users[position // len(RELATIONS)]
        query = {"query": f"{RELATIONS[position % len(RELATIONS)]}:{user_id}",
                 "filter[type]": "ticket"}
        try:
            tickets, after = next(self._pages("/search/export", "results", query,
                                              after=cp.get("after")))
        except VendorError as exc:
            if not cp.get("after") or exc.status not in (400, 422):
                raise
            # A search export cursor lives an hour: start this search again (what was
            # exported already is skipped).
            return Continue({**cp, "after": None}, note="search cursor expired: searching again")
        exported = cp.get("exported", 0)
        for ticket in tickets:
            name = f"{TICKETS}{ticket['id']}.json"
            if run.sink.exists(name):
                continue
            run.sink.write(name, {"ticket": ticket, "comments": self._comments(ticket["id"]),
                                  "side_conversations": self._side_conversations(ticket["id"])})
            exported += 1
        next_position = position if after else position + 1
        return Continue({"position": next_position, "after": after, "exported": exported},
                        note=f"{exported} tickets exported")

    # Rectification and objection

    def _step_rectify_users(self, run: StepRun, users: list[int], _: dict) -> Outcome:
        changed: list[str] = []
        old_emails = {v.lower() for v in run.spec.values(IdentifierKind.EMAIL)}
        for user_id in users:
            profile: dict[str, Any] = {}
            for new in run.spec.new_values:
                if new.kind is IdentifierKind.NAME:
                    profile["name"] = new.value
                elif new.kind is IdentifierKind.PHONE:
                    profile["phone"] = new.value
                elif new.kind is IdentifierKind.EMAIL:
                    self._replace_email(user_id, old_emails, new.value)
                    changed.append("email")
                else:
                    return Failed(f"{self.label} has no field for {new.kind.value}; "
                                  "correct it by hand and remove it from the request")
            if profile:
                self.http.call("PUT", f"/users/{user_id}", json={"user": profile})
                changed.extend(profile)
            if wrong := self._not_yet(user_id, run.spec.new_values):
                return Failed(f"{self.label} user {user_id} does not show the corrected "
                              f"{', '.join(wrong)} when read back: the change was answered but "
                              "not applied. Nothing is reported done; check it, then retry.")
        return Done({"users": len(users), "fields": sorted(set(changed)),
                     "verified": "read back: each corrected value shown"})

    def _not_yet(self, user_id: int, new_values: Sequence[Identifier]) -> list[str]:
        """The corrected values the user (and its identities) does not show yet."""
        user = self._json("GET", f"/users/{user_id}")["user"]
        emails = {i["value"].lower() for i in self._json(
            "GET", f"/users/{user_id}/identities").get("identities", []) if i.get("type") == "email"}
        shown = {IdentifierKind.NAME: lambda v: user.get("name") == v,
                 IdentifierKind.PHONE: lambda v: user.get("phone") == v,
                 IdentifierKind.EMAIL: lambda v: v.lower() in emails}
        return [new.kind.value for new in new_values if not shown[new.kind](new.value)]

    def _replace_email(self, user_id: int, old_emails: set[str], new_email: str) -> None:
        identities = self._json("GET", f"/users/{user_id}/identities").get("identities", [])
        emails = [i for i in identities if i.get("type") == "email"]
        if any(i["value"].lower() == new_email.lower() for i in emails):
            return  # already corrected (a re-run)
        target = next((i for i in emails if i["value"].lower() in old_emails), None)
        target = target or next((i for i in emails if i.get("primary")), None)
        if target is None:
            self.http.call("PUT", f"/users/{user_id}", json={"user": {"email": new_email}})
            return
        self.http.call("PUT", f"/users/{user_id}/identities/{target['id']}",
                   json={"identity": {"value": new_email}})

    def _step_suspend_users(self, run: StepRun, users: list[int], _: dict) -> Outcome:
        for user_id in users:
            self.http.call("PUT", f"/users/{user_id}", json={"user": {"suspended": True}})
            if not self._json("GET", f"/users/{user_id}")["user"].get("suspended"):
                return Failed(f"{self.label} user {user_id} is not suspended when read back: "
                              "the change was answered but not applied. Nothing is reported "
                              "done; check it, then retry.")
        return Done({"suspended_users": len(users), "verified": "read back: suspended"})

    # Erasure: discovery (read-only), then exactly the approved plan, each action read back

    def discover(self, spec: RequestSpec) -> list[PlannedStep]:
        if spec.type is not RequestType.ERASURE:
            return []
        return [PlannedStep("find_tickets", {"users": [int(c["record_id"]) for c in spec.confirmed]})]

    def _erasure_plan(self, spec: RequestSpec) -> list[PlannedStep]:
        acts: dict[tuple[str, PlanAction], list[int]] = {}
        for entry in spec.plan:
            acts.setdefault((entry.kind, entry.action), []).append(int(entry.record_id))
        redact = sorted([t, False] for t in acts.get(("ticket", PlanAction.REDACT), [])) + \
            sorted([t, True] for t in acts.get(("ticket", PlanAction.REDACT_CLOSE), []))
        delete = sorted(acts.get(("ticket", PlanAction.DELETE), []))
        users = sorted(acts.get(("user", PlanAction.DELETE), []))
        steps = []
        if redact:  # the subject's files are known by their author: every confirmed user
            subject = sorted(int(c["record_id"]) for c in spec.confirmed)
            steps.append(PlannedStep("redact_tickets", {"tickets": redact, "users": subject}))
        if delete:
            steps += [PlannedStep("delete_tickets", {"tickets": delete}),
                      PlannedStep("purge_tickets", {"tickets": delete})]
        if users:
            steps += [PlannedStep("delete_users", {"users": users}),
                      PlannedStep("purge_users", {"users": users})]
        return steps

    def _finder(self, run: StepRun) -> Finder:
        return Finder(subject_terms(run.spec))

    def _search_tickets(self, query: str) -> Iterator[dict[str, Any]]:
        """Search export: the type goes in filter[type] only (Search API reference: "searches
        with type in the query string will result in an error"); it also finds archived
        tickets, which the user ticket lists leave out ("About ticket archiving")."""
        for tickets, _ in self._pages("/search/export", "results",
                                      {"query": query, "filter[type]": "ticket"}):
            yield from tickets

    def _comments(self, ticket_id: int) -> list[dict[str, Any]]:
        """Every comment, with inline images listed among the attachments (List Comments:
        they are left out unless include_inline_images=true)."""
        return [c for page, _ in self._pages(f"/tickets/{ticket_id}/comments", "comments",
                                             {"include_inline_images": "true"}) for c in page]

    def _side_conversations(self, ticket_id: int) -> list[dict[str, Any]]:
        """A ticket's side conversations with their messages (Side Conversations API); an
        account without them answers 404 (or 403), which means there are none to export."""
        response = self.http.call("GET", f"/tickets/{ticket_id}/side_conversations",
                                  ok=(200, 403, 404))
        if response.status_code != 200:
            return []
        conversations = response.json().get("side_conversations") or []
        for conversation in conversations:
            events = self.http.call("GET", f"/tickets/{ticket_id}/side_conversations/"
                                    f"{conversation['id']}/events", ok=(200, 404))
            conversation["events"] = events.json().get("events", []) \
                if events.status_code == 200 else []
        return conversations

    def _step_find_tickets(self, run: StepRun, users: list[int], cp: dict) -> Outcome:
        """Read-only: every ticket that names the subject or that the subject is on, and how."""
        finder = self._finder(run)
        tickets: dict[int, dict[str, Any]] = {}
        relations: dict[int, set[str]] = {}
        candidates: list[Candidate] = []
        for user_id in users:
            response = self.http.call("GET", f"/users/{user_id}", ok=(200, 404))
            if response.status_code == 404:
                continue  # gone already: nothing of it to delete
            user = response.json()["user"]
            state = "active" if user.get("active", True) else "deleted"
            label = f"user #{user_id}: {finder.mask_all(user.get('name') or '')}"
            candidates.append(Candidate("user", str(user_id), "subject", state, (label,),
                                        PlanAction.DELETE, (PlanAction.DELETE, PlanAction.LEAVE)))
            # Only agents are assigned tickets: an end user's assigned tickets are not searched.
            for relation in RELATIONS[:2] if user.get("role") == "end-user" else RELATIONS:
                for ticket in self._search_tickets(f"{relation}:{user_id}"):
                    tickets[ticket["id"]] = ticket
                    relations.setdefault(ticket["id"], set()).add(relation)
        for term in finder.terms:
            for ticket in self._search_tickets(f'"{term.value.replace(chr(34), " ")}"'):
                tickets.setdefault(ticket["id"], ticket)
                relations.setdefault(ticket["id"], set())
        for ticket_id in sorted(tickets):
            candidates.append(self._ticket_candidate(tickets[ticket_id], relations[ticket_id],
                                                     set(users), finder))
        counts = Counter(candidate.group for candidate in candidates)
        return Done({"tickets": len(tickets), "groups": dict(counts)},
                    candidates=tuple(candidates))

    def _ticket_candidate(self, ticket: dict[str, Any], relation: set[str], users: set[int],
                          finder: Finder) -> Candidate:
        status = ticket.get("status") or ""
        closed = status == "closed"
        in_fields = describe(finder.hits(ticket.get("subject")), "the subject line")
        for field in ticket.get("custom_fields") or []:
            if isinstance(field.get("value"), str):
                in_fields += describe(finder.hits(field["value"]), f"custom field {field.get('id')}")
        found = [("requested by the subject" if r == "requester" else f"subject is {r}")
                 for r in sorted(relation)] + in_fields
        ticket_id = str(ticket["id"])
        if "requester" in relation and closed:
            # The subject's own closed (or archived) conversation: deleted whole, as Zendesk's
            # guide says for closed tickets; no need to read its comments to decide.
            return Candidate("ticket", ticket_id, "own_closed", status, tuple(found),
                             PlanAction.DELETE, (PlanAction.DELETE, PlanAction.LEAVE))
        comments = self._comments(ticket["id"])
        files = 0
        names_only = True
        text_hits = 0
        for number, comment in enumerate(comments, start=1):
            hits = finder.hits(_comment_text(comment))
            text_hits += len(hits)
            names_only = names_only and all(h.term.kind is IdentifierKind.NAME for h in hits)
            found += describe(hits, f"comment {number}")
            if comment.get("author_id") in users:
                files += len(comment.get("attachments") or [])
                if comment.get("type") == "VoiceComment":
                    found.append(f"voice comment {number} by the subject (a call recording)")
                    files += 1
        if files:
            found.append(f"{files} file(s), inline image(s) or recording(s) from the subject")
        if "requester" in relation:
            proposed = PlanAction.DELETE if files else PlanAction.REDACT_CLOSE
            return Candidate("ticket", ticket_id, "own_open", status, tuple(found), proposed,
                             (PlanAction.REDACT_CLOSE, PlanAction.DELETE, PlanAction.LEAVE),
                             "" if files else "solved and closed after redaction, so that Zendesk "
                             "lets the subject's user be deleted")
        # Someone else's ticket: redact what is the subject's, never delete another's ticket.
        group = "others" if relation else "term_only"
        warning = "closed: Zendesk does not let its subject line or fields be edited" \
            if closed and in_fields else ""
        if not text_hits and not in_fields and not files:
            return Candidate("ticket", ticket_id, group, status,
                             tuple(found or ["matched the search; no comment, subject line or "
                                             "field holds a term"]),
                             PlanAction.LEAVE, (PlanAction.REDACT, PlanAction.LEAVE), warning)
        if not relation and names_only and not in_fields:
            return Candidate("ticket", ticket_id, "name_only", status, tuple(found),
                             PlanAction.LEAVE, (PlanAction.REDACT, PlanAction.LEAVE),
                             "matched a name only: it may be another person with the same name")
        return Candidate("ticket", ticket_id, group, status, tuple(found), PlanAction.REDACT,
                         (PlanAction.REDACT, PlanAction.LEAVE), warning)

    def _step_redact_tickets(self, run: StepRun, users: list[int], cp: dict) -> Outcome:
        """One ticket per run: redact, read back, and prove nothing of the subject is left."""
        targets = run.params.get("tickets", [])
        index, fallback = cp.get("index", 0), cp.get("fallback", False)
        if index >= len(targets):
            return Done({"tickets": len(targets), "verified": len(targets)})
        ticket_id, close = targets[index]
        result = self._redact_ticket(int(ticket_id), bool(close), self._finder(run), set(users),
                                     fallback)
        if isinstance(result, Failed):
            return result
        verified, fallback = result
        return Continue({"index": index + 1, "fallback": fallback},
                        note=f"{index + 1} of {len(targets)} tickets redacted and checked",
                        verified=(verified,))

    def _redact_ticket(self, ticket_id: int, close: bool, finder: Finder, users: set[int],
                       fallback: bool) -> tuple[Verified, bool] | Failed:
        response = self.http.call("GET", f"/tickets/{ticket_id}", ok=(200, 404))
        if response.status_code == 404:
            return Verified("ticket", str(ticket_id), "gone already (404)"), fallback
        ticket = response.json()["ticket"]
        for comment in self._comments(ticket_id):
            strings = finder.strings(_comment_text(comment))
            files = [a for a in comment.get("attachments") or []
                     if comment.get("author_id") in users and not _redacted_file(a)]
            if strings or files:
                fallback = self._redact_comment(ticket, comment, strings, files, fallback)
                if isinstance(fallback, Failed):
                    return fallback
        changes: dict[str, Any] = {}
        if ticket.get("status") != "closed":
            if finder.strings(ticket.get("subject")):
                changes["subject"] = _blot(ticket["subject"], finder)
            fields = [{"id": f["id"], "value": _blot(f["value"], finder)}
                      for f in ticket.get("custom_fields") or []
                      if isinstance(f.get("value"), str) and finder.strings(f["value"])]
            if fields:
                changes["custom_fields"] = fields
            if close:
                changes["status"] = "closed"
        if changes:
            self._update_ticket(ticket_id, changes)
        verified = self._verify_redacted(ticket_id, close, finder, users)
        return verified if isinstance(verified, Failed) else (verified, fallback)

    def _update_ticket(self, ticket_id: int, changes: dict[str, Any]) -> None:
        """PUT /tickets/{id}. Zendesk refuses any change to a closed ticket (422): when this
        update closes it, the 422 may answer our own first call sent again after its answer
        was lost, so the ticket is read; closed, the read-back that follows decides."""
        response = self.http.call("PUT", f"/tickets/{ticket_id}", json={"ticket": changes},
                                  ok=(200, 422))
        if response.status_code == 422 and not (
                changes.get("status") == "closed" and self._ticket_status(ticket_id) == "closed"):
            raise error_from(response, f"{self.label} refused PUT")

    def _ticket_status(self, ticket_id: int) -> str | None:
        response = self.http.call("GET", f"/tickets/{ticket_id}", ok=(200, 404))
        return response.json()["ticket"].get("status") if response.status_code == 200 else None

    def _redact_comment(self, ticket: dict[str, Any], comment: dict[str, Any], strings: list[str],
                        files: list[dict[str, Any]], fallback: bool) -> bool | Failed:
        """Zendesk's comment redaction (PUT /comment_redactions/{id}, works on closed and
        archived tickets) first; without it (no agent workspace: 403/404) the older calls,
        which cannot touch a closed ticket. Returns whether the fallback is in use."""
        ticket_id, comment_id = ticket["id"], comment["id"]
        if not fallback:
            tagged = _tag_redactions(comment.get("html_body") or "", strings)
            body: dict[str, Any] = {"ticket_id": ticket_id, "html_body": tagged}
            inline = [a["content_url"] for a in files if a.get("inline")]
            if inline:
                body["external_attachment_urls"] = inline
            response = self.http.call("PUT", f"/comment_redactions/{comment_id}", json=body,
                                      ok=(200, 400, 403, 404, 422))
            # Sent again after its answer was lost, a redaction no longer matches the comment
            # it already changed: what the comment shows now decides.
            if response.status_code in (400, 422) and self._still_shows(
                    ticket_id, comment_id, strings, inline):
                raise error_from(response, f"{self.label} refused PUT")
            if response.status_code in (200, 400, 422):
                files = [a for a in files if not a.get("inline")]
            else:
                fallback = True
        if fallback:
            if ticket.get("status") == "closed":
                return Failed(f"{self.label} ticket #{ticket_id} is closed and this account has no "
                              "comment redaction (agent workspace): the old endpoint cannot redact "
                              "closed tickets. Turn on the agent workspace, or review the plan again "
                              "and delete or leave this ticket.")
            for text in strings:
                self.http.call("PUT", f"/tickets/{ticket_id}/comments/{comment_id}/redact",
                               json={"text": text}, ok=(200, 404))
        for attachment in files:
            self.http.call("PUT", f"/tickets/{ticket_id}/comments/{comment_id}/attachments/"
                           f"{attachment['id']}/redact", ok=(200, 404))
        return fallback

    def _still_shows(self, ticket_id: int, comment_id: int, strings: list[str],
                     inline_urls: list[str]) -> bool:
        """Whether the comment still holds one of `strings` or one of the inline images."""
        comment = next((c for c in self._comments(ticket_id) if c["id"] == comment_id), None)
        if comment is None:
            return False
        text = _comment_text(comment).casefold()
        urls = {a.get("content_url") for a in comment.get("attachments") or []}
        return any(s.casefold() in text for s in strings) or bool(urls & set(inline_urls))

    def _verify_redacted(self, ticket_id: int, close: bool, finder: Finder,
                         users: set[int]) -> Verified | Failed:
        """Read the ticket back: no term in any comment, the subject's files redacted, and the
        subject line, fields and status as intended."""
        response = self.http.call("GET", f"/tickets/{ticket_id}", ok=(200, 404))
        if response.status_code == 404:
            return Verified("ticket", str(ticket_id), "gone (404) when read back")
        ticket = response.json()["ticket"]
        left = []
        for number, comment in enumerate(self._comments(ticket_id), start=1):
            text = " ".join(comment.get(k) or "" for k in ("body", "html_body", "plain_body"))
            left += [f"{h.term.kind.value} in comment {number}" for h in finder.hits(text)]
            if comment.get("author_id") in users:
                left += [f"a file in comment {number}" for a in comment.get("attachments") or []
                         if not _redacted_file(a)]
        if ticket.get("status") != "closed" or close:
            left += [f"{h.term.kind.value} in the subject line" for h in finder.hits(ticket.get("subject"))]
        if close and ticket.get("status") != "closed":
            left.append(f"status {ticket.get('status')}, not closed")
        if left:
            return Failed(f"{self.label} ticket #{ticket_id} still shows the subject's data after "
                          f"redaction ({', '.join(sorted(set(left))[:5])}): the redaction was "
                          "answered but not applied. Nothing is reported done; check the ticket, "
                          "then retry.")
        return Verified("ticket", str(ticket_id), "read back: no term left in comments or "
                        "subject line" + (", closed" if close else ""))

    def _step_delete_tickets(self, run: StepRun, users: list[int], cp: dict) -> Outcome:
        cp = cp or {"pending": list(run.params.get("tickets", [])), "deleted": []}
        return self._bulk_delete(cp, "/tickets/destroy_many", present=self._existing_tickets)

    def _step_purge_tickets(self, run: StepRun, users: list[int], cp: dict) -> Outcome:
        cp = cp or {"pending": list(run.params.get("tickets", [])), "deleted": []}
        return self._bulk_delete(cp, "/deleted_tickets/destroy_many", present=None)

    def _existing_tickets(self, ids: list[int]) -> list[int]:
        body = self._json("GET", "/tickets/show_many", params={"ids": ",".join(map(str, ids))})
        return [t["id"] for t in body.get("tickets", [])]

    def _bulk_delete(self, cp: dict, path: str,
                     present: Callable[[list[int]], list[int]] | None) -> Outcome:
        """Delete `cp["pending"]` in batches of BULK, up to MAX_JOBS jobs side by side. Each run
        does one thing and returns it to the engine, which records it before the next run:
        submit one batch (so a job submitted is in the checkpoint before anything else
        happens), or, when no batch is left to submit or no room, read every job's status in
        one show_many, after a short delay that grows while no job finishes (`_poll_wait`).

        A batch counts only once read back: soft deletions no longer shown by show_many,
        permanent ones each reported a success by the job (Zendesk has no read of a purged
        ticket). A job Zendesk no longer shows is submitted again. A batch is submitted twice
        only when the answer is lost (VendorHTTP sends the DELETE again) or the worker dies
        before the engine records it: its ids are then "not found", which counts as done."""
        pending, deleted, jobs = list(cp["pending"]), list(cp["deleted"]), dict(cp.get("jobs", {}))
        polls = cp.get("polls", 0)  # status reads of these jobs in which none finished
        verified: list[Verified] = []
        if pending and len(jobs) < MAX_JOBS:
            batch, pending = pending[:BULK], pending[BULK:]
            response = self.http.call("DELETE", path, params={"ids": ",".join(map(str, batch))},
                                      ok=(200, 404))
            if response.status_code == 404:  # none of them exists any more
                deleted += batch
                verified += [Verified("ticket", str(i), "gone already (404)") for i in batch]
            else:
                jobs[response.json()["job_status"]["id"]] = batch
        elif jobs:
            seconds, inline = self._poll_wait(polls)
            if inline:
                self.sleep(seconds)  # else the engine waited (Waiting) before this run
            statuses = self._json("GET", "/job_statuses/show_many",
                                  params={"ids": ",".join(jobs)}).get("job_statuses", [])
            before = len(jobs)
            for job_id in set(jobs) - {job["id"] for job in statuses}:
                pending += jobs.pop(job_id)  # Zendesk keeps job statuses for an hour: again
            for job in statuses:
                if job["id"] not in jobs or job["status"] in ("queued", "working"):
                    continue
                batch = jobs.pop(job["id"])
                failed = [r for r in job.get("results") or [] if r.get("success") is False and
                          "not found" not in str(r.get("errors", "")).lower()]
                # A person's retry submits this batch anew (its job would only fail again)
                # and reads the other jobs again.
                again = {**cp, "pending": list(cp["pending"]) + batch, "polls": 0,
                         "jobs": {k: v for k, v in cp["jobs"].items() if k != job["id"]}}
                if job["status"] != "completed" or failed:
                    return Failed(f"{self.label} job {job['id']} ended {job['status']}; "
                                  f"{len(failed)} of {len(batch)} deletions failed", again)
                if present is not None:
                    still_there = present(batch)
                    if still_there:
                        return Failed(f"{self.label} job {job['id']} reported success, but "
                                      f"{len(still_there)} of {len(batch)} tickets are still "
                                      f"there (#{still_there[0]}…) when read back", again)
                note = ("deleted: no longer shown (show_many) when read back" if present
                        else "permanently deleted: the job reported it")
                deleted += batch
                verified += [Verified("ticket", str(i), note) for i in batch]
            # The delay grows while nothing finishes, holds while jobs finish, and starts
            # again for the next wave.
            polls = 0 if not jobs else polls if len(jobs) < before else polls + 1
        checkpoint = {"pending": pending, "deleted": deleted, "jobs": jobs, "polls": polls}
        total = len(deleted) + len(pending) + sum(map(len, jobs.values()))
        note = f"{self.label}: deleting {total} ticket(s) in bulk jobs of {BULK}"
        if jobs and not (pending and len(jobs) < MAX_JOBS):  # the next run reads statuses
            seconds, inline = self._poll_wait(polls)
            if not inline:
                return Waiting(checkpoint, seconds, note, verified=tuple(verified))
        if jobs or pending:
            return Continue(checkpoint, note=f"{len(deleted)} of {total} deleted",
                            verified=tuple(verified))
        return Done({"deleted": deleted, "count": len(deleted)}, verified=tuple(verified))

    def _poll_wait(self, polls: int) -> tuple[float, bool]:
        """The delay before a job status read that follows `polls` reads in which no job
        finished, and whether the step sleeps it itself: FIRST_POLL, growing by POLL_GROWTH up
        to poll_seconds. Only the first, short ones are slept in the step (at most INLINE_POLL
        each, so a job that never ends cannot hold a worker); later ones go to the engine."""
        grown = FIRST_POLL * POLL_GROWTH ** polls
        return min(self.poll_seconds, grown), grown <= INLINE_POLL

    def _step_delete_users(self, run: StepRun, users: list[int], cp: dict) -> Outcome:
        verified = []
        for user_id in users:
            unclosed = [t["id"] for tickets, _ in
                        self._pages(f"/users/{user_id}/tickets/requested", "tickets")
                        for t in tickets if t["status"] != "closed"]
            if unclosed:
                shown = ", ".join(f"#{i}" for i in unclosed[:10])
                return Failed(f"{self.label} user {user_id} still requests {len(unclosed)} "
                              f"unclosed ticket(s) ({shown}) that the approved plan neither "
                              "closes nor deletes (new since the review, or left); Zendesk does "
                              "not delete such a user. Review the plan again to include them, or "
                              "close them in Zendesk, then retry.")
            response = self.http.call("DELETE", f"/users/{user_id}", ok=(200, 404, 422))
            if response.status_code == 422:
                return Failed(f"{self.label} refused to delete user {user_id} (422): it is "
                              "still linked to unclosed tickets.")
            shown = self.http.call("GET", f"/users/{user_id}", ok=(200, 404))
            if shown.status_code == 200 and shown.json()["user"].get("active", True):
                return Failed(f"{self.label} user {user_id} is still active when read back after "
                              "its deletion was answered: nothing is reported done; retry.")
            if shown.status_code == 404 and not self._exists(f"/deleted_users/{user_id}"):
                return Failed(f"{self.label} user {user_id} no longer exists, active or deleted")
            verified.append(Verified("user", str(user_id), "soft-deleted: read back inactive"))
        return Done({"soft_deleted_users": users}, verified=tuple(verified))

    def _step_purge_users(self, run: StepRun, users: list[int], cp: dict) -> Outcome:
        verified = []
        for user_id in users:
            response = self.http.call("DELETE", f"/deleted_users/{user_id}", ok=(200, 204, 404))
            if response.status_code == 404 and self._exists(f"/users/{user_id}") and \
                    self.http.call("GET", f"/users/{user_id}").json()["user"].get("active", True):
                return Failed(f"{self.label} user {user_id} is not soft-deleted; run delete first")
            if self._exists(f"/deleted_users/{user_id}") or self._exists(f"/users/{user_id}"):
                return Failed(f"{self.label} user {user_id} is still shown after its permanent "
                              "deletion was answered: nothing is reported done; retry.")
            verified.append(Verified("user", str(user_id), "permanently deleted: neither /users "
                                     "nor /deleted_users shows it"))
        return Done({"purged_users": users}, verified=tuple(verified))

    def _exists(self, path: str) -> bool:
        return self.http.call("GET", path, ok=(200, 404)).status_code == 200


def _comment_text(comment: dict[str, Any]) -> str:
    """What a comment says, a voice comment's transcription included."""
    data = comment.get("data") or {}
    return " ".join(str(part) for part in (comment.get("plain_body") or comment.get("body"),
                                           data.get("transcription_text")) if part)


def _redacted_file(attachment: dict[str, Any]) -> bool:
    return attachment.get("file_name") == "redacted.txt"


def _blot(text: str, finder: Finder) -> str:
    return finder.pattern.sub(lambda m: REDACTION_MARK * len(m.group()), text) if finder.pattern else text


def _tag_redactions(html_body: str, strings: list[str]) -> str:
    """The comment's html_body with each string wrapped in <redact> in its text (not inside
    tags), as PUT /comment_redactions/{id} expects."""
    if not strings:
        return html_body
    pattern = re.compile("|".join(re.escape(html.escape(s, quote=False)) for s in strings),
                         re.IGNORECASE)
    parts = re.split(r"(<[^>]*>)", html_body)
    return "".join(part if part.startswith("<") else
                   pattern.sub(lambda m: f"<redact>{m.group()}</redact>", part) for part in parts)
