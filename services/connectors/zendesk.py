"""Zendesk Support: search, export, rectify, suspend, and erase in the order Zendesk documents.

Erasure: find the tickets holding the subject's data (their own tickets, and a search for every
identifier and extra term), redact the strings in open tickets, delete closed tickets and those
whose data may be in attachments, delete those permanently, then soft-delete and permanently
delete the user. A user who still requests unclosed tickets is not forced: the step waits.

Each step re-reads Zendesk before it writes, so running it again after a crash skips what is
already done; Zendesk's "not found" for something we are deleting counts as done.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import httpx

from services.connectors.base import (
    Continue,
    Done,
    Failed,
    Outcome,
    PlannedStep,
    RequestSpec,
    StepRun,
    SubjectMatch,
    Waiting,
)
from services.connectors.http import Limits, VendorHTTP
from services.subjects import Identifier
from storage.models import IdentifierKind, RequestType

BULK = 100  # ids per bulk call, Zendesk's limit
TICKET_LISTS = ("requested", "ccd", "assigned")
TICKETS = "zendesk/tickets/"  # where exported tickets go in the archive


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

    def _job_state(self, job_id: str) -> tuple[str, list[dict[str, Any]]]:
        job = self._json("GET", f"/job_statuses/{job_id}")["job_status"]
        return job["status"], job.get("results") or []

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
            for user in self._json("GET", "/users/search", params=params).get("users", []):
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

    # Planning

    def plan(self, spec: RequestSpec) -> list[PlannedStep]:
        users = [int(c["record_id"]) for c in spec.confirmed]
        steps = {
            RequestType.ACCESS: ["export_users", "export_tickets"],
            RequestType.RECTIFICATION: ["rectify_users"],
            RequestType.OBJECTION: ["suspend_users"],
            RequestType.ERASURE: ["find_tickets", "redact_tickets", "delete_tickets",
                                  "purge_tickets", "delete_users", "purge_users"],
        }[spec.type]
        return [PlannedStep(action, {"users": users}) for action in steps]

    def run_step(self, run: StepRun) -> Outcome:
        handler = getattr(self, f"_step_{run.action}", None)
        if handler is None:
            return Failed(f"{self.label} has no step {run.action!r}")
        return handler(run, [int(u) for u in run.params.get("users", [])], run.checkpoint or {})

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
        """One page of one list per run; the checkpoint says where to resume. A ticket in two
        lists (requested and cc'd) is exported once: the sink knows what it holds, so the
        checkpoint stays small however many tickets the subject has."""
        position = cp.get("position", 0)  # index into users x TICKET_LISTS
        if position >= len(users) * len(TICKET_LISTS):
            return Done({"tickets": run.sink.count(TICKETS)})
        user_id = users[position // len(TICKET_LISTS)]
        which = TICKET_LISTS[position % len(TICKET_LISTS)]
        tickets, after = next(self._pages(f"/users/{user_id}/tickets/{which}", "tickets",
                                          after=cp.get("after")))
        exported = cp.get("exported", 0)
        for ticket in tickets:
            name = f"{TICKETS}{ticket['id']}.json"
            if run.sink.exists(name):
                continue
            comments = [c for page, _ in self._pages(f"/tickets/{ticket['id']}/comments",
                                                      "comments") for c in page]
            run.sink.write(name, {"ticket": ticket, "comments": comments})
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
        return Done({"users": len(users), "fields": sorted(set(changed))})

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
        return Done({"suspended_users": len(users)})

    # Erasure

    def _terms(self, run: StepRun) -> list[str]:
        """Every string that identifies the subject in ticket text."""
        kinds = (IdentifierKind.NAME, IdentifierKind.EMAIL, IdentifierKind.PHONE,
                 IdentifierKind.EXTERNAL_ID)
        terms = [i.value for i in run.spec.identifiers if i.kind in kinds]
        for confirmed in run.spec.confirmed:
            details = confirmed.get("details") or {}
            terms += [details[k] for k in ("name", "email", "phone") if details.get(k)]
        terms += list(run.spec.search_terms)
        return sorted({t.strip() for t in terms if t and len(t.strip()) >= 3}, key=str.lower)

    def _step_find_tickets(self, run: StepRun, users: list[int], cp: dict) -> Outcome:
        status: dict[int, str] = {}
        for user_id in users:
            for which in TICKET_LISTS:
                for tickets, _ in self._pages(f"/users/{user_id}/tickets/{which}", "tickets"):
                    status.update({t["id"]: t["status"] for t in tickets})
        for term in self._terms(run):
            query = f'type:ticket "{term}"'
            for tickets, _ in self._pages("/search/export", "results",
                                          {"query": query, "filter[type]": "ticket"}):
                status.update({t["id"]: t["status"] for t in tickets})
        closed = sorted(i for i, s in status.items() if s == "closed")
        open_ = sorted(i for i, s in status.items() if s != "closed")
        return Done({"tickets": len(status), "to_delete": closed, "to_redact": open_})

    def _step_redact_tickets(self, run: StepRun, users: list[int], cp: dict) -> Outcome:
        """One ticket per run: redact every term in its comments, or mark it for deletion."""
        targets = run.earlier_results.get("find_tickets", {}).get("to_redact", [])
        index, redacted, to_delete = cp.get("index", 0), cp.get("redacted", 0), cp.get("to_delete", [])
        if index >= len(targets):
            return Done({"tickets": len(targets) - len(to_delete), "redactions": redacted,
                         "to_delete": to_delete})
        ticket_id = targets[index]
        pattern = re.compile("|".join(re.escape(t) for t in self._terms(run)), re.IGNORECASE)
        outcome = self._redact_ticket(ticket_id, pattern)
        if outcome == "delete":
            to_delete = [*to_delete, ticket_id]
        else:
            redacted += outcome
        return Continue({"index": index + 1, "redacted": redacted, "to_delete": to_delete},
                        note=f"{index + 1} of {len(targets)} tickets checked")

    def _redact_ticket(self, ticket_id: int, pattern: re.Pattern[str]) -> int | str:
        """Redactions made, or "delete" when the data may sit in attachments or it is closed."""
        comments = []
        for page, _ in self._pages(f"/tickets/{ticket_id}/comments", "comments"):
            comments.extend(page)
        if not comments:
            return 0  # deleted meanwhile: nothing left to redact
        mentions = [(c, sorted(set(pattern.findall(c.get("body") or "")))) for c in comments]
        if any(c.get("attachments") for c, _ in mentions):
            return "delete"
        count = 0
        for comment, found in mentions:
            for text in found:
                response = self.http.call("PUT", f"/tickets/{ticket_id}/comments/{comment['id']}/redact",
                                      json={"text": text}, ok=(200, 404, 422))
                if response.status_code == 422:
                    return "delete"  # closed meanwhile: closed tickets cannot be redacted
                count += response.status_code == 200
        return count

    def _step_delete_tickets(self, run: StepRun, users: list[int], cp: dict) -> Outcome:
        if not cp:
            found = run.earlier_results.get("find_tickets", {})
            marked = run.earlier_results.get("redact_tickets", {}).get("to_delete", [])
            cp = {"pending": sorted({*found.get("to_delete", []), *marked}), "deleted": []}
        return self._bulk_delete(cp, "/tickets/destroy_many", present=self._existing_tickets)

    def _step_purge_tickets(self, run: StepRun, users: list[int], cp: dict) -> Outcome:
        if not cp:
            cp = {"pending": run.earlier_results.get("delete_tickets", {}).get("deleted", []),
                  "deleted": []}
        return self._bulk_delete(cp, "/deleted_tickets/destroy_many", present=None)

    def _existing_tickets(self, ids: list[int]) -> list[int]:
        body = self._json("GET", "/tickets/show_many", params={"ids": ",".join(map(str, ids))})
        return [t["id"] for t in body.get("tickets", [])]

    def _bulk_delete(self, cp: dict, path: str,
                     present: Callable[[list[int]], list[int]] | None) -> Outcome:
        """Delete `cp["pending"]` in batches of 100, one job at a time, polling each job."""
        pending, deleted = list(cp["pending"]), list(cp["deleted"])
        if cp.get("job"):
            state, results = self._job_state(cp["job"])
            if state in ("queued", "working"):
                return Waiting(cp, self.poll_seconds, f"{self.label} job {cp['job']} is {state}")
            batch = cp["batch"]
            failed = [r for r in results if r.get("success") is False and
                      "not found" not in str(r.get("errors", "")).lower()]
            if state != "completed" or failed:
                return Failed(f"{self.label} job {cp['job']} ended {state}; "
                              f"{len(failed)} of {len(batch)} deletions failed")
            return Continue({"pending": pending, "deleted": deleted + batch},
                            note=f"{len(deleted) + len(batch)} deleted")
        if not pending:
            return Done({"deleted": deleted, "count": len(deleted)})
        batch, rest = pending[:BULK], pending[BULK:]
        if present is not None:
            still_there = set(present(batch))
            deleted += [i for i in batch if i not in still_there]  # deleted by an earlier run
            batch = [i for i in batch if i in still_there]
            if not batch:
                return Continue({"pending": rest, "deleted": deleted})
        response = self.http.call("DELETE", path, params={"ids": ",".join(map(str, batch))},
                              ok=(200, 404))
        if response.status_code == 404:  # none of them exists any more
            return Continue({"pending": rest, "deleted": deleted + batch})
        job = response.json()["job_status"]
        return Waiting({"pending": rest, "deleted": deleted, "job": job["id"], "batch": batch},
                       self.poll_seconds, f"{self.label} job {job['id']} deleting {len(batch)}")

    def _step_delete_users(self, run: StepRun, users: list[int], cp: dict) -> Outcome:
        for user_id in users:
            unclosed = [t["id"] for tickets, _ in
                        self._pages(f"/users/{user_id}/tickets/requested", "tickets")
                        for t in tickets if t["status"] != "closed"]
            if unclosed:
                shown = ", ".join(f"#{i}" for i in unclosed[:10])
                return Waiting(cp, self.unclosed_recheck_seconds,
                               f"{self.label} user {user_id} still requests {len(unclosed)} "
                               f"unclosed ticket(s) ({shown}); Zendesk does not delete a "
                               "requester of unclosed tickets. Close them; this step checks again.")
            response = self.http.call("DELETE", f"/users/{user_id}", ok=(200, 404, 422))
            if response.status_code == 404 and not self._exists(f"/deleted_users/{user_id}"):
                return Failed(f"{self.label} user {user_id} no longer exists, active or deleted")
            if response.status_code == 422:
                return Waiting(cp, self.unclosed_recheck_seconds,
                               f"{self.label} refused to delete user {user_id} (422): it is "
                               "still linked to unclosed tickets.")
        return Done({"soft_deleted_users": users})

    def _step_purge_users(self, run: StepRun, users: list[int], cp: dict) -> Outcome:
        for user_id in users:
            response = self.http.call("DELETE", f"/deleted_users/{user_id}", ok=(200, 204, 404))
            if response.status_code == 404 and self._exists(f"/users/{user_id}"):
                return Failed(f"{self.label} user {user_id} is not soft-deleted; run delete first")
        return Done({"purged_users": users})

    def _exists(self, path: str) -> bool:
        return self.http.call("GET", path, ok=(200, 404)).status_code == 200

