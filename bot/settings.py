"""The one settings object, read from the environment and a `.env` file.

Built once at start-up (`load_settings()`) and passed down; nothing reads the environment at
import time. Secrets are `SecretStr`, so they never show in a repr or a log line.
"""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cryptography.fernet import MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import Field, PrivateAttr, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.errors import ConfigurationError
from services.sealed import KEY_HINT, export_keys
from services.vendors import VENDORS, vendor
from services.vendors.base import VendorSettings, refuse_placeholder


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )
    _vendors: dict[str, VendorSettings] = PrivateAttr(default_factory=dict)

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        # Each vendor's settings (services/vendors/<name>/settings.py), read from the same places:
        # the environment, the same .env file, and the values given here by their variables'
        # names (ZENDESK_REQUESTS_PER_MINUTE=...).
        given = {k: v for k, v in values.items() if not k.startswith("_") or k == "_env_file"}
        self._vendors = {name: spec.settings(**given) for name, spec in VENDORS.items()}

    def vendor(self, name: str) -> VendorSettings:
        """The settings of the vendor `name`; a ConfigurationError if there is no such vendor."""
        vendor(name)
        return self._vendors[name]

    def with_sandbox_urls(self, urls: dict[str, str]) -> Settings:
        """These settings, with running stand-ins named for these vendors (HTTP mode's)."""
        copy = self.model_copy()
        copy._vendors = {name: settings.model_copy(update={"sandbox_url": urls[name]})
                         if name in urls else settings for name, settings in self._vendors.items()}
        return copy

    data_dir: Path = Field(
        default=Path("var"),
        validation_alias="DSR_DATA_DIR",
        description="Folder for the SQLite database, and the encrypted exports with "
                    "DSR_EXPORT_STORE=folder.",
    )
    database_url: str = Field(
        default="",
        validation_alias="DATABASE_URL",
        description="SQLAlchemy URL; empty means a SQLite file under DSR_DATA_DIR.",
    )
    timezone: str = Field(
        default="UTC",
        validation_alias="DSR_TIMEZONE",
        description="IANA time zone of the privacy team: legal deadlines are counted in its days.",
    )
    log_level: str = Field(default="INFO", validation_alias="DSR_LOG_LEVEL")

    slack_bot_token: SecretStr | None = Field(default=None, validation_alias="SLACK_BOT_TOKEN")
    slack_app_token: SecretStr | None = Field(default=None, validation_alias="SLACK_APP_TOKEN")
    slack_signing_secret: SecretStr | None = Field(
        default=None, validation_alias="SLACK_SIGNING_SECRET"
    )

    slack_api_url: str = Field(
        default="https://slack.com/api/", validation_alias="SLACK_API_URL",
        description="Slack Web API base URL (a local stand-in for the offline demo and tests).",
    )
    requesters: str = Field(
        default="", validation_alias="DSR_REQUESTERS",
        description="Slack user ids (U...) and user-group ids (S...) who may file requests.",
    )
    approvers: str = Field(default="", validation_alias="DSR_APPROVERS")
    managers: str = Field(default="", validation_alias="DSR_MANAGERS")
    approvals_channel: str = Field(default="", validation_alias="DSR_APPROVALS_CHANNEL")
    digest_channel: str = Field(default="", validation_alias="DSR_DIGEST_CHANNEL")
    erasure_approvals: int = Field(
        default=2, ge=1, le=5, validation_alias="DSR_ERASURE_APPROVALS",
        description="Distinct approvers an erasure needs (irreversible); other types need one.",
    )

    poll_seconds: float = Field(
        default=5.0, gt=0, le=3600, validation_alias="DSR_POLL_SECONDS",
        description="The longest delay between two polls of a vendor job (Zendesk jobs are read "
                    "sooner at first: 0.5 s, growing while none finishes).",
    )

    reminder_days: str = Field(
        default="7,3,1", validation_alias="DSR_REMINDER_DAYS",
        description="Days before the legal deadline at which the thread and the requester are reminded.",
    )
    ack_reminder_days: int = Field(
        default=2, ge=0, le=30, validation_alias="DSR_ACK_REMINDER_DAYS",
        description="Days before an acknowledgement deadline (CCPA: 10 business days) to remind.",
    )
    digest_time: str = Field(
        default="09:00", validation_alias="DSR_DIGEST_TIME",
        description="Local time (HH:MM) of the managers' daily digest and overdue escalation.",
    )
    digest_timezone: str = Field(
        default="", validation_alias="DSR_DIGEST_TIMEZONE",
        description="IANA time zone of DSR_DIGEST_TIME; empty means DSR_TIMEZONE.",
    )
    export_key: SecretStr | None = Field(
        default=None, validation_alias="DSR_EXPORT_KEY",
        description="Fernet key(s) that encrypt exported data at rest, comma-separated: the first "
        "encrypts, all decrypt (rotation). Never stored by DSR Desk: keep it in your secret store.",
    )
    lookup_key: SecretStr | None = Field(
        default=None, validation_alias="DSR_LOOKUP_KEY",
        description="Secret that keys the hashes requests are found by (a subject's email or "
        "phone, services.lookup). Empty: derived from the last key of DSR_EXPORT_KEY, so set it "
        "before that key is ever retired, or requests filed earlier are no longer found.",
    )
    export_store: Literal["database", "folder"] = Field(
        default="database", validation_alias="DSR_EXPORT_STORE",
        description="Where encrypted exports are kept: `database` (every replica reaches them) or "
                    "`folder` (DSR_DATA_DIR/exports on this host: a single host only).",
    )
    export_retention_days: int = Field(
        default=30, ge=1, le=3650, validation_alias="DSR_EXPORT_RETENTION_DAYS",
        description="Days after a request closes before its exported data is deleted.",
    )
    identifier_retention_days: int = Field(
        default=90, ge=1, le=3650, validation_alias="DSR_IDENTIFIER_RETENTION_DAYS",
        description="Days after a request closes before its subject identifiers are reduced to "
                    "their masked form (what the audit needs).",
    )
    audit_anchor_file: str = Field(
        default="", validation_alias="DSR_AUDIT_ANCHOR_FILE",
        description="Append-only file of the audit chain's anchors (event number, hash, time); "
                    "empty means audit-anchors.jsonl under DSR_DATA_DIR. Keep it where those who "
                    "can write the database cannot.",
    )

    sandbox_seed: int = Field(default=0, validation_alias="DSR_SANDBOX_SEED")
    sandbox_people: int = Field(default=40, ge=1, le=100_000, validation_alias="DSR_SANDBOX_PEOPLE")

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must start with sqlite:// or postgresql+psycopg://")
        return value

    @field_validator("requesters", "approvers", "managers")
    @classmethod
    def _slack_ids(cls, value: str) -> str:
        bad = [part for part in _split(value) if part[:1] not in ("U", "W", "S")]
        if bad:
            raise ValueError(f"{', '.join(bad)}: not a Slack user (U..., W...) or user-group (S...) id")
        return value

    @field_validator("approvals_channel", "digest_channel")
    @classmethod
    def _channel_id(cls, value: str) -> str:
        if value and value[:1] not in ("C", "G"):
            raise ValueError("must be a channel id (C... or G...), not a name")
        return value

    @field_validator("reminder_days")
    @classmethod
    def _day_list(cls, value: str) -> str:
        parts = _split(value)
        if not all(p.isdigit() and 0 < int(p) <= 60 for p in parts):
            raise ValueError(f"{value!r}: whole days between 1 and 60, separated by commas, e.g. 7,3,1")
        return value

    @field_validator("digest_time")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        try:
            time.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a time of day such as 09:00") from None
        return value

    @field_validator("timezone", "digest_timezone")
    @classmethod
    def _known_timezone(cls, value: str, info: ValidationInfo) -> str:
        if not value and info.field_name == "digest_timezone":
            return value
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone such as Europe/Berlin") from None
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value.upper()

    @field_validator(
        "slack_bot_token", "slack_app_token", "slack_signing_secret",
    )
    @classmethod
    def _no_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        return refuse_placeholder(value)

    def role_ids(self, role: str) -> frozenset[str]:
        return frozenset(_split(getattr(self, role)))

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @field_validator("export_key")
    @classmethod
    def _fernet_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                export_keys(value.get_secret_value())
            except ConfigurationError as exc:
                raise ValueError(str(exc).removeprefix("DSR_EXPORT_KEY ")) from None
        return value

    @property
    def export_keys(self) -> MultiFernet:
        """The keys that seal exports; a ConfigurationError naming DSR_EXPORT_KEY if unset."""
        if self.export_key is None:
            raise ConfigurationError("DSR_EXPORT_KEY is not set: exported data is encrypted at rest "
                                     "with it. " + KEY_HINT)
        return export_keys(self.export_key.get_secret_value())

    @property
    def identifier_lookup_key(self) -> bytes:
        if self.lookup_key is not None:
            return self.lookup_key.get_secret_value().encode()
        self.export_keys  # noqa: B018 - a ConfigurationError if it is missing
        oldest = [k.strip() for k in self.export_key.get_secret_value().split(",") if k.strip()][-1]
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                    info=b"dsr-desk identifier lookup").derive(oldest.encode())

    @property
    def digest_zone(self) -> ZoneInfo:
        return ZoneInfo(self.digest_timezone or self.timezone)

    @property
    def reminder_offsets(self) -> tuple[int, ...]:
        """Distinct, largest first: (7, 3, 1)."""
        return tuple(sorted({int(p) for p in _split(self.reminder_days)}, reverse=True))

    @property
    def exports_dir(self) -> Path:
        """The exports' folder when DSR_EXPORT_STORE=folder."""
        return self.data_dir / "exports"

    @property
    def anchor_file(self) -> Path:
        """Where the audit chain's anchors are appended (DSR_AUDIT_ANCHOR_FILE)."""
        return Path(self.audit_anchor_file or self.data_dir / "audit-anchors.jsonl")

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'dsr-desk.sqlite3'}"


def _split(value: str) -> list[str]:
    return [part for part in value.replace(",", " ").split() if part]


def load_settings(**overrides: object) -> Settings:
    """Read the settings; a bad value raises ConfigurationError naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        model = next((v.settings for v in VENDORS.values() if v.settings.__name__ == exc.title),
                     Settings)
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "settings"
            field = model.model_fields.get(name)
            variable = field.validation_alias if field and field.validation_alias else name
            problems.append(f"{str(variable).upper()}: {error['msg'].removeprefix('Value error, ')}")
        raise ConfigurationError("Invalid configuration:\n  " + "\n  ".join(problems)) from None
