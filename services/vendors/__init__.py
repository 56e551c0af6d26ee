"""The vendors DSR Desk reaches through a connector: one package each (services/vendors/<name>/,
whose `VENDOR` is a base.Vendor), registered here by name: a new vendor is its package and its
name in REGISTERED."""

from __future__ import annotations

from importlib import import_module

from services.errors import ConfigurationError
from services.vendors.base import Vendor

REGISTERED = ("genesys", "zendesk")

VENDORS: dict[str, Vendor] = {
    name: import_module(f"services.vendors.{name}").VENDOR for name in REGISTERED}


def vendor(name: str) -> Vendor:
    """The vendor called `name`; a ConfigurationError saying where a new one is added."""
    try:
        return VENDORS[name]
    except KeyError:
        raise ConfigurationError(
            f"Unknown system {name!r}; known: {', '.join(sorted(VENDORS))}. A vendor is a package "
            "in services/vendors/ (see services/vendors/base.py) registered in REGISTERED "
            "(services/vendors/__init__.py)."
        ) from None
