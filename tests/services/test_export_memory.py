"""A subject with 10,000 Zendesk tickets is exported whole, with flat peak memory.

Runs the path of bench/export_memory.py: the stand-in in a child process, the connector's access
steps over localhost into a SealedSink on the database store (the default: a SQLite file here),
then `package`. Takes about three minutes.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

from cryptography.fernet import MultiFernet

from bench.export_memory import FLAT, REFERENCE, Figures, fresh_keys, measure, warm_up
from services.exports import MANIFEST_NAME, README_NAME, archive_chunks

TICKET_FILES = "zendesk/tickets-"  # the archive holds the tickets as JSON arrays of up to 500


def unsealed_zip(figures: Figures, keys: MultiFernet, target: Path) -> Path:
    digest = hashlib.sha256()
    with target.open("wb") as out:
        for chunk in archive_chunks(figures.store, figures.package.archive, keys,
                                    sha256=figures.package.sha256):
            digest.update(chunk)
            out.write(chunk)
    assert (target.stat().st_size, digest.hexdigest()) == (figures.package.bytes, figures.package.sha256)
    return target


def test_ten_thousand_tickets_all_exported_with_flat_peak_memory(tmp_path) -> None:
    warm_up(tmp_path)
    small = measure(1_000, tmp_path / "small", fresh_keys())
    keys = fresh_keys()
    large = measure(10_000, tmp_path / "large", keys)

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
                for document in json.loads(data):
                    assert document["ticket"]["requester_id"] == large.subject_id
                    assert 3 <= len(document["comments"]) <= 4  # the description and 2 or 3 replies
                    ticket_ids.append(document["ticket"]["id"])
    assert len(ticket_ids) == len(set(ticket_ids)) == large.documents - 1 == 10_000
    assert [f.name for f in large.package.files] == [e["name"] for e in manifest["files"]]

    ratios = {"export": large.export_kib / small.export_kib,
              "packaging": large.package_kib / small.package_kib}
    figures = {phase: f"{ratios[phase]:.2f}x ({small_kib:,.0f} -> {large_kib:,.0f} KiB)"
               for phase, small_kib, large_kib in (("export", small.export_kib, large.export_kib),
                                                   ("packaging", small.package_kib, large.package_kib))}
    assert max(ratios.values()) <= FLAT, f"peak memory for 10x the tickets: {figures}"
