"""Views of an erasure's plan: the review modal (paged, one select per line, a bulk choice per
group), its summary on the request's message, and the button that opens it."""

from __future__ import annotations

from collections.abc import Mapping

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    DividerBlock,
    Option,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from handlers.ids import Action, Callback
from handlers.views.common import clip, context, escape, section
from services.labels import system_label
from services.review import ACTION_LABELS, GROUPS, PlanPage
from services.vocabulary import PlanAction, RequestStatus
from storage.models import DsrRequest, PlanItem

PAGE_SIZE = 15  # lines a page: 15 sections, the bulk and paging blocks stay far under 100 blocks
ICONS = {PlanAction.DELETE: ":wastebasket:", PlanAction.REDACT: ":black_large_square:",
         PlanAction.REDACT_CLOSE: ":black_large_square:", PlanAction.LEAVE: ":white_circle:"}


def review_button(request: DsrRequest, *, label: str = "Review the plan") -> ActionsBlock:
    return ActionsBlock(block_id=f"plan:{request.reference}", elements=[
        ButtonElement(text=label, action_id=Action.REVIEW_PLAN, value=request.reference,
                      style="primary")])


def summary_text(summary: Mapping[tuple[str, str, str], int],
                 discovery: tuple[int, int, list[str]] | None = None) -> str:
    """`Zendesk Support: 12 delete · 3 redact · 2 leave` per system, or where discovery is."""
    done, total, failed = discovery or (0, 0, [])
    if failed:
        return f":warning: finding the subject's data failed: {escape(clip(failed[0], 300))}"
    if done < total:
        return f":mag: finding the subject's data ({done} of {total} searches done)…"
    per_system: dict[str, dict[str, int]] = {}
    for (system, _, action), count in sorted(summary.items()):
        counts = per_system.setdefault(system, {})
        counts[action] = counts.get(action, 0) + count
    if not per_system:
        return "nothing found"
    return "\n".join(f"{system_label(system)}: " + " · ".join(
        f"{n} {ACTION_LABELS[PlanAction(a)]}" for a, n in sorted(counts.items()))
        for system, counts in per_system.items())


def _line(item: PlanItem) -> str:
    name = f"*{system_label(item.system)} {item.kind} #{escape(item.record_id)}*"
    status = f" · {escape(item.vendor_status)}" if item.vendor_status else ""
    facts = "\n".join(f"• {escape(fact)}" for fact in item.found[:6])
    more = f"\n• … {len(item.found) - 6} more" if len(item.found) > 6 else ""
    warning = f"\n:warning: {escape(item.warning)}" if item.warning else ""
    changed = f"\n_changed by <@{item.changed_by}>_" if item.changed_by else ""
    return clip(f"{name}{status} · {GROUPS.get(item.group, item.group)}\n{facts}{more}{warning}"
                f"{changed}")


def _options(actions: list[str]) -> list[Option]:
    return [Option(value=a, text=ACTION_LABELS[PlanAction(a)]) for a in actions]


def review_modal(request: DsrRequest, plan: PlanPage, *, editable: bool,
                 summary: Mapping[tuple[str, str, str], int], problem: str | None = None) -> View:
    """The plan, PAGE_SIZE lines a page. The requester changes lines (saved at once) and sends
    the plan for approval; approvers see the same lines without the selects."""
    blocks: list[Block] = []
    if problem:
        blocks.append(section(f":warning: {escape(problem)}"))
    blocks.append(context(
        f"*{request.reference}*: what the erasure would do, line by line. Nothing is touched "
        "until the approvers approve this plan; then exactly these actions run, each read back."
        + (" A change made while it awaits approval sends it back to review." if editable else "")))
    blocks.append(section(summary_text(summary)))
    groups = sorted({group for (_, group, _) in summary})
    if editable and groups:
        options = [Option(value=f"{group}|{action.value}",
                          text=clip(f"{ACTION_LABELS[action]}: all {GROUPS[group]}", 75))
                   for group in groups for action in PlanAction if group in GROUPS]
        blocks.append(ActionsBlock(block_id="plan_bulk", elements=[StaticSelectElement(
            action_id=Action.PLAN_GROUP, placeholder="Apply to every line of a kind…",
            options=options[:100])]))
    blocks.append(DividerBlock())
    for item in plan.items:
        accessory = None
        if editable and len(item.allowed) > 1:
            options = _options(item.allowed)
            current = next(o for o in options if o.value == item.action)
            accessory = StaticSelectElement(action_id=Action.PLAN_LINE, options=options,
                                            initial_option=current)
        text = _line(item) if accessory else f"{ICONS[PlanAction(item.action)]} " \
            f"*{ACTION_LABELS[PlanAction(item.action)]}* · {_line(item)}"
        blocks.append(SectionBlock(block_id=f"line:{item.id}", text=clip(text),
                                   accessory=accessory))
    last = min(plan.offset + len(plan.items), plan.total)
    blocks.append(context(f"Lines {plan.offset + 1 if plan.total else 0}–{last} of {plan.total}."))
    paging = []
    if plan.offset > 0:
        paging.append(ButtonElement(text="Previous", action_id=f"{Action.PLAN_PAGE}:prev",
                                    value=str(max(0, plan.offset - PAGE_SIZE))))
    if last < plan.total:
        paging.append(ButtonElement(text=f"Next {min(PAGE_SIZE, plan.total - last)}",
                                    action_id=f"{Action.PLAN_PAGE}:next", value=str(last)))
    if paging:
        blocks.append(ActionsBlock(block_id="plan_paging", elements=paging))
    submit = "Send for approval" if editable and request.status == RequestStatus.IN_REVIEW else None
    return View(type="modal", callback_id=Callback.REVIEW_PLAN, title="Erasure plan",
                submit=submit, close="Close", private_metadata=f"{request.reference}|{plan.offset}",
                blocks=blocks)
