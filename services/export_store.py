"""Where export files live: one interface, two homes.

An access request's data is staged by whichever replica runs its steps, packaged by whichever
runs the deliverables job and sent by whichever a person clicks on, so by default the files live
in the database that every replica shares (`DatabaseStore`). `FolderStore` keeps them in a local
folder instead, for a single host (DSR_EXPORT_STORE=folder). A store keeps the bytes it is given:
services.exports hands it sealed bytes only (services.sealed), so it never holds clear data, and
the keys stay in the environment.

A path is relative and '/'-separated (`DSR-000042/staging/zendesk/tickets/7.json.sealed`); a folder
is a path ending in '/' ('' is the whole store). A file is written as a stream that lands whole,
replacing an earlier file of that name, only when its writer closes without an error: until then
no reader sees it, and what a crashed writer left is never seen and goes when its folder is
deleted (`delete`: retention, discarded or packaged staging).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

import sqlalchemy as sa
from sqlmodel import Session, select

from storage.db import SessionFactory, transaction
from storage.models import ExportChunk, ExportFile
from storage.types import utcnow

STORES = ("database", "folder")
CHUNK_BYTES = 1 << 18  # 256 KiB: a database row, and a read from a folder
PAGE = 500  # files a query lists or deletes: neither memory nor a transaction grows with a folder
PARTIAL = ".partial"  # a file being written to a folder
MAX_PATH = 400  # export_file.path


class FileWriter(Protocol):
    """A file being written: `close` lands it, `abort` drops it. As a context manager it aborts
    when the block raises."""

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...

    def __enter__(self) -> FileWriter: ...

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None: ...


class ExportStore(Protocol):
    def writer(self, path: str) -> FileWriter:
        """A new file (or a new version of one): visible once the writer closes."""
        ...

    def read(self, path: str) -> Iterator[bytes]:
        """The file's bytes, a chunk at a time; FileNotFoundError if there is none."""
        ...

    def exists(self, path: str) -> bool: ...

    def list(self, folder: str) -> Iterator[str]:
        """The paths of the complete files under `folder`, at any depth, a page at a time."""
        ...

    def size(self, path: str) -> int:
        """Bytes of the file; FileNotFoundError if there is none."""
        ...

    def delete(self, folder: str) -> int:
        """Delete every file under `folder`, half-written ones too; returns how many."""
        ...


def check_path(path: str) -> str:
    """A file's path, refused if it could reach outside its folder or clash with a partial file."""
    parts = path.split("/")
    if (any(part in ("", ".", "..") for part in parts) or path.endswith(PARTIAL) or "\x00" in path
            or len(path) > MAX_PATH):
        raise ValueError(f"export file name escapes the export folder or is not a file name: {path!r}")
    return path


def check_folder(folder: str) -> str:
    if folder and not (folder.endswith("/") and check_path(folder[:-1])):
        raise ValueError(f"an export folder ends in '/': {folder!r}")
    return folder


def open_store(kind: str, *, sessions: SessionFactory, folder: Path) -> ExportStore:
    """The store DSR_EXPORT_STORE names: the shared database, or a local folder."""
    if kind == "database":
        return DatabaseStore(sessions)
    if kind == "folder":
        return FolderStore(folder)
    raise ValueError(f"unknown export store {kind!r}: one of {', '.join(STORES)}")


class LandsOnExit:
    """Closes (lands) at the end of a `with` block, or aborts if the block raised: for a class
    with `close` and `abort` (no stubs of them here, so a `super().close()` in a subclass that
    is also an io stream reaches the stream's own)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if error is not None:
            self.abort()  # type: ignore[attr-defined]
        else:
            self.close()  # type: ignore[attr-defined]


class DatabaseStore:
    """Files as rows: `export_file` (path, complete, bytes) and its `export_chunk`s in order.

    A writer commits each full chunk in a transaction of its own, under a file row that stays
    incomplete (unseen by readers) until `close` marks it complete and drops the file it replaces,
    in one transaction. A reader takes one chunk a query, so nothing is held open between chunks.
    """

    def __init__(self, sessions: SessionFactory) -> None:
        self.sessions = sessions

    def writer(self, path: str) -> FileWriter:
        return _DatabaseWriter(self.sessions, check_path(path))

    def _file(self, path: str) -> tuple[int, int] | None:
        with self.sessions() as session:
            row = session.exec(select(ExportFile.id, ExportFile.bytes).where(
                ExportFile.path == check_path(path), ExportFile.complete)).first()
        return (row[0], row[1]) if row else None

    def read(self, path: str) -> Iterator[bytes]:
        found = self._file(path)
        if found is None:
            raise FileNotFoundError(f"no export file {path}")
        file_id, size = found
        seq = got = 0
        while got < size:
            with self.sessions() as session:
                data = session.exec(select(ExportChunk.data).where(
                    ExportChunk.file_id == file_id, ExportChunk.seq == seq)).first()
            if data is None:
                raise FileNotFoundError(f"export file {path} was replaced or deleted while it was read")
            seq, got = seq + 1, got + len(data)
            yield data

    def exists(self, path: str) -> bool:
        return self._file(path) is not None

    def size(self, path: str) -> int:
        found = self._file(path)
        if found is None:
            raise FileNotFoundError(f"no export file {path}")
        return found[1]

    def _under(self, folder: str) -> sa.ColumnElement[bool]:
        # LIKE ignores case on SQLite: callers check startswith() on what comes back.
        return ExportFile.path.startswith(check_folder(folder), autoescape=True)

    def list(self, folder: str) -> Iterator[str]:
        after = None
        while True:
            query = select(ExportFile.path).where(ExportFile.complete, self._under(folder))
            if after is not None:
                query = query.where(ExportFile.path > after)
            with self.sessions() as session:
                page = list(session.exec(query.order_by(ExportFile.path).limit(PAGE)))
            yield from (path for path in page if path.startswith(folder))
            if len(page) < PAGE:
                return
            after = page[-1]

    def delete(self, folder: str) -> int:
        removed, after = 0, 0
        while True:
            with transaction(self.sessions) as session:
                page = list(session.exec(select(ExportFile.id, ExportFile.path).where(
                    self._under(folder), ExportFile.id > after).order_by(ExportFile.id).limit(PAGE)))
                doomed = [file_id for file_id, path in page if path.startswith(folder)]
                if doomed:  # their chunks go with them (ON DELETE CASCADE)
                    session.execute(sa.delete(ExportFile).where(ExportFile.id.in_(doomed)))
            removed += len(doomed)
            if len(page) < PAGE:
                return removed
            after = page[-1][0]


class _DatabaseWriter(LandsOnExit):
    def __init__(self, sessions: SessionFactory, path: str) -> None:
        self.sessions, self.path = sessions, path
        self._buffer = bytearray()
        self._id: int | None = None
        self._seq = self._bytes = 0

    def write(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= CHUNK_BYTES:
            with transaction(self.sessions) as session:
                self._add(session, bytes(self._buffer[:CHUNK_BYTES]))
            del self._buffer[:CHUNK_BYTES]

    def _add(self, session: Session, chunk: bytes) -> None:
        if self._id is None:  # the first chunk (or a small file's close) makes the file's row
            row = ExportFile(path=self.path, complete=False, bytes=0, created_at=utcnow())
            session.add(row)
            session.flush()
            self._id = row.id
        if chunk:
            session.add(ExportChunk(file_id=self._id, seq=self._seq, data=chunk))
            self._seq, self._bytes = self._seq + 1, self._bytes + len(chunk)

    def close(self) -> None:
        with transaction(self.sessions) as session:
            self._add(session, bytes(self._buffer))
            session.flush()
            session.execute(sa.delete(ExportFile).where(  # the file it replaces
                ExportFile.path == self.path, ExportFile.complete, ExportFile.id != self._id))
            session.execute(sa.update(ExportFile).where(ExportFile.id == self._id)
                            .values(complete=True, bytes=self._bytes))
        self._buffer.clear()

    def abort(self) -> None:
        if self._id is None:
            return
        # Best effort: if the database is out of reach, the row stays incomplete (never read)
        # until its folder is deleted.
        with contextlib.suppress(sa.exc.SQLAlchemyError), transaction(self.sessions) as session:
            session.execute(sa.delete(ExportFile).where(ExportFile.id == self._id))


class FolderStore:
    """Files in a local folder (a single host): written beside their final name and renamed into
    place. Paths are plain strings: pathlib would intern each of 10,000 file names."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)

    def _file(self, path: str) -> str:
        return os.path.join(self.root, check_path(path))

    def writer(self, path: str) -> FileWriter:
        return _FolderWriter(self._file(path))

    def read(self, path: str) -> Iterator[bytes]:
        with open(self._file(path), "rb") as file:
            while chunk := file.read(CHUNK_BYTES):
                yield chunk

    def exists(self, path: str) -> bool:
        return os.path.isfile(self._file(path))

    def size(self, path: str) -> int:
        return os.path.getsize(self._file(path))

    def _walk(self, folder: str) -> Iterator[tuple[str, bool]]:
        """(path, complete) of every file under `folder`, one directory listed at a time."""
        pending = [check_folder(folder)]
        while pending:
            current = pending.pop()
            try:
                entries = os.scandir(os.path.join(self.root, current))
            except (FileNotFoundError, NotADirectoryError):
                continue
            with entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(current + entry.name + "/")
                    else:
                        yield current + entry.name, not entry.name.endswith(PARTIAL)

    def list(self, folder: str) -> Iterator[str]:
        return (path for path, complete in self._walk(folder) if complete)

    def delete(self, folder: str) -> int:
        # File by file (rmtree would list each directory whole first), then the empty folders.
        removed = 0
        for path, _ in self._walk(folder):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.root, path))
                removed += 1
        if folder:
            shutil.rmtree(os.path.join(self.root, folder), ignore_errors=True)
        return removed


class _FolderWriter(LandsOnExit):
    def __init__(self, file: str) -> None:
        self.file, self._partial = file, file + PARTIAL
        os.makedirs(os.path.dirname(file), exist_ok=True)
        self._out = open(self._partial, "wb")  # noqa: SIM115 - closed in close() or abort()

    def write(self, data: bytes) -> None:
        self._out.write(data)

    def close(self) -> None:
        if self._out.closed:
            return
        self._out.flush()
        os.fsync(self._out.fileno())
        self._out.close()
        os.replace(self._partial, self.file)

    def abort(self) -> None:
        self._out.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._partial)
