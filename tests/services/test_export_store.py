"""The export store's contract, the same for each store (a local folder; the database on SQLite
and on PostgreSQL): a file lands whole on close or not at all, replaces an earlier one, is listed
and deleted by folder, and streams in chunks both ways."""

from __future__ import annotations

import threading
import tracemalloc

import pytest
from sqlmodel import func, select

from services import export_store as stores
from services.export_store import CHUNK_BYTES, DatabaseStore, check_path
from storage.models import ExportChunk, ExportFile

BIG = 3 * CHUNK_BYTES + 1234  # several chunks, the last one short


def write(store, path: str, data: bytes, piece: int = 10_000) -> None:
    with store.writer(path) as out:
        for start in range(0, len(data), piece):
            out.write(data[start:start + piece])


def read(store, path: str) -> bytes:
    return b"".join(store.read(path))


def pattern(size: int, seed: int = 0) -> bytes:
    """Bytes (n * 7 + seed) % 251 for n < size: one period (251), repeated (generating 6 MiB a
    byte at a time took seconds under tracemalloc)."""
    period = bytes((n * 7 + seed) % 251 for n in range(251))
    return (period * (size // 251 + 1))[:size]


def test_a_file_lands_only_when_its_writer_closes(export_store) -> None:
    data = pattern(BIG)
    writer = export_store.writer("DSR-000001/staging/a.sealed")
    writer.write(data)  # full chunks are already stored (and committed) by now
    assert not export_store.exists("DSR-000001/staging/a.sealed")
    assert list(export_store.list("DSR-000001/")) == []
    with pytest.raises(FileNotFoundError):
        read(export_store, "DSR-000001/staging/a.sealed")
    writer.close()
    assert export_store.exists("DSR-000001/staging/a.sealed")
    assert read(export_store, "DSR-000001/staging/a.sealed") == data
    assert export_store.size("DSR-000001/staging/a.sealed") == len(data)
    assert list(export_store.list("DSR-000001/")) == ["DSR-000001/staging/a.sealed"]


def test_writing_a_name_again_replaces_it_once_the_new_one_lands(export_store) -> None:
    write(export_store, "r/doc", b"first version")
    with export_store.writer("r/doc") as out:
        out.write(pattern(BIG, seed=1))
        assert read(export_store, "r/doc") == b"first version", "readers keep the old one meanwhile"
    assert read(export_store, "r/doc") == pattern(BIG, seed=1)
    write(export_store, "r/doc", b"")  # an empty file is a file
    assert export_store.exists("r/doc") and read(export_store, "r/doc") == b""
    assert list(export_store.list("r/")) == ["r/doc"]
    assert export_store.delete("r/") == 1, "the replaced versions are gone, not just hidden"


def test_a_crashed_writer_leaves_nothing_to_read_and_delete_clears_it(export_store) -> None:
    with pytest.raises(RuntimeError), export_store.writer("r/staging/x") as out:
        out.write(pattern(BIG))
        raise RuntimeError("step failed")
    assert export_store.delete("r/") == 0, "an aborted write is cleaned up at once"

    killed = export_store.writer("r/staging/y")  # a process killed mid-write: never closed
    killed.write(pattern(BIG))
    assert not export_store.exists("r/staging/y") and list(export_store.list("")) == []
    write(export_store, "r/staging/z", b"kept")
    assert list(export_store.list("r/")) == ["r/staging/z"]
    assert export_store.delete("r/staging/") == 2  # the complete file and the half-written one
    assert list(export_store.list("")) == []
    if isinstance(export_store, DatabaseStore):
        with export_store.sessions() as session:
            assert session.exec(select(func.count()).select_from(ExportChunk)).one() == 0
    killed.abort()  # what a later, orderly abort finds: nothing, and no error


def test_folders_list_and_delete_what_is_below_them_only(export_store, monkeypatch) -> None:
    monkeypatch.setattr(stores, "PAGE", 3)  # several pages, in listing and in deleting
    names = [f"DSR-000001/staging/zendesk/tickets/{n}.json.sealed" for n in range(7)]
    names += ["DSR-000001/staging/zendesk/users/5.json.sealed", "DSR-000001/manifest.json"]
    others = ["DSR-000010/staging/x.sealed", "dsr-000001/staging/lower.sealed", "DSR-0000011"]
    for name in names + others:
        write(export_store, name, name.encode())
    assert sorted(export_store.list("DSR-000001/")) == sorted(names)
    assert sorted(export_store.list("DSR-000001/staging/zendesk/tickets/")) == sorted(names[:7])
    assert sorted(export_store.list("")) == sorted(names + others)
    assert export_store.delete("DSR-000001/staging/") == 8
    assert sorted(export_store.list("")) == sorted(["DSR-000001/manifest.json", *others])
    assert export_store.delete("DSR-000001/") == 1 and export_store.delete("DSR-000001/") == 0
    assert [read(export_store, name) for name in sorted(others)] == [n.encode() for n in sorted(others)]


@pytest.mark.memory
def test_large_files_are_written_and_read_a_chunk_at_a_time(export_store) -> None:
    size = 24 * CHUNK_BYTES + 5
    # A small file first: what a process sets up once (the driver's first connection, compiled
    # statements) is not what a file costs.
    write(export_store, "warm-up/file", pattern(2 * CHUNK_BYTES + 5))
    assert len(read(export_store, "warm-up/file")) == 2 * CHUNK_BYTES + 5
    assert export_store.delete("warm-up/") == 1
    tracemalloc.start()
    try:
        with export_store.writer("r/archive") as out:
            for start in range(0, size, 100_000):
                out.write(pattern(min(100_000, size - start), seed=start))
        write_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        chunks = 0
        for chunk in export_store.read("r/archive"):
            assert len(chunk) <= CHUNK_BYTES
            chunks += 1
        read_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert export_store.size("r/archive") == size and chunks >= size // CHUNK_BYTES
    # Held at once: a few chunks, never the 6 MiB file.
    # (Any other thread of this process allocates within the same trace: named if it fails.)
    assert max(write_peak, read_peak) < 6 * CHUNK_BYTES, (
        write_peak, read_peak, [t.name for t in threading.enumerate()])
    if isinstance(export_store, DatabaseStore):
        with export_store.sessions() as session:
            rows = session.exec(select(func.count()).select_from(ExportChunk)).one()
        assert rows == -(-size // CHUNK_BYTES)


def test_a_file_replaced_while_it_is_read_is_not_mixed_with_the_new_one(session_factory) -> None:
    """(A folder keeps the open file's old version readable: POSIX rename.)"""
    store = DatabaseStore(session_factory)
    write(store, "r/doc", pattern(BIG))
    reading = store.read("r/doc")
    next(reading)
    write(store, "r/doc", pattern(BIG, seed=2))
    with pytest.raises(FileNotFoundError, match="replaced or deleted while it was read"):
        list(reading)


def test_the_database_holds_only_complete_files_by_name_once(session_factory) -> None:
    store = DatabaseStore(session_factory)
    write(store, "r/doc", b"one")
    write(store, "r/doc", b"two")
    with session_factory() as session:
        rows = session.exec(select(ExportFile.path, ExportFile.complete, ExportFile.bytes)).all()
    assert rows == [("r/doc", True, 3)]


@pytest.mark.parametrize("path", ["../etc/passwd", "/abs", "a//b", "a/./b", "a/../b", "a/", "",
                                  "doc.partial", "nul\x00", "x" * 401])
def test_names_that_could_escape_or_clash_are_refused(path) -> None:
    with pytest.raises(ValueError, match="escapes"):
        check_path(path)
