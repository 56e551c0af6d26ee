"""Who may do what: enforced here, in the service layer, not by hiding buttons.

Roles come from settings as Slack user ids and user-group ids; a `Directory` resolves a user's
groups (bot/ implements it with Slack's usergroups API, tests with a dict).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from services.errors import PermissionDenied
from services.vocabulary import RequestType


class Directory(Protocol):
    def groups_of(self, user_id: str) -> Iterable[str]: ...


class NoGroups:
    def groups_of(self, user_id: str) -> Iterable[str]:
        return ()


@dataclass(frozen=True)
class Policy:
    requesters: frozenset[str]
    approvers: frozenset[str]
    managers: frozenset[str]
    erasure_approvals: int = 2
    directory: Directory = NoGroups()

    def _has(self, role: frozenset[str], user_id: str) -> bool:
        return user_id in role or any(g in role for g in self.directory.groups_of(user_id))

    def is_requester(self, user_id: str) -> bool:
        # Approvers and managers may file requests too: the four-eyes rule still applies.
        return any(self._has(r, user_id) for r in (self.requesters, self.approvers, self.managers))

    def is_approver(self, user_id: str) -> bool:
        return self._has(self.approvers, user_id)

    def is_manager(self, user_id: str) -> bool:
        return self._has(self.managers, user_id)

    def required_approvals(self, request_type: RequestType) -> int:
        return self.erasure_approvals if request_type is RequestType.ERASURE else 1

    def require(self, allowed: bool, what: str) -> None:
        if not allowed:
            raise PermissionDenied(
                f"You are not allowed to {what}. Ask a DSR Desk admin to add you to the right "
                "role (DSR_REQUESTERS, DSR_APPROVERS or DSR_MANAGERS)."
            )
