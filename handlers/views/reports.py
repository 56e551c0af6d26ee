"""Messages for managers: the daily digest and the overdue escalation. They name requests by
reference only: no subject data."""

from __future__ import annotations

from collections.abc import Iterable

from slack_sdk.models.blocks import Block, DividerBlock, HeaderBlock

from handlers.views.common import (
    LIST_SECTION_LINES,
    STATUS_LABELS,
    TYPE_LABELS,
    context,
    line_sections,
    mention,
    section,
)
from services.scheduled.digest import Digest
from services.scheduled.reminders import Overdue
from services.vocabulary import RequestStatus


def _days(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} days"


def digest_blocks(digest: Digest) -> list[Block]:
    by_status: dict[str, dict[str, int]] = {}
    for (status, kind), count in sorted(digest.open_counts.items()):
        by_status.setdefault(status, {})[kind] = count
    open_lines = [f"{STATUS_LABELS[RequestStatus(status)]}: *{sum(kinds.values())}* ("
                  + ", ".join(f"{TYPE_LABELS[k].lower()} {n}" for k, n in kinds.items()) + ")"
                  for status, kinds in by_status.items()]
    blocks: list[Block] = [
        HeaderBlock(text=f"DSR digest for {digest.day:%a %d %b %Y}"),
        section(f"*Open requests: {digest.open_total}*\n" + ("\n".join(open_lines) or "none")),
        section(f"*Due in the next 7 days:* {digest.due_next_7_days}\n"
                f"*Overdue:* {digest.overdue}"
                + (" :rotating_light:" if digest.overdue else "") + "\n"
                f"*Completed in the last 24 hours:* {digest.completed_last_24h}"),
        section(f"*Last 30 days:* {digest.completed_30_days} completed · "
                f"median time to complete {_days(digest.median_days)} · 90th percentile "
                f"{_days(digest.p90_days)}\n*On time:* {digest.on_time_summary}"),
    ]
    if digest.awaiting_approval:
        lines = [f"• {reference}: waiting {days:.1f} days"
                 for reference, days in digest.awaiting_approval[:LIST_SECTION_LINES]]
        blocks += [DividerBlock(), section("*Awaiting approval for more than a day*\n"
                                           + "\n".join(lines))]
    blocks.append(context("`/dsr list` filters requests; `/dsr show DSR-…` has each one's steps."))
    if digest.chain_head:
        seq, hash_ = digest.chain_head
        # The whole hash, as `dsr-desk audit verify --anchor` takes it: an abbreviated one could
        # be matched by a forged chain.
        blocks.append(context(f"{_chain_head(digest)} · anchor for `dsr-desk audit verify "
                              f"--anchor`: `{seq}:{hash_}`"))
    return blocks


def _chain_head(digest: Digest) -> str:
    if not digest.chain_head:
        return "Audit chain: no events yet"
    seq, hash_ = digest.chain_head
    return f"Audit chain: event #{seq}, hash {hash_[:4]}…{hash_[-4:]}"


def digest_text(digest: Digest) -> str:
    """The notification text (and what screen readers announce)."""
    share = "—" if digest.on_time_share is None else f"{digest.on_time_share:.0%}"
    return (f"DSR digest {digest.day}: {digest.open_total} open, {digest.overdue} overdue, "
            f"{digest.due_next_7_days} due within 7 days, {share} on time over 30 days. "
            f"{_chain_head(digest)}.")


def escalation_blocks(count: int, overdue: Iterable[Overdue], managers: Iterable[str]) -> list[Block]:
    shown = list(overdue)
    mentions = " ".join(mention(m) for m in managers)
    lines = [f"• *{o.reference}* · {TYPE_LABELS[o.type]} · {o.jurisdiction} · {o.status} · "
             f"overdue by *{o.days_overdue} day{'s' if o.days_overdue != 1 else ''}* · "
             f"requested by <@{o.requester}>" for o in shown]
    blocks: list[Block] = [section(f":rotating_light: *{count} request{'s are' if count != 1 else ' is'}"
                                   f" past the legal deadline.* {mentions}".strip())]
    blocks += line_sections(lines)
    if count > len(shown):
        blocks.append(context(f"{count - len(shown)} more: `/dsr list` shows them all."))
    return blocks
