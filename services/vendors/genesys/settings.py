"""Genesys Cloud's settings (GENESYS_*)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from services.vendors.base import Account, VendorSettings


class GenesysSettings(VendorSettings):
    region: str = Field(
        default="mypurecloud.com", validation_alias="GENESYS_REGION",
        description="Genesys Cloud region host, e.g. mypurecloud.de (API api.<region>).",
    )
    api_url: str = Field(default="", validation_alias="GENESYS_API_URL")
    login_url: str = Field(default="", validation_alias="GENESYS_LOGIN_URL")
    client_id: str = Field(default="", validation_alias="GENESYS_CLIENT_ID")
    client_secret: SecretStr | None = Field(default=None, validation_alias="GENESYS_CLIENT_SECRET")
    requests_per_minute: int = Field(default=300, gt=0, validation_alias="GENESYS_REQUESTS_PER_MINUTE")
    concurrency: int = Field(default=4, gt=0, le=64, validation_alias="GENESYS_CONCURRENCY")
    sandbox_url: str = Field(
        default="", validation_alias="DSR_SANDBOX_GENESYS_URL",
        description="Use a running Genesys stand-in (dsr-desk sandbox serve) for simulations.",
    )
    sandbox_request_seconds: float = Field(
        default=0.0, ge=0.0, le=14 * 86400.0, validation_alias="DSR_SANDBOX_GENESYS_REQUEST_SECONDS",
        description="How long a simulated Genesys GDPR request takes (real ones take days): "
                    "training then shows the polling and its growing delay.",
    )

    def account(self) -> Account | None:
        if not (self.client_id and self.client_secret):
            return None
        return Account(self.api_url or f"https://api.{self.region}", {
            "login_url": self.login_url or f"https://login.{self.region}",
            "client_id": self.client_id, "client_secret": self.client_secret.get_secret_value()})
