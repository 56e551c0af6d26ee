"""Exports sealed at rest: documents staged encrypted, one archive with a README and a manifest,
readable only with the key, and any change to the sealed bytes refused; in each export store."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, MultiFernet
from sqlmodel import select

from services import exports, sealed
from services.errors import ConfigurationError
from services.export_store import DatabaseStore, FolderStore
from services.exports import SealedSink, archive_chunks, package, read_package
from services.sealed import SealBroken, SealedWriter, export_keys, read_sealed, unseal
from storage.models import ExportChunk, ExportFile

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SUBJECT = {"user": {"id": 5, "name": "Jane Doe", "email": "jane.doe@example.com"}}


def new_keys() -> MultiFernet:
    return MultiFernet([Fernet(Fernet.generate_key())])


def staged(store, keys, documents: int = 3) -> SealedSink:
    sink = SealedSink(store, "DSR-000042", keys)
    sink.write("zendesk/users/5.json", SUBJECT)
    for n in range(documents):
        sink.write(f"zendesk/tickets/{n}.json", {"ticket": {"id": n, "subject": f"Order {n}"}})
    return sink


def opened(store, package_, keys) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(b"".join(archive_chunks(store, package_.archive, keys,
                                                              sha256=package_.sha256))))


def stored_bytes(store) -> bytes:
    """Everything the store holds, as it holds it: files on disk, or the database's rows."""
    if isinstance(store, FolderStore):
        return b"".join(p.read_bytes() for p in Path(store.root).rglob("*") if p.is_file())
    assert isinstance(store, DatabaseStore)
    with store.sessions() as session:
        rows = session.exec(select(ExportFile.path, ExportChunk.data).join(ExportChunk))
        return b"".join(path.encode() + data for path, data in rows)


def test_nothing_is_clear_at_rest_and_the_manifest_matches_the_archive(export_store) -> None:
    keys = new_keys()
    sink = staged(export_store, keys)
    assert sink.exists("zendesk/tickets/2.json") and not sink.exists("zendesk/tickets/3.json")
    assert sink.count("zendesk/tickets/") == 3
    made = package(export_store, "DSR-000042", keys, readme="Hello subject", at=AT)

    at_rest = stored_bytes(export_store)
    assert b"jane.doe" not in at_rest and b"Order" not in at_rest and b"Jane" not in at_rest
    assert list(export_store.list("DSR-000042/staging/")) == []
    assert sorted(export_store.list("")) == ["DSR-000042/DSR-000042-export.zip.sealed",
                                             "DSR-000042/manifest.json"]
    with opened(export_store, made, keys) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert archive.read("README.txt") == b"Hello subject"
        assert sorted(archive.namelist()) == sorted(
            ["README.txt", "manifest.json", *(f["name"] for f in manifest["files"])])
        for entry in manifest["files"]:
            data = archive.read(entry["name"])
            assert entry["bytes"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert json.loads(archive.read("zendesk/users-001.json")) == [SUBJECT]
        tickets = json.loads(archive.read("zendesk/tickets-001.json"))
        assert sorted(t["ticket"]["id"] for t in tickets) == [0, 1, 2]
    assert [vars(f) for f in made.files] == manifest["files"]
    assert read_package(export_store, "DSR-000042") == made  # what the record and delivery read


def test_documents_go_in_files_of_per_file(export_store, monkeypatch) -> None:
    monkeypatch.setattr(exports, "PER_FILE", 5)  # 500: the same cut, 100 times the documents
    keys = new_keys()
    staged(export_store, keys, documents=11)
    made = package(export_store, "DSR-000042", keys, readme="r", at=AT)
    assert [f.name for f in made.files if "tickets" in f.name] == [
        "zendesk/tickets-001.json", "zendesk/tickets-002.json", "zendesk/tickets-003.json"]
    with opened(export_store, made, keys) as archive:
        ids = [t["ticket"]["id"] for n in (1, 2, 3)
               for t in json.loads(archive.read(f"zendesk/tickets-{n:03d}.json"))]
    assert sorted(ids) == list(range(11))


def test_packaging_again_after_a_crash_gives_the_same_package(export_store) -> None:
    keys = new_keys()
    sink = staged(export_store, keys)
    first = package(export_store, "DSR-000042", keys, readme="r", at=AT)
    sink.write("zendesk/tickets/0.json", {"left": "behind by a clean-up cut short"})
    assert package(export_store, "DSR-000042", keys, readme="r", at=AT) == first
    assert sink.count("") == 0


def test_without_the_key_nothing_decrypts(export_store) -> None:
    keys = new_keys()
    staged(export_store, keys)
    made = package(export_store, "DSR-000042", keys, readme="r", at=AT)
    with pytest.raises(SealBroken, match="does not decrypt with the configured DSR_EXPORT_KEY"):
        list(read_sealed(export_store, made.archive, new_keys()))


def test_a_rotated_key_still_reads_old_archives(export_store) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    made = (staged(export_store, export_keys(old)),
            package(export_store, "DSR-000042", export_keys(old), readme="r", at=AT))[1]
    with opened(export_store, made, export_keys(f"{new},{old}")) as archive:
        assert "README.txt" in archive.namelist()


def frames(path) -> tuple[bytes, list[bytes]]:
    raw = path.read_bytes()
    header, body, parts = raw[:len(sealed.MAGIC)], raw[len(sealed.MAGIC):], []
    while body:
        length = int.from_bytes(body[:4], "big")
        parts.append(body[:4 + length])
        body = body[4 + length:]
    return header, parts


@pytest.fixture
def three_frames(tmp_path, monkeypatch):
    monkeypatch.setattr(sealed, "FRAME_BYTES", 64)
    keys, store, path = new_keys(), FolderStore(tmp_path), tmp_path / "data.sealed"
    with SealedWriter(store, "data.sealed", keys) as out:
        out.write(bytes(range(150)))
    header, parts = frames(path)
    assert len(parts) == 3 and unseal(store, "data.sealed", keys) == bytes(range(150))
    return keys, store, path, header, parts


@pytest.mark.parametrize("change, problem", [
    (lambda parts: parts[:2], "truncated"),
    (lambda parts: [parts[1], parts[0], parts[2]], "frame 1 found where frame 0 belongs"),
    (lambda parts: parts + parts[2:], "data after its last frame"),
    (lambda parts: [parts[0], parts[1][:-3] + b"xyz", parts[2]], "does not decrypt"),
])
def test_cut_reordered_extended_or_altered_files_are_refused(three_frames, change, problem) -> None:
    keys, store, path, header, parts = three_frames
    path.write_bytes(header + b"".join(change(parts)))
    with pytest.raises(SealBroken, match=problem):
        unseal(store, "data.sealed", keys)


def test_an_archive_swapped_for_another_fails_its_recorded_hash(export_store) -> None:
    keys = new_keys()
    staged(export_store, keys)
    made = package(export_store, "DSR-000042", keys, readme="r", at=AT)
    with pytest.raises(SealBroken, match="does not match the SHA-256"):
        list(archive_chunks(export_store, made.archive, keys, sha256="0" * 64))


def test_a_failed_write_leaves_no_file_under_the_final_name(export_store) -> None:
    with pytest.raises(RuntimeError), SealedWriter(export_store, "doc.sealed", new_keys()) as out:
        out.write(b"half" * sealed.FRAME_BYTES)  # frames written before the crash
        raise RuntimeError("crash")
    assert not export_store.exists("doc.sealed") and list(export_store.list("")) == []
    assert export_store.delete("") == 0, "nothing was left behind either"


def test_names_cannot_escape_the_export_folder(tmp_path) -> None:
    with pytest.raises(ValueError, match="escapes"):
        SealedSink(FolderStore(tmp_path), "DSR-000001", new_keys()).write("../../etc/passwd", {})


@pytest.mark.parametrize("value", ["", "not-a-key", "short,AAAA"])
def test_malformed_keys_are_named(value) -> None:
    with pytest.raises(ConfigurationError, match="DSR_EXPORT_KEY"):
        export_keys(value)
