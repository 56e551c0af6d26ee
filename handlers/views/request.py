"""Views of one request: the matching modal, the approval message (the request's thread),
its detail, lists, and the help text."""

from __future__ import annotations

from datetime import date

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    DividerBlock,
    HeaderBlock,
)
from slack_sdk.models.views import View

from handlers.ids import Action
from handlers.views.common import (
    STATUS_LABELS,
    TYPE_LABELS,
    context,
    deadline,
    escape,
    masked_identifiers,
    one_line,
    section,
    simulated,
)
from handlers.views.review import review_button
from services.labels import system_label
from services.requests import Decision, RequestDetail
from services.vocabulary import ApprovalDecision, RequestStatus, RequestType, StepStatus
from storage.models import Approval, DsrRequest

STEP_ICONS = {StepStatus.PENDING: ":white_circle:", StepStatus.RUNNING: ":arrows_counterclockwise:",
              StepStatus.WAITING: ":hourglass_flowing_sand:", StepStatus.DONE: ":white_check_mark:",
              StepStatus.FAILED: ":x:", StepStatus.CANCELED: ":heavy_minus_sign:"}


def searching_modal(reference: str) -> View:
    return View(type="modal", title="New DSR", close="Close", private_metadata=reference,
                blocks=[section(f":mag: *{reference}* recorded. Searching the systems for the "
                                "subject: this view updates when the results arrive.")])


def done_modal(text: str) -> View:
    return View(type="modal", title="DSR Desk", close="Done", blocks=[section(text)])


def approval_message(detail: RequestDetail, required: int, today: date,
                     decision: Decision | None = None, plan: str | None = None) -> list[Block]:
    """The request's message in the approvals channel (identifiers masked); its thread carries
    the progress."""
    request = detail.request
    systems = ", ".join(system_label(s.system) for s in detail.systems)
    records = sum(len(s.confirmed_records or []) for s in detail.systems)
    blocks: list[Block] = [
        HeaderBlock(text=f"{request.reference}: {TYPE_LABELS[request.type]}"[:150]),
        section(f"*Status:* {STATUS_LABELS[RequestStatus(request.status)]}{simulated(request)}\n"
                f"*Jurisdiction:* {request.jurisdiction_code} · *Deadline:* "
                f"{deadline(request, today)}\n*Requested by:* <@{request.requester_slack_id}>\n"
                f"*Subject:* {masked_identifiers(detail.identifiers)}\n"
                f"*Systems:* {systems} ({records} confirmed record(s))"
                + _progress(detail)),
    ]
    if plan is not None:  # an erasure: what its plan does, and the button to see every line
        blocks.append(section(f"*Plan:*\n{plan}"))
        if request.status == RequestStatus.IN_REVIEW or (request.plan_sha256 and request.status
                                                         == RequestStatus.PENDING_APPROVAL):
            blocks.append(review_button(request, label="Review the plan" if request.status
                                        == RequestStatus.IN_REVIEW else "See every line"))
    current = [a for a in detail.approvals if a.plan_sha256 == request.plan_sha256]
    approvals = [a for a in current if a.decision == "approve"]
    lines = [f"{':white_check_mark:' if a.decision == 'approve' else ':no_entry:'} {decided(a)}"
             + ("" if a.plan_sha256 == request.plan_sha256 else " _(an earlier plan)_")
             for a in detail.approvals]
    if lines:
        blocks.append(context("\n".join(lines)))
    if request.status == RequestStatus.PENDING_APPROVAL:
        blocks.append(context(f"Needs {required} approval(s) from someone other than the "
                              f"requester; {len(approvals)} so far."))
        blocks.append(ActionsBlock(block_id=f"decide:{request.reference}", elements=[
            ButtonElement(text="Approve", action_id=Action.APPROVE, value=request.reference,
                          style="primary", confirm=ConfirmObject(
                              title="Approve?", text=f"Approve {request.reference}? "
                              + ("It runs against the real systems." if not request.simulation
                                 else "It runs in simulation."), confirm="Approve",
                              deny="Back")),
            ButtonElement(text="Reject", action_id=Action.REJECT, value=request.reference,
                          style="danger"),
        ]))
    return blocks


def decided(approval: Approval) -> str:
    """"approved by <@U…> at …: reason", the reason escaped (an approver's words)."""
    verb = {ApprovalDecision.APPROVE: "approved", ApprovalDecision.REJECT: "rejected"}
    return (f"{verb[ApprovalDecision(approval.decision)]} by <@{approval.approver_slack_id}> at "
            f"{approval.decided_at:%Y-%m-%d %H:%M} UTC"
            + (f": {escape(approval.reason)}" if approval.reason else ""))


def _progress(detail: RequestDetail) -> str:
    if not detail.steps:
        return ""
    done = sum(step.status == StepStatus.DONE for step in detail.steps)
    return f"\n*Progress:* {done} of {len(detail.steps)} steps done"


def detail_blocks(detail: RequestDetail, today: date, export_until: date | None = None) -> list[Block]:
    """`/dsr show`: for people with a role, in an ephemeral message. `export_until`: the day
    retention deletes the request's export, if it has one to send."""
    request = detail.request
    blocks: list[Block] = [section(one_line(request, today))]
    subject = "\n".join(f"• {i.purpose} {i.kind}: {escape(i.value)}"
                        + (f" ({i.system})" if i.system else "") for i in detail.identifiers)
    blocks.append(section(f"*Subject and values*\n{subject or 'none'}"))
    blocks.append(section(
        f"*Received:* {request.received_at:%Y-%m-%d %H:%M} UTC · *Requested by:* "
        f"<@{request.requester_slack_id}>\n*Identity verification:* "
        f"{escape(request.identity_verification or '—')}\n*Notes:* {escape(request.notes or '—')}"
        + (f"\n*Extension:* to {request.extended_due_on} by <@{request.extended_by}>: "
           f"{escape(request.extension_reason or '')}" if request.extended_due_on else "")))
    if detail.approvals:
        blocks.append(context("\n".join(
            decided(a) for a in detail.approvals)))
    if detail.steps:
        blocks.append(DividerBlock())
        lines = []
        for step in detail.steps:
            times = " · ".join(f"{label} {value:%Y-%m-%d %H:%M:%S}" for label, value in
                               (("started", step.started_at), ("finished", step.finished_at))
                               if value)
            lines.append(f"{STEP_ICONS[StepStatus(step.status)]} {step.position}. "
                         f"{system_label(step.system)} · {step.action} · "
                         f"{step.status}" + (f" · {times}" if times else "")
                         + (f"\n      _{escape(step.error)}_" if step.error else ""))
        blocks.append(section("*Steps*\n" + "\n".join(lines)))
    if request.status == RequestStatus.NEEDS_ATTENTION:
        blocks.append(retry_actions(request))
    if request.closed_at is not None:
        blocks.append(deliverable_actions(request, export_until))
    return blocks[:50]


def deliverable_actions(request: DsrRequest, export_until: date | None) -> ActionsBlock:
    """The compliance record for anyone with a role; the export, while it is kept, for its
    requester and managers (the handler checks)."""
    buttons = [ButtonElement(text="Compliance record", action_id=Action.SEND_RECORD,
                             value=request.reference)]
    if export_until is not None:
        buttons.append(ButtonElement(text=f"Send me the export (kept until {export_until:%d %b})",
                                     action_id=Action.SEND_EXPORT, value=request.reference,
                                     style="primary"))
    return ActionsBlock(block_id=f"deliverables:{request.reference}", elements=buttons)


def retry_actions(request: DsrRequest) -> ActionsBlock:
    """Retry; an erasure can also be reviewed again (what is new since its review is added)."""
    buttons = [ButtonElement(text="Retry failed step", action_id=Action.RETRY,
                             value=request.reference, style="primary")]
    if request.type == RequestType.ERASURE:
        buttons.append(ButtonElement(text="Review the plan again", action_id=Action.REVIEW_AGAIN,
                                     value=request.reference))
    return ActionsBlock(block_id=f"retry:{request.reference}", elements=buttons)
