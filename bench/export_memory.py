"""Benchmark: export a Zendesk subject with 1,000 and 10,000 tickets; time grows linearly, peak
memory stays flat.

An access request's data is streamed to disk, never held whole in memory: a subject with 10,000
tickets must not need 10,000 tickets' worth of memory, nor 100 times the time of 1,000 tickets
(issue 14: 10 times the tickets took about 20 times as long, because the stand-in deep-copied
every matching ticket for each page of search export it served). For each size, the Zendesk
stand-in holds one subject with that many tickets (seeded: a description and 2 or 3 replies of a
few hundred characters each); the connector's access steps (export_users, export_tickets) run over
a real localhost socket into a `SealedSink` with a fresh key, then `package` seals the archive.
The files go to the export store DSR Desk uses by default, the database (a SQLite file here), or
with `--store folder` to a local folder.

Each round exports every size once, the order alternating from round to round (the machine may
be busy with other work: interleaving spreads its load over both sizes); the figures are the
min / median / max over the rounds. Targets, on the medians: the export steps' time at most 1.1 x
linear (10 times the tickets in at most 11 times the time), and each phase's peak memory at most
FLAT times the smaller size's. Exits 1 when one is missed. The CPU time each process spent in the
export steps (the exporter, the stand-in) is shown beside: it says which side a growth comes from,
and varies less than the wall time when other work shares the machine.

Peak Python memory (tracemalloc) is measured for the export steps and for packaging apart,
each from `tracemalloc.reset_peak()` and counted above what was allocated when it began; the
times are taken with tracemalloc on, which slows allocation about evenly at every size. The
stand-in runs in a child process: it holds every ticket, which would otherwise count as the
exporter's memory. Memory allocated outside Python's allocators (inside `cryptography`'s Rust
and OpenSSL code) is not counted. The connector's own per-minute limit is off: a limit high
enough not to slow the run would keep a timestamp for every call of the last minute, which grows
with the tickets here but not in production, where the limit bounds it. From the repository root:

    python -m bench.export_memory [--tickets 1000 10000] [--rounds 3] [--store database|folder]
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import random
import statistics
import sys
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
from services.export_store import DatabaseStore, ExportStore, FolderStore
from services.exports import Package, SealedSink, package, subject_readme
from services.sandbox.server import serve
from services.subjects import Identifier
from services.vendors.zendesk.connector import TICKETS, ZendeskConnector
from services.vendors.zendesk.standin import ZendeskSandbox
from services.vocabulary import IdentifierKind, RequestType
from storage import migrate
from storage.db import make_engine, make_session_factory
from tests.connector_driver import drive, summaries

SEED = 11
REFERENCE = "DSR-000042"
USERS = "zendesk/users/"  # where the export steps stage the user (TICKETS: each ticket)
NAME, EMAIL, PHONE = "Marta Kowalczyk", "marta.kowalczyk@example.org", "+48 601 234 567"
FLAT = 1.5  # the most a peak may grow with 10 times the tickets and still count as flat
LINEAR = 1.1  # the most the export's time may grow per unit of growth in tickets (10x -> 11x)
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
    """Child process: build and fill the stand-in, serve it, say where, then answer "cpu" with
    the CPU seconds it has used (all its threads) until told anything else: stop."""
    sandbox = ZendeskSandbox(seed=seed, people=6, requests_per_minute=None)
    user = populate(sandbox, tickets, seed)
    with serve(sandbox.wsgi) as running:
        conn.send((running.url, user["id"]))
        while conn.recv() == "cpu":
            conn.send(time.process_time())
    conn.close()


@dataclass(frozen=True)
class Standin:
    url: str
    user_id: int  # the subject's
    conn: Connection

    def cpu_s(self) -> float:
        """The CPU seconds the stand-in's process has used so far."""
        self.conn.send("cpu")
        return float(self.conn.recv())


@contextmanager
def standin(tickets: int, seed: int = SEED) -> Iterator[Standin]:
    """The stand-in, filled, in a child process."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=_serve_standin, args=(tickets, seed, theirs), daemon=True,
                            name=f"zendesk-standin-{tickets}")
    child.start()
    try:
        if not wait([ours, child.sentinel], timeout=300) or not ours.poll():
            raise RuntimeError(f"the stand-in with {tickets} tickets did not start (exit code "
                               f"{child.exitcode}; see its traceback above)")
        url, user_id = ours.recv()
        yield Standin(url, user_id, ours)
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
    export_cpu_s: float  # CPU of this process (the exporter) during the export steps
    standin_cpu_s: float  # CPU of the stand-in's process during the export steps
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
    with standin(tickets) as running, httpx.Client() as client, \
            export_store(store_kind, workdir) as store:
        user_id = running.user_id
        zendesk = connector(running.url, client)
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
            standin_cpu = running.cpu_s()
            began, started, cpu = _phase_start(), time.perf_counter(), time.process_time()
            trace = drive(zendesk, spec, sink)
            export_s, export_cpu_s = time.perf_counter() - started, time.process_time() - cpu
            export_kib = _phase_peak_kib(began)
            standin_cpu_s = running.cpu_s() - standin_cpu
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
                       export_s, package_s, export_cpu_s, standin_cpu_s, export_kib, package_kib)


def fresh_keys() -> MultiFernet:
    return MultiFernet([Fernet(Fernet.generate_key())])


def warm_up(workdir: Path, store_kind: str = "database") -> None:
    """A small export first, so that the first measured size does not pay for imports and
    one-time set-up (which would flatter the ratio)."""
    measure(20, workdir / "warm-up", fresh_keys(), store_kind)


def interleaved(sizes: list[int], rounds: int, workdir: Path,
                store_kind: str = "database") -> dict[int, list[Figures]]:
    """`rounds` measurements of each size, the sizes taken in alternating order."""
    results: dict[int, list[Figures]] = {size: [] for size in sizes}
    for number in range(rounds):
        for size in sizes if number % 2 == 0 else sizes[::-1]:
            figures = measure(size, workdir / f"round{number}-n{size}", fresh_keys(), store_kind)
            results[size].append(figures)
            print(f"  round {number + 1}: {size:>7,} tickets  export {figures.export_s:6.1f} s "
                  f"(CPU: exporter {figures.export_cpu_s:.1f} s, stand-in "
                  f"{figures.standin_cpu_s:.1f} s)  package {figures.package_s:5.1f} s  peaks "
                  f"{figures.export_kib:,.0f} / {figures.package_kib:,.0f} KiB", flush=True)
    return results


def spread(values: list[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


def median(runs: list[Figures], key: str) -> float:
    return statistics.median(float(getattr(r, key)) for r in runs)


def report(results: dict[int, list[Figures]]) -> bool:
    """Print the figures; True when every target holds."""
    mib = 1024 * 1024
    print(f"\n{'tickets':>8} {'rounds':>6} {'data MiB':>9} {'sealed MiB':>11} "
          f"{'export s min/med/max':>22} {'package s min/med/max':>22} {'export KiB':>11} "
          f"{'package KiB':>12} {'peak/data':>10}")
    for size, runs in sorted(results.items()):
        last = runs[-1]
        export_s = "/".join(f"{v:.1f}" for v in spread([r.export_s for r in runs]))
        package_s = "/".join(f"{v:.1f}" for v in spread([r.package_s for r in runs]))
        export_kib, package_kib = median(runs, "export_kib"), median(runs, "package_kib")
        worst = max(export_kib, package_kib) * 1024 / last.data_bytes
        print(f"{size:>8,} {len(runs):>6} {last.data_bytes / mib:>9.1f} {last.sealed_bytes / mib:>11.1f} "
              f"{export_s:>22} {package_s:>22} {export_kib:>11,.0f} {package_kib:>12,.0f} "
              f"{worst:>10.1%}")
    if len(results) < 2:
        return True
    small_size, large_size = min(results), max(results)
    small, large = results[small_size], results[large_size]
    growth = large_size / small_size
    holds = True
    time_ratio = median(large, "export_s") / median(small, "export_s")
    fastest = min(r.export_s for r in large) / min(r.export_s for r in small)
    time_ok = time_ratio <= LINEAR * growth
    holds &= time_ok
    print(f"\n  {large_size:,} / {small_size:,} tickets ({growth:.0f}x):")
    print(f"    export time   {time_ratio:5.2f}x on medians ({fastest:.2f}x on minimums), "
          f"target linear (<= {LINEAR * growth:.0f}x)   {'holds' if time_ok else 'MISSED'}")
    for name, key in (("exporter CPU", "export_cpu_s"), ("stand-in CPU", "standin_cpu_s"),
                      ("package time", "package_s")):
        print(f"    {name:<13} {median(large, key) / median(small, key):5.2f}x on medians "
              f"({median(small, key):.1f} -> {median(large, key):.1f} s; reported, no target)")
    for name, key in (("export steps", "export_kib"), ("packaging", "package_kib")):
        r = median(large, key) / median(small, key)
        per_ticket = (median(large, key) - median(small, key)) * 1024 / (large_size - small_size)
        flat = r <= FLAT
        holds &= flat
        print(f"    {name:<13} peak {r:5.2f}x  ({per_ticket:+,.0f} bytes a ticket; the data is "
              f"{large[-1].data_bytes / large_size:,.0f} bytes a ticket), target flat "
              f"(<= {FLAT}x)   {'holds' if flat else 'MISSED'}")
    return holds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each size")
    parser.add_argument("--store", choices=("database", "folder"), default="database")
    args = parser.parse_args()
    print(f"Zendesk export of one subject into the {args.store} store: stand-in in a child process, "
          f"connector over localhost, peak Python memory by tracemalloc; {args.rounds} rounds, "
          "sizes interleaved")
    with tempfile.TemporaryDirectory() as workdir:
        warm_up(Path(workdir), args.store)
        results = interleaved(sorted(set(args.tickets)), args.rounds, Path(workdir), args.store)
    if not report(results):
        sys.exit(1)


if __name__ == "__main__":
    main()
