"""The `/dsr` slash command: one table of subcommands, which also writes the help.

Each subcommand answers in the acknowledgement (`answer`; `new` opens its form there, as the
trigger_id it needs lasts only 3 s); the slow ones (asking every system, making a record or a
CSV) finish after it (`after`, a bolt lazy listener
run from the inbox: bot.inbox)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient

from handlers.deps import Deps, deps_of, replies_errors
from handlers.edge import text, too_long
from handlers.lists import echo, list_reply, parse_filters, send_csv
from handlers.views.common import as_dicts, escape, section
from handlers.views.intake import intake_modal
from handlers.views.request import detail_blocks
from handlers.views.systems import system_modal, systems_blocks
from services.subjects import mask, typed_identifier
from services.vocabulary import MAX_REQUEST_ID, format_reference
from storage.models import DsrRequest
from storage.queries import parse_reference

# The longest reason a command may give: what the column of an extension's reason holds (a
# cancellation's, which goes to the audit trail, is held to the same).
REASON_LIMIT = DsrRequest.__table__.c.extension_reason.type.length


@dataclass(frozen=True)
class Typed:
    """One `/dsr` command as it arrived: who, the subcommand's words, and what it needs."""

    deps: Deps
    user: str
    rest: str  # what follows the subcommand
    trigger_id: str
    client: WebClient

    @property
    def reference(self) -> str:
        """The reference as DSR-000042 (however typed: `dsr-42`, `42`), or as typed if none."""
        typed = self.rest.partition(" ")[0]
        number = parse_reference(typed)
        return format_reference(number) if number and number <= MAX_REQUEST_ID else typed

    @property
    def reason(self) -> str:
        return self.rest.partition(" ")[2].strip()


@dataclass(frozen=True)
class Subcommand:
    word: str
    usage: str  # its arguments, as the help shows them
    does: str
    who: str  # who may use it (policy enforced by the service it calls)
    answer: Callable[[Typed, Ack], None]
    after: Callable[[Typed, WebClient, Respond], None] | None = None
    needs_reference: bool = False
    after_if: Callable[[str], bool] = lambda rest: True  # whether `after` has work for `rest`


def _reply(ack: Ack, message: str, **extra: Any) -> None:
    ack(response_type="ephemeral", text=message, **extra)


# What each subcommand says in the ack

def _new(typed: Typed, ack: Ack) -> None:
    """The form opens in this request, before the (empty) ack is sent: Slack's trigger_id lasts
    3 s, which a busy machine could spend before the background process got to it."""
    deps = typed.deps
    deps.service.policy.require(deps.service.policy.is_requester(typed.user),
                                "file data subject requests")
    typed.client.views_open(trigger_id=typed.trigger_id,
                            view=intake_modal(deps.jurisdictions(), deps.systems).to_dict())
    ack()


def _list(typed: Typed, ack: Ack) -> None:
    if _wants_csv(typed.rest):
        words = typed.rest[:-3].strip()
        typed.deps.service.page(parse_filters(words, typed.user, typed.deps), viewer=typed.user,
                                limit=0)  # the words and the role checked before the ack says yes
        _reply(ack, ":bookmark_tabs: Preparing the CSV; it comes by direct message.")
        return
    ack(**list_reply(typed.deps, typed.user, " ".join(typed.rest.split())))


def _find(typed: Typed, ack: Ack) -> None:
    if parse_reference(typed.reference) is not None:
        _show(typed, ack)
        return
    digests = typed.deps.service.subject_lookups(typed.rest)
    ack(**list_reply(typed.deps, typed.user, " ".join(f"subject:{d}" for d in digests)))


def _show(typed: Typed, ack: Ack) -> None:
    deps = typed.deps
    detail = deps.service.detail(typed.reference, viewer=typed.user)
    ack(response_type="ephemeral", text=detail.request.reference, blocks=as_dicts(detail_blocks(
        detail, deps.service.today(), deps.deliverables.export_until(detail.request))))


def _search(typed: Typed, ack: Ack) -> None:
    if not typed.rest:
        _reply(ack, "`/dsr search` needs an email, a phone or a name.")
        return
    policy = typed.deps.service.policy
    policy.require(policy.is_requester(typed.user), "search for subjects")
    _reply(ack, ":mag: Searching the connected systems…")


def _extend(typed: Typed, ack: Ack) -> None:
    new_due = typed.deps.service.extend(typed.reference, actor=typed.user, reason=typed.reason)
    _reply(ack, f":calendar: {typed.reference} now due {new_due:%d %b %Y}. Tell the "
                "subject about the extension and its reason.")


def _cancel(typed: Typed, ack: Ack) -> None:
    request = typed.deps.service.cancel(typed.reference, actor=typed.user, reason=typed.reason)
    _reply(ack, f":x: {request.reference} canceled.")


def _acknowledge(typed: Typed, ack: Ack) -> None:
    request = typed.deps.service.acknowledge(typed.reference, actor=typed.user)
    _reply(ack, f":incoming_envelope: Receipt of {request.reference} recorded as acknowledged "
                "to the subject; no more acknowledgement reminders.")


def _report(typed: Typed, ack: Ack) -> None:
    policy = typed.deps.service.policy
    policy.require(policy.is_requester(typed.user), "read compliance records")
    _reply(ack, f":page_facing_up: Preparing the compliance record of "
                f"{typed.reference}…")


def _systems(typed: Typed, ack: Ack) -> None:
    word, _, rest = typed.rest.partition(" ")
    data_map = typed.deps.data_map
    if word.lower() == "retire":
        name, _, reason = rest.strip().partition(" ")
        if not (name and reason.strip()):
            _reply(ack, "`/dsr systems retire` needs a system's name and a reason.")
            return
        if problem := too_long(reason, REASON_LIMIT):
            _reply(ack, f":warning: The reason: {problem}")
            return
        system = data_map.retire(name, actor=typed.user, reason=reason.strip())
        _reply(ack, f":file_cabinet: {escape(system.label)} (`{system.name}`) is retired from the "
                    "data map: requests filed from now on do not offer it.")
        return
    if word.lower() in ("add", "edit"):
        data_map.require_manager(typed.user)
        name = rest.strip()
        if word.lower() == "edit" and not name:
            _reply(ack, "`/dsr systems edit` needs a system's name: `/dsr systems` lists them.")
            return
        system = data_map.system(name, viewer=typed.user) if word.lower() == "edit" else None
        typed.client.views_open(trigger_id=typed.trigger_id, view=system_modal(system).to_dict())
        ack()
        return
    if word and word.lower() != "retired":
        _reply(ack, f"`/dsr systems {echo(word)}`: say `/dsr systems`, `/dsr systems retired`, "
                    "`/dsr systems add`, `/dsr systems edit <name>` or "
                    "`/dsr systems retire <name> <reason>`.")
        return
    systems = data_map.systems(viewer=typed.user, retired=bool(word))
    ack(response_type="ephemeral", text="The data map", blocks=as_dicts(systems_blocks(systems)))


def _help(typed: Typed, ack: Ack) -> None:
    ack(response_type="ephemeral", text="DSR Desk help", blocks=as_dicts(help_blocks()))


# What the slow ones do after it

def _wants_csv(rest: str) -> bool:
    return rest.lower().endswith(" csv") or rest.lower() == "csv"


def _list_csv(typed: Typed, client: WebClient, respond: Respond) -> None:
    if _wants_csv(typed.rest) and typed.deps.service.policy.is_requester(typed.user):
        send_csv(typed.deps, client, typed.user, typed.rest[:-3].strip())


def _search_systems(typed: Typed, client: WebClient, respond: Respond) -> None:
    deps = typed.deps
    if not typed.rest or not deps.service.policy.is_requester(typed.user):
        return  # refused in the ack
    identifier = typed_identifier(typed.rest)
    lines = []
    for system in deps.systems:
        simulated = system not in deps.live_systems
        try:
            matches = deps.service.search_identifiers(system, [identifier], simulation=simulated)
        except Exception as exc:  # noqa: BLE001 - one system failing must not hide the others
            lines.append(f"*{system}*: search failed ({type(exc).__name__}); try again later.")
            continue
        shown = ", ".join(f"{escape(m.label)} ({escape(m.record_id)})"
                          for m in matches[:20]) or "no match"
        more = f" and {len(matches) - 20} more" if len(matches) > 20 else ""
        lines.append(f"*{system}*{' (simulation)' if simulated else ''}: {shown}{more}")
    respond(response_type="ephemeral", replace_original=True,
            text=f"Results for {mask(identifier)}", blocks=as_dicts([section("\n".join(lines))]))


def _send_record(typed: Typed, client: WebClient, respond: Respond) -> None:
    if not typed.deps.service.policy.is_requester(typed.user):
        return  # refused in the ack
    typed.deps.deliverables.send_record(typed.reference, typed.user)
    respond(text=f":page_facing_up: The compliance record of {typed.reference} is in your "
                 "direct messages (PDF and JSON).", response_type="ephemeral",
            replace_original=False)


ANYONE = "anyone with a DSR Desk role"
SUBCOMMANDS = {c.word: c for c in (
    Subcommand("new", "", "file a request (opens a form)", ANYONE, _new),
    Subcommand("list", "[open|status] [type] [mine|awaiting|overdue|due-soon] [from YYYY-MM-DD] "
               "[to YYYY-MM-DD] [csv]", "requests, 20 a page with the total; `csv` sends them "
               "all as a file by DM", ANYONE, _list, _list_csv, after_if=_wants_csv),
    Subcommand("find", "<DSR-000042|email|phone|name>", "the requests of a subject (or one by "
               "its reference), also after retention masked their data", ANYONE, _find),
    Subcommand("show", "DSR-000042", "details, approvals and every step with its timestamps",
               ANYONE, _show, needs_reference=True),
    Subcommand("search", "<email|phone|name>", "find a subject in the connected systems",
               ANYONE, _search, _search_systems),
    Subcommand("extend", "DSR-000042 <reason>", "extend the legal deadline once, with a reason",
               "approvers and managers", _extend, needs_reference=True),
    Subcommand("cancel", "DSR-000042 [reason]", "cancel a request that is not executing",
               "its requester and managers", _cancel, needs_reference=True),
    Subcommand("ack", "DSR-000042", "record that the subject was told we received the request "
               "(CCPA)", "requesters and approvers", _acknowledge, needs_reference=True),
    Subcommand("report", "DSR-000042", "the compliance record of a finished request (PDF and "
               "JSON, by DM)", ANYONE, _report, _send_record, needs_reference=True),
    Subcommand("systems", "[retired | add | edit <name> | retire <name> <reason>]", "the data "
               "map: every system holding personal data, its owner and how it is reached",
               ANYONE + " (add, edit, retire: managers)", _systems),
    Subcommand("help", "", "this text", "everyone", _help),
)}


def help_text() -> str:
    lines = [f"• `/dsr {c.word}{' ' + c.usage if c.usage else ''}`: {c.does} _({c.who})_"
             for c in SUBCOMMANDS.values()]
    return ("*DSR Desk*: data subject requests from Slack.\n" + "\n".join(lines)
            + "\nStatuses: received, in_review (an erasure's plan), pending_approval, approved, "
              "in_progress, needs_attention, completed, rejected, canceled.\n"
              "Types: access, erasure, rectification, objection.")


def help_blocks(problem: str | None = None) -> list:
    return ([section(f":warning: {problem}")] if problem else []) + [section(help_text())]


@replies_errors
def dsr(ack: Ack, command: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    typed, subcommand = _typed(command, client, context)
    if subcommand is None:
        word = text(command.get("text")).partition(" ")[0]
        ack(response_type="ephemeral", text="DSR Desk help",
            blocks=as_dicts(help_blocks(f"`/dsr {echo(word)}` is not a command.")))
        return
    if subcommand.needs_reference:
        if parse_reference(typed.reference) is None:
            ack(response_type="ephemeral", text="Which request?", blocks=as_dicts(help_blocks(
                f"`/dsr {subcommand.word}` needs a reference such as DSR-000042.")))
            return
        if problem := too_long(typed.reason, REASON_LIMIT):
            _reply(ack, f":warning: The reason: {problem}")
            return
    subcommand.answer(typed, ack)


@replies_errors
def after_ack(command: dict[str, Any], client: WebClient, respond: Respond,
              context: BoltContext) -> None:
    typed, subcommand = _typed(command, client, context)
    if subcommand is not None and subcommand.after is not None:
        subcommand.after(typed, client, respond)


def _typed(command: dict[str, Any], client: WebClient,
           context: BoltContext) -> tuple[Typed, Subcommand | None]:
    """The command as Typed, and its subcommand (an empty one is `help`; None if unknown): the
    one place the command's text is read."""
    word, _, rest = text(command.get("text")).partition(" ")
    typed = Typed(deps_of(context), command["user_id"], rest.strip(),
                  text(command.get("trigger_id")), client)
    return typed, SUBCOMMANDS.get(word.lower() or "help")


def _finished_after_ack(command: dict[str, Any]) -> bool:
    word, _, rest = text(command.get("text")).partition(" ")
    subcommand = SUBCOMMANDS.get(word.lower())
    return subcommand is not None and subcommand.after is not None and subcommand.after_if(
        rest.strip())


def register(app: App) -> None:
    # Only the commands with work after the ack get a lazy listener: bolt copies the request and
    # starts a thread for each, which the others (such as the frequent `show`) need not pay.
    app.command("/dsr", matchers=[_finished_after_ack])(ack=dsr, lazy=[after_ack])
    app.command("/dsr")(dsr)
