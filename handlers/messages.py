"""The request's message in the approvals channel and its thread: built, re-rendered, posted to.
Listeners and the notifier (bot.notifier) share these."""

from __future__ import annotations

from slack_sdk import WebClient

from handlers.deps import Deps
from handlers.views.common import as_dicts
from handlers.views.request import approval_message
from handlers.views.review import summary_text
from services.vocabulary import RequestType
from storage.models import DsrRequest


def request_message(deps: Deps, reference: str) -> tuple[DsrRequest, list[dict]]:
    """The request as it is now, and its message in the approvals channel (status, approvals,
    buttons, an erasure's plan summary)."""
    detail = deps.service.detail(reference, viewer=None)
    request = detail.request
    plan = None
    if request.type == RequestType.ERASURE:
        _, summary, discovery = deps.service.plan_summary(reference)
        plan = summary_text(summary, discovery)
    return request, as_dicts(approval_message(detail, deps.required_approvals(request.type),
                                              deps.service.today(), plan=plan))


def refresh_request_message(deps: Deps, client: WebClient, reference: str) -> DsrRequest:
    """Re-render the request's message in the approvals channel; returns the request as it is
    now."""
    request, blocks = request_message(deps, reference)
    if request.channel_id and request.thread_ts:
        client.chat_update(channel=request.channel_id, ts=request.thread_ts,
                           text=f"{reference}: {request.status}", blocks=blocks)
    return request


def post_in_thread(client: WebClient, request: DsrRequest, text: str,
                   blocks: list[dict] | None = None) -> None:
    if request.channel_id and request.thread_ts:
        client.chat_postMessage(channel=request.channel_id, thread_ts=request.thread_ts,
                                text=text, blocks=blocks)
