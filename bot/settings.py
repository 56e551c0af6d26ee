"""The one settings object, read from the environment and a `.env` file.

Built once at start-up (`load_settings()`) and passed down; nothing reads the environment at
import time. Secrets are `SecretStr`, so they never show in a repr or a log line.
"""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.errors import ConfigurationError

# Values that mean "somebody copied the example and forgot to fill it in".
_PLACEHOLDERS = {"changeme", "changethis", "xoxb-your-token", "xapp-your-token", "secret", "todo"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    data_dir: Path = Field(
        default=Path("var"),
        validation_alias="DSR_DATA_DIR",
        description="Folder for the SQLite database and encrypted exports.",
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

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must start with sqlite:// or postgresql+psycopg://")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
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

    @field_validator("slack_bot_token", "slack_app_token", "slack_signing_secret")
    @classmethod
    def _no_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip().lower() in _PLACEHOLDERS:
            raise ValueError("is still the placeholder from the example; set the real value")
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'dsr-desk.sqlite3'}"


def load_settings(**overrides: object) -> Settings:
    """Read the settings; a bad value raises ConfigurationError naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "settings"
            field = Settings.model_fields.get(name)
            variable = field.validation_alias if field and field.validation_alias else name
            problems.append(f"{str(variable).upper()}: {error['msg'].removeprefix('Value error, ')}")
        raise ConfigurationError("Invalid configuration:\n  " + "\n  ".join(problems)) from None
