"""The words people read for things and for people: one label per request type and per system,
in Slack, the digest and the compliance record alike, and a person as Slack shows them.

A person is named by `People` (the Slack implementation is `bot.directory.SlackPeople`). The
compliance record asks once, when it is made, and keeps the answer: it names people as they were
then, whatever they are called later.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Protocol

from services.vendors import VENDORS
from services.vocabulary import RequestType

TYPE_LABELS: dict[str, str] = {
    RequestType.ACCESS.value: "Access / export",
    RequestType.ERASURE.value: "Erasure",
    RequestType.RECTIFICATION.value: "Rectification",
    RequestType.OBJECTION.value: "Objection / restriction",
}



def system_label(name: str) -> str:
    """A system as people read it: its vendor's label (Zendesk Support), or its name."""
    return VENDORS[name].label if name in VENDORS else name


# Slack user ids (U…, or W… on Enterprise Grid). Other actors in the trail ("dsr-desk",
# "dsr-desk:retention", a worker) are no person: they are shown as they are, never looked up.
_USER_ID = re.compile(r"[UW][A-Z0-9_]{2,}")


class People(Protocol):
    def names(self, ids: Iterable[str]) -> Mapping[str, str]:
        """The names Slack shows for those of `ids` it can resolve. An id it cannot (an unknown
        user, Slack out of reach) is left out, never an error: the caller shows it bare."""
        ...


def is_user_id(value: str | None) -> bool:
    return bool(value) and _USER_ID.fullmatch(value) is not None


def person(user_id: str | None, names: Mapping[str, str]) -> str:
    """`Display Name (U123)`; the bare id when its name is unknown or it is no person."""
    if not user_id:
        return "—"
    name = names.get(user_id)
    return f"{name} ({user_id})" if name and name != user_id else user_id
