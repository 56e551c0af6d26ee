from __future__ import annotations

import os

import pytest

from bot.app import build_core
from bot.settings import load_settings
from services.errors import ConfigurationError


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env from the developer's checkout
    for name in ("DATABASE_URL", "DSR_TIMEZONE", "DSR_DATA_DIR", "DSR_LOG_LEVEL",
                 "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith(("ZENDESK_", "GENESYS_", "DSR_SANDBOX_")):
            monkeypatch.delenv(name)


def test_defaults_to_a_sqlite_file_under_var() -> None:
    settings = load_settings()
    assert settings.effective_database_url == "sqlite:///var/dsr-desk.sqlite3"
    assert settings.timezone == "UTC"
    assert settings.export_store == "database"  # what every replica reaches


def test_reads_environment_and_dotenv(monkeypatch, tmp_path) -> None:
    (tmp_path / ".env").write_text("DSR_TIMEZONE=Europe/Berlin\nSLACK_BOT_TOKEN=xoxb-1-abc\n")
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://u:p@db/dsr")
    settings = load_settings()
    assert settings.timezone == "Europe/Berlin"
    assert settings.effective_database_url == "postgresql+psycopg://u:p@db/dsr"
    assert settings.slack_bot_token.get_secret_value() == "xoxb-1-abc"


def test_a_vendors_settings_are_read_under_its_own_prefix(monkeypatch, tmp_path) -> None:
    (tmp_path / ".env").write_text("ZENDESK_SUBDOMAIN=acme\nZENDESK_EMAIL=dpo@acme.example\n")
    monkeypatch.setenv("ZENDESK_API_TOKEN", "zd-token")
    monkeypatch.setenv("GENESYS_REGION", "mypurecloud.de")
    settings = load_settings(ZENDESK_REQUESTS_PER_MINUTE=200)
    zendesk, genesys = settings.vendor("zendesk"), settings.vendor("genesys")
    assert zendesk.account().url == "https://acme.zendesk.com"
    assert zendesk.account().credentials == {"email": "dpo@acme.example", "token": "zd-token"}
    assert zendesk.requests_per_minute == 200 and genesys.requests_per_minute == 300
    assert not genesys.configured  # no OAuth client yet: simulation only
    monkeypatch.setenv("GENESYS_CLIENT_ID", "client")
    monkeypatch.setenv("GENESYS_CLIENT_SECRET", "gen-secret")
    account = load_settings().vendor("genesys").account()
    assert (account.url, account.credentials["login_url"]) == (
        "https://api.mypurecloud.de", "https://login.mypurecloud.de")
    assert "zd-token" not in repr(settings) and "zd-token" not in repr(zendesk)
    with pytest.raises(ConfigurationError, match="services/vendors/__init__.py"):
        settings.vendor("hubspot")


def test_secrets_never_show_in_repr(monkeypatch) -> None:
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s3cr3t-value")
    settings = load_settings()
    assert "s3cr3t-value" not in repr(settings)
    assert "s3cr3t-value" not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DSR_TIMEZONE", "Mars/Olympus", "DSR_TIMEZONE: 'Mars/Olympus' is not an IANA time zone"),
        ("DATABASE_URL", "mysql://x", "DATABASE_URL: must start with sqlite:// or postgresql"),
        ("DSR_LOG_LEVEL", "LOUD", "DSR_LOG_LEVEL: must be DEBUG"),
        ("SLACK_BOT_TOKEN", "changeme", "SLACK_BOT_TOKEN: is still the placeholder"),
        ("DSR_EXPORT_KEY", "hunter2", "DSR_EXPORT_KEY: holds a value that is not a Fernet key"),
        ("DSR_EXPORT_STORE", "s3", "DSR_EXPORT_STORE: Input should be 'database' or 'folder'"),
        # A vendor's own settings (services/vendors/<name>/settings.py) are named the same way.
        ("ZENDESK_API_TOKEN", "changeme", "ZENDESK_API_TOKEN: is still the placeholder"),
        ("GENESYS_CLIENT_SECRET", "TODO", "GENESYS_CLIENT_SECRET: is still the placeholder"),
        ("ZENDESK_REQUESTS_PER_MINUTE", "0", "ZENDESK_REQUESTS_PER_MINUTE: Input should be greater"),
        ("GENESYS_CONCURRENCY", "many", "GENESYS_CONCURRENCY: Input should be a valid integer"),
    ],
)
def test_invalid_value_names_the_variable(monkeypatch, variable, value, message) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert message in str(raised.value)


def test_a_missing_export_key_stops_start_up_and_says_how_to_make_one(monkeypatch) -> None:
    monkeypatch.delenv("DSR_EXPORT_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="DSR_EXPORT_KEY is not set.*Fernet.generate_key"):
        build_core(load_settings())
