"""`dsr-desk demo`: one simulated request, end to end, through the real app with no Slack account.

The app runs in HTTP mode on a localhost port against a stand-in of Slack's Web API; a driver
plays the people (signed slash command, form, confirmation, approval click) and the vendors
are the built-in stand-ins. The conversation is printed as a transcript, Slack's formatting
rendered for the terminal (bot.terminal), then the compliance record and the export the app
uploaded, both saved in `keep` (var/demo) to open. Logs stay quiet unless DSR_LOG_LEVEL is set.
"""

from __future__ import annotations

import io
import json
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from cryptography.fernet import Fernet

from bot.app import create_app
from bot.http import wsgi_app
from bot.logs import transcript_logging
from bot.settings import Settings
from bot.slack_driver import SlackDriver, form_state, tick_everything
from bot.slack_standin import SlackStandIn
from bot.terminal import Renderer
from handlers.ids import Action, Block, Callback
from services.records import ComplianceRecord, parse_record
from services.sandbox import server
from storage import migrate
from storage.db import make_engine

PEOPLE = {"U0PRIYA": "Priya", "U0MARCO": "Marco"}
ROLES = {"U0PRIYA": "privacy analyst", "U0MARCO": "DPO, approver"}
APPROVALS = "C0PRIVACY"
CHANNELS = {APPROVALS: "privacy"}
SECRET = "demo-signing-secret"
KEEP = Path("var/demo")  # beside the app's own data (DSR_DATA_DIR's default), ignored by git
INDENT = " " * 6
DECISIONS = {"approve": "approved", "reject": "rejected"}


def _wait(condition: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.05)
    raise TimeoutError("the demo stalled; run with DSR_LOG_LEVEL=DEBUG to see why")


def _speaker(user: str) -> str:
    return f"{PEOPLE[user]} ({ROLES[user]})"


class Transcript:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        is_terminal = getattr(out, "isatty", lambda: False)()
        self.render = Renderer(people=PEOPLE, channels=CHANNELS, ansi=is_terminal)

    def say(self, who: str, what: str) -> None:
        indented = what.replace("\n", "\n" + INDENT)
        print(f"\n{self.render.style('*', who)}:\n{INDENT}{indented}", file=self.out, flush=True)

    def slack(self, who: str, message: dict[str, Any]) -> None:
        """A message as Slack shows it: its blocks (or text), then the files it carries."""
        shown = self.render.blocks(message["blocks"]) if message.get("blocks") else \
            self.render.text(message.get("text", ""))
        files = [f"📎 {f['name']} ({f['size']:,} bytes)" for f in message.get("files") or []]
        self.say(who, "\n".join([shown, *files]))


def run_demo(out: TextIO, workdir: Path | None = None, keep: Path = KEEP) -> str:
    """Play the demo; returns the request's final status. The record and the export are
    written to `keep`; the database and the rest live in `workdir` (by default a temporary
    folder)."""
    with transcript_logging(), tempfile.TemporaryDirectory() as tmp:
        base = workdir or Path(tmp)
        database = f"sqlite:///{base / 'demo.sqlite3'}"
        engine = make_engine(database)
        migrate.upgrade(engine)
        engine.dispose()
        slack = SlackStandIn(bot_token="xoxb-demo",
                             users={user: {"real_name": name} for user, name in PEOPLE.items()},
                             channels={c: {"name": name} for c, name in CHANNELS.items()})
        slack_server = server.start(slack.wsgi)
        settings = Settings(
            _env_file=None,  # the demo touches nothing real, whatever .env holds
            DATABASE_URL=database, DSR_DATA_DIR=str(base), SLACK_BOT_TOKEN="xoxb-demo",
            SLACK_SIGNING_SECRET=SECRET, SLACK_API_URL=f"{slack_server.url}/api/",
            DSR_REQUESTERS="U0PRIYA", DSR_APPROVERS="U0MARCO", DSR_APPROVALS_CHANNEL=APPROVALS,
            DSR_POLL_SECONDS=0.2, DSR_EXPORT_KEY=Fernet.generate_key().decode(),  # lives as long as the demo
        )
        runtime = create_app(settings, intervals={"execute": 0.2, "status_updates": 0.2,
                                                  "deliverables": 0.2})
        runtime.scheduler.start()
        app_server = server.start(wsgi_app(runtime))
        try:
            return _play(Transcript(out), runtime, slack,
                         SlackDriver(app_server.url, SECRET, slack, slack_server.url), keep)
        finally:
            app_server.stop()
            runtime.close()
            slack_server.stop()


def _play(t: Transcript, runtime: Any, slack: SlackStandIn, driver: SlackDriver,
          keep: Path) -> str:
    runtime.registry.sandboxes.url("zendesk")
    zendesk = runtime.registry.sandboxes.instances["zendesk"]
    subject = next(u for u in zendesk.state.users.values() if u["role"] == "end-user")
    t.say("DSR Desk demo", "Everything below is simulated: a local stand-in of Slack, and the "
          "built-in stand-ins of Zendesk Support and Genesys Cloud. Nothing real is touched.")

    t.say(_speaker("U0PRIYA"), "/dsr new")
    driver.command("U0PRIYA", "new")
    intake = _wait(lambda: next((v for v in slack.views().values()
                                 if v.get("callback_id") == Callback.NEW_REQUEST), None))
    t.say("DSR Desk (modal)", f"opens '{intake['title']['text']}': subject, type, jurisdiction, "
          "systems, 'Use real API' (off), identity verification, …")
    form = {Block.EMAILS: subject["email"], Block.TYPE: "access", Block.JURISDICTION: "GDPR",
            Block.SYSTEMS: ["zendesk", "genesys"], Block.VERIFICATION: "Reply from the address on file"}
    t.say(_speaker("U0PRIYA"), "fills in: " + ", ".join(
        f"{k}={', '.join(v) if isinstance(v, list) else v}" for k, v in form.items()))
    answer = driver.submit("U0PRIYA", intake, form_state(form)).json()
    reference = answer["view"]["private_metadata"]
    matches = _wait(lambda: next((v for v in slack.views().values()
                                  if v.get("callback_id") == Callback.CONFIRM_MATCHES), None))
    t.say("DSR Desk (modal)", f"{reference} recorded. Matches found:\n"
          + t.render.blocks(matches["blocks"]))
    t.say(_speaker("U0PRIYA"), "ticks every match and clicks [Send for approval]")
    driver.submit("U0PRIYA", matches, tick_everything(matches))
    # Its buttons come once it is saved as the request's thread (handlers.matches._confirm).
    message = _wait(lambda: next((m for m in slack.messages(APPROVALS)
                                  if reference in json.dumps(m["blocks"])
                                  and '"actions"' in json.dumps(m["blocks"])), None))
    t.slack(f"DSR Desk in #{CHANNELS[APPROVALS]}", message)

    t.say(_speaker("U0MARCO"), "clicks [Approve]")
    driver.click("U0MARCO", message, Action.APPROVE, APPROVALS)
    detail = _wait(lambda: (d := runtime.service.detail(reference, viewer=None)).request.status
                   in ("completed", "needs_attention") and d)
    # What follows the status change: the notices, then the record in the thread and the
    # export in the requester's DMs (the deliverables job).
    names = {f"{reference}-compliance-record.json", f"{reference}-compliance-record.pdf",
             f"{reference}-export.zip"}
    files = _wait(lambda: _uploaded(slack, names)) if detail.request.status == "completed" else {}
    _wait(lambda: any(reference in m["text"] for m in slack.messages("U0PRIYA")))
    thread = slack.thread(APPROVALS, message["ts"])
    for reply in thread[1:]:
        t.slack("DSR Desk in the thread", reply)
    t.slack(f"DSR Desk in #{CHANNELS[APPROVALS]} (the request's message, kept up to date)",
            thread[0])
    for dm in slack.messages("U0PRIYA"):
        t.slack("DSR Desk to Priya (direct message)", dm)

    if files:
        keep.mkdir(parents=True, exist_ok=True)
        for name in names:
            (keep / name).write_bytes(files[name]["bytes"])
        record = parse_record(files[f"{reference}-compliance-record.json"]["bytes"].decode())
        t.say(f"Compliance record (posted in the thread as PDF and JSON; saved in {keep})",
              "\n".join(_record_summary(record, keep)))
        t.say(f"Export (sent to {PEOPLE['U0PRIYA']} by direct message; saved in {keep})",
              "\n".join(_export_summary(keep / f"{reference}-export.zip")))
    t.say("Result", f"{reference} is {detail.request.status}; {len(detail.steps)} steps, "
          "audit trail recorded. Connect a real workspace with SLACK_BOT_TOKEN and "
          "SLACK_APP_TOKEN (README: 'Creating the Slack app').")
    return str(detail.request.status)


def _uploaded(slack: SlackStandIn, names: set[str]) -> dict[str, dict[str, Any]] | None:
    """The files the app uploaded by name, once all of `names` are there."""
    found = {f["name"]: f for f in slack.uploaded_files()}
    return found if found.keys() >= names else None


def _when(moment: Any) -> str:
    return f"{moment:%d %b %Y %H:%M} UTC"


def _record_summary(record: ComplianceRecord, keep: Path) -> list[str]:
    """What an auditor reads first in the record, as the JSON the app uploaded has it."""
    name = PEOPLE.get
    rows = [
        ("Reference", f"{record.reference}: {record.type} request under {record.jurisdiction.code}"
                      + (" (simulation)" if record.simulation else "")),
        ("Filed", f"by {name(record.requester, record.requester)}, {_when(record.received_at)}"),
        *[("Decision", f"{DECISIONS.get(d.decision, d.decision)} by {name(d.approver, d.approver)}, "
                       f"{_when(d.decided_at)}") for d in record.decisions],
        ("Subject", ", ".join(f"{i.kind} {i.value}" for i in record.subject
                              if i.purpose == "identifies") or "none"),
        *[(f"Step {s.position}", f"{s.system} {s.action}: {s.status}{_counts(s.result)}")
          for s in record.steps],
        ("Outcome", f"{record.outcome} {_when(record.closed_at)}, "
                    f"{'on time' if record.on_time else 'late'} (due {record.effective_due_on:%d %b %Y})"),
        ("Audit trail", f"{len(record.trail)} events of this request; closed at event "
                        f"#{record.anchor.seq}, hash {record.anchor.hash[:16]}…"),
        ("PDF", str(keep / f"{record.reference}-compliance-record.pdf")),
        ("JSON", str(keep / f"{record.reference}-compliance-record.json")),
    ]
    return [f"{label + ':':<13}{value}" for label, value in rows]


def _counts(result: dict[str, Any] | None) -> str:
    """A step's result by its counts ("users 1"): its other values are vendor ids and words."""
    counts = [f"{k} {v}" for k, v in (result or {}).items()
              if isinstance(v, int) and not isinstance(v, bool)]
    return f" ({', '.join(counts)})" if counts else ""


def _export_summary(path: Path) -> list[str]:
    """The archive's files and how much each holds: its structure, not the subject's data."""
    lines = [f"{path} ({path.stat().st_size:,} bytes), for the subject (here a made-up person):"]
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            lines.append(f"  {info.filename:<28}{_contents(info.filename, archive.read(info))}")
    return lines


def _contents(name: str, data: bytes) -> str:
    if name.endswith(".zip"):
        return f"the vendor's own zip of {len(zipfile.ZipFile(io.BytesIO(data)).namelist())} file(s)"
    if name.endswith(".json"):
        body = json.loads(data)
        if isinstance(body, list):
            return f"{len(body)} record(s)"
        return "fields: " + ", ".join(
            f"{k} ({len(v)})" if isinstance(v, list) else k for k, v in body.items())
    lines = data.decode("utf-8", "replace").splitlines()
    return f"{len(lines)} lines of text"
