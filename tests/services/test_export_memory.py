"""A subject's Zendesk tickets are exported whole, with flat peak memory: 10 times the tickets
(50 -> 500) need no more than FLAT times the peak.

Runs the path of bench/export_memory.py: the stand-in in a child process, the connector's access
steps over localhost into a SealedSink on the database store (the default: a SQLite file here),
then `package`. The exporter holds a bounded amount whatever the number of tickets: a page of
search results (100 tickets), a file of the archive's documents (PER_FILE paths), a sealed frame,
a database row, a page of a store listing, and caches of a fixed size in the libraries (Python's
URL parsing keeps the last 128 URLs). At their real sizes those bounds fill only from about 1,000
tickets on, so the benchmark compares 1,000 with 10,000 tickets (minutes); here the exporter's
own are made small, so that 50 tickets fill each of them and the same comparison runs in seconds
(about 1.25x here). Holding the tickets themselves (about 5 KiB of JSON each, several times that
as Python objects) would multiply the peak; so would keeping a few hundred bytes a ticket. A leak
of a few bytes a ticket shows only at the benchmark's sizes.
"""

from __future__ import annotations

import hashlib
import json
import threading
import zipfile
from pathlib import Path

import pytest
from cryptography.fernet import MultiFernet

from bench.export_memory import FLAT, REFERENCE, Figures, fresh_keys, measure, warm_up
from services import export_store, exports, sealed
from services.exports import MANIFEST_NAME, README_NAME, archive_chunks
from services.vendors.zendesk import connector as zendesk

SMALL, LARGE = 50, 500
TICKET_FILES = "zendesk/tickets-"  # the archive holds the tickets as JSON arrays of up to PER_FILE


@pytest.fixture
def small_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The exporter's bounds (their real sizes in brackets), made small enough for SMALL tickets
    to fill each of them."""
    monkeypatch.setattr(zendesk, "BULK", 25)  # tickets a page of search export holds (100)
    monkeypatch.setattr(exports, "PER_FILE", 20)  # documents per archive file (500)
    monkeypatch.setattr(export_store, "PAGE", 20)  # files a store listing reads at once (500)
    monkeypatch.setattr(export_store, "CHUNK_BYTES", 16 << 10)  # a database row (256 KiB)
    monkeypatch.setattr(sealed, "FRAME_BYTES", 4 << 10)  # a sealed frame (64 KiB)


def unsealed_zip(figures: Figures, keys: MultiFernet, target: Path) -> Path:
    digest = hashlib.sha256()
    with target.open("wb") as out:
        for chunk in archive_chunks(figures.store, figures.package.archive, keys,
                                    sha256=figures.package.sha256):
            digest.update(chunk)
            out.write(chunk)
    assert (target.stat().st_size, digest.hexdigest()) == (figures.package.bytes, figures.package.sha256)
    return target


@pytest.mark.memory
def test_ten_times_the_tickets_all_exported_with_flat_peak_memory(tmp_path, small_bounds) -> None:
    warm_up(tmp_path)
    small = measure(SMALL, tmp_path / "small", fresh_keys())
    keys = fresh_keys()
    large = measure(LARGE, tmp_path / "large", keys)

    with zipfile.ZipFile(unsealed_zip(large, keys, tmp_path / "export.zip")) as zipped:
        manifest = json.loads(zipped.read(MANIFEST_NAME))
        listed = {entry["name"]: entry for entry in manifest["files"]}
        members = [name for name in zipped.namelist() if name not in (MANIFEST_NAME, README_NAME)]
        assert manifest["reference"] == REFERENCE
        assert sorted(members) == sorted(listed) and len(members) == len(listed)
        ticket_ids: list[int] = []
        for name in members:
            data = zipped.read(name)
            assert (len(data), hashlib.sha256(data).hexdigest()) == (
                listed[name]["bytes"], listed[name]["sha256"]), name
            if name.startswith(TICKET_FILES):
                documents = json.loads(data)
                assert len(documents) <= exports.PER_FILE
                for document in documents:
                    assert document["ticket"]["requester_id"] == large.subject_id
                    assert 3 <= len(document["comments"]) <= 4  # the description and 2 or 3 replies
                    ticket_ids.append(document["ticket"]["id"])
    assert len(ticket_ids) == len(set(ticket_ids)) == large.documents - 1 == LARGE
    assert [f.name for f in large.package.files] == [e["name"] for e in manifest["files"]]

    ratios = {"export": large.export_kib / small.export_kib,
              "packaging": large.package_kib / small.package_kib}
    figures = {phase: f"{ratios[phase]:.2f}x ({small_kib:,.0f} -> {large_kib:,.0f} KiB)"
               for phase, small_kib, large_kib in (("export", small.export_kib, large.export_kib),
                                                   ("packaging", small.package_kib, large.package_kib))}
    assert max(ratios.values()) <= FLAT, (f"peak memory for 10x the tickets: {figures}; threads "
                                          f"(all allocate in the trace): {threading.enumerate()}")
