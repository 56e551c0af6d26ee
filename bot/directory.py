"""Slack user groups for role checks (`services.policy.Directory`), cached briefly."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from slack_sdk import WebClient


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
