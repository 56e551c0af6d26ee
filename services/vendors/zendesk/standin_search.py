"""The Zendesk stand-in's search: query parsing and matching one record against one term.

Follows the Zendesk Support search reference (help center "Zendesk Support search reference",
"Searching tickets", "Searching users"): terms are free text or `property<op>value`, `:` is
equality, `<` `>` `<=` `>=` compare, `-` negates, double quotes make a phrase, a trailing `*`
matches a prefix, whole words only, any case.

Stand-in choices where the reference leaves room:
- free text finds a ticket by its subject, description, comments (voice transcriptions
  included) and the string values of its custom fields; `custom_field_<id>:value` matches one
  field ("Searching tickets", "Searching custom ticket fields");
- a property this stand-in does not know (`organization:`...) finds nothing, rather than everything.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.vendors.zendesk.standin_state import ZendeskState

Record = dict[str, Any]

# Ticket statuses in Zendesk's order: `status<closed` compares along it (search reference,
# "Ticket property keywords": status accepts <, >).
STATUSES = ("new", "open", "pending", "hold", "solved", "closed")

_TOKEN = re.compile(
    r'(?P<neg>-)?(?:(?P<key>[a-z_][a-z0-9_]*)(?P<op><=|>=|:|<|>))?'
    r'(?:"(?P<phrase>[^"]*)"|(?P<word>\S+))',
    re.IGNORECASE,
)
_CUSTOM_FIELD = re.compile(r"custom_field_(\d+)")


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


def compare(left: Any, op: str, right: Any) -> bool:
    return _OPERATORS[op](left, right)


def _text_values(ticket: Record) -> list[str]:
    return [f["value"] for f in ticket.get("custom_fields", []) if isinstance(f.get("value"), str)]


class Matcher:
    """Decides whether one record matches one search term; built per search, it caches lookups.

    Reads the state's records directly: the caller holds the state's lock.
    """

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
        custom = key and _CUSTOM_FIELD.fullmatch(key)
        if key is None:
            hit = term.finds(ticket["subject"], ticket["description"],
                             *(c["plain_body"] for c in comments), *_text_values(ticket))
        elif custom:
            field_id = int(custom.group(1))
            hit = any(f["id"] == field_id and f.get("value") is not None
                      and term.finds(str(f["value"])) for f in ticket.get("custom_fields", []))
        elif key in ("subject", "description"):
            hit = term.finds(ticket[key])
        elif key == "comment":
            hit = term.finds(*(c["plain_body"] for c in comments))
        elif key == "status":
            hit = value.lower() in STATUSES and compare(
                STATUSES.index(ticket["status"]), term.op, STATUSES.index(value.lower()))
        elif key in ("requester", "submitter", "assignee"):
            hit = (ticket[f"{key}_id"] is None if value.lower() == "none"
                   else ticket[f"{key}_id"] in self.refs(value))
        elif key == "cc":
            hit = bool(self.refs(value) & set(ticket["collaborator_ids"]))
        elif key in ("tags", "tag"):
            hit = value.lower() in ticket["tags"]
        elif key in ("created", "updated"):
            hit = compare(ticket[f"{key}_at"][: len(value)], term.op, value)
        else:
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
            hit = compare(user[f"{key}_at"][: len(value)], term.op, value)
        else:
            hit = False
        return hit != term.negated
