"""The data map in Slack (`/dsr systems`): each system, who owns it, what it holds, the request
types it takes part in and how DSR Desk reaches it."""

from __future__ import annotations

from collections.abc import Sequence

from slack_sdk.models.blocks import Block

from handlers.views.common import TYPE_LABELS, context, escape, line_sections, section
from services.vocabulary import Reach
from storage.models import DataSystem

REACH_LABELS = {
    Reach.CONNECTOR: ":electric_plug: connector",
    Reach.ASSISTED: ":bust_in_silhouette: task for its owner",
    Reach.WEBHOOK: ":satellite_antenna: signed webhook",
}
IMPORT_HINT = ("Managers keep it as a file: `dsr-desk systems export` writes it, "
               "`dsr-desk systems import FILE --as <your Slack id>` applies it (every change "
               "audited); `/dsr systems retire <name> <reason>` takes a system out.")


def mention(owner: str) -> str:
    """A Slack user (U…, W…) or user group (S…) as Slack renders it (ids are checked on entry)."""
    return f"<!subteam^{owner}>" if owner.startswith("S") else f"<@{owner}>"


def system_line(system: DataSystem) -> str:
    types = ", ".join(TYPE_LABELS[t] for t in system.request_types)
    line = (f"*{escape(system.label)}* (`{system.name}`) · {REACH_LABELS[Reach(system.reach)]} · "
            f"owner {mention(system.owner)}\n      {types} · holds "
            f"{escape(', '.join(system.categories))}")
    if system.retired_at is not None:
        line += f" · _retired {system.retired_at:%d %b %Y}_"
    return line


def systems_blocks(systems: Sequence[DataSystem]) -> list[Block]:
    if not systems:
        return [section("*The data map* has no systems yet."), context(IMPORT_HINT)]
    return [section(f"*The data map*: {len(systems)} system(s)"),
            *line_sections([system_line(s) for s in systems]), context(IMPORT_HINT)]
