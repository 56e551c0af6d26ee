"""Slack's directory of people: user groups for role checks (`services.policy.Directory`) and the
names Slack shows for user ids (`services.labels.People`), each cached briefly."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger("dsr_desk.directory")
NAME_LIMIT = 80  # Slack's own limit for display and real names


class SlackDirectory:
    def __init__(self, client: WebClient, groups: Iterable[str], ttl: float = 300.0) -> None:
        self.client = client
        self.groups = [g for g in groups if g.startswith("S")]
        self.ttl = ttl
        self._members: dict[str, set[str]] = {}
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def groups_of(self, user_id: str) -> Iterable[str]:
        if not self.groups:
            return ()
        with self._lock:
            if time.monotonic() - self._loaded_at > self.ttl:
                self._members = {
                    group: set(self.client.usergroups_users_list(usergroup=group)["users"])
                    for group in self.groups
                }
                self._loaded_at = time.monotonic()
            return [g for g, members in self._members.items() if user_id in members]


def shown_name(user: Mapping[str, Any]) -> str | None:
    """The name Slack shows for a users.info `user`: the profile's display name, which Slack's
    documents say may be missing, null or empty, else the real name, else the username."""
    profile = user.get("profile") or {}
    for name in (profile.get("display_name"), profile.get("real_name"), user.get("real_name"),
                 user.get("name")):
        if isinstance(name, str) and name.strip():
            return " ".join(name.split())[:NAME_LIMIT]
    return None


class SlackPeople:
    """`services.labels.People` over users.info (scope users:read). Names are cached for `ttl`
    seconds. A user Slack refuses (user_not_found, ...) is left out; Slack out of reach stops the
    lookups for `pause` seconds, so a record is made with bare ids instead of waiting on each one.
    Its own client, with a short timeout: a record may be made inside a database transaction."""

    def __init__(self, client: WebClient, *, ttl: float = 300.0, pause: float = 60.0,
                 timeout: int = 5) -> None:
        self.client = WebClient(token=client.token, base_url=client.base_url, timeout=timeout,
                                ssl=client.ssl, proxy=client.proxy)
        self.ttl, self.pause = ttl, pause
        self._names: dict[str, tuple[str, float]] = {}
        self._down_until = 0.0
        self._lock = threading.Lock()

    def names(self, ids: Iterable[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for user_id in dict.fromkeys(ids):
            name = self._cached(user_id)
            if name is None and time.monotonic() >= self._down_until:
                name = self._fetch(user_id)
            if name:
                found[user_id] = name
        return found

    def _cached(self, user_id: str) -> str | None:
        with self._lock:
            name, at = self._names.get(user_id, (None, 0.0))
            return name if time.monotonic() - at < self.ttl else None

    def _fetch(self, user_id: str) -> str | None:
        try:
            name = shown_name(self.client.users_info(user=user_id)["user"])
        except SlackApiError as exc:
            log.warning("no name for Slack user %s: %s", user_id, exc.response.get("error"))
            return None
        except Exception as exc:  # noqa: BLE001 - Slack out of reach: the id stands in for the name
            log.warning("no names from Slack for %.0f s: %s", self.pause, type(exc).__name__)
            self._down_until = time.monotonic() + self.pause
            return None
        if name:
            with self._lock:
                self._names[user_id] = (name, time.monotonic())
        return name
