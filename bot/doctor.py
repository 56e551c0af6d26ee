"""`dsr-desk doctor`: checks the set-up the way the Genesys tool does on first use, and says how
to fix what is wrong: the database, Slack (token, scopes, channels, roles), each vendor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import sqlalchemy as sa
import yaml
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from bot.settings import Settings
from bot.wiring import ConnectorRegistry, export_store
from services.connectors.http import VendorError
from services.errors import ConfigurationError
from services.exports import latest_archive
from services.sealed import SealBroken, read_sealed
from services.subjects import Identifier
from services.vendors import VENDORS
from services.vocabulary import IdentifierKind
from storage import migrate
from storage.db import make_engine, make_session_factory

MANIFEST = Path(__file__).resolve().parents[1] / "manifest.yml"
PROBE = Identifier(IdentifierKind.EMAIL, "dsr-desk-doctor@example.invalid")


@dataclass
class Finding:
    ok: bool
    what: str
    fix: str = ""

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        return f"[{mark}] {self.what}" + (f"\n       fix: {self.fix}" if self.fix else "")


def where(url: sa.URL) -> str:
    """The database as DATABASE_URL names it, without its password."""
    return url.render_as_string(hide_password=True)


def cause(error: BaseException) -> str:
    """The driver's own first line (refused, unknown host, bad password, no such file): it
    names the database's host, never a subject's data."""
    original = getattr(error, "orig", None) or error
    first = (str(original).strip().splitlines() or [""])[0]
    return f"{type(original).__name__}: {first[:300]}" if first else type(original).__name__


def check_database(settings: Settings) -> list[Finding]:
    url = sa.make_url(settings.effective_database_url)
    try:
        engine = make_engine(settings.effective_database_url)
        try:
            current = migrate.is_current(engine)
        finally:
            engine.dispose()
    except Exception as exc:  # noqa: BLE001 - reported, with the way out
        return [Finding(False, f"database {where(url)} unreachable: {cause(exc)}",
                        "check DATABASE_URL and that the server is running")]
    if not current:
        return [Finding(False, "database schema is not up to date", "run `dsr-desk db upgrade`")]
    return [Finding(True, "database reachable and migrated")]


def check_export_key(settings: Settings) -> list[Finding]:
    """The key that seals exports: set, and able to open the latest export in the store."""
    try:
        keys = settings.export_keys
    except ConfigurationError as exc:
        return [Finding(False, "DSR_EXPORT_KEY is not set", str(exc).split(": ", 1)[-1])]
    engine = make_engine(settings.effective_database_url)
    store = export_store(settings, make_session_factory(engine))
    try:
        archive = latest_archive(store)
        if archive is not None:
            next(read_sealed(store, archive, keys))
    except SealBroken:
        return [Finding(False, f"DSR_EXPORT_KEY does not open {archive.rsplit('/', 1)[-1]}",
                        "restore the key it was sealed with (list it after the new one to rotate)")]
    except sa.exc.SQLAlchemyError:  # the database check says what is wrong with it
        archive = None
    finally:
        engine.dispose()
    return [Finding(True, "DSR_EXPORT_KEY set" + (" and opens the latest export" if archive else ""))]


def authenticate(client: WebClient, settings: Settings) -> SlackResponse | Finding:
    """Slack's auth.test answer, or why the bot token does not work: the first check of both
    `dsr-desk doctor` and `dsr-desk run`."""
    try:
        return client.auth_test()
    except SlackApiError as exc:
        return Finding(False, f"Slack refused the bot token ({exc.response.get('error')})",
                       "copy the Bot User OAuth Token (xoxb-...) from the app's OAuth page")
    except OSError as exc:
        return Finding(False, f"Slack's Web API at {settings.slack_api_url} cannot be reached "
                              f"({getattr(exc, 'reason', exc)})",
                       "check SLACK_API_URL (leave it unset for Slack itself) and the network")


def check_slack(settings: Settings, client: WebClient | None = None) -> list[Finding]:
    if settings.slack_bot_token is None:
        return [Finding(False, "SLACK_BOT_TOKEN is not set",
                        "create the app from manifest.yml and install it (README, 'Creating "
                        "the Slack app'); `dsr-desk demo` works without it")]
    client = client or WebClient(token=settings.slack_bot_token.get_secret_value(),
                                 base_url=settings.slack_api_url)
    auth = authenticate(client, settings)
    if isinstance(auth, Finding):
        return [auth]
    findings = [Finding(True, f"Slack token works: bot {auth.get('user')} in {auth.get('team')}")]
    granted = {s.strip() for s in auth.headers.get("x-oauth-scopes", "").split(",") if s.strip()}
    needed = set(yaml.safe_load(MANIFEST.read_text())["oauth_config"]["scopes"]["bot"])
    missing = sorted(needed - granted)
    findings.append(Finding(not missing, "bot scopes " + (
        "complete" if not missing else f"missing: {', '.join(missing)}"),
        "" if not missing else "add them under OAuth & Permissions and reinstall the app"))
    for variable, channel in (("DSR_APPROVALS_CHANNEL", settings.approvals_channel),
                              ("DSR_DIGEST_CHANNEL", settings.digest_channel)):
        if not channel:
            findings.append(Finding(variable == "DSR_DIGEST_CHANNEL", f"{variable} not set",
                                    "set it to a channel id (C...)"))
            continue
        try:
            info = client.conversations_info(channel=channel)["channel"]
        except SlackApiError as exc:
            findings.append(Finding(False, f"{variable} {channel}: {exc.response.get('error')}",
                                    "use the channel's id (channel details, bottom)"))
            continue
        member = info.get("is_member", False)
        findings.append(Finding(member, f"{variable} #{info.get('name', channel)}"
                                + (" (the bot is a member)" if member else ": the bot is not in it"),
                                "" if member else f"invite the bot: /invite @dsr-desk in {channel}"))
    approvers = settings.role_ids("approvers")
    enough = len(approvers) >= 2
    findings.append(Finding(enough, f"{len(approvers)} approver id(s) configured",
                            "" if enough else "set DSR_APPROVERS to at least two people or a "
                            "user group: requesters may not approve their own requests"))
    return findings


def check_vendors(settings: Settings, registry: ConnectorRegistry) -> list[Finding]:
    findings = []
    for system, spec in VENDORS.items():
        if not settings.vendor(system).configured:
            findings.append(Finding(True, f"{system}: not configured, simulation only"))
            continue
        try:
            registry(system, False).search_subjects([PROBE])
        except (VendorError, httpx.HTTPError) as exc:
            findings.append(Finding(False, f"{system}: {exc}", spec.doctor_hint))
            continue
        findings.append(Finding(True, f"{system}: credentials work, subject search allowed"))
    return findings


def run_doctor(settings: Settings, out: Callable[[str], None] = print,
               client: WebClient | None = None) -> bool:
    registry = ConnectorRegistry(settings)
    findings = [*check_database(settings), *check_export_key(settings), *check_slack(settings, client),
                *check_vendors(settings, registry)]
    registry.client.close()
    for finding in findings:
        out(finding.line())
    failed = [f for f in findings if not f.ok]
    out(f"\n{len(findings) - len(failed)} of {len(findings)} checks passed.")
    return not failed
