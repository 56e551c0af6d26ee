"""The Zendesk stand-in, served on a real localhost socket: through zenpy, then with httpx.

zenpy is pointed at the server with the switches it supports for this (facetoe/zenpy#406):
`ZENPY_FORCE_NETLOC=127.0.0.1:PORT` and `ZENPY_FORCE_SCHEME=http`, read on every request, set
here with monkeypatch so they never leak into other tests. `subdomain` must still be given.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from zenpy import Zenpy
from zenpy.lib.exception import APIException, RecordNotFoundException

from services.sandbox import server
from services.sandbox.traffic import FaultPlan
from services.vendors.zendesk import standin_state as zendesk_state
from services.vendors.zendesk.standin import ENDPOINT_LIMITS, EndpointLimits, ZendeskSandbox
from services.vendors.zendesk.standin_search import Matcher
from services.vendors.zendesk.standin_seed import CONTACT_EMAIL_FIELD, ORDER_NUMBER_FIELD
from services.vendors.zendesk.standin_state import (
    DELETED_USER_NAME,
    REDACTED_FILE_NAME,
    REDACTION_MARK,
    WRITE_KINDS,
)

EMAIL, TOKEN = "agent@example.com", "sandbox-token"
AUTH = (f"{EMAIL}/token", TOKEN)
RETRYABLE = {429, 500, 502, 503, 504}
FIRST_PERSON_ID = 1_000_004  # seeded users: the API admin, two agents, then the people


@dataclass
class Served:
    sandbox: ZendeskSandbox
    url: str  # the server's root; the API is under /api/v2
    api: httpx.Client  # authenticated, based at /api/v2

    def job_until_done(self, job: dict[str, Any]) -> dict[str, Any]:
        for _ in range(20):
            job = self.api.get(f"/job_statuses/{job['id']}").json()["job_status"]
            if job["status"] == "completed":
                return job
        raise AssertionError(f"job {job['id']} never completed")


@pytest.fixture
def start() -> Iterator[Callable[..., Served]]:
    """Start a sandbox (small, no rate limit unless asked) on its own server."""
    with ExitStack() as stack:
        def start_(**options: Any) -> Served:
            sandbox = ZendeskSandbox(**{"people": 12, "requests_per_minute": None, **options})
            running = stack.enter_context(server.serve(sandbox.wsgi))
            api = stack.enter_context(httpx.Client(base_url=f"{running.url}/api/v2", auth=AUTH,
                                                   timeout=10))
            return Served(sandbox, running.url, api)

        yield start_


@pytest.fixture
def zd(start: Callable[..., Served]) -> Served:
    return start()


def zenpy_on(zd: Served, monkeypatch: pytest.MonkeyPatch) -> Zenpy:
    """A zenpy client of the server `zd` runs on."""
    monkeypatch.setenv("ZENPY_FORCE_NETLOC", zd.url.removeprefix("http://"))
    monkeypatch.setenv("ZENPY_FORCE_SCHEME", "http")
    return Zenpy(subdomain="sandbox", email=EMAIL, token=TOKEN, disable_cache=True)


@pytest.fixture
def zenpy(zd: Served, monkeypatch: pytest.MonkeyPatch) -> Zenpy:
    return zenpy_on(zd, monkeypatch)


class Clock:
    """Seconds that only move when a test moves them."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def person(zd: Served) -> dict[str, Any]:
    """A subject with known data: an open ticket mentioning them twice, a closed one, a cc."""
    sandbox = zd.sandbox
    user = sandbox.add_user("Ada Quill", "ada.quill@example.org", "+15559990001", "CUST-ADA")
    other = sandbox.add_user("Bo Reed", "bo.reed@example.org", "+15559990002")
    agent = sandbox.state.agent_ids[0]
    open_ticket = sandbox.add_ticket(
        user["id"], subject="Refund", assignee_id=agent,
        description="I am Ada Quill, mail me at ada.quill@example.org or ada.quill@example.org.",
        comments=["Hi Ada, done."])
    closed_ticket = sandbox.add_ticket(user["id"], subject="Old", status="closed",
                                       description="Ada Quill, +15559990001")
    cc_ticket = sandbox.add_ticket(other["id"], subject="Shared", collaborator_ids=[user["id"]],
                                   description="Copying ada quill on this.")
    return {"user": user, "other": other, "agent": agent, "open": open_ticket,
            "closed": closed_ticket, "cc": cc_ticket}


def comments_of(zd: Served, ticket_id: int) -> list[dict[str, Any]]:
    return zd.api.get(f"/tickets/{ticket_id}/comments").json()["comments"]


def phrase_search(zd: Served, text: str) -> set[int]:
    """The tickets a search for the phrase finds."""
    results = zd.api.get("/search", params={"query": f'type:ticket "{text}"'}).json()["results"]
    return {r["id"] for r in results}


def retrying(zd: Served, method: str, url: str, **options: Any) -> httpx.Response:
    """Call until the answer is not a 429 or 5xx (injected faults)."""
    for _ in range(100):
        answer = zd.api.request(method, url, **options)
        if answer.status_code not in RETRYABLE:
            return answer
    raise AssertionError(f"{method} {url} kept failing")


def erase_first_person(zd: Served) -> None:
    """An erasure, as the connector will run it: search, redact, delete, purge, then the user."""
    email = zd.sandbox.state.users[FIRST_PERSON_ID]["email"]
    user = retrying(zd, "GET", "/users/search", params={"query": email}).json()["users"][0]
    tickets = retrying(zd, "GET", "/search", params={"query": f'type:ticket "{email}"'}).json()
    to_delete = []
    for ticket in tickets["results"]:
        if ticket["status"] == "closed" or ticket["requester_id"] == user["id"]:
            to_delete.append(ticket["id"])
            continue
        for comment in retrying(zd, "GET", f"/tickets/{ticket['id']}/comments").json()["comments"]:
            if email in comment["body"]:
                retrying(zd, "PUT", f"/tickets/{ticket['id']}/comments/{comment['id']}/redact",
                         json={"text": email})
    requested = retrying(zd, "GET", f"/users/{user['id']}/tickets/requested").json()["tickets"]
    to_delete = sorted(set(to_delete) | {t["id"] for t in requested})
    if to_delete:
        ids = ",".join(map(str, to_delete))
        for path in ("/tickets/destroy_many", "/deleted_tickets/destroy_many"):
            job = retrying(zd, "DELETE", path, params={"ids": ids}).json()["job_status"]
            while job["status"] != "completed":
                job = retrying(zd, "GET", f"/job_statuses/{job['id']}").json()["job_status"]
    assert retrying(zd, "DELETE", f"/users/{user['id']}").status_code == 200
    assert retrying(zd, "DELETE", f"/deleted_users/{user['id']}").status_code == 200


# --- through zenpy ----------------------------------------------------------------------------

class TestThroughZenpy:
    def test_finds_a_person_and_reads_their_data(self, zenpy: Zenpy, person: dict) -> None:
        found = list(zenpy.users.search(query="ada.quill@example.org"))
        assert [u.id for u in found] == [person["user"]["id"]]

        user = zenpy.users(id=found[0].id)
        assert (user.name, user.phone, user.external_id) == (
            "Ada Quill", "+15559990001", "CUST-ADA")
        identities = list(zenpy.users.identities(id=user.id))
        assert {(i.type, i.value) for i in identities} == {
            ("email", "ada.quill@example.org"), ("phone_number", "+15559990001")}

        requested = list(zenpy.users.requested(user))
        assert sorted(t.id for t in requested) == [person["open"]["id"], person["closed"]["id"]]
        assert [t.id for t in zenpy.users.cced(user)] == [person["cc"]["id"]]

        comments = list(zenpy.tickets.comments(person["open"]["id"]))
        assert [c.body for c in comments] == [
            "I am Ada Quill, mail me at ada.quill@example.org or ada.quill@example.org.",
            "Hi Ada, done."]

    def test_suspends_a_user(self, zenpy: Zenpy, zd: Served, person: dict) -> None:
        user = zenpy.users(id=person["user"]["id"])
        user.suspended = True
        assert zenpy.users.update(user).suspended is True
        assert zd.sandbox.snapshot()["suspended_users"] == [person["user"]["id"]]

    def test_soft_deletes_a_ticket_then_the_user(self, zenpy: Zenpy, zd: Served,
                                                 person: dict) -> None:
        assert zenpy.tickets.delete(zenpy.tickets(id=person["open"]["id"])).status_code == 204
        with pytest.raises(RecordNotFoundException):
            zenpy.tickets(id=person["open"]["id"])

        deleted = zenpy.users.delete(zenpy.users(id=person["user"]["id"]))
        assert deleted.active is False
        assert zd.sandbox.snapshot()["deleted_users"] == [person["user"]["id"]]

    def test_follows_search_pages(self, zenpy: Zenpy, zd: Served) -> None:
        requester = zd.sandbox.add_user("Page Walker", "walker@example.org")
        for n in range(130):
            zd.sandbox.add_ticket(requester["id"], subject=f"walk {n}",
                                  description="zebra crossing")
        found = list(zenpy.search("zebra", type="ticket"))
        assert len(found) == 130 and len({t.id for t in found}) == 130
        # zenpy's search_export puts `type:ticket` in the query as well as in filter[type]
        # (SearchEndpoint), which Zendesk refuses; the export itself is tested with httpx.
        with pytest.raises(APIException) as refused:
            list(zenpy.search_export("zebra", type="ticket"))
        assert refused.value.response.status_code == 400


# --- the HTTP surface -------------------------------------------------------------------------

class TestHttp:
    def test_paths_with_and_without_json(self, zd: Served, person: dict) -> None:
        user_id = person["user"]["id"]
        for path in (f"/users/{user_id}", f"/users/{user_id}/identities",
                     f"/users/{user_id}/tickets/requested", "/search"):
            bare = zd.api.get(path, params={"query": "ada"})
            suffixed = zd.api.get(f"{path}.json", params={"query": "ada"})
            assert bare.status_code == suffixed.status_code == 200, path
            assert bare.json() == suffixed.json()

    def test_records_carry_the_contract_fields(self, zd: Served, person: dict) -> None:
        user = zd.api.get(f"/users/{person['user']['id']}").json()["user"]
        assert {"id", "url", "name", "email", "phone", "external_id", "role", "active",
                "suspended", "verified", "organization_id", "tags", "notes", "details",
                "user_fields", "created_at", "updated_at"} <= user.keys()
        assert user["url"] == f"{zd.url}/api/v2/users/{user['id']}.json"
        ticket = zd.api.get(f"/tickets/{person['open']['id']}").json()["ticket"]
        assert {"id", "url", "subject", "description", "status", "requester_id", "submitter_id",
                "assignee_id", "collaborator_ids", "tags", "created_at",
                "updated_at"} <= ticket.keys()
        comment = comments_of(zd, person["open"]["id"])[0]
        assert {"id", "type", "body", "html_body", "plain_body", "public", "author_id",
                "attachments", "created_at"} <= comment.keys()
        identity = zd.api.get(f"/users/{user['id']}/identities").json()["identities"][0]
        assert {"id", "user_id", "type", "value", "verified", "primary"} <= identity.keys()
        assert ticket["created_at"].startswith("2025-") and ticket["created_at"].endswith("Z")

    @pytest.mark.parametrize("auth", [
        None, ("agent@example.com/token", "wrong"), ("agent@example.com", TOKEN),
        ("someone@example.com/token", TOKEN),
    ])
    def test_refuses_bad_credentials(self, zd: Served, auth: tuple[str, str] | None) -> None:
        answer = httpx.get(f"{zd.url}/api/v2/users/1000001.json", auth=auth)
        assert answer.status_code == 401
        assert answer.json() == {"error": "Couldn't authenticate you"}

    def test_accepts_a_bearer_token_only_if_right(self, zd: Served) -> None:
        url = f"{zd.url}/api/v2/users/1000001"
        assert httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert httpx.get(url, headers={"Authorization": "Bearer nope"}).status_code == 401

    def test_missing_records_use_zendesk_404(self, zd: Served) -> None:
        for path in ("/users/999", "/tickets/99999", "/tickets/99999/comments",
                     "/job_statuses/abcdef", "/deleted_users/1000001"):
            answer = zd.api.get(path)
            assert answer.status_code == 404, path
            assert answer.json() == {"error": "RecordNotFound", "description": "Not found"}

    def test_show_many_takes_at_most_100_ids(self, zd: Served, person: dict) -> None:
        ids = [person["user"]["id"], person["other"]["id"], *range(1, 99)]
        answer = zd.api.get("/users/show_many", params={"ids": ",".join(map(str, ids))})
        assert [u["id"] for u in answer.json()["users"]] == ids[:2]
        too_many = zd.api.get("/users/show_many", params={"ids": ",".join(map(str, range(101)))})
        assert too_many.status_code == 400
        assert too_many.json()["error"] == "TooManyValues"
        ids_101 = ",".join(map(str, range(1, 102)))
        assert zd.api.get("/tickets/show_many", params={"ids": ids_101}).status_code == 400


class TestPaging:
    def test_offset_pages_link_each_other(self, zd: Served) -> None:
        requester = zd.sandbox.add_user("Many Tickets", "many@example.org")
        made = [zd.sandbox.add_ticket(requester["id"], subject=f"n{n}", description="x")["id"]
                for n in range(7)]
        url, seen, pages = f"/users/{requester['id']}/tickets/requested?per_page=3", [], []
        while url:
            page = zd.api.get(url).json()
            assert page["count"] == 7
            pages.append(page)
            seen += [t["id"] for t in page["tickets"]]
            url = page["next_page"]
        assert seen == made and len(pages) == 3
        assert pages[0]["previous_page"] is None
        assert pages[2]["previous_page"].startswith(f"{zd.url}/api/v2/users/")
        assert "page=2" in pages[2]["previous_page"]

    def test_offset_paging_stops_at_10000_records(self, zd: Served) -> None:
        assert zd.api.get("/deleted_tickets", params={"page": 100}).status_code == 200
        answer = zd.api.get("/deleted_tickets", params={"page": 101, "per_page": 100})
        assert answer.status_code == 400
        beyond = zd.api.get("/deleted_tickets", params={"page": 201, "per_page": 50})
        assert beyond.status_code == 400

    def test_cursor_pages_on_a_list(self, zd: Served, person: dict) -> None:
        first = zd.api.get(f"/tickets/{person['open']['id']}/comments",
                           params={"page[size]": 1}).json()
        assert first["meta"]["has_more"] is True and "count" not in first
        second = zd.api.get(first["links"]["next"]).json()
        assert second["meta"]["has_more"] is False
        assert [c["body"] for c in first["comments"] + second["comments"]] == [
            c["body"] for c in comments_of(zd, person["open"]["id"])]
        assert zd.api.get(f"/tickets/{person['open']['id']}/comments",
                          params={"page[size]": 101}).status_code == 400
        comments_cursor = first["meta"]["after_cursor"]
        foreign = zd.api.get("/search/export", params={
            "query": "ada", "filter[type]": "ticket", "page[after]": comments_cursor})
        assert foreign.status_code == 400

    def test_search_is_capped_at_1000_results(self, zd: Served) -> None:
        requester = zd.sandbox.add_user("Bulk Requester", "bulk@example.org")
        for n in range(1001):
            zd.sandbox.add_ticket(requester["id"], subject=f"bulk {n}", description="capybara")
        url, pages, seen = "/search.json?query=capybara type:ticket", 0, set()
        while pages < 10:
            page = zd.api.get(url).json()
            assert page["count"] == 1001
            seen |= {r["id"] for r in page["results"]}
            pages, url = pages + 1, page["next_page"]
        assert len(seen) == 1000 and url is not None  # a next page is offered: page 11
        eleventh = zd.api.get(url)
        assert eleventh.status_code == 422
        assert eleventh.json() == {
            "error": "invalid",
            "description": "Invalid search: Requested response size was greater than "
                           "Search Response Limits"}

    def test_export_pages_with_cursors(self, zd: Served) -> None:
        requester = zd.sandbox.add_user("Export Requester", "export@example.org")
        made = [zd.sandbox.add_ticket(requester["id"], subject=f"e{n}",
                                      description="okapi sighting")["id"] for n in range(150)]
        params: dict[str, str | int] = {"query": "okapi", "filter[type]": "ticket",
                                        "page[size]": 100}
        first = zd.api.get("/search/export", params=params).json()
        assert len(first["results"]) == 100 and "count" not in first
        assert first["meta"]["has_more"] is True and first["meta"]["after_cursor"]
        assert httpx.URL(first["links"]["next"]).params["page[after]"] == first["meta"][
            "after_cursor"]
        second = zd.api.get("/search/export", params={
            **params, "page[after]": first["meta"]["after_cursor"]}).json()
        assert second["meta"]["has_more"] is False
        assert [r["id"] for r in first["results"] + second["results"]] == made
        assert {r["result_type"] for r in second["results"]} == {"ticket"}
        assert zd.api.get("/search/export", params={"query": "okapi"}).status_code == 400


    def test_a_page_costs_what_it_holds(self, zd: Served, monkeypatch: pytest.MonkeyPatch) -> None:
        """Paging through a user's 300 tickets copies each one once and reads each ticket of the
        account about once, however many pages: no page copies or matches every ticket (issue
        14: exporting 10 times the tickets took 20 times as long)."""
        mine = zd.sandbox.add_user("Many Tickets", "many@example.org")
        other = zd.sandbox.add_user("Someone Else", "else@example.org")
        made = []
        for n in range(300):
            made.append(zd.sandbox.add_ticket(mine["id"], subject=f"m{n}", description="okapi")["id"])
            if n % 6 == 0:  # someone else's tickets in between, which searches pass over
                zd.sandbox.add_ticket(other["id"], subject=f"o{n}", description="okapi")
        copied, matched = Counter(), Counter()

        class CountingCopy:
            def deepcopy(self, value: Any, memo: Any = None) -> Any:
                if isinstance(value, dict) and "requester_id" in value:
                    copied[value["id"]] += 1
                return copy.deepcopy(value, memo)

        def counting_match(self: Matcher, ticket: dict[str, Any], term: Any) -> bool:
            matched[ticket["id"]] += 1
            return match(self, ticket, term)

        match = Matcher.ticket
        monkeypatch.setattr(zendesk_state, "copy", CountingCopy())
        monkeypatch.setattr(Matcher, "ticket", counting_match)

        def pages(path: str, key: str, **params: Any) -> tuple[list[int], int]:
            ids: list[int] = []
            for number in range(1, 100):
                body = zd.api.get(path, params={"page[size]": 10, **params}).json()
                ids += [record["id"] for record in body[key]]
                if not body["meta"]["has_more"]:
                    return ids, number
                params["page[after]"] = body["meta"]["after_cursor"]
            raise AssertionError("more pages than tickets")

        exported, count = pages("/search/export", "results", query=f"requester:{mine['id']}",
                                **{"filter[type]": "ticket"})
        assert exported == made and count == 30
        assert set(copied) == set(made) and set(copied.values()) == {1}
        # every ticket once, and each page's look-ahead (the first match past it) once more
        assert sum(matched.values()) <= len(zd.sandbox.state.tickets) + count

        copied.clear()
        listed, count = pages(f"/users/{mine['id']}/tickets/requested", "tickets")
        assert listed == made and count == 30 and copied == Counter(made)
        copied.clear()
        offset = [t["id"] for n in range(1, 31) for t in zd.api.get(
            f"/users/{mine['id']}/tickets/requested", params={"page": n, "per_page": 10}
        ).json()["tickets"]]
        assert offset == made and copied == Counter(made)


class TestSearch:
    def ticket_ids(self, zd: Served, query: str) -> set[int]:
        answer = zd.api.get("/search", params={"query": query})
        assert answer.status_code == 200, answer.text
        return {r["id"] for r in answer.json()["results"] if r["result_type"] == "ticket"}

    def test_free_text_and_phrases(self, zd: Served, person: dict) -> None:
        ids = {k: person[k]["id"] for k in ("open", "closed", "cc")}
        assert self.ticket_ids(zd, 'type:ticket "ada quill"') == set(ids.values())
        assert self.ticket_ids(zd, "type:ticket ADA.QUILL@example.org") == {ids["open"]}
        assert self.ticket_ids(zd, "type:ticket +15559990001") == {ids["closed"]}
        assert self.ticket_ids(zd, "type:ticket refund ada") >= {ids["open"]}
        assert self.ticket_ids(zd, 'type:ticket "quill ada"') == set()

    def test_filters(self, zd: Served, person: dict) -> None:
        user = person["user"]
        ids = {k: person[k]["id"] for k in ("open", "closed", "cc")}
        assert self.ticket_ids(zd, f"requester:{user['email']}") == {ids["open"], ids["closed"]}
        assert self.ticket_ids(zd, f"requester:{user['id']} status<closed") == {ids["open"]}
        assert self.ticket_ids(zd, f"requester:{user['id']} status:closed") == {ids["closed"]}
        assert self.ticket_ids(zd, f"cc:{user['email']}") == {ids["cc"]}
        assert ids["open"] in self.ticket_ids(zd, f"assignee:{person['agent']} type:ticket")

    def test_users_by_name_email_phone(self, zd: Served, person: dict) -> None:
        for query in ("type:user quill", "type:user ada.quill@example.org",
                      "type:user +15559990001", "type:user name:quill"):
            results = zd.api.get("/search", params={"query": query}).json()["results"]
            assert [r["id"] for r in results] == [person["user"]["id"]], query
        by_external_id = zd.api.get("/users/search", params={"external_id": "CUST-ADA"}).json()
        assert [u["id"] for u in by_external_id["users"]] == [person["user"]["id"]]


class TestRedaction:
    def test_redacts_every_occurrence_on_an_open_ticket(self, zd: Served, person: dict) -> None:
        ticket_id = person["open"]["id"]
        comment = comments_of(zd, ticket_id)[0]
        answer = zd.api.put(f"/tickets/{ticket_id}/comments/{comment['id']}/redact.json",
                            json={"text": "ada.quill@example.org"})
        assert answer.status_code == 200
        redacted = answer.json()["comment"]
        mark = REDACTION_MARK * len("ada.quill@example.org")
        for key in ("body", "html_body", "plain_body"):
            assert "ada.quill@example.org" not in redacted[key]
            assert redacted[key].count(mark) == 2
        assert comments_of(zd, ticket_id)[0]["body"] == redacted["body"]
        assert phrase_search(zd, "ada.quill@example.org") == set()

    def test_refuses_the_old_endpoint_on_a_closed_ticket(self, zd: Served, person: dict) -> None:
        ticket_id = person["closed"]["id"]
        comment = comments_of(zd, ticket_id)[0]
        answer = zd.api.put(f"/tickets/{ticket_id}/comments/{comment['id']}/redact",
                            json={"text": "Ada Quill"})
        assert answer.status_code == 422
        assert answer.json()["error"] == "RecordInvalid"
        assert "closed" in json.dumps(answer.json()["details"])
        assert comments_of(zd, ticket_id)[0] == comment

    def test_comment_redactions_work_on_a_closed_ticket(self, zd: Served, person: dict) -> None:
        ticket_id = person["closed"]["id"]
        comment = comments_of(zd, ticket_id)[0]
        tagged = comment["html_body"].replace("+15559990001", "<redact>+15559990001</redact>")
        answer = zd.api.put(f"/comment_redactions/{comment['id']}",
                            json={"ticket_id": ticket_id, "html_body": tagged})
        assert answer.status_code == 200
        after = comments_of(zd, ticket_id)[0]
        for key in ("body", "html_body", "plain_body"):
            assert "+15559990001" not in after[key]
            assert REDACTION_MARK * len("+15559990001") in after[key]
        assert "Ada Quill" in after["body"]  # only what was tagged
        assert "<redact>" not in after["html_body"]

    def test_comment_redactions_need_the_current_html_body(self, zd: Served, person: dict) -> None:
        ticket_id = person["closed"]["id"]
        comment = comments_of(zd, ticket_id)[0]
        answer = zd.api.put(f"/comment_redactions/{comment['id']}",
                            json={"ticket_id": ticket_id, "html_body": "<redact>other</redact>"})
        assert answer.status_code == 422
        assert comments_of(zd, ticket_id)[0] == comment


class TestDeletion:
    @pytest.mark.parametrize("status", ["new", "open", "pending", "hold", "solved"])
    def test_a_requester_of_unclosed_tickets_is_not_deleted(self, zd: Served,
                                                            status: str) -> None:
        user = zd.sandbox.add_user("Still Waiting", "waiting@example.org")
        ticket = zd.sandbox.add_ticket(user["id"], subject="s", description="d", status=status)
        answer = zd.api.delete(f"/users/{user['id']}")
        assert answer.status_code == 422
        body = answer.json()
        assert body["error"] == "RecordInvalid"
        assert "not closed" in body["details"]["base"][0]["description"]
        assert zd.api.get(f"/users/{user['id']}").json()["user"]["active"] is True
        # once that ticket is deleted, nothing holds the user back
        assert zd.api.delete(f"/tickets/{ticket['id']}").status_code == 204
        assert zd.api.delete(f"/users/{user['id']}").json()["user"]["active"] is False

    def test_a_requester_of_closed_tickets_only_is_deleted(self, zd: Served) -> None:
        user = zd.sandbox.add_user("All Closed", "closed@example.org")
        zd.sandbox.add_ticket(user["id"], subject="s", description="d", status="closed")
        assert zd.api.delete(f"/users/{user['id']}.json").status_code == 200

    def test_tickets_are_soft_deleted_before_permanent_deletion(self, zd: Served,
                                                                person: dict) -> None:
        ticket_id, user_id = person["open"]["id"], person["user"]["id"]
        assert zd.api.delete(f"/deleted_tickets/{ticket_id}").status_code == 404
        assert zd.api.delete(f"/tickets/{ticket_id}").status_code == 204
        assert zd.api.get(f"/tickets/{ticket_id}").status_code == 404
        assert zd.api.get(f"/tickets/{ticket_id}/comments").status_code == 404
        assert ticket_id not in phrase_search(zd, "ada quill")
        requested = zd.api.get(f"/users/{user_id}/tickets/requested").json()["tickets"]
        assert ticket_id not in [t["id"] for t in requested]
        listed = zd.api.get("/deleted_tickets").json()["deleted_tickets"]
        assert [t["id"] for t in listed] == [ticket_id]
        assert listed[0]["previous_state"] == "open"

        job = zd.api.delete(f"/deleted_tickets/{ticket_id}").json()["job_status"]
        assert job["status"] == "queued"
        assert zd.job_until_done(job)["results"] == [
            {"id": ticket_id, "action": "delete", "success": True, "status": "Deleted"}]
        assert zd.api.get("/deleted_tickets").json()["deleted_tickets"] == []
        snapshot = zd.sandbox.snapshot()
        assert ticket_id not in [t["id"] for t in snapshot["tickets"]]
        assert ticket_id not in [c["ticket_id"] for c in snapshot["comments"]]

    def test_users_are_soft_deleted_before_permanent_deletion(self, zd: Served,
                                                              person: dict) -> None:
        user_id = person["user"]["id"]
        assert zd.api.delete(f"/deleted_users/{user_id}").status_code == 404
        assert zd.api.delete(f"/tickets/{person['open']['id']}").status_code == 204
        assert zd.api.delete(f"/users/{user_id}").status_code == 200
        assert zd.api.get(f"/deleted_users/{user_id}").json()["deleted_user"]["id"] == user_id
        assert zd.api.get("/users/search", params={"query": "ada.quill@example.org"}).json()[
            "users"] == []

        purged = zd.api.delete(f"/deleted_users/{user_id}.json")
        assert purged.status_code == 200
        assert purged.json()["deleted_user"]["email"] is None
        assert zd.api.get(f"/deleted_users/{user_id}").status_code == 404
        assert zd.api.delete(f"/deleted_users/{user_id}").status_code == 404
        assert zd.api.get(f"/users/{user_id}").status_code == 404
        leftovers = zd.api.get("/deleted_users").json()["deleted_users"]
        assert [(u["id"], u["name"], u["email"]) for u in leftovers] == [
            (user_id, DELETED_USER_NAME, None)]
        closed = zd.api.get(f"/tickets/{person['closed']['id']}").json()["ticket"]
        assert closed["requester_id"] == user_id
        assert closed["via"]["source"]["from"] == {"address": None, "name": DELETED_USER_NAME}
        assert [i for i in zd.sandbox.snapshot()["identities"] if i["user_id"] == user_id] == []
        assert phrase_search(zd, "ada.quill@example.org") == set()

    def test_attachments_go_with_their_ticket(self, zd: Served, person: dict) -> None:
        ticket = zd.sandbox.add_ticket(person["user"]["id"], subject="Scan",
                                       description="My passport, attached.", attachment=True)
        attachment = comments_of(zd, ticket["id"])[0]["attachments"][0]
        assert attachment["content_url"].startswith(f"{zd.url}/attachments/token/")
        assert httpx.get(attachment["content_url"]).status_code == 200
        assert zd.api.delete(f"/tickets/{ticket['id']}").status_code == 204
        assert httpx.get(attachment["content_url"]).status_code == 404

    def test_bulk_deletion_in_batches_of_100_with_job_polling(self, zd: Served) -> None:
        requester = zd.sandbox.add_user("Bulk Owner", "bulk.owner@example.org")
        ids = [zd.sandbox.add_ticket(requester["id"], subject="b", description="d",
                                     status="closed")["id"] for _ in range(250)]
        batches = [ids[i:i + 100] for i in range(0, len(ids), 100)]
        too_many = zd.api.delete("/tickets/destroy_many", params={"ids": ",".join(map(str, ids))})
        assert too_many.status_code == 400

        jobs = []
        for batch in batches:
            answer = zd.api.delete("/tickets/destroy_many.json",
                                   params={"ids": ",".join(map(str, batch))})
            job = answer.json()["job_status"]
            assert (job["status"], job["total"], job["results"]) == ("queued", len(batch), None)
            assert job["url"].endswith(f"/api/v2/job_statuses/{job['id']}.json")
            jobs.append(job)
        assert zd.api.get(f"/tickets/{ids[0]}").status_code == 200  # not before completion

        working = zd.api.get(f"/job_statuses/{jobs[0]['id']}").json()["job_status"]
        assert working["status"] == "working" and 0 < working["progress"] < working["total"]
        assert zd.api.get(f"/tickets/{ids[0]}").status_code == 200
        for job in jobs:
            done = zd.job_until_done(job)
            assert done["progress"] == done["total"]
            assert all(r["success"] and r["status"] == "Deleted" for r in done["results"])
        assert zd.api.get(f"/tickets/{ids[0]}").status_code == 404
        assert len(zd.sandbox.snapshot()["deleted_tickets"]) == 250

        shown = zd.api.get("/job_statuses/show_many",
                           params={"ids": ",".join(j["id"] for j in jobs)}).json()
        assert [j["status"] for j in shown["job_statuses"]] == ["completed"] * 3

        purge = zd.api.delete("/deleted_tickets/destroy_many",
                              params={"ids": f"{ids[0]},{ids[1]},424242"}).json()["job_status"]
        results = zd.job_until_done(purge)["results"]
        assert [r["success"] for r in results] == [True, True, False]
        assert results[2]["id"] == 424242 and "RecordNotFound" in results[2]["errors"]

    def test_bulk_user_deletion_reports_each_user(self, zd: Served, person: dict) -> None:
        free = zd.sandbox.add_user("Free To Go", "free@example.org")
        ids = f"{free['id']},{person['user']['id']}"
        job = zd.api.delete("/users/destroy_many", params={"ids": ids}).json()["job_status"]
        results = zd.job_until_done(job)["results"]
        assert [(r["id"], r["success"]) for r in results] == [
            (free["id"], True), (person["user"]["id"], False)]
        assert "not closed" in results[1]["errors"]


class TestRectification:
    def test_updates_a_user_and_its_identities(self, zd: Served, person: dict) -> None:
        user_id = person["user"]["id"]
        answer = zd.api.put(f"/users/{user_id}", json={"user": {"email": "ada.new@example.org"}})
        assert answer.json()["user"]["email"] == "ada.new@example.org"
        identities = zd.api.get(f"/users/{user_id}/identities").json()["identities"]
        phone = next(i for i in identities if i["type"] == "phone_number")
        assert "ada.new@example.org" in [i["value"] for i in identities]
        changed = zd.api.put(f"/users/{user_id}/identities/{phone['id']}",
                             json={"identity": {"value": "+15559990009"}})
        assert changed.json()["identity"]["value"] == "+15559990009"
        assert zd.api.get(f"/users/{user_id}").json()["user"]["phone"] == "+15559990009"
        assert zd.api.delete(f"/users/{user_id}/identities/{phone['id']}").status_code == 204
        assert zd.api.get(f"/users/{user_id}").json()["user"]["phone"] is None

    def test_refuses_an_email_another_user_has(self, zd: Served, person: dict) -> None:
        answer = zd.api.put(f"/users/{person['user']['id']}",
                            json={"user": {"email": person["other"]["email"]}})
        assert answer.status_code == 422
        assert answer.json()["details"]["email"][0]["error"] == "DuplicateValue"

    def test_update_many_is_a_job(self, zd: Served, person: dict) -> None:
        ids = f"{person['user']['id']},{person['other']['id']}"
        job = zd.api.put("/users/update_many", params={"ids": ids},
                         json={"user": {"suspended": True}}).json()["job_status"]
        assert zd.sandbox.snapshot()["suspended_users"] == []
        assert all(r["status"] == "Updated" for r in zd.job_until_done(job)["results"])
        assert zd.sandbox.snapshot()["suspended_users"] == sorted(
            [person["user"]["id"], person["other"]["id"]])


class TestTraffic:
    def test_over_the_limit_is_429_with_retry_after(self, start: Callable[..., Served]) -> None:
        zd = start(requests_per_minute=5)
        answers = [zd.api.get("/users/1000001") for _ in range(6)]
        assert [a.status_code for a in answers] == [200] * 5 + [429]
        assert answers[0].headers["X-Rate-Limit"] == "5"
        assert answers[5].headers["Content-Type"].startswith("text/plain")
        assert answers[5].text == "Rate limit exceeded"
        assert int(answers[5].headers["Retry-After"]) >= 1

    def test_endpoint_limits(self) -> None:
        now = [0.0]
        limits = EndpointLimits(True, clock=lambda: now[0])
        calls, period = ENDPOINT_LIMITS["ticket_deletion"]
        assert all(limits.retry_after("ticket_deletion") is None for _ in range(calls))
        assert limits.retry_after("ticket_deletion") == int(period) + 1
        now[0] = period
        assert limits.retry_after("ticket_deletion") is None
        assert EndpointLimits(False).retry_after("ticket_deletion") is None

    def test_concurrent_clients_are_served_consistently(self, zd: Served) -> None:
        requester = zd.sandbox.add_user("Busy Requester", "busy@example.org")
        ids = [zd.sandbox.add_ticket(requester["id"], subject="c", description="walrus",
                                     status="closed")["id"] for _ in range(64)]

        def delete_and_search(chunk: list[int]) -> None:
            with httpx.Client(base_url=f"{zd.url}/api/v2", auth=AUTH, timeout=10) as client:
                for ticket_id in chunk:
                    assert client.delete(f"/tickets/{ticket_id}").status_code == 204
                    found = client.get("/search", params={"query": "walrus type:ticket"})
                    assert found.status_code == 200 and ticket_id not in {
                        r["id"] for r in found.json()["results"]}

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(delete_and_search, [ids[i::8] for i in range(8)]))
        assert zd.sandbox.snapshot()["deleted_tickets"] == ids
        assert zd.api.get("/search", params={"query": "walrus"}).json()["count"] == 0

    def test_injected_faults_leave_the_state_unchanged(self, start: Callable[..., Served]) -> None:
        calm = start(seed=4)
        stormy = start(seed=4, faults=FaultPlan(error_rate=0.4, seed=9))
        for zd in (calm, stormy):
            erase_first_person(zd)
        assert stormy.sandbox.traffic.stats.injected.total() > 5
        assert stormy.sandbox.snapshot() == calm.sandbox.snapshot()
        assert calm.sandbox.snapshot() != start(seed=4).sandbox.snapshot()

    def test_injected_errors_have_zendesk_bodies(self, start: Callable[..., Served]) -> None:
        zd = start(faults=FaultPlan(error_rate=1.0, rate_limit_share=0.5, retry_after=3, seed=1))
        answers = [zd.api.get("/users/1000001") for _ in range(20)]
        limited = [a for a in answers if a.status_code == 429]
        failed = [a for a in answers if a.status_code >= 500]
        assert limited and failed
        assert limited[0].text == "Rate limit exceeded" and limited[0].headers["Retry-After"] == "3"
        assert "error" in failed[0].json()


class TestSeededData:
    def test_same_seed_same_state_other_seed_other_state(self) -> None:
        first = ZendeskSandbox(seed=5, people=20).snapshot()
        assert first == ZendeskSandbox(seed=5, people=20).snapshot()
        assert first != ZendeskSandbox(seed=6, people=20).snapshot()
        json.dumps(first)  # JSON-able

    def test_people_become_users_with_varied_tickets(self) -> None:
        sandbox = ZendeskSandbox(seed=2, people=40)
        snapshot = sandbox.snapshot()
        end_users = [u for u in snapshot["users"] if u["role"] == "end-user"]
        assert len(end_users) == 40
        assert all(u["external_id"].startswith("CUST-002-") for u in end_users)
        agents = {u["id"] for u in snapshot["users"] if u["role"] == "agent"}
        tickets = snapshot["tickets"]
        assert {t["status"] for t in tickets} == {"new", "open", "pending", "hold", "solved",
                                                  "closed"}
        assert {t["assignee_id"] for t in tickets} - {None} <= agents
        assert any(t["collaborator_ids"] for t in tickets)
        assert any(c["attachments"] for c in snapshot["comments"])
        assert all(isinstance(r["id"], int) for r in snapshot["users"] + tickets)
        per_person = [sum(t["requester_id"] == u["id"] for t in tickets) for u in end_users]
        assert max(per_person) <= 6 and min(per_person) == 0
        users = {u["id"]: u for u in end_users}
        assert all(users[t["requester_id"]]["name"] in t["description"] for t in tickets)
        bodies = {c["ticket_id"]: "" for c in snapshot["comments"]}
        for comment in snapshot["comments"]:
            bodies[comment["ticket_id"]] += comment["body"]
        cc_mentioned = [t for t in tickets for cc in t["collaborator_ids"]
                        if users[cc]["email"] in bodies[t["id"]]]
        assert cc_mentioned  # people's data also sits in tickets of others
        kinds = {(i["user_id"], i["type"]) for i in snapshot["identities"]}
        assert all((u["id"], "email") in kinds and (u["id"], "phone_number") in kinds
                   for u in end_users)


# --- refusals, as the real API answers them ------------------------------------------------------

FORBIDDEN = {"error": "Forbidden",
             "description": "You do not have access to this page. Please contact the account "
                            "owner of this help desk for further help."}
CLOSED_PREVENTS_UPDATE = {
    "error": "RecordInvalid", "description": "Record validation errors",
    "details": {"status": [{"description": "Status closed prevents ticket update"}]}}


def export(zd: Served, query: str, **params: Any) -> httpx.Response:
    return zd.api.get("/search/export", params={"query": query, "filter[type]": "ticket",
                                                **params})


def inline_image(zd: Served, ticket_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The first comment of a ticket and its inline image, listed with include_inline_images."""
    comment = zd.api.get(f"/tickets/{ticket_id}/comments",
                         params={"include_inline_images": "true"}).json()["comments"][0]
    return comment, next(a for a in comment["attachments"] if a["inline"])


class TestRefusals:
    @pytest.mark.parametrize("query", ["okapi type:ticket", "type:user okapi", "-type:ticket okapi"])
    def test_export_refuses_a_type_in_the_query(self, zd: Served, query: str) -> None:
        requester = zd.sandbox.add_user("Export Requester", "export@example.org")
        zd.sandbox.add_ticket(requester["id"], subject="s", description="okapi sighting")
        answer = export(zd, query)
        assert answer.status_code == 400
        assert answer.json()["error"] == "invalid"
        assert len(export(zd, "okapi").json()["results"]) == 1  # the same search, type in filter

    def test_export_refusal_through_zenpy(self, zenpy: Zenpy, zd: Served) -> None:
        with pytest.raises(APIException) as refused:
            list(zenpy.search_export("okapi", type="ticket"))
        assert refused.value.response.status_code == 400
        assert refused.value.response.json()["error"] == "invalid"

    def test_a_closed_ticket_refuses_updates(self, zd: Served, person: dict) -> None:
        ticket_id = person["closed"]["id"]
        before = zd.api.get(f"/tickets/{ticket_id}").json()["ticket"]
        for change in ({"subject": "New"}, {"status": "open"},
                       {"custom_fields": [{"id": 1, "value": "x"}]}):
            answer = zd.api.put(f"/tickets/{ticket_id}", json={"ticket": change})
            assert answer.status_code == 422
            assert answer.json() == CLOSED_PREVENTS_UPDATE
        assert zd.api.get(f"/tickets/{ticket_id}").json()["ticket"] == before

    def test_a_closed_ticket_refuses_updates_through_zenpy(self, zenpy: Zenpy,
                                                           person: dict) -> None:
        ticket = zenpy.tickets(id=person["closed"]["id"])
        ticket.subject = "Renamed"
        with pytest.raises(APIException) as refused:
            zenpy.tickets.update(ticket)
        assert refused.value.response.status_code == 422
        assert json.loads(str(refused.value)) == CLOSED_PREVENTS_UPDATE

    def test_attachments_of_closed_tickets_cannot_be_redacted(self, zd: Served,
                                                             person: dict) -> None:
        ticket = zd.sandbox.add_ticket(person["user"]["id"], subject="Scan", status="closed",
                                       description="passport", attachment=True)
        comment = comments_of(zd, ticket["id"])[0]
        attachment = comment["attachments"][0]
        answer = zd.api.put(f"/tickets/{ticket['id']}/comments/{comment['id']}/attachments/"
                            f"{attachment['id']}/redact", json={})
        assert answer.status_code == 422 and answer.json()["error"] == "RecordInvalid"
        assert comments_of(zd, ticket["id"])[0] == comment
        assert httpx.get(attachment["content_url"]).status_code == 200

    def test_without_delete_rights_deletion_and_redaction_are_403(
            self, start: Callable[..., Served]) -> None:
        zd = start(can_delete_tickets=False)
        user = zd.sandbox.add_user("No Rights", "norights@example.org")
        ticket = zd.sandbox.add_ticket(user["id"], subject="s", description="secret",
                                       attachment=True)
        comment = comments_of(zd, ticket["id"])[0]
        base = f"/tickets/{ticket['id']}/comments/{comment['id']}"
        answers = [
            zd.api.delete(f"/tickets/{ticket['id']}"),
            zd.api.delete("/tickets/destroy_many", params={"ids": str(ticket["id"])}),
            zd.api.put(f"{base}/redact", json={"text": "secret"}),
            zd.api.put(f"{base}/attachments/{comment['attachments'][0]['id']}/redact", json={}),
            zd.api.put(f"/comment_redactions/{comment['id']}", json={
                "ticket_id": ticket["id"],
                "html_body": comment["html_body"].replace("secret", "<redact>secret</redact>")}),
        ]
        assert [a.status_code for a in answers] == [403] * 5
        assert all(a.json() == FORBIDDEN for a in answers)
        assert comments_of(zd, ticket["id"])[0] == comment
        zd.sandbox.settings.can_delete_tickets = True  # an admin grants the right
        assert zd.api.delete(f"/tickets/{ticket['id']}").status_code == 204

    def test_without_delete_rights_zenpy_cannot_delete(self, start: Callable[..., Served],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
        zd = start(can_delete_tickets=False)
        user = zd.sandbox.add_user("No Rights", "norights@example.org")
        ticket = zd.sandbox.add_ticket(user["id"], subject="s", description="d")
        client = zenpy_on(zd, monkeypatch)
        with pytest.raises(APIException) as refused:
            client.tickets.delete(client.tickets(id=ticket["id"]))
        assert refused.value.response.status_code == 403
        assert client.tickets(id=ticket["id"]).id == ticket["id"]

    def test_comment_redactions_need_the_agent_workspace(self, start: Callable[..., Served]
                                                         ) -> None:
        zd = start(agent_workspace=False)
        user = zd.sandbox.add_user("Old Workspace", "old.ws@example.org")
        ticket = zd.sandbox.add_ticket(user["id"], subject="s", description="my secret")
        comment = comments_of(zd, ticket["id"])[0]
        answer = zd.api.put(f"/comment_redactions/{comment['id']}", json={
            "ticket_id": ticket["id"],
            "html_body": comment["html_body"].replace("secret", "<redact>secret</redact>")})
        assert (answer.status_code, answer.json()) == (403, FORBIDDEN)
        assert comments_of(zd, ticket["id"])[0] == comment
        # the old endpoint still works there, on tickets that are not closed
        redacted = zd.api.put(f"/tickets/{ticket['id']}/comments/{comment['id']}/redact",
                              json={"text": "secret"})
        assert REDACTION_MARK * 6 in redacted.json()["comment"]["body"]


# --- archived tickets ---------------------------------------------------------------------------

class TestArchivedTickets:
    @pytest.fixture
    def archived(self, zd: Served, person: dict) -> dict[str, Any]:
        return zd.sandbox.add_ticket(
            person["user"]["id"], subject="Old order", status="closed", archived=True,
            assignee_id=person["agent"], collaborator_ids=[person["other"]["id"]],
            description="Ada Quill again, phone +15559990001", attachment=True)

    def test_only_closed_tickets_are_archived(self, zd: Served, person: dict) -> None:
        with pytest.raises(ValueError, match="closed"):
            zd.sandbox.add_ticket(person["user"]["id"], subject="s", description="d",
                                  archived=True)

    def test_found_by_id_search_and_export_not_by_user_lists(
            self, zd: Served, person: dict, archived: dict) -> None:
        ticket_id = archived["id"]
        assert zd.api.get(f"/tickets/{ticket_id}").json()["ticket"]["status"] == "closed"
        assert comments_of(zd, ticket_id)[0]["body"].startswith("Ada Quill again")
        assert ticket_id in phrase_search(zd, "ada quill")
        assert ticket_id in {r["id"] for r in export(zd, '"ada quill"').json()["results"]}
        shown = zd.api.get("/tickets/show_many", params={"ids": str(ticket_id)}).json()
        assert [t["id"] for t in shown["tickets"]] == [ticket_id]
        lists = [(person["user"]["id"], "requested"), (person["other"]["id"], "ccd"),
                 (person["agent"], "assigned")]
        for user_id, relation in lists:
            listed = zd.api.get(f"/users/{user_id}/tickets/{relation}").json()["tickets"]
            assert ticket_id not in [t["id"] for t in listed], relation
        requested = zd.api.get(f"/users/{person['user']['id']}/tickets/requested").json()
        assert person["closed"]["id"] in [t["id"] for t in requested["tickets"]]

    def test_cannot_be_updated_nor_redacted_the_old_way(self, zd: Served,
                                                        archived: dict) -> None:
        ticket_id = archived["id"]
        comment = comments_of(zd, ticket_id)[0]
        updated = zd.api.put(f"/tickets/{ticket_id}", json={"ticket": {"subject": "x"}})
        assert (updated.status_code, updated.json()) == (422, CLOSED_PREVENTS_UPDATE)
        old = zd.api.put(f"/tickets/{ticket_id}/comments/{comment['id']}/redact",
                         json={"text": "Ada Quill"})
        assert old.status_code == 422
        file = zd.api.put(f"/tickets/{ticket_id}/comments/{comment['id']}/attachments/"
                          f"{comment['attachments'][0]['id']}/redact", json={})
        assert file.status_code == 422
        assert comments_of(zd, ticket_id)[0] == comment

    def test_comment_redactions_work_on_them(self, zd: Served, archived: dict) -> None:
        ticket_id = archived["id"]
        comment = comments_of(zd, ticket_id)[0]
        answer = zd.api.put(f"/comment_redactions/{comment['id']}", json={
            "ticket_id": ticket_id,
            "html_body": comment["html_body"].replace("+15559990001",
                                                      "<redact>+15559990001</redact>"),
            "external_attachment_urls": [comment["attachments"][0]["content_url"]]})
        assert answer.status_code == 200
        after = comments_of(zd, ticket_id)[0]
        assert "+15559990001" not in after["body"] and REDACTION_MARK * 12 in after["body"]
        assert after["attachments"][0]["file_name"] == REDACTED_FILE_NAME
        assert httpx.get(comment["attachments"][0]["content_url"]).status_code == 404

    def test_deleted_and_permanently_deleted(self, zd: Served, archived: dict) -> None:
        ticket_id = archived["id"]
        assert zd.api.delete(f"/tickets/{ticket_id}").status_code == 204
        assert zd.api.get(f"/tickets/{ticket_id}").status_code == 404
        # ListDeletedTickets: "Archived tickets are not included in the results"
        listed = zd.api.get("/deleted_tickets").json()["deleted_tickets"]
        assert ticket_id not in [t["id"] for t in listed]
        job = zd.api.delete(f"/deleted_tickets/{ticket_id}").json()["job_status"]
        assert zd.job_until_done(job)["results"][0]["success"] is True
        snapshot = zd.sandbox.snapshot()
        assert ticket_id not in [t["id"] for t in snapshot["tickets"]]
        assert ticket_id not in snapshot["archived_tickets"]


# --- inline images and attachment redaction -----------------------------------------------------

class TestInlineImagesAndAttachments:
    @pytest.fixture
    def with_image(self, zd: Served, person: dict) -> dict[str, Any]:
        return zd.sandbox.add_ticket(person["user"]["id"], subject="Screenshot",
                                     description="My account page, see the image.",
                                     inline_image=True, attachment=True)

    def test_inline_images_are_listed_only_when_asked(self, zd: Served,
                                                      with_image: dict) -> None:
        plain = comments_of(zd, with_image["id"])[0]
        assert [a["inline"] for a in plain["attachments"]] == [False]
        comment, image = inline_image(zd, with_image["id"])
        assert [a["inline"] for a in comment["attachments"]] == [False, True]
        assert image["content_type"] == "image/png"
        assert f'<img src="{image["content_url"]}"' in comment["html_body"]
        assert image["content_url"].startswith(f"{zd.url}/attachments/token/")
        assert httpx.get(image["content_url"]).status_code == 200
        shown = zd.api.get(f"/attachments/{image['id']}").json()["attachment"]
        assert shown["content_url"] == image["content_url"] and shown["inline"] is True

    def test_zenpy_lists_inline_images_with_the_parameter(self, zenpy: Zenpy,
                                                          with_image: dict) -> None:
        default = list(zenpy.tickets.comments(with_image["id"]))
        assert [a.inline for a in default[0].attachments] == [False]
        listed = list(zenpy.tickets.comments(with_image["id"], include_inline_images=True))
        assert [a.inline for a in listed[0].attachments] == [False, True]

    def test_zenpy_redacts_an_inline_image(self, zenpy: Zenpy, zd: Served,
                                           with_image: dict) -> None:
        comment, image = inline_image(zd, with_image["id"])
        answer = zenpy.attachments.redact(with_image["id"], comment["id"], image["id"])
        assert (answer.id, answer.file_name) == (image["id"], image["file_name"])  # as it was
        after, placeholder = inline_image(zd, with_image["id"])
        assert (placeholder["id"], placeholder["file_name"], placeholder["size"]) == (
            image["id"], REDACTED_FILE_NAME, 0)
        assert httpx.get(image["content_url"]).status_code == 404
        content = httpx.get(placeholder["content_url"])
        assert content.status_code == 200 and content.content == b""
        assert image["content_url"] not in after["html_body"]
        assert after["attachments"][0] == comment["attachments"][0]  # the other file stays

    def test_an_attachment_not_of_that_comment_is_404(self, zd: Served,
                                                      with_image: dict) -> None:
        comment = comments_of(zd, with_image["id"])[0]
        answer = zd.api.put(f"/tickets/{with_image['id']}/comments/{comment['id']}"
                            "/attachments/999/redact", json={})
        assert answer.status_code == 404

    def test_comment_redactions_redact_an_img_with_the_redact_attribute(
            self, zd: Served, with_image: dict) -> None:
        comment, image = inline_image(zd, with_image["id"])
        tagged = comment["html_body"].replace("<img ", "<img redact ")
        answer = zd.api.put(f"/comment_redactions/{comment['id']}",
                            json={"ticket_id": with_image["id"], "html_body": tagged})
        assert answer.status_code == 200
        assert "<img" not in answer.json()["comment"]["html_body"]
        _, placeholder = inline_image(zd, with_image["id"])
        assert placeholder["file_name"] == REDACTED_FILE_NAME
        assert httpx.get(image["content_url"]).status_code == 404

    def test_comment_redactions_by_external_attachment_urls(self, zd: Served,
                                                            with_image: dict) -> None:
        comment = comments_of(zd, with_image["id"])[0]
        pdf = comment["attachments"][0]
        answer = zd.api.put(f"/comment_redactions/{comment['id']}", json={
            "ticket_id": with_image["id"], "external_attachment_urls": [pdf["content_url"]]})
        assert answer.json()["comment"]["attachments"][0]["file_name"] == REDACTED_FILE_NAME
        assert answer.json()["comment"]["body"] == comment["body"]
        assert httpx.get(pdf["content_url"]).status_code == 404
        wrong = zd.api.put(f"/comment_redactions/{comment['id']}", json={
            "ticket_id": with_image["id"],
            "external_attachment_urls": [f"{zd.url}/attachments/token/nope/?name=x.pdf"]})
        assert wrong.status_code == 422

    def test_comment_redactions_without_what_to_redact_change_nothing(
            self, zd: Served, with_image: dict) -> None:
        comment = comments_of(zd, with_image["id"])[0]
        answer = zd.api.put(f"/comment_redactions/{comment['id']}",
                            json={"ticket_id": with_image["id"], "text": "My account"})
        assert answer.status_code == 200
        assert comments_of(zd, with_image["id"])[0]["body"] == comment["body"]
        missing = zd.api.put(f"/comment_redactions/{comment['id']}",
                             json={"html_body": comment["html_body"]})
        assert missing.status_code == 400  # ticket_id is required
        other = zd.api.put(f"/comment_redactions/{comment['id']}",
                           json={"ticket_id": with_image["id"] + 1000,
                                 "html_body": comment["html_body"]})
        assert other.status_code == 404


# --- side conversations, voice comments, custom fields ------------------------------------------

class TestTicketContent:
    def test_side_conversations_and_their_events(self, zd: Served, person: dict) -> None:
        ticket = zd.sandbox.add_ticket(
            person["user"]["id"], subject="Parcel", description="Where is it?",
            side_conversations=["Warehouse: please call Ada Quill on +15559990001."])
        listed = zd.api.get(f"/tickets/{ticket['id']}/side_conversations").json()
        [conversation] = listed["side_conversations"]
        assert conversation["ticket_id"] == ticket["id"]
        assert conversation["url"].endswith(
            f"/api/v2/tickets/{ticket['id']}/side_conversations/{conversation['id']}")
        shown = zd.api.get(conversation["url"]).json()["side_conversation"]
        assert shown["id"] == conversation["id"]
        events = zd.api.get(f"{conversation['url']}/events.json").json()["events"]
        assert [e["type"] for e in events] == ["create"]
        assert "+15559990001" in events[0]["message"]["body"]
        assert {p["email"] for p in shown["participants"]} >= {"warehouse@partner.example.com"}
        assert zd.api.delete(f"/tickets/{ticket['id']}").status_code == 204
        assert zd.api.get(f"/tickets/{ticket['id']}/side_conversations").status_code == 404

    def test_a_voice_comment_holds_the_call(self, zd: Served, person: dict) -> None:
        ticket = zd.sandbox.add_ticket(person["user"]["id"], subject="Call",
                                       description="Ada Quill calling about her refund",
                                       voice_comment=True)
        voice = comments_of(zd, ticket["id"])[-1]
        assert voice["type"] == "VoiceComment" and voice["public"] is False
        assert {"from", "to", "recording_url", "started_at", "call_duration", "answered_by_id",
                "transcription_text", "location"} <= voice["data"].keys()
        assert voice["data"]["from"] == "+15559990001"
        assert "Ada Quill" in voice["data"]["transcription_text"]
        assert ticket["id"] in phrase_search(zd, "calling about her refund")
        redacted = zd.api.put(f"/tickets/{ticket['id']}/comments/{voice['id']}/redact",
                              json={"text": "Ada Quill"}).json()["comment"]
        assert "Ada Quill" not in redacted["body"]
        assert "Ada Quill" not in redacted["data"]["transcription_text"]

    def test_custom_fields_are_shown_and_searched(self, zd: Served, person: dict) -> None:
        ticket = zd.sandbox.add_ticket(person["user"]["id"], subject="Order", description="d",
                                       custom_fields={ORDER_NUMBER_FIELD: "ORD-31337",
                                                      CONTACT_EMAIL_FIELD: "ada@home.example"})
        shown = zd.api.get(f"/tickets/{ticket['id']}").json()["ticket"]
        expected = [{"id": ORDER_NUMBER_FIELD, "value": "ORD-31337"},
                    {"id": CONTACT_EMAIL_FIELD, "value": "ada@home.example"}]
        assert shown["custom_fields"] == shown["fields"] == expected
        assert phrase_search(zd, "ORD-31337") == {ticket["id"]}
        assert phrase_search(zd, "ada@home.example") == {ticket["id"]}
        by_field = zd.api.get("/search", params={
            "query": f"type:ticket custom_field_{ORDER_NUMBER_FIELD}:ORD-31337"}).json()
        assert [r["id"] for r in by_field["results"]] == [ticket["id"]]


class TestTicketUpdates:
    def test_updates_subject_custom_fields_and_status(self, zd: Served, person: dict) -> None:
        ticket_id = person["open"]["id"]
        answer = zd.api.put(f"/tickets/{ticket_id}", json={"ticket": {
            "subject": "Refund for A.Q.", "custom_fields": [{"id": ORDER_NUMBER_FIELD,
                                                             "value": "ORD-1"}]}})
        assert answer.status_code == 200
        body = answer.json()
        assert body["ticket"]["subject"] == body["ticket"]["raw_subject"] == "Refund for A.Q."
        assert body["ticket"]["custom_fields"] == [{"id": ORDER_NUMBER_FIELD, "value": "ORD-1"}]
        assert {e["field_name"] for e in body["audit"]["events"]} == {
            "subject", str(ORDER_NUMBER_FIELD)}
        for status in ("solved", "closed"):  # the API may close a ticket
            done = zd.api.put(f"/tickets/{ticket_id}.json", json={"ticket": {"status": status}})
            assert done.json()["ticket"]["status"] == status
        again = zd.api.put(f"/tickets/{ticket_id}", json={"ticket": {"status": "open"}})
        assert (again.status_code, again.json()) == (422, CLOSED_PREVENTS_UPDATE)

    def test_refuses_unknown_status_and_deleted_tickets(self, zd: Served, person: dict) -> None:
        ticket_id = person["open"]["id"]
        assert zd.api.put(f"/tickets/{ticket_id}",
                          json={"ticket": {"status": "done"}}).status_code == 422
        assert zd.api.delete(f"/tickets/{ticket_id}").status_code == 204
        assert zd.api.put(f"/tickets/{ticket_id}",
                          json={"ticket": {"subject": "x"}}).status_code == 404

    def test_zenpy_updates_a_ticket(self, zenpy: Zenpy, person: dict) -> None:
        ticket = zenpy.tickets(id=person["open"]["id"])
        ticket.subject = "Refund (renamed)"
        audit = zenpy.tickets.update(ticket)
        assert audit.ticket.subject == "Refund (renamed)"
        assert zenpy.tickets(id=ticket.id).subject == "Refund (renamed)"


# --- jobs, export cursors, limits and headers ----------------------------------------------------

class TestJobsAndLimits:
    def test_a_job_can_be_made_to_fail(self, zd: Served, person: dict) -> None:
        ticket_id = person["closed"]["id"]
        zd.sandbox.fail_next_job("Failed: backend unavailable")
        job = zd.api.delete("/tickets/destroy_many", params={"ids": str(ticket_id)}).json()
        for _ in range(5):
            job = zd.api.get(f"/job_statuses/{job['job_status']['id']}").json()
        assert job["job_status"]["status"] == "failed"
        assert job["job_status"]["message"] == "Failed: backend unavailable"
        assert job["job_status"]["results"] is None
        assert zd.api.get(f"/tickets/{ticket_id}").status_code == 200
        retry = zd.api.delete("/tickets/destroy_many", params={"ids": str(ticket_id)}).json()
        assert zd.job_until_done(retry["job_status"])["results"][0]["success"] is True

    def test_export_cursors_expire_after_an_hour(self, start: Callable[..., Served]) -> None:
        clock = Clock()
        zd = start(clock=clock)
        requester = zd.sandbox.add_user("Export Requester", "export@example.org")
        made = [zd.sandbox.add_ticket(requester["id"], subject=f"e{n}",
                                      description="okapi sighting")["id"] for n in range(5)]
        first = export(zd, "okapi", **{"page[size]": 2}).json()
        assert first["links"]["prev"] is None and first["meta"]["before_cursor"] is None
        clock.now += 3_599
        second = zd.api.get(first["links"]["next"]).json()
        assert [r["id"] for r in first["results"] + second["results"]] == made[:4]
        clock.now += 3_600  # the second page's cursor is now an hour old
        expired = zd.api.get(second["links"]["next"])
        assert expired.status_code == 400 and expired.json()["error"] == "invalid"
        assert zd.api.get(first["links"]["next"]).status_code == 400
        assert export(zd, "okapi", **{"page[before]": first["meta"]["after_cursor"]}
                      ).status_code == 400  # no backward paging

    def test_export_has_its_own_limit(self, start: Callable[..., Served]) -> None:
        clock = Clock()
        zd = start(clock=clock, requests_per_minute=700)
        answers = [export(zd, "nothing") for _ in range(101)]
        assert [a.status_code for a in answers] == [200] * 100 + [429]
        assert int(answers[-1].headers["Retry-After"]) >= 1
        assert zd.api.get("/search", params={"query": "nothing"}).status_code == 200
        clock.now += 60
        assert export(zd, "nothing").status_code == 200

    def test_rate_limit_headers(self, start: Callable[..., Served]) -> None:
        clock = Clock()
        zd = start(clock=clock, requests_per_minute=700)
        first = zd.api.get("/users/1000001")
        clock.now += 19
        second = zd.api.get("/users/1000001")
        assert first.headers["X-Rate-Limit"] == first.headers["ratelimit-limit"] == "700"
        assert first.headers["X-Rate-Limit-Remaining"] == first.headers["ratelimit-remaining"]
        assert int(second.headers["ratelimit-remaining"]) == int(
            first.headers["ratelimit-remaining"]) - 1
        assert second.headers["ratelimit-reset"] == "41"  # the first call leaves the window


# --- lost writes (a test fault: a proxy that answers 200 and drops the write) ---------------------

class TestLostWrites:
    def test_writes_answer_as_applied_but_change_nothing(self, zd: Served,
                                                         person: dict) -> None:
        zd.sandbox.lose_writes()
        open_id, closed_id = person["open"]["id"], person["closed"]["id"]
        free = zd.sandbox.add_user("Free To Go", "free@example.org")
        before = zd.sandbox.snapshot()
        comment = comments_of(zd, open_id)[0]
        old = zd.api.put(f"/tickets/{open_id}/comments/{comment['id']}/redact",
                         json={"text": "Ada Quill"})
        assert old.status_code == 200 and "Ada Quill" not in old.json()["comment"]["body"]
        new = zd.api.put(f"/comment_redactions/{comment['id']}", json={
            "ticket_id": open_id,
            "html_body": comment["html_body"].replace("Ada Quill", "<redact>Ada Quill</redact>")})
        assert "Ada Quill" not in new.json()["comment"]["body"]
        updated = zd.api.put(f"/tickets/{open_id}", json={"ticket": {"subject": "Changed"}})
        assert updated.json()["ticket"]["subject"] == "Changed"
        assert zd.api.delete(f"/tickets/{open_id}").status_code == 204
        job = zd.api.delete("/tickets/destroy_many", params={"ids": str(closed_id)}).json()
        assert zd.job_until_done(job["job_status"])["results"][0]["success"] is True
        assert zd.api.delete(f"/users/{free['id']}").json()["user"]["active"] is False
        assert zd.sandbox.snapshot() == before
        assert zd.api.get(f"/users/{free['id']}").json()["user"]["active"] is True
        assert [kind for kind, _ in zd.sandbox.state.lost] == [
            "redact_comment", "comment_redaction", "update_ticket", "delete_ticket",
            "delete_tickets_job", "delete_user"]

    def test_an_attachment_redaction_can_be_lost(self, start: Callable[..., Served]) -> None:
        zd = start(lost_writes=["redact_attachment"])
        user = zd.sandbox.add_user("Lost Write", "lost@example.org")
        ticket = zd.sandbox.add_ticket(user["id"], subject="s", description="d",
                                       inline_image=True)
        comment, image = inline_image(zd, ticket["id"])
        answer = zd.api.put(f"/tickets/{ticket['id']}/comments/{comment['id']}/attachments/"
                            f"{image['id']}/redact", json={})
        assert answer.status_code == 200 and answer.json()["attachment"]["id"] == image["id"]
        assert inline_image(zd, ticket["id"])[1] == image
        assert httpx.get(image["content_url"]).status_code == 200

    def test_only_known_kinds(self, zd: Served) -> None:
        with pytest.raises(ValueError, match="unknown write kinds"):
            zd.sandbox.lose_writes(["reboot"])
        zd.sandbox.lose_writes(())
        assert zd.sandbox.state.lost_writes == set()
        assert "comment_redaction" in WRITE_KINDS


class TestSeededExtras:
    def test_seeded_tickets_hold_realistic_extras(self) -> None:
        snapshot = ZendeskSandbox(seed=2, people=40).snapshot()
        tickets = {t["id"]: t for t in snapshot["tickets"]}
        archived = snapshot["archived_tickets"]
        closed = [t for t in tickets.values() if t["status"] == "closed"]
        assert archived and len(archived) < len(closed)
        assert all(tickets[i]["status"] == "closed" for i in archived)
        comments = snapshot["comments"]
        assert any(a["inline"] for c in comments for a in c["attachments"])
        assert any(c["type"] == "VoiceComment" for c in comments)
        assert snapshot["side_conversations"]
        values = {f["id"]: f["value"] for t in tickets.values() for f in t["custom_fields"]}
        assert str(values[ORDER_NUMBER_FIELD]).startswith("ORD-")
        assert "@example." in values[CONTACT_EMAIL_FIELD]
