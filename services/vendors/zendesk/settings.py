"""Zendesk Support's settings (ZENDESK_*)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from services.vendors.base import Account, VendorSettings


class ZendeskSettings(VendorSettings):
    subdomain: str = Field(default="", validation_alias="ZENDESK_SUBDOMAIN")
    url: str = Field(default="", validation_alias="ZENDESK_URL")
    email: str = Field(default="", validation_alias="ZENDESK_EMAIL")
    api_token: SecretStr | None = Field(default=None, validation_alias="ZENDESK_API_TOKEN")
    requests_per_minute: int = Field(
        default=400, gt=0, validation_alias="ZENDESK_REQUESTS_PER_MINUTE",
        description="Your plan's limit: Team 200, Growth/Professional 400, Enterprise 700.",
    )
    concurrency: int = Field(default=4, gt=0, le=64, validation_alias="ZENDESK_CONCURRENCY")
    sandbox_url: str = Field(default="", validation_alias="DSR_SANDBOX_ZENDESK_URL")

    @property
    def base_url(self) -> str:
        if self.url:
            return self.url
        return f"https://{self.subdomain}.zendesk.com" if self.subdomain else ""

    def account(self) -> Account | None:
        if not (self.base_url and self.email and self.api_token):
            return None
        return Account(self.base_url, {"email": self.email,
                                       "token": self.api_token.get_secret_value()})
