"""Anchors: the audit chain's head, published where the database cannot rewrite it.

The chain head row catches events cut off the end, unless whoever cut them also rewinds the row,
which anyone who can delete rows can do. An anchor is a statement "at time T the chain's event
#seq had hash H", kept outside the database: lines appended to a file (the `audit_anchor` job,
`dsr-desk audit anchor`) and the daily digest in Slack. `check()` then holds the trail to every
anchor: each anchored event must still be there with that hash, and the trail must reach the
newest one. Anchors hold a number, a hash and a time: never personal data.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session, select

from services.audit import iso_z
from services.errors import InvalidRequest
from storage.models import AuditChainHead, AuditEvent

ANCHOR_FORMAT = "dsr-desk.audit-anchor"
_HASH = re.compile(r"[0-9a-f]{64}")
CHUNK = 500
_PASTED = re.compile(r"#?(\d+):([0-9a-f]{64})")


@dataclass(frozen=True)
class Anchor:
    seq: int
    hash: str
    at: datetime | None = None  # None for an anchor typed in (from a Slack digest)
    source: str = ""  # where it was read, to name it in a problem

    def line(self) -> str:
        assert self.at is not None
        return json.dumps({"format": ANCHOR_FORMAT, "seq": self.seq, "hash": self.hash,
                           "at": iso_z(self.at)}, separators=(",", ":")) + "\n"

    def describe(self) -> str:
        when = f" written {iso_z(self.at)}" if self.at else ""
        return f"the anchor{when} ({self.source}) recording event #{self.seq} with hash {self.hash}"


def head(session: Session) -> Anchor | None:
    """The chain head as its row records it; None while the trail is empty.

    The row, not a walk of the chain: anchoring stays O(1) however long the trail. A head that is
    already wrong is anchored as it is; the earlier anchors still show it.
    """
    row = session.get(AuditChainHead, 1)
    return Anchor(row.last_seq, row.last_hash) if row and row.last_seq else None


def append(session: Session, path: Path, *, now: datetime) -> Anchor | None:
    """Append the current head to `path` as one JSON line; None (nothing written) if empty."""
    current = head(session)
    if current is None:
        return None
    anchor = Anchor(current.seq, current.hash, now, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    # One write on an O_APPEND descriptor: lines from several processes never interleave, and
    # the file is only ever added to. fsync, so an anchor we reported is on disk.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, anchor.line().encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return anchor


def read(path: Path) -> list[Anchor]:
    """The anchors of a file; InvalidRequest naming the first line that is not one."""
    anchors = []
    with path.open(encoding="utf-8") as lines:
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                body = json.loads(text)
                if body.get("format") != ANCHOR_FORMAT or not _HASH.fullmatch(body["hash"]):
                    raise ValueError
                seq, at = int(body["seq"]), datetime.fromisoformat(body["at"])
                if seq < 1 or at.tzinfo is None:
                    raise ValueError
            except (ValueError, KeyError, TypeError, AttributeError):
                raise InvalidRequest(f"{path}, line {number}, is not an audit anchor: the file "
                                     "was edited or damaged") from None
            anchors.append(Anchor(seq, body["hash"], at, f"{path}, line {number}"))
    return anchors


def parse_pasted(text: str) -> Anchor:
    """An anchor typed in as SEQ:HASH, as the daily digest in Slack shows it."""
    match = _PASTED.fullmatch(text.strip().lower())
    if not match:
        raise ValueError(f"{text!r} is not SEQ:HASH (an event number, a colon and the 64 hex "
                         "digits of its hash, as the daily digest shows them)")
    return Anchor(int(match[1]), match[2], None, f"--anchor {match[1]}:{match[2][:8]}…")


def check(session: Session, anchors: Iterable[Anchor]) -> str | None:
    """The first way the trail contradicts its anchors, in words; None if it matches them all."""
    anchors = sorted(anchors, key=lambda a: a.seq)
    if not anchors:
        return None
    last = session.exec(select(sa.func.max(AuditEvent.seq))).one() or 0
    newest = anchors[-1]
    if last < newest.seq:
        gap = f"#{newest.seq}" if last + 1 == newest.seq else f"#{last + 1} to #{newest.seq}"
        return (f"audit events {gap} are missing: the trail ends at event #{last}, but "
                f"{newest.describe()} (events were deleted from the end and the chain head "
                "rewound)")
    seqs = sorted({a.seq for a in anchors})
    hashes: dict[int, str] = {}
    for start in range(0, len(seqs), CHUNK):  # years of hourly anchors: bounded IN lists
        hashes.update(session.exec(select(AuditEvent.seq, AuditEvent.hash)
                                   .where(AuditEvent.seq.in_(seqs[start:start + CHUNK]))).all())
    for anchor in anchors:
        found = hashes.get(anchor.seq)
        if found is None:
            return f"audit event #{anchor.seq} is missing, but {anchor.describe()}"
        if found != anchor.hash:
            return (f"audit event #{anchor.seq} has hash {found}, but {anchor.describe()} "
                    "(the trail was rewritten at or before that event)")
    return None
