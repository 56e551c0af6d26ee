"""The data an access request exports: sealed as the steps fetch it, packaged into one archive
for the subject when the request completes.

Every file lives in the export store (services.export_store: the database by default, so that
every replica reaches what another staged), under the request's reference. While the steps run,
each document (a Zendesk user or ticket) is sealed in its own file under `<reference>/staging/`,
and so is each opaque file a vendor hands out (a Genesys results archive, `write_stream`). When
the request completes, `package` streams them into `<reference>/<reference>-export.zip.sealed`:
a zip holding each system's JSON (documents of a kind as JSON arrays of up to 500, e.g.
`zendesk/tickets-001.json`), the opaque files unchanged under their own names (e.g.
`genesys/0/results-1.zip`), a README for the subject and a manifest with each file's size and
SHA-256, written through the sealing stream, so neither the data nor the archive is ever whole in
memory or clear at rest.
The manifest is also kept beside the archive (file names and hashes only, no personal data) for
the compliance record.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import posixpath
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from cryptography.fernet import MultiFernet

from services.errors import InvalidRequest
from services.export_store import ExportStore, check_path
from services.sealed import SealBroken, SealedWriter, read_sealed, unseal
from services.vendors import VENDORS

STAGING = "staging"
PER_FILE = 500  # documents per archive file: few files to list, each small enough to open
MANIFEST_NAME = "manifest.json"
SEALED = ".sealed"
OPAQUE = ".file" + SEALED  # staged by write_stream: packaged as it is, under its own name
README_NAME = "README.txt"
ARCHIVE = "-export.zip" + SEALED


def export_folder(reference: str) -> str:
    """Where a request's exported data lives in the store: one folder per request."""
    return f"{reference}/"


def staging_folder(reference: str) -> str:
    return f"{reference}/{STAGING}/"


def archive_path(reference: str) -> str:
    return f"{reference}/{reference}{ARCHIVE}"


def manifest_path(reference: str) -> str:
    return f"{reference}/{MANIFEST_NAME}"


class SealedSink:
    """Seals each document in its own file. Writing a name again replaces it, since a step that
    is resumed after a crash may fetch a document twice."""

    def __init__(self, store: ExportStore, reference: str, keys: MultiFernet) -> None:
        self.store, self.keys = store, keys
        self.root = staging_folder(reference)

    def _path(self, name: str, suffix: str = SEALED) -> str:
        return check_path(self.root + name + suffix)

    def write(self, name: str, document: Any) -> None:
        with SealedWriter(self.store, self._path(name), self.keys) as out:
            out.write(json.dumps(document, ensure_ascii=False, indent=1, sort_keys=True).encode())

    def write_stream(self, name: str, chunks: Iterable[bytes]) -> None:
        """An opaque file, sealed chunk by chunk as it arrives; lands only once complete."""
        with SealedWriter(self.store, self._path(name, OPAQUE), self.keys) as out:
            for chunk in chunks:
                out.write(chunk)

    def exists(self, name: str) -> bool:
        return self.store.exists(self._path(name)) or self.store.exists(self._path(name, OPAQUE))

    def count(self, prefix: str) -> int:
        """How many documents are staged under `prefix` (e.g. "zendesk/tickets/")."""
        return sum(1 for _ in self.store.list(self.root + prefix))


@dataclass(frozen=True)
class ExportFile:
    name: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Package:
    archive: str  # its path in the export store
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


def package(store: ExportStore, reference: str, keys: MultiFernet, *, readme: str,
            at: datetime) -> Package:
    """Seal the staged documents into the request's archive and drop the staging files. Safe to
    run again after a crash: a finished package (its manifest is written last) is read back."""
    archive, staging = archive_path(reference), staging_folder(reference)
    if store.exists(manifest_path(reference)) and store.exists(archive):
        store.delete(staging)  # a crash may have cut the clean-up short
        return read_package(store, reference)
    stamp = at.timetuple()[:6]
    files: list[ExportFile] = []
    with SealedWriter(store, archive, keys) as sealed:
        out = _Hashing(sealed)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zipped:  # type: ignore[arg-type]
            zipped.writestr(zipfile.ZipInfo(README_NAME, stamp), readme, zipfile.ZIP_DEFLATED)
            for kind in _folders(store, staging):
                group = "documents" if kind == staging else kind[len(staging):-1]
                documents = (path for path in _files_in(store, kind) if not path.endswith(OPAQUE))
                for part in itertools.count(1):
                    batch = list(itertools.islice(documents, PER_FILE))  # paths only
                    if not batch:
                        break
                    name = f"{group}-{part:03d}.json"
                    info = zipfile.ZipInfo(name, stamp)
                    info.compress_type = zipfile.ZIP_DEFLATED
                    with zipped.open(info, "w") as entry:
                        files.append(_write_array(entry, name, batch, store, keys))
                for path in _files_in(store, kind):
                    if path.endswith(OPAQUE):
                        name = path[len(staging):].removesuffix(OPAQUE)
                        files.append(_write_opaque(zipped, name, path, store, keys, stamp))
            zipped.writestr(zipfile.ZipInfo(MANIFEST_NAME, stamp), manifest_json(reference, files),
                            zipfile.ZIP_DEFLATED)
    result = Package(archive, out.bytes, out.digest.hexdigest(), tuple(files))
    with store.writer(manifest_path(reference)) as manifest:
        manifest.write(json.dumps({"reference": reference, "archive": {
            "name": posixpath.basename(archive), "bytes": result.bytes, "sha256": result.sha256},
            "files": [vars(f) for f in files]}, indent=1).encode())
    store.delete(staging)
    return result


def _write_array(entry: IO[bytes], name: str, documents: list[str], store: ExportStore,
                 keys: MultiFernet) -> ExportFile:
    """Documents as one JSON array, one document at a time; returns its manifest line."""
    digest, size = hashlib.sha256(), 0
    for n, path in enumerate(documents):
        chunk = (b"[\n" if n == 0 else b",\n") + unseal(store, path, keys)
        if n == len(documents) - 1:
            chunk += b"\n]\n"
        entry.write(chunk)
        digest.update(chunk)
        size += len(chunk)
    return ExportFile(name, size, digest.hexdigest())


def _write_opaque(zipped: zipfile.ZipFile, name: str, path: str, store: ExportStore,
                  keys: MultiFernet, stamp: tuple[int, ...]) -> ExportFile:
    """An opaque file into the zip as it is, frame by frame; returns its manifest line."""
    info = zipfile.ZipInfo(name, stamp)
    info.compress_type = zipfile.ZIP_DEFLATED
    digest, size = hashlib.sha256(), 0
    with zipped.open(info, "w", force_zip64=True) as entry:  # its size is not known up front
        for chunk in read_sealed(store, path, keys):
            entry.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    return ExportFile(name, size, digest.hexdigest())


def _folders(store: ExportStore, staging: str) -> list[str]:
    """The folders that hold staged files (a handful: one per kind of document), in order."""
    return sorted({posixpath.dirname(path) + "/" for path in store.list(staging)})


def _files_in(store: ExportStore, folder: str) -> Iterator[str]:
    """The staged files directly in `folder`, as the store lists them: read one by one, never
    all listed (10,000 tickets are 10,000 files)."""
    return (path for path in store.list(folder) if posixpath.dirname(path) + "/" == folder)


def discard_staging(store: ExportStore, reference: str) -> int | None:
    """Delete what an unfinished access request staged; how many documents, None if nothing was
    staged."""
    staging = staging_folder(reference)
    staged = sum(1 for _ in store.list(staging))
    return staged if store.delete(staging) else None


def manifest_json(reference: str, files: list[ExportFile]) -> str:
    """The manifest inside the archive: what the subject can check each file against."""
    return json.dumps({"reference": reference, "algorithm": "SHA-256",
                       "files": [vars(f) for f in files]}, indent=1) + "\n"


def read_package(store: ExportStore, reference: str) -> Package | None:
    """The packaged archive as its manifest describes it; None if the request has none."""
    path = manifest_path(reference)
    if not store.exists(path):
        return None
    try:
        manifest = json.loads(b"".join(store.read(path)))
        return Package(archive_path(reference), int(manifest["archive"]["bytes"]),
                       str(manifest["archive"]["sha256"]),
                       tuple(ExportFile(str(f["name"]), int(f["bytes"]), str(f["sha256"]).lower())
                             for f in manifest["files"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidRequest(f"The export manifest {path} is not readable ({exc!r}).") from None


def archive_chunks(store: ExportStore, path: str, keys: MultiFernet, *,
                   sha256: str) -> Iterator[bytes]:
    """The archive's zip bytes, chunk by chunk, for delivery. Raises SealBroken after the last
    chunk if the whole does not hash to `sha256` (a file swapped for another request's)."""
    digest = hashlib.sha256()
    for chunk in read_sealed(store, path, keys):
        digest.update(chunk)
        yield chunk
    if digest.hexdigest() != sha256:
        raise SealBroken(f"{posixpath.basename(path)} does not match the SHA-256 recorded when it "
                         "was packaged")


def latest_archive(store: ExportStore) -> str | None:
    """The archive of the newest request that still has one (references grow with time)."""
    return max((path for path in store.list("") if path.count("/") == 1 and path.endswith(ARCHIVE)),
               default=None)


def subject_readme(reference: str, systems: list[str], at: datetime) -> str:
    """What the subject reads first, in plain language."""
    listed = "\n".join(f"  - {system}/: {VENDORS[system].export_text if system in VENDORS else system}"
                       for system in systems)
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
