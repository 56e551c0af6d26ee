"""Benchmark: export a Zendesk subject with 1,000 and 10,000 tickets; peak memory stays flat.

An access request's data is streamed to disk, never held whole in memory: a subject with 10,000
tickets must not need 10,000 tickets' worth of memory. For each size, the Zendesk stand-in holds
one subject with that many tickets (seeded: a description and 2 or 3 replies of a few hundred
characters each); the connector's access steps (export_users, export_tickets) run over a real
localhost socket into a `SealedSink` with a fresh key, then `package` seals the archive. The
files go to the export store DSR Desk uses by default, the database (a SQLite file here), or with
`--store folder` to a local folder.

Peak Python memory (tracemalloc) is measured for the export steps and for packaging apart,
each from `tracemalloc.reset_peak()` and counted above what was allocated when it began. The
stand-in runs in a child process: it holds every ticket, and each page of a user's tickets
copies all of them before slicing out 100, which would otherwise count as the exporter's
memory. Memory allocated outside Python's allocators (inside `cryptography`'s Rust and OpenSSL
code) is not counted. The connector's own per-minute limit is off: a limit high enough not
to slow the run would keep a timestamp for every call of the last minute, which grows with the
tickets here but not in production, where the limit bounds it. From the repository root:

    python -m bench.export_memory [--tickets 1000 10000] [--store database|folder]
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import random
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet, MultiFernet

from services.connectors.base import Done, RequestSpec
from services.connectors.http import Limits
from services.connectors.zendesk import TICKETS, ZendeskConnector
from services.export_store import DatabaseStore, ExportStore, FolderStore
from services.exports import Package, SealedSink, package, subject_readme
from services.sandbox.server import serve
from services.sandbox.zendesk import ZendeskSandbox
from services.subjects import Identifier
from storage import migrate
from storage.db import make_engine, make_session_factory
from storage.models import IdentifierKind, RequestType
from tests.connector_driver import drive, summaries

SEED = 11
REFERENCE = "DSR-000042"
USERS = "zendesk/users/"  # where the export steps stage the user (TICKETS: each ticket)
NAME, EMAIL, PHONE = "Marta Kowalczyk", "marta.kowalczyk@example.org", "+48 601 234 567"
FLAT = 1.5  # the most a peak may grow with 10 times the tickets and still count as flat
AT = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)

_SUBJECTS = ("Order {order} has not arrived", "Refund for order {order}", "Damaged parcel, order {order}",
             "Change of delivery address", "Invoice {invoice} is wrong", "Cannot log in to my account",
             "Subscription renewed without notice", "Warranty claim for order {order}")
_CUSTOMER = (
    "Hello, I ordered on {date} (order {order}) and the tracking page has said 'in transit' for "
    "nine days now.",
    "The parcel was left with a neighbour at {street}, but nobody there has it and the driver's "
    "photo shows a different door.",
    "I was charged {amount} EUR twice on my card ending {card}; please refund the second payment.",
    "My address is {street}, {city}; please send everything there and not to my old flat.",
    "You can reach me on {phone} after 5 pm, or by email at {email}.",
    "The box was crushed on one side and the glass lid inside is cracked, I have kept all the "
    "packaging in case the courier wants to see it.",
    "I have attached nothing, but I can send photos of the label and the damage if that helps.",
    "This is the third time I write about this, and I would like a straight answer this week.",
    "Invoice {invoice} shows my company's old VAT number; it should be PL{vat}.",
    "I did not agree to renew the subscription and would like it cancelled from today.",
)
_AGENT = (
    "Thank you for your patience, {first}. I have opened a claim with the courier under "
    "reference {claim} and they answer within 3 working days.",
    "I am sorry about the double charge. I can see two payments of {amount} EUR on {date}; the "
    "second one has been refunded and should show on your statement in 5 to 7 days.",
    "I have updated the delivery address on your account to {street}, {city}. Orders that have "
    "already shipped keep the old address, so please tell us if order {order} is affected.",
    "A replacement for order {order} left our warehouse today; the new tracking number is "
    "{tracking}. You do not need to return the damaged item.",
    "I have corrected invoice {invoice} and sent the new copy to {email}. The old one is void.",
    "Your subscription is cancelled with effect from {date} and you will not be charged again.",
    "Could you confirm the last four digits of the card you paid with, so that I can find the "
    "payment? Please do not send the full number.",
)
_STREETS = ("ul. Długa 14/3", "Mokotowska 48", "Rue des Lilas 7", "Kastanienallee 22", "12 Park Road")
_CITIES = ("Warszawa", "Kraków", "Lyon", "Berlin", "Bristol")


def _paragraph(rng: random.Random, sentences: tuple[str, ...], count: int, facts: dict[str, Any]) -> str:
    return " ".join(s.format(**facts) for s in rng.sample(sentences, count))


def populate(sandbox: ZendeskSandbox, tickets: int, seed: int = SEED) -> dict[str, Any]:
    """The subject and their `tickets` tickets, each a description and 2 or 3 replies."""
    rng = random.Random(seed)
    user = sandbox.add_user(NAME, email=EMAIL, phone=PHONE, external_id="CUST-20417")
    agents = sandbox.state.agent_ids
    for n in range(tickets):
        facts = {"order": f"A{100_000 + n}", "invoice": f"FV/{2024 + n % 3}/{n:05d}",
                 "date": f"{1 + n % 28:02d}.{1 + n % 12:02d}.2025", "amount": f"{rng.randint(12, 480)}.99",
                 "card": f"{rng.randint(0, 9999):04d}", "street": rng.choice(_STREETS),
                 "city": rng.choice(_CITIES), "phone": PHONE, "email": EMAIL, "first": NAME.split()[0],
                 "vat": f"{rng.randint(10**9, 10**10 - 1)}", "claim": f"CL-{rng.randint(10**5, 10**6)}",
                 "tracking": f"JJD{rng.randint(10**11, 10**12)}"}
        replies = [_paragraph(rng, _AGENT if i % 2 == 0 else _CUSTOMER, 2, facts)
                   for i in range(rng.randint(2, 3))]
        sandbox.add_ticket(user["id"], subject=rng.choice(_SUBJECTS).format(**facts),
                           description=_paragraph(rng, _CUSTOMER, 4, facts),
                           status=rng.choice(("open", "pending", "solved", "closed")),
                           assignee_id=rng.choice(agents), comments=replies)
    return user


def _serve_standin(tickets: int, seed: int, conn: Connection) -> None:
    """Child process: build and fill the stand-in, serve it, say where, serve until told."""
    sandbox = ZendeskSandbox(seed=seed, people=6, requests_per_minute=None)
    user = populate(sandbox, tickets, seed)
    with serve(sandbox.wsgi) as running:
        conn.send((running.url, user["id"]))
        conn.recv()  # anything: stop
    conn.close()


@contextmanager
def standin(tickets: int, seed: int = SEED) -> Iterator[tuple[str, int]]:
    """The stand-in, filled, in a child process: (its URL, the subject's user id)."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=_serve_standin, args=(tickets, seed, theirs), daemon=True,
                            name=f"zendesk-standin-{tickets}")
    child.start()
    try:
        if not wait([ours, child.sentinel], timeout=300) or not ours.poll():
            raise RuntimeError(f"the stand-in with {tickets} tickets did not start (exit code "
                               f"{child.exitcode}; see its traceback above)")
        yield ours.recv()
    finally:
        if child.is_alive():
            ours.send("stop")
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
            child.join()


def connector(url: str, client: httpx.Client) -> ZendeskConnector:
    return ZendeskConnector(client, url, email="agent@example.com", token="sandbox-token",
                            limits=Limits(requests_per_minute=None, attempts=5, backoff_base=0.001,
                                          backoff_max=0.01),
                            sleep=lambda s: None, poll_seconds=0)


@dataclass(frozen=True)
class Figures:
    tickets: int
    subject_id: int  # the subject's Zendesk user id
    package: Package
    store: ExportStore  # where the archive is
    documents: int  # staged by the export steps (the user and each ticket)
    sealed_bytes: int  # the sealed archive in the store
    export_s: float
    package_s: float
    export_kib: float
    package_kib: float

    @property
    def data_bytes(self) -> int:
        """The exported JSON, as the subject gets it (the zip's files but the README and manifest)."""
        return sum(f.bytes for f in self.package.files)


def _phase_start() -> int:
    gc.collect()
    tracemalloc.reset_peak()
    return tracemalloc.get_traced_memory()[0]


def _phase_peak_kib(began: int) -> float:
    return (tracemalloc.get_traced_memory()[1] - began) / 1024


@contextmanager
def export_store(kind: str, workdir: Path) -> Iterator[ExportStore]:
    """A store of `kind` in `workdir`: a folder, or a migrated SQLite database of its own."""
    if kind == "folder":
        yield FolderStore(workdir / "exports")
        return
    workdir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite:///{workdir / 'dsr-desk.sqlite3'}")
    migrate.upgrade(engine)
    try:
        yield DatabaseStore(make_session_factory(engine))
    finally:
        engine.dispose()


def measure(tickets: int, workdir: Path, keys: MultiFernet, store_kind: str = "database") -> Figures:
    """Export a subject with `tickets` tickets into a store in `workdir` and package it,
    measuring each."""
    with standin(tickets) as (url, user_id), httpx.Client() as client, \
            export_store(store_kind, workdir) as store:
        zendesk = connector(url, client)
        matches = zendesk.search_subjects([Identifier(IdentifierKind.EMAIL, EMAIL)])
        if [m.record_id for m in matches] != [str(user_id)]:
            raise AssertionError(f"the stand-in found {matches!r} for the subject")
        spec = RequestSpec(REFERENCE, RequestType.ACCESS, (Identifier(IdentifierKind.EMAIL, EMAIL),),
                           [{"record_id": m.record_id, "label": m.label, "details": m.details}
                            for m in matches])
        sink = SealedSink(store, REFERENCE, keys)
        readme = subject_readme(REFERENCE, ["zendesk"], AT)
        tracemalloc.start()
        try:
            began, started = _phase_start(), time.perf_counter()
            trace = drive(zendesk, spec, sink)
            export_s, export_kib = time.perf_counter() - started, _phase_peak_kib(began)
            done = summaries(trace)
            if done.get("export_tickets") != {"tickets": tickets} or not isinstance(trace[-1][1], Done):
                raise AssertionError(f"the export did not finish with {tickets} tickets: {trace[-1]!r}")
            documents = sink.count(TICKETS) + sink.count(USERS)
            began, started = _phase_start(), time.perf_counter()
            made = package(store, REFERENCE, keys, readme=readme, at=AT)
            package_s, package_kib = time.perf_counter() - started, _phase_peak_kib(began)
        finally:
            tracemalloc.stop()
        if sink.count(TICKETS):
            raise AssertionError("packaging left staged tickets behind")
        return Figures(tickets, user_id, made, store, documents, store.size(made.archive),
                       export_s, package_s, export_kib, package_kib)


def fresh_keys() -> MultiFernet:
    return MultiFernet([Fernet(Fernet.generate_key())])


def warm_up(workdir: Path, store_kind: str = "database") -> None:
    """A small export first, so that the first measured size does not pay for imports and
    one-time set-up (which would flatter the ratio)."""
    measure(20, workdir / "warm-up", fresh_keys(), store_kind)


def ratio(small: Figures, large: Figures, key: str) -> float:
    return float(getattr(large, key)) / float(getattr(small, key))


def report(results: list[Figures]) -> None:
    print(f"{'tickets':>8} {'documents':>9} {'zip files':>9} {'data MiB':>9} {'zip MiB':>8} "
          f"{'sealed MiB':>11} {'export s':>9} {'package s':>10} {'export KiB':>11} {'package KiB':>12} "
          f"{'peak/data':>10}")
    for r in results:
        mib = 1024 * 1024
        worst = max(r.export_kib, r.package_kib) * 1024 / r.data_bytes
        print(f"{r.tickets:>8,} {r.documents:>9,} {len(r.package.files):>9,} {r.data_bytes / mib:>9.1f} "
              f"{r.package.bytes / mib:>8.1f} {r.sealed_bytes / mib:>11.1f} {r.export_s:>9.1f} "
              f"{r.package_s:>10.1f} {r.export_kib:>11,.0f} {r.package_kib:>12,.0f} {worst:>10.1%}")
    if len(results) < 2:
        return
    small, large = results[0], results[-1]
    growth = large.tickets / small.tickets
    print(f"\n  {large.tickets:,} / {small.tickets:,} tickets ({growth:.0f}x), "
          f"target peak memory flat (<= {FLAT}x):")
    for name, key in (("export steps", "export_kib"), ("packaging", "package_kib")):
        r = ratio(small, large, key)
        per_ticket = (getattr(large, key) - getattr(small, key)) * 1024 / (large.tickets - small.tickets)
        print(f"    {name:<13} peak {r:5.2f}x  ({per_ticket:+,.0f} bytes a ticket; the data is "
              f"{large.data_bytes / large.tickets:,.0f} bytes a ticket)   "
              f"{'holds' if r <= FLAT else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--store", choices=("database", "folder"), default="database")
    args = parser.parse_args()
    print(f"Zendesk export of one subject into the {args.store} store: stand-in in a child process, "
          "connector over localhost, peak Python memory by tracemalloc")
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        warm_up(Path(workdir), args.store)
        for tickets in sorted(args.tickets):
            results.append(measure(tickets, Path(workdir) / f"n{tickets}", fresh_keys(), args.store))
    report(results)


if __name__ == "__main__":
    main()
