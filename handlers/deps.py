"""What listeners need, built once in bot/ and handed to `register_handlers`."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import wraps
from typing import Any, Protocol

from slack_bolt import Ack, BoltContext

from handlers.edge import DATABASE_DOWN, SOMETHING_WRONG, database_unavailable, place
from handlers.views.request import done_modal
from services.data_map import DataMap
from services.errors import DsrError
from services.requests import RequestService
from services.vocabulary import RequestType
from storage.models import DsrRequest, Jurisdiction

log = logging.getLogger("dsr_desk.handlers")


class Deliverables(Protocol):
    """The records and exports of finished requests, sent to a person's direct messages: a
    record to anyone with a role, an export to its requester and managers (PermissionDenied
    otherwise)."""

    def export_until(self, request: DsrRequest) -> date | None:
        """The day retention deletes the request's export; None if there is none to send."""
        ...

    def send_export(self, reference: str, user: str) -> None: ...

    def send_record(self, reference: str, user: str) -> None: ...


@dataclass
class Deps:
    service: RequestService
    approvals_channel: str
    systems: list[str]
    live_systems: set[str]  # systems with real credentials; the others search their stand-ins
    jurisdictions: Callable[[], list[Jurisdiction]]
    wake_worker: Callable[[], None]
    deliverables: Deliverables
    data_map: DataMap

    def __deepcopy__(self, memo: dict) -> Deps:
        """Shared, never copied: bolt deep-copies a request's context for its lazy listeners,
        and these are the process's services, not the request's data."""
        return self

    def required_approvals(self, request_type: str) -> int:
        return self.service.policy.required_approvals(RequestType(request_type))


# The listeners are plain functions: bolt hands each its `context`, where this middleware-set
# key holds the Deps (handlers.register_handlers), so a test calls one with a context of its own.
DEPS = "dsr_deps"


def deps_of(context: BoltContext | dict[str, Any]) -> Deps:
    return context[DEPS]


# An ack hands the work after it (a lazy listener) what only the ack knows, such as the
# reference of the request it filed, as `context[AFTER_ACK]`: a dict of text that the inbox
# keeps with the request (bot.inbox). Absent, the ack refused, and nothing follows.
AFTER_ACK = "after_ack"


def hand_over(context: BoltContext, **values: str) -> None:
    context[AFTER_ACK] = values


def acknowledge(ack: Ack) -> None:
    """The acknowledgement of a listener whose work runs after it (bolt's `lazy=[...]`)."""
    ack()


def opens_a_modal(listener: Callable[..., Any]) -> Callable[..., Any]:
    """For a click whose answer is a modal: it is opened in the click's own request, after the
    ack (sent once this returns), not by the background process. Slack's trigger_id lasts 3 s,
    which a busy machine can spend before the background process gets to it: the person would
    click and see nothing."""
    wanted = set(inspect.signature(listener).parameters)

    def run(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: Any, respond: Any,
            context: BoltContext) -> None:
        ack()
        given = {"body": body, "action": action, "client": client, "respond": respond,
                 "context": context}
        listener(**{name: value for name, value in given.items() if name in wanted})

    run.__name__ = listener.__name__
    return run


def replies_errors(listener: Callable[..., Any]) -> Callable[..., Any]:
    """A DsrError becomes an ephemeral reply with its message, and so does a database out of
    reach (the person is asked to try again shortly); anything else is logged (type and place
    only: messages may hold personal data), the user is told, and it propagates to bolt."""

    @wraps(listener)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return listener(*args, **kwargs)
        except DsrError as exc:
            _tell(kwargs, f":warning: {exc}")
            return None
        except Exception as exc:
            if database_unavailable(exc):
                log.warning("%s: database unavailable (%s at %s)", listener.__name__,
                            type(exc).__name__, place(exc))
                _tell(kwargs, DATABASE_DOWN)
                return None
            log.error("%s failed with %s at %s", listener.__name__, type(exc).__name__, place(exc))
            _tell(kwargs, SOMETHING_WRONG)
            raise

    return run


def replies_in_modal(listener: Callable[..., Any]) -> Callable[..., Any]:
    """For an action inside a modal, which has no response_url: a refusal (or a database out of
    reach) replaces the modal with its message; anything else as `replies_errors`."""

    @wraps(listener)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return listener(*args, **kwargs)
        except Exception as exc:
            if not isinstance(exc, DsrError) and not database_unavailable(exc):
                log.error("%s failed with %s at %s", listener.__name__, type(exc).__name__,
                          place(exc))
                raise
            message = f":warning: {exc}" if isinstance(exc, DsrError) else DATABASE_DOWN
            kwargs["client"].views_update(view_id=kwargs["body"]["view"]["id"],
                                          view=done_modal(message).to_dict())
            return None

    return run


def _tell(kwargs: dict[str, Any], text: str) -> None:
    """An ephemeral reply: in the acknowledgement if it is still owed, else by response_url."""
    ack, respond = kwargs.get("ack"), kwargs.get("respond")
    if ack is not None and ack.response is None:
        ack(text=text, response_type="ephemeral")
    elif respond is not None:
        respond(text=text, response_type="ephemeral", replace_original=False)
