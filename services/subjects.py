"""A data subject's identifiers: the one type the intake, the connectors and the views share."""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from services.errors import InvalidRequest
from services.vocabulary import IdentifierKind


@dataclass(frozen=True)
class Identifier:
    kind: IdentifierKind
    value: str
    system: str | None = None  # for vendor user ids: which vendor


def _stars(text: str, keep: int = 1) -> str:
    return text[:keep] + "*" * max(len(text) - keep, 3 if len(text) <= keep else 0)


def mask_email(value: str) -> str:
    """`jane.doe@example.com` -> `j***@e******.com`."""
    local, _, domain = value.partition("@")
    if not domain:
        return _stars(value)
    label, dot, tld = domain.rpartition(".")
    masked_domain = f"{_stars(label)}{dot}{tld}" if dot else _stars(domain)
    return f"{local[:1]}***@{masked_domain}"


def mask_phone(value: str) -> str:
    """`+4670123456` -> `+46******56`: country code and last two digits."""
    digits = value.strip()
    if len(digits) <= 5:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 5) + digits[-2:]


def mask_name(value: str) -> str:
    """`Jane Doe` -> `J*** D**`."""
    return " ".join(_stars(part) for part in value.split())


def mask(identifier: Identifier) -> str:
    """How an identifier may appear in a channel or a log line: never in clear text."""
    if identifier.kind is IdentifierKind.EMAIL:
        return mask_email(identifier.value)
    if identifier.kind is IdentifierKind.PHONE:
        return mask_phone(identifier.value)
    if identifier.kind is IdentifierKind.NAME:
        return mask_name(identifier.value)
    if identifier.kind in (IdentifierKind.EXTERNAL_ID, IdentifierKind.VENDOR_USER_ID):
        return "*" * max(len(identifier.value) - 3, 3) + identifier.value[-3:]
    return "*****"  # addresses and free search terms: nothing of them


def normalise_email(value: str) -> str:
    """The address in canonical form; InvalidRequest says what is wrong with a bad one."""
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidRequest(f"{value.strip()!r} is not an email address: {exc}") from None


def normalise_phone(value: str) -> str:
    """E.164 (+4670123456); numbers must carry their country code."""
    try:
        number = phonenumbers.parse(value.strip(), None)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_possible_number(number):
        raise InvalidRequest(
            f"{value.strip()!r} is not a phone number with its country code, e.g. +4670123456."
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def typed_identifier(typed: str) -> Identifier:
    """What someone typed to look a person up, as the identifier it looks like: an email (it has
    an @), a phone number (digits, spaces, dashes, a leading +), or else a name."""
    typed = typed.strip()
    if "@" in typed:
        return Identifier(IdentifierKind.EMAIL, typed)
    if typed.lstrip("+").replace(" ", "").replace("-", "").isdigit():
        return Identifier(IdentifierKind.PHONE, typed)
    return Identifier(IdentifierKind.NAME, typed)
