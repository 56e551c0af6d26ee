"""Synthetic people shared by the stand-ins: the same person can be found in both vendors.

Deterministic from a seed, so a demo, a test and a benchmark see the same data every time.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from faker import Faker


@dataclass(frozen=True)
class Person:
    index: int
    name: str
    email: str
    phone: str  # E.164
    address: str
    external_id: str


def people(count: int, seed: int = 0) -> list[Person]:
    fake = Faker(["en_GB", "en_US", "de_DE", "pt_BR"])
    fake.seed_instance(seed)
    result = []
    for index in range(count):
        first, last = fake.first_name(), fake.last_name()
        ascii_name = unicodedata.normalize("NFKD", f"{first}.{last}").encode("ascii", "ignore")
        slug = "".join(c for c in ascii_name.decode().lower() if c.isalnum() or c == ".")
        result.append(
            Person(
                index=index,
                name=f"{first} {last}",
                # Reserved domains (RFC 2606): simulated mail can never reach a real person.
                email=f"{slug}.{index}@example.{('com', 'org', 'net')[index % 3]}",
                phone=f"+1555{index:07d}",  # 555: fictional numbers
                address=fake.address().replace("\n", ", "),
                external_id=f"CUST-{seed:03d}-{index:05d}",
            )
        )
    return result
