"""The data an access request exports: sealed as the steps fetch it, packaged into one archive
for the subject when the request completes.

While the steps run, each document (a Zendesk user or ticket) is sealed in its own file under
`<exports>/<reference>/staging/`, and so is each opaque file a vendor hands out (a Genesys results
archive, `write_stream`). When the request completes, `package` streams them into
`<reference>-export.zip.sealed`: a zip holding each system's JSON (documents of a kind as JSON
arrays of up to 500, e.g. `zendesk/tickets-001.json`), the opaque files unchanged under their own
names (e.g. `genesys/0/results-1.zip`), a README for the subject and a manifest with each file's
size and SHA-256, written through the sealing stream, so neither the data nor the archive is ever
whole in memory or clear on disk.
The manifest is also kept beside the archive (file names and hashes only) for the compliance
record.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from cryptography.fernet import MultiFernet

from services.errors import InvalidRequest
from services.sealed import SealBroken, SealedWriter, read_sealed, unseal

STAGING = "staging"
PER_FILE = 500  # documents per archive file: few files to list, each small enough to open
MANIFEST_NAME = "manifest.json"
SEALED = ".sealed"
OPAQUE = ".file" + SEALED  # staged by write_stream: packaged as it is, under its own name
README_NAME = "README.txt"


def export_folder(exports: Path, reference: str) -> Path:
    """Where a request's exported data lives: one folder per request under `exports`."""
    return exports / reference


def archive_path(exports: Path, reference: str) -> Path:
    return export_folder(exports, reference) / f"{reference}-export.zip{SEALED}"


class SealedSink:
    """Seals each document in its own file. Writing a name again replaces it, since a step that
    is resumed after a crash may fetch a document twice."""

    def __init__(self, folder: Path, keys: MultiFernet) -> None:
        self.root = folder / STAGING
        self.keys = keys
        self._root = os.path.realpath(self.root) + os.sep

    def _path(self, name: str, suffix: str = SEALED) -> str:
        """A plain string: pathlib would intern each of 10,000 file names (see services.sealed)."""
        target = os.path.realpath(os.path.join(self._root, name + suffix))
        if not target.startswith(self._root):
            raise ValueError(f"export file name escapes the export folder: {name!r}")
        return target

    def write(self, name: str, document: Any) -> None:
        with SealedWriter(self._path(name), self.keys) as out:
            out.write(json.dumps(document, ensure_ascii=False, indent=1, sort_keys=True).encode())

    def write_stream(self, name: str, chunks: Iterable[bytes]) -> None:
        """An opaque file, sealed chunk by chunk as it arrives; lands only once complete."""
        with SealedWriter(self._path(name, OPAQUE), self.keys) as out:
            for chunk in chunks:
                out.write(chunk)

    def exists(self, name: str) -> bool:
        return os.path.isfile(self._path(name)) or os.path.isfile(self._path(name, OPAQUE))

    def count(self, prefix: str) -> int:
        """How many documents are staged under `prefix` (e.g. "zendesk/tickets/")."""
        folder = self.root / prefix
        return sum(1 for _ in _sealed_in(folder)) if folder.is_dir() else 0


@dataclass(frozen=True)
class ExportFile:
    name: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Package:
    archive: Path
    bytes: int  # of the zip, before sealing
    sha256: str  # of the zip, before sealing: checked again when it is delivered
    files: tuple[ExportFile, ...]


class _Hashing:
    """Passes writes through, counting and hashing them (the zip as the subject will get it)."""

    def __init__(self, out: SealedWriter) -> None:
        self.out, self.digest, self.bytes = out, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.bytes += len(data)
        return self.out.write(data)

    def flush(self) -> None:
        pass


def package(exports: Path, reference: str, keys: MultiFernet, *, readme: str,
            at: datetime) -> Package:
    """Seal the staged documents into the request's archive and drop the staging files. Safe to
    run again after a crash: a finished package is read back from its manifest."""
    folder = export_folder(exports, reference)
    archive = archive_path(exports, reference)
    staging = folder / STAGING
    if not staging.is_dir() and (folder / MANIFEST_NAME).is_file() and archive.is_file():
        return read_package(exports, reference)
    stamp = at.timetuple()[:6]
    files: list[ExportFile] = []
    with SealedWriter(archive, keys) as sealed:
        out = _Hashing(sealed)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zipped:  # type: ignore[arg-type]
            zipped.writestr(zipfile.ZipInfo(README_NAME, stamp), readme, zipfile.ZIP_DEFLATED)
            for kind in _folders(staging) if staging.is_dir() else ():
                group = "documents" if kind == staging else kind.relative_to(staging).as_posix()
                documents = (path for path in _sealed_in(kind) if not path.endswith(OPAQUE))
                for part in itertools.count(1):
                    batch = list(itertools.islice(documents, PER_FILE))  # paths only
                    if not batch:
                        break
                    name = f"{group}-{part:03d}.json"
                    info = zipfile.ZipInfo(name, stamp)
                    info.compress_type = zipfile.ZIP_DEFLATED
                    with zipped.open(info, "w") as entry:
                        files.append(_write_array(entry, name, batch, keys))
                for path in _sealed_in(kind):
                    if path.endswith(OPAQUE):
                        name = os.path.relpath(path, staging).removesuffix(OPAQUE)
                        files.append(_write_opaque(zipped, name.replace(os.sep, "/"), path,
                                                   keys, stamp))
            zipped.writestr(zipfile.ZipInfo(MANIFEST_NAME, stamp), manifest_json(reference, files),
                            zipfile.ZIP_DEFLATED)
    result = Package(archive, out.bytes, out.digest.hexdigest(), tuple(files))
    partial = folder / (MANIFEST_NAME + ".partial")
    partial.write_text(json.dumps({"reference": reference, "archive": {
        "name": archive.name, "bytes": result.bytes, "sha256": result.sha256},
        "files": [vars(f) for f in files]}, indent=1), encoding="utf-8")
    partial.replace(folder / MANIFEST_NAME)
    _remove(staging)
    return result


def _write_array(entry: IO[bytes], name: str, documents: list[str], keys: MultiFernet) -> ExportFile:
    """Documents as one JSON array, one document at a time; returns its manifest line."""
    digest, size = hashlib.sha256(), 0
    for n, path in enumerate(documents):
        chunk = (b"[\n" if n == 0 else b",\n") + unseal(path, keys)
        if n == len(documents) - 1:
            chunk += b"\n]\n"
        entry.write(chunk)
        digest.update(chunk)
        size += len(chunk)
    return ExportFile(name, size, digest.hexdigest())


def _write_opaque(zipped: zipfile.ZipFile, name: str, path: str, keys: MultiFernet,
                  stamp: tuple[int, ...]) -> ExportFile:
    """An opaque file into the zip as it is, frame by frame; returns its manifest line."""
    info = zipfile.ZipInfo(name, stamp)
    info.compress_type = zipfile.ZIP_DEFLATED
    digest, size = hashlib.sha256(), 0
    with zipped.open(info, "w", force_zip64=True) as entry:  # its size is not known up front
        for chunk in read_sealed(path, keys):
            entry.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    return ExportFile(name, size, digest.hexdigest())


def _folders(staging: Path) -> Iterator[Path]:
    """The staging folder and every folder below it (a handful: one per kind of document)."""
    pending = [staging]
    while pending:
        folder = pending.pop()
        with os.scandir(folder) as entries:
            pending.extend(Path(e.path) for e in entries if e.is_dir())
        yield folder


def _sealed_in(folder: Path) -> Iterator[str]:
    """The sealed documents of one folder, as the disk lists them: read one by one, never all
    listed (10,000 tickets are 10,000 files)."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.endswith(SEALED) and entry.is_file():
                yield entry.path


def discard_staging(exports: Path, reference: str) -> int | None:
    """Delete what an unfinished access request staged; how many documents, None if nothing was
    staged."""
    staging = export_folder(exports, reference) / STAGING
    if not staging.is_dir():
        return None
    count = sum(1 for folder in _folders(staging) for _ in _sealed_in(folder))
    _remove(staging)
    return count


def _remove(staging: Path) -> None:
    """Delete the staged documents file by file (rmtree would list each folder whole first)."""
    for folder in list(_folders(staging)):
        for path in _sealed_in(folder):
            os.unlink(path)
    shutil.rmtree(staging, ignore_errors=True)


def manifest_json(reference: str, files: list[ExportFile]) -> str:
    """The manifest inside the archive: what the subject can check each file against."""
    return json.dumps({"reference": reference, "algorithm": "SHA-256",
                       "files": [vars(f) for f in files]}, indent=1) + "\n"


def read_package(exports: Path, reference: str) -> Package | None:
    """The packaged archive as its manifest describes it; None if the request has none."""
    path = export_folder(exports, reference) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text("utf-8"))
        return Package(archive_path(exports, reference), int(manifest["archive"]["bytes"]),
                       str(manifest["archive"]["sha256"]),
                       tuple(ExportFile(str(f["name"]), int(f["bytes"]), str(f["sha256"]).lower())
                             for f in manifest["files"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidRequest(f"The export manifest {path} is not readable ({exc!r}).") from None


def archive_chunks(path: Path, keys: MultiFernet, *, sha256: str) -> Iterator[bytes]:
    """The archive's zip bytes, chunk by chunk, for delivery. Raises SealBroken after the last
    chunk if the whole does not hash to `sha256` (a file swapped for another request's)."""
    digest = hashlib.sha256()
    for chunk in read_sealed(path, keys):
        digest.update(chunk)
        yield chunk
    if digest.hexdigest() != sha256:
        raise SealBroken(f"{path.name} does not match the SHA-256 recorded when it was packaged")


def subject_readme(reference: str, systems: list[str], at: datetime) -> str:
    """What the subject reads first, in plain language."""
    names = {"zendesk": "Zendesk Support (our customer service desk): users-001.json is your profile, "
                        "tickets-001.json, -002.json, ... your requests with every reply",
             "genesys": "Genesys Cloud (our contact centre: calls, chats, messages): the archive "
                        "file(s) Genesys Cloud made, unchanged (open each .zip; inside is JSON)"}
    listed = "\n".join(f"  - {system}/: {names.get(system, system)}" for system in systems)
    return f"""YOUR PERSONAL DATA ({reference})

This archive holds a copy of the personal data we hold about you in the systems below, as you
asked on the basis of your right of access. It was put together on {at:%d %B %Y}.

What is inside
{listed}
  - manifest.json: every file in this archive, with its size and a SHA-256 fingerprint.

Each file is JSON, a plain-text format (a list of up to 500 records): open it with any text
editor, or load it into a spreadsheet or another service (your right to data portability).
Conversations are kept as they were recorded, including what our staff wrote.

Checking that nothing was changed
Each file's SHA-256 fingerprint is in manifest.json. On most computers you can compute it
yourself, e.g. `sha256sum zendesk/tickets/123.json` (Linux), `shasum -a 256 ...` (macOS) or
`Get-FileHash ...` (Windows PowerShell), and compare.

Questions
If something is missing or wrong, reply to the message this archive came with and quote
{reference}. You may also ask us to correct or erase your data, and you may complain to your
data protection authority.
"""
