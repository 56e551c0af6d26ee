"""The vendors DSR Desk reaches through a connector: one package each (services/vendors/<name>/,
see base.Vendor), registered here with one line."""

from __future__ import annotations

from services.errors import ConfigurationError
from services.vendors import genesys, zendesk
from services.vendors.base import Vendor

VENDORS: dict[str, Vendor] = {v.name: v for v in (
    genesys.VENDOR,
    zendesk.VENDOR,
)}


def vendor(name: str) -> Vendor:
    """The vendor called `name`; a ConfigurationError saying where a new one is added."""
    try:
        return VENDORS[name]
    except KeyError:
        raise ConfigurationError(
            f"Unknown system {name!r}; known: {', '.join(sorted(VENDORS))}. A vendor is a package "
            "in services/vendors/ (see services/vendors/base.py) registered in VENDORS "
            "(services/vendors/__init__.py)."
        ) from None

