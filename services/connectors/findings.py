"""Finding a subject's identifiers in free text (ticket comments, subject lines, fields), and
saying where without repeating them: what an erasure's review shows is masked."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from services.connectors.base import RequestSpec
from services.subjects import Identifier, mask
from services.vocabulary import IdentifierKind

TERM_KINDS = (IdentifierKind.NAME, IdentifierKind.EMAIL, IdentifierKind.PHONE,
              IdentifierKind.EXTERNAL_ID)
MIN_TERM = 3  # shorter strings would match everywhere
CONTEXT = 24  # characters of context each side of a match in a snippet
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_DIGITS = re.compile(r"\d")


@dataclass(frozen=True)
class Term:
    kind: IdentifierKind
    value: str

    @property
    def masked(self) -> str:
        return mask(Identifier(self.kind, self.value))


@dataclass(frozen=True)
class Hit:
    term: Term
    text: str  # the matched string as it is written (its case may differ from the term's)
    snippet: str  # masked


def subject_terms(spec: RequestSpec, details: Iterable[dict] = ()) -> list[Term]:
    """Every string that identifies the subject: identifiers, the confirmed records' name, email
    and phone, and the extra search terms; case-insensitively distinct."""
    terms = [Term(i.kind, i.value.strip()) for i in spec.identifiers if i.kind in TERM_KINDS]
    for record in (*(c.get("details") or {} for c in spec.confirmed), *details):
        terms += [Term(kind, str(record[key]).strip()) for key, kind in (
            ("name", IdentifierKind.NAME), ("email", IdentifierKind.EMAIL),
            ("phone", IdentifierKind.PHONE)) if record.get(key)]
    terms += [Term(IdentifierKind.TEXT, t.strip()) for t in spec.search_terms]
    unique: dict[str, Term] = {}
    for term in terms:
        if len(term.value) >= MIN_TERM:
            unique.setdefault(term.value.lower(), term)
    return sorted(unique.values(), key=lambda t: t.value.lower())


class Finder:
    """Finds the terms in a text, longest first, any case."""

    def __init__(self, terms: Sequence[Term]) -> None:
        self.terms = list(terms)
        self._by_value = {t.value.lower(): t for t in terms}
        ordered = sorted(self._by_value, key=len, reverse=True)
        self.pattern = re.compile("|".join(re.escape(v) for v in ordered), re.IGNORECASE) \
            if ordered else None

    def hits(self, text: str | None) -> list[Hit]:
        if not text or self.pattern is None:
            return []
        return [Hit(self._by_value[m.group().lower()], m.group(), _snippet(text, m, self))
                for m in self.pattern.finditer(text)]

    def strings(self, text: str | None) -> list[str]:
        """The distinct matched strings as written, longest first."""
        return sorted({h.text for h in self.hits(text)}, key=len, reverse=True)

    def mask_all(self, text: str) -> str:
        return self.pattern.sub(lambda m: self._by_value[m.group().lower()].masked, text) \
            if self.pattern else text


def _snippet(text: str, match: re.Match[str], finder: Finder) -> str:
    """The match masked, with a little context in which any other address or number is masked."""
    start, end = max(0, match.start() - CONTEXT), min(len(text), match.end() + CONTEXT)

    def scrub(part: str) -> str:
        part = _EMAIL.sub(lambda m: mask(Identifier(IdentifierKind.EMAIL, m.group())), part)
        return _DIGITS.sub("•", finder.mask_all(part))

    before, after = scrub(text[start:match.start()]), scrub(text[match.end():end])
    masked = finder._by_value[match.group().lower()].masked
    return " ".join(f"{'…' * (start > 0)}{before}{masked}{after}{'…' * (end < len(text))}".split())


def describe(hits: Sequence[Hit], where: str) -> list[str]:
    """One line per term found in one place: "email in comment 2: …snippet…"."""
    seen: dict[str, Hit] = {}
    for hit in hits:
        seen.setdefault(hit.term.value.lower(), hit)
    return [f"{hit.term.kind.value} in {where}: {hit.snippet}" for hit in seen.values()]
