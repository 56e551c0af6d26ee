"""Seed data of the Zendesk stand-in: the texts of synthetic tickets and what each ticket holds.

`zendesk_state.ZendeskState.seed_people` builds the tickets; this module decides their words and
their extras (archived, inline images, side conversations, voice comments, custom fields) from a
random generator of its own, so adding an extra never changes the tickets, statuses and comments
that the main generator draws for a seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from services.sandbox.people import Person

# Custom ticket fields of the seeded account (ids in Zendesk's style; no ticket field API here).
ORDER_NUMBER_FIELD = 360_000_101  # text field: the customer's order number
CONTACT_EMAIL_FIELD = 360_000_102  # text field: an email the customer gave on a web form
PARTNER_ADDRESS = "warehouse@partner.example.com"  # side conversations go to this outsider
SUPPORT_PHONE = "+15550000100"  # the number customers call (voice comments' `to`)


@dataclass(frozen=True)
class TicketExtras:
    """What a ticket holds besides its text comments; all off by default."""

    archived: bool = False  # only for closed tickets ("About ticket archiving")
    inline_image: bool = False  # an inline image in the first comment's html_body
    side_conversations: tuple[str, ...] = ()  # one side conversation per body
    voice_comment: bool = False  # a VoiceComment after the text comments
    custom_fields: dict[int, Any] = field(default_factory=dict)


def plan_extras(rng: random.Random, person: Person, status: str) -> TicketExtras:
    """The extras of one seeded ticket: a share archived, now and then an image, a call..."""
    roll = [rng.random() for _ in range(6)]
    slug = person.email.split("@")[0]
    fields: dict[int, Any] = {}
    if roll[4] < 0.2:
        fields[ORDER_NUMBER_FIELD] = f"ORD-{rng.randint(10_000, 99_999)}"
    if roll[5] < 0.08:
        fields[CONTACT_EMAIL_FIELD] = person.email
    side = ()
    if roll[2] < 0.12:
        side = (f"Hi team, can you check the parcel of {person.name} ({person.email}, "
                f"{person.phone})? Customer ref {slug}.",)
    return TicketExtras(archived=status == "closed" and roll[0] < 0.5,
                        inline_image=roll[1] < 0.12, side_conversations=side,
                        voice_comment=roll[3] < 0.08, custom_fields=fields)


def transcription(person: Person, problem: str) -> str:
    return (f"Hello, this is {person.name}. {problem[0].upper()}{problem[1:]}. "
            f"Please call me back on {person.phone} or write to {person.email}.")


SUBJECTS = [
    ("Question about my invoice", "I do not understand the last invoice I received"),
    ("Cannot log in", "I cannot log in to my account since yesterday"),
    ("Refund request", "I would like a refund for my last order"),
    ("Change of delivery address", "I moved and need to change my delivery address"),
    ("Order arrived damaged", "my order arrived damaged"),
    ("Please update my contact details", "my contact details on file are out of date"),
    ("Cancel my subscription", "I want to cancel my subscription"),
    ("Payment failed", "my card payment failed twice"),
    ("Where is my parcel?", "my parcel has not arrived after two weeks"),
]
OPENINGS = [
    "Hello, my name is {name} and {problem}. You can reach me at {email} or on {phone}.",
    "Hi team, {problem}. Please reply to {email}. Thanks, {name}",
    "Dear support, {problem}. My phone number is {phone}. Kind regards, {name}",
]
REPLIES = [
    "Hi {first}, thanks for reaching out. We are looking into it.",
    "Hello {first}, could you confirm the phone number on the account ({phone})?",
    "Thanks {first}, this should be sorted now. Let us know if not.",
]
FOLLOW_UPS = [
    "Thanks! Also, my new number is {phone}.",
    "Any update? You can email me at {email}.",
    "Still waiting on this one. {name}",
]
