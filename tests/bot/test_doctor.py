from __future__ import annotations

import socket
from datetime import UTC, datetime

import pytest
from cryptography.fernet import Fernet

from bot.doctor import check_database, check_export_key, run_doctor
from bot.settings import Settings
from bot.slack_standin import SlackStandIn
from bot.wiring import export_store
from services.exports import SealedSink, package
from services.sandbox.server import serve
from services.vendors.genesys.standin import GenesysSandbox
from services.vendors.zendesk.standin import ZendeskSandbox
from storage import migrate
from storage.db import make_engine, make_session_factory


@pytest.fixture
def servers():
    with serve(SlackStandIn(bot_token="xoxb-doc").wsgi) as slack, \
            serve(GenesysSandbox(people=2).wsgi) as genesys, \
            serve(ZendeskSandbox(people=2).wsgi) as zendesk:
        yield slack.url, genesys.url, zendesk.url


def settings(tmp_path, servers, **overrides) -> Settings:
    slack, genesys, zendesk = servers
    values = dict(
        DSR_DATA_DIR=str(tmp_path), SLACK_BOT_TOKEN="xoxb-doc", SLACK_API_URL=f"{slack}/api/",
        DSR_APPROVALS_CHANNEL="C0APPROVALS", DSR_DIGEST_CHANNEL="C0DIGEST",
        DSR_APPROVERS="U1 S0LEADS", GENESYS_API_URL=genesys, GENESYS_LOGIN_URL=genesys,
        GENESYS_CLIENT_ID="sandbox-client", GENESYS_CLIENT_SECRET="sandbox-secret",
        ZENDESK_URL=zendesk, ZENDESK_EMAIL="agent@example.com", ZENDESK_API_TOKEN="sandbox-token")
    values.update(overrides)
    return Settings(_env_file=None, **values)  # never a developer's .env


def test_a_good_setup_passes_every_check(tmp_path, servers) -> None:
    config = settings(tmp_path, servers)
    migrate.upgrade(make_engine(config.effective_database_url))
    lines: list[str] = []
    assert run_doctor(config, lines.append), "\n".join(lines)
    report = "\n".join(lines)
    assert "[ok  ] database reachable and migrated" in report
    assert "[ok  ] DSR_EXPORT_KEY set" in report
    assert "bot scopes complete" in report
    assert "genesys: credentials work" in report and "zendesk: credentials work" in report
    assert "FAIL" not in report


def test_problems_are_named_with_their_fix(tmp_path, servers) -> None:
    config = settings(tmp_path, servers, ZENDESK_API_TOKEN="wrong-token",
                      GENESYS_CLIENT_SECRET="wrong-secret", DSR_APPROVERS="U1",
                      SLACK_BOT_TOKEN="xoxb-wrong")
    lines: list[str] = []
    assert not run_doctor(config, lines.append)
    report = "\n".join(lines)
    assert "[FAIL] database schema is not up to date" in report and "dsr-desk db upgrade" in report
    assert "Slack refused the bot token (invalid_auth)" in report
    assert "zendesk: Zendesk Support refused GET: GET /api/v2/users/search answered 401" in report
    assert "genesys:" in report and "gdpr:subject:view" in report
    assert "wrong-token" not in report and "wrong-secret" not in report


def test_an_unreachable_slack_is_a_finding_not_a_traceback(tmp_path, servers) -> None:
    lines: list[str] = []
    assert not run_doctor(settings(tmp_path, servers, SLACK_API_URL="http://127.0.0.1:9/api/"),
                          lines.append)
    assert "[FAIL] Slack's Web API at http://127.0.0.1:9/api/ cannot be reached" in "\n".join(lines)
    assert "check SLACK_API_URL" in "\n".join(lines)


@pytest.mark.parametrize("store", ["database", "folder"])
def test_an_export_key_that_cannot_open_the_exports_is_caught(tmp_path, servers, store) -> None:
    config = settings(tmp_path, servers, DSR_EXPORT_STORE=store)
    engine = make_engine(config.effective_database_url)
    migrate.upgrade(engine)
    exports = export_store(config, make_session_factory(engine))
    for reference in ("DSR-000001", "DSR-000002"):  # the newest is checked
        SealedSink(exports, reference, config.export_keys).write("zendesk/users/1.json", {"user": {}})
        package(exports, reference, config.export_keys, readme="r", at=datetime.now(UTC))
    engine.dispose()
    assert "[ok  ] DSR_EXPORT_KEY set and opens the latest export" in "\n".join(
        finding.line() for finding in check_export_key(config))
    lines: list[str] = []
    other = settings(tmp_path, servers, DSR_EXPORT_STORE=store,
                     DSR_EXPORT_KEY=Fernet.generate_key().decode())
    run_doctor(other, lines.append)
    assert "[FAIL] DSR_EXPORT_KEY does not open DSR-000002-export.zip.sealed" in "\n".join(lines)
    missing = Settings.model_construct(**{**config.__dict__, "export_key": None})
    assert "[FAIL] DSR_EXPORT_KEY is not set" in "\n".join(line.line() for line in
                                                           check_export_key(missing))


@pytest.mark.parametrize(("url", "named", "cause"), [
    ("postgresql+psycopg://dsr:s3cret@127.0.0.1:{port}/dsr", "127.0.0.1:{port}", "refused"),
    ("sqlite:////dev/null/dsr.db", "/dev/null/dsr.db", "dev/null"),
])
def test_an_unreachable_database_is_named_with_its_cause_and_no_password(url, named, cause) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    finding = check_database(Settings(_env_file=None, DATABASE_URL=url.format(port=port)))[0]
    assert not finding.ok and named.format(port=port) in finding.what
    assert cause in finding.what.lower() and "s3cret" not in finding.what
