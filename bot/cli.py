"""The `dsr-desk` command line.

It starts at once: `--help` and a mistyped argument need only argparse, so each command imports
what it needs when it runs (at the top of its `cmd_*`), and `main` loads the settings after
parsing. Only the standard library and `services.errors` are imported here; tests/bot/test_cli.py
checks that `--help` imports none of SQLAlchemy, Alembic, Slack or pydantic-settings.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from services.errors import DsrError, InvalidRequest

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from bot.settings import Settings
    from services.audit_anchor import Anchor
    from storage.db import SessionFactory

Command = Callable[[argparse.Namespace, "Settings"], int]


def _engine(settings: Settings) -> Engine:
    from storage.db import make_engine

    return make_engine(settings.effective_database_url)


def _sessions(settings: Settings) -> SessionFactory:
    from storage.db import make_session_factory

    return make_session_factory(_engine(settings))


DEMO_BANNER = """\
No Slack workspace is configured (SLACK_BOT_TOKEN is not set), so this is the offline demo:
one simulated request played through the real app against local stand-ins of Slack, Zendesk
and Genesys. To connect a real workspace, create the app from manifest.yml and set
SLACK_BOT_TOKEN, SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP mode),
DSR_APPROVALS_CHANNEL and DSR_APPROVERS: see README, 'Creating the Slack app'.
"""


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from bot.demo import run_demo

    status = run_demo(sys.stdout)
    return 0 if status == "completed" else 1


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import check_slack_settings, create_app, preflight

    if args.demo_without_slack and settings.slack_bot_token is None:
        print(DEMO_BANNER, flush=True)
        return cmd_demo(args, settings)
    check_slack_settings(settings, http=args.http)
    preflight(settings)
    if args.http:
        from bot.http import serve

        serve(settings, host=args.host, port=args.port, workers=args.workers, threads=args.threads,
              log_level=settings.log_level)
        return 0
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    runtime = create_app(settings)
    runtime.scheduler.start()
    try:
        print("DSR Desk connecting to Slack in Socket Mode", flush=True)
        SocketModeHandler(runtime.app, settings.slack_app_token.get_secret_value()).start()
    except KeyboardInterrupt:
        pass
    finally:
        runtime.close()
    return 0


def _at_least_one(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return int(text)


def _run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--http", action="store_true",
                        help="serve Slack's HTTP mode instead of Socket Mode")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (HTTP mode)")
    parser.add_argument("--workers", type=_at_least_one, default=2,
                        help="HTTP mode: processes answering Slack (one more works in the background)")
    parser.add_argument("--threads", type=_at_least_one, default=8,
                        help="HTTP mode: request threads in each worker (a slow client holds one)")
    parser.add_argument("--demo-without-slack", action="store_true",
                        help="play the offline demo when no Slack token is configured")


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from bot.doctor import run_doctor

    return 0 if run_doctor(settings) else 1


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from storage import migrate

    engine = _engine(settings)
    migrate.upgrade(engine, args.revision)
    print(f"Database at {engine.url.render_as_string(hide_password=True)} is up to date.")
    return 0


def cmd_db_revision(args: argparse.Namespace, settings: Settings) -> int:
    from alembic import command

    from storage import migrate

    command.revision(
        migrate.alembic_config(settings.effective_database_url), message=args.message,
        autogenerate=True,
    )
    return 0


def cmd_audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    from services import audit, audit_anchor
    from services.records import check_anchor, parse_record

    anchors, where = list(args.anchor), _anchors_file(args, settings)
    if where.exists():
        anchors += audit_anchor.read(where)
    elif args.anchors:
        raise InvalidRequest(f"--anchors {where}: no such file")
    factory = _sessions(settings)
    with factory() as session:
        result = audit.verify(session)
        against_anchors = audit_anchor.check(session, anchors)
        record = parse_record(Path(args.record).read_text("utf-8")) if args.record else None
        anchored = check_anchor(session, record) if record else True
    if not result.ok:
        print(f"Audit trail BROKEN after {result.checked} good events: {result.problem}.",
              file=sys.stderr)
    if against_anchors:
        print(f"Audit trail does NOT match its anchors: {against_anchors}.", file=sys.stderr)
    if not result.ok or against_anchors:
        return 1
    print(f"Audit trail intact: {result.checked} events, last hash {result.last_hash}.")
    if anchors:
        newest = max(anchors, key=lambda a: a.seq)
        print(f"It matches its {len(anchors)} anchor(s), the newest at event #{newest.seq} "
              f"({newest.source}).")
    else:
        why = "holds none" if where.exists() else "does not exist"
        print(f"No anchors ({where} {why}): events cut off the end, with the chain head rewound, "
              "would not show. See 'dsr-desk audit anchor'.")
    if record is None:
        return 0
    if not anchored:
        print(f"Record of {record.reference} does NOT match the trail: event #{record.anchor.seq} "
              f"or #{record.chain_head.seq} is missing or has another hash than the record's.",
              file=sys.stderr)
        return 1
    print(f"Record of {record.reference} matches the trail: event #{record.anchor.seq} "
          f"({record.anchor.action}) hash {record.anchor.hash}.")
    return 0


def _anchors_file(args: argparse.Namespace, settings: Settings) -> Path:
    return Path(args.anchors) if args.anchors else settings.anchor_file


def _pasted_anchor(text: str) -> Anchor:
    from services import audit_anchor

    try:
        return audit_anchor.parse_pasted(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _audit_verify_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--record", metavar="FILE.json",
                        help="also check a compliance record's anchor against the trail")
    parser.add_argument("--anchors", metavar="FILE",
                        help="the anchors file to check the trail against (default: "
                        "DSR_AUDIT_ANCHOR_FILE, skipped if it does not exist yet)")
    parser.add_argument("--anchor", metavar="SEQ:HASH", type=_pasted_anchor, action="append",
                        default=[], help="also an anchor copied from a daily digest in Slack "
                        "(repeatable)")


def cmd_audit_anchor(args: argparse.Namespace, settings: Settings) -> int:
    from services import audit_anchor

    where = _anchors_file(args, settings)
    factory = _sessions(settings)
    with factory() as session:
        anchor = audit_anchor.append(session, where, now=datetime.now(UTC))
    if anchor is None:
        print("Nothing to anchor: the audit trail is empty.")
        return 0
    print(f"Anchored event #{anchor.seq}, hash {anchor.hash}, to {where}.")
    return 0


def _audit_anchor_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--anchors", metavar="FILE",
                        help="the anchors file to append to (default: DSR_AUDIT_ANCHOR_FILE)")


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    """A finished request's compliance record as PDF or JSON (by --format or the file's suffix)."""
    from bot.wiring import export_store
    from services.record_pdf import render_pdf
    from services.records import record_json
    from services.scheduled.deliverables import record_of

    fmt = args.format or ("json" if args.out.lower().endswith(".json") else "pdf")
    sessions = _sessions(settings)
    record = record_of(sessions, args.reference, exports=export_store(settings, sessions),
                       keys=settings.export_keys, now=datetime.now(UTC), owner=f"cli-{os.getpid()}")
    content = record_json(record).encode() if fmt == "json" else render_pdf(record)
    partial = Path(args.out + ".partial")
    partial.write_bytes(content)
    partial.replace(args.out)
    print(f"Compliance record of {record.reference} ({record.outcome}) written to {args.out} "
          f"({fmt.upper()}, {len(content):,} bytes).")
    return 0


def _report_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reference", help="e.g. DSR-000042")
    parser.add_argument("--out", required=True, metavar="FILE", help="FILE.pdf or FILE.json")
    parser.add_argument("--format", choices=("pdf", "json"),
                        help="default: json for a .json FILE, else pdf")


def _utc_day(text: str, option: str) -> datetime:
    """A calendar day, YYYY-MM-DD, as UTC midnight."""
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError(text)
        day = date.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(
            f"{option} {text!r} is not a date: expected YYYY-MM-DD (a calendar day, from midnight UTC)"
        ) from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def cmd_audit_export(args: argparse.Namespace, settings: Settings) -> int:
    from services import audit

    since = _utc_day(args.since, "--since")
    until = _utc_day(args.until, "--until") if args.until else None
    if until is not None and until <= since:
        raise InvalidRequest(f"--until {args.until} must be a later day than --since {args.since} "
                             "(--until is exclusive)")
    target = Path(args.out) if args.out else None
    partial = target.with_name(target.name + ".partial") if target else None
    factory = _sessions(settings)
    with factory() as session:
        if session.get_bind().dialect.name == "postgresql":
            # One snapshot for the events and the chain check, while the bot goes on appending
            # (SQLite's read transaction is a snapshot already).
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        generated_at = datetime.now(UTC).replace(microsecond=0)

        def export(out: TextIO) -> audit.ExportSummary:
            return audit.write_export(session, out, fmt=args.format, since=since, until=until,
                                      generated_at=generated_at)

        if partial is None:
            summary = export(sys.stdout)
            sys.stdout.flush()
        else:
            try:
                with partial.open("w", encoding="utf-8", newline="") as out:
                    summary = export(out)
                os.replace(partial, target)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
    where = f" to {target}" if target else ""
    window = f"#{summary.first_seq} to #{summary.last_seq}" if summary.exported else "none"
    result = summary.verification
    if result.ok:
        if args.format == "csv":
            print(f"Exported {summary.exported} events ({window}){where}. Audit trail intact: "
                  f"{result.checked} events, head #{summary.head_seq} hash {summary.head_hash}.",
                  file=sys.stderr)
        return 0
    print(f"Exported {summary.exported} events ({window}){where}. Audit trail BROKEN after "
          f"{result.checked} good events: {result.problem}.", file=sys.stderr)
    return 1


def _audit_export_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", required=True, metavar="DATE",
                        help="first day, YYYY-MM-DD (from 00:00 UTC)")
    parser.add_argument("--until", metavar="DATE",
                        help="day after the last, YYYY-MM-DD (exclusive; default: up to now)")
    parser.add_argument("--format", required=True, choices=["csv", "json"])
    parser.add_argument("--out", metavar="FILE",
                        help="write to FILE (through FILE.partial, renamed when complete); "
                        "default: standard output")
    parser.epilog = (
        "Rows come in chain order with seq, occurred_at (UTC), actor, action, reference, "
        "request_id, details, prev_hash and hash. The whole chain is verified as well: JSON ends "
        "with a 'chain' section, CSV prints the result on standard error; exit 1 if it is broken "
        "(the export is written all the same). An export that starts mid-chain can still be "
        "checked: each row carries its prev_hash and hash, each row's prev_hash is the hash of "
        "the event before it (the previous row's), and the hash is recomputed from the row as "
        "'dsr-desk audit verify' does (see the README)."
    )


def cmd_jurisdictions(args: argparse.Namespace, settings: Settings) -> int:
    from storage.queries import list_jurisdictions

    factory = _sessions(settings)
    with factory() as session:
        rows = list_jurisdictions(session=session)
    for j in rows:
        extension = (
            f"+{j.extension_amount} {j.extension_unit} once" if j.max_extensions else "no extension"
        )
        ack = f", acknowledge within {j.ack_amount} {j.ack_unit}" if j.ack_amount else ""
        print(f"{j.code:<8} {j.name:<24} {j.response_amount} {j.response_unit}, {extension}{ack}"
              f"  [{j.legal_basis}]")
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import build_core

    worker = build_core(settings, worker_id=args.worker_id,
                        lease_seconds=args.lease_seconds).jobs.worker
    recovered = worker.recover()
    if recovered:
        print(f"worker {worker.id}: resumed {recovered} step(s) left running by a crash", flush=True)
    stop = threading.Event()
    ran = 0
    while not stop.is_set():
        count = worker.run_once()
        ran += count
        if args.once and not count:
            break
        if not count:
            stop.wait(args.idle_seconds)
    print(f"worker {worker.id}: ran {ran} step(s)")
    return 0


def cmd_jobs_list(args: argparse.Namespace, settings: Settings) -> int:
    from bot.jobs import SPECS

    for spec in SPECS.values():
        print(f"{spec.name:<15} every {spec.every_seconds:>5g} s  {spec.what}")
    return 0


def cmd_jobs_run_once(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import build_core

    core = build_core(settings)
    print(f"{args.job}: {core.jobs.run(args.job)}")
    return 0


def cmd_jobs_serve(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import datetime

    from bot.app import build_core, create_app
    from bot.scheduler import Scheduler
    from services.clock import ScaledClock

    clock = None
    if args.clock_start:
        clock = ScaledClock(datetime.fromisoformat(args.clock_start), args.clock_speed,
                            args.clock_anchor)
    if settings.slack_bot_token:  # with the Slack app: the work after acks too (bot.inbox)
        runtime = create_app(settings, clock=clock)
        core, scheduler = runtime.core, runtime.scheduler
    else:
        core = build_core(settings, clock=clock)
        scheduler = Scheduler(core.jobs, speed=args.clock_speed if clock else 1.0)
    if clock and args.clock_anchor_from_stdin:
        # Ready: the rehearsal starts when told (its anchor, a Unix time, on a line of stdin),
        # so processes that took their own time to start still run one simulated day in step.
        print(f"scheduler {core.jobs.owner}: ready", flush=True)
        clock.anchor = float(sys.stdin.readline())
    scheduler.start()
    print(f"scheduler {core.jobs.owner}: running {', '.join(scheduler.job_names)}", flush=True)
    until = datetime.fromisoformat(args.clock_until) if args.clock_until else None
    stop, began = threading.Event(), time.monotonic()
    try:
        while not stop.wait(0.05):
            if args.seconds and time.monotonic() - began >= args.seconds:
                break
            if until and core.jobs.clock.now() >= until:
                break
    except KeyboardInterrupt:
        pass
    finally:
        scheduler.stop()
    return 0


def _job_name(text: str) -> str:
    from bot.jobs import SPECS  # when `jobs run-once` is parsed, not for every command's --help

    if text not in SPECS:
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(SPECS)})")
    return text


def _jobs_run_once_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", type=_job_name, help="a job 'dsr-desk jobs list' names")


def _jobs_serve_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=0, help="stop after this long (0: never)")
    # A rehearsal clock: simulated time from --clock-start, --clock-speed times faster, counted
    # from the Unix time --clock-anchor (so that several processes share one simulated day),
    # until the simulated time --clock-until.
    parser.add_argument("--clock-start", default="", help=argparse.SUPPRESS)
    parser.add_argument("--clock-speed", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--clock-anchor", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--clock-until", default="", help=argparse.SUPPRESS)
    parser.add_argument("--clock-anchor-from-stdin", action="store_true", help=argparse.SUPPRESS)


def cmd_sandbox_serve(args: argparse.Namespace, settings: Settings) -> int:
    from services.sandbox import server
    from services.vendors import vendor

    spec = vendor(args.vendor)
    sandbox = spec.standin(seed=args.seed, people=args.people, clock=time.time,
                           settings=settings.vendor(args.vendor))
    running = server.start(sandbox.wsgi, port=args.port)
    print(f"{args.vendor} stand-in (seed {args.seed}, {args.people} people) at {running.url}",
          flush=True)
    credentials = spec.standin_account(running.url).credentials
    print("credentials: " + ", ".join(f"{k}={v}" for k, v in credentials.items()
                                      if not k.endswith("_url")), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
    return 0


def cmd_systems_export(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import build_core

    exported = build_core(settings).deps.data_map.export(viewer=args.as_user)
    if args.output == "-":
        sys.stdout.write(exported)
    else:
        Path(args.output).write_text(exported, encoding="utf-8")
    return 0


def cmd_systems_import(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import build_core

    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    result = build_core(settings).deps.data_map.import_file(text, actor=args.as_user)
    for what, names in (("added", result.added), ("changed", result.changed),
                        ("unchanged", result.unchanged)):
        print(f"{what}: {', '.join(names) or 'none'}")
    return 0


def _systems_args(parser: argparse.ArgumentParser, *, importing: bool) -> None:
    if importing:
        parser.add_argument("file", help="the data map as JSON (as `systems export` writes it); "
                                         "- for standard input")
    else:
        parser.add_argument("--output", default="-", help="a file to write (default: stdout)")
    parser.add_argument("--as", dest="as_user", required=True, metavar="SLACK_ID",
                        help="your Slack user id: " + ("a manager's (DSR_MANAGERS), recorded in "
                                                       "the audit trail" if importing else
                                                       "anyone with a DSR Desk role"))


def _worker_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--once", action="store_true", help="stop when no step is due")
    parser.add_argument("--idle-seconds", type=float, default=2.0,
                        help="pause between polls when idle")
    parser.add_argument("--worker-id", default=None,
                        help="a stable name (e.g. the replica's) lets a restarted worker resume "
                        "its own steps at once")
    parser.add_argument("--lease-seconds", type=float, default=120.0,
                        help="how long a claimed step is ours before another worker may take it")


def _sandbox_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("vendor", help="a vendor's name, e.g. zendesk (services/vendors/)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--people", type=int, default=40)


def _upgrade_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--revision", default="head", help="target revision (default: head)")


def _revision_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--message", required=True, help="what the migration changes")


# (words, one-line description, function, extra arguments)
COMMANDS: list[tuple[str, str, Command, Callable[[argparse.ArgumentParser], None] | None]] = [
    ("run", "Run the Slack bot (Socket Mode, or HTTP mode with --http --port N).", cmd_run,
     _run_args),
    ("demo", "Play one simulated request end to end, offline, and print the conversation.",
     cmd_demo, None),
    ("doctor", "Check the set-up (database, Slack token, scopes, channels, roles, vendors) "
     "and say how to fix it.", cmd_doctor, None),
    ("db upgrade", "Create or update the database schema (Alembic migrations).", cmd_db_upgrade,
     _upgrade_args),
    ("db revision", "Write a new migration from the models (for developers).", cmd_db_revision,
     _revision_args),
    ("audit verify", "Verify the audit trail's hash chain against its anchors (and a compliance "
     "record's anchor with --record); exit 1 naming the first bad event.", cmd_audit_verify,
     _audit_verify_args),
    ("audit anchor", "Append the audit chain's head (event number, hash, time) to the anchors file.",
     cmd_audit_anchor, _audit_anchor_args),
    ("audit export", "Export the audit events of a date range as CSV or JSON for auditors, with the "
     "chain's verification.", cmd_audit_export, _audit_export_args),
    ("report", "Write a finished request's compliance record (PDF or JSON) to a file.", cmd_report,
     _report_args),
    ("jurisdictions", "List the jurisdictions and their legal deadlines.", cmd_jurisdictions, None),
    ("worker", "Run approved requests' steps against the vendors (or their stand-ins).",
     cmd_worker, _worker_args),
    ("jobs list", "List the scheduled jobs and how often each runs.", cmd_jobs_list, None),
    ("jobs run-once", "Run one scheduled job once, now (e.g. reminders, digest, retention).",
     cmd_jobs_run_once, _jobs_run_once_args),
    ("jobs serve", "Run only the scheduled jobs (a replica without the Slack listener).",
     cmd_jobs_serve, _jobs_serve_args),
    ("sandbox serve", "Serve a vendor stand-in on localhost (try it with curl or the vendor's "
     "client).", cmd_sandbox_serve, _sandbox_args),
    ("systems export", "Write the data map (the systems holding personal data) as JSON.",
     cmd_systems_export, lambda parser: _systems_args(parser, importing=False)),
    ("systems import", "Apply a data map file: add its new systems, update the others (all or "
     "none, each change audited).", cmd_systems_import,
     lambda parser: _systems_args(parser, importing=True)),
]
GROUPS = {"db": "Manage the database schema.", "audit": "Check, anchor and export the audit trail.",
          "sandbox": "The vendor stand-ins of simulation mode.",
          "systems": "The data map: the systems holding personal data, as a file.",
          "jobs": "The scheduled jobs: execution, status updates, reminders, digest, retention."}


def build_parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  dsr-desk {words:<15} {text}" for words, text, _, _ in COMMANDS)
    parser = argparse.ArgumentParser(
        prog="dsr-desk",
        description="DSR Desk: handle data subject requests (GDPR, UK GDPR, CCPA/CPRA, LGPD) "
        "from Slack.",
        epilog=f"commands:\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top = parser.add_subparsers(metavar="COMMAND", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for words, text, func, extra in COMMANDS:
        *group, name = words.split()
        parent = top
        if group:
            if group[0] not in groups:
                group_parser = top.add_parser(group[0], help=GROUPS[group[0]])
                groups[group[0]] = group_parser.add_subparsers(metavar="COMMAND", required=True)
            parent = groups[group[0]]
        sub = parent.add_parser(name, help=text, description=text)
        sub.set_defaults(func=func)
        if extra:
            extra(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from bot.logs import configure_logging
    from bot.settings import load_settings

    try:
        settings = load_settings()
        configure_logging(settings.log_level)
        return args.func(args, settings)
    except DsrError as exc:
        print(f"dsr-desk: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
