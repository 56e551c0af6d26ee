"""What DSR Desk knows of a vendor, in one place: each vendor's package (services/vendors/<name>/)
makes a `Vendor`, and services/vendors/__init__.py registers it. Wiring, `doctor`, the run modes,
the CLI, intake, the labels and the subject's README all read the registry, never a name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.connectors.base import Connector

# Values that mean "somebody copied the example and forgot to fill it in".
PLACEHOLDERS = {"changeme", "changethis", "xoxb-your-token", "xapp-your-token", "secret", "todo"}


def refuse_placeholder(value: Any) -> Any:
    """A secret still holding the example's placeholder is refused (a settings validator)."""
    if isinstance(value, SecretStr) and value.get_secret_value().strip().lower() in PLACEHOLDERS:
        raise ValueError("is still the placeholder from the example; set the real value")
    return value


@dataclass(frozen=True)
class Account:
    """Where a connector reaches a vendor account, and the credential arguments it takes."""

    url: str
    credentials: Mapping[str, str]


class VendorSettings(BaseSettings):
    """A vendor's settings, read as the app's are (the environment, then `.env`), each under the
    vendor's own prefix (ZENDESK_API_TOKEN), written out as its alias so that it can be found."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # Every vendor has these; a subclass gives them their aliases and defaults.
    requests_per_minute: int = Field(gt=0)
    concurrency: int = Field(default=4, gt=0, le=64)
    sandbox_url: str = ""  # a running stand-in (dsr-desk sandbox serve) for simulations

    @field_validator("*")
    @classmethod
    def _no_placeholder(cls, value: Any) -> Any:
        return refuse_placeholder(value)

    def account(self) -> Account | None:
        """The real account's URL and credentials; None if they are not all set."""
        raise NotImplementedError

    @property
    def configured(self) -> bool:
        return self.account() is not None


@dataclass(frozen=True)
class Vendor:
    connector: type[Connector]  # its name and label are the vendor's
    settings: type[VendorSettings]
    missing: str  # what to set when the real account is not configured (a ConfigurationError)
    doctor_hint: str  # what to check when the credentials are refused
    export_text: str  # the subject's README on the vendor's folder of an export
    # The stand-in for simulation mode, built when first needed (it is imported then):
    # `standin(seed=, people=, clock=, settings=)` -> an object serving `.wsgi`.
    standin: Callable[..., Any]
    standin_account: Callable[[str], Account]  # the stand-in at this URL, with its credentials

    @property
    def name(self) -> str:
        return self.connector.name

    @property
    def label(self) -> str:
        return self.connector.label
