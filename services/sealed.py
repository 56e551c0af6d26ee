"""Files encrypted at rest, written and read a chunk at a time.

Fernet (from `cryptography`) encrypts and authenticates one message held in memory, and an
export can be far larger than memory should hold, so a sealed file is a sequence of Fernet
tokens, one per frame of at most 64 KiB. Each frame's plaintext starts with its index and a
last-frame flag, so frames cannot be reordered, dropped, or cut off the end without reading
failing. The keys come from `DSR_EXPORT_KEY` (comma-separated Fernet keys; the first encrypts,
all decrypt, so a key can be rotated) and are never written to disk, the database, or a log.

A sealed file lives in an export store (services.export_store): the store only ever holds these
frames, whichever store it is.
"""

from __future__ import annotations

import io
import posixpath
import struct
from collections.abc import Iterable, Iterator

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from services.errors import ConfigurationError, DsrError
from services.export_store import ExportStore, LandsOnExit

MAGIC = b"DSR-SEALED-1\n"
FRAME_BYTES = 1 << 16  # 64 KiB: encrypting a frame costs a few times its size in memory
_FRAME = struct.Struct(">QB")  # frame index, 1 on the last frame
_LENGTH = struct.Struct(">I")  # bytes of the token that follows
KEY_HINT = ("Make one with `python -c \"from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())\"` and keep it in your secret store; "
            "see README, 'Exports'.")


class SealBroken(DsrError):
    """A sealed file that does not decrypt: wrong key, altered, or truncated."""


def export_keys(secret: str) -> MultiFernet:
    """The keys in DSR_EXPORT_KEY; a clear ConfigurationError for a malformed one."""
    keys = [part.strip() for part in secret.split(",") if part.strip()]
    if not keys:
        raise ConfigurationError("DSR_EXPORT_KEY is empty. " + KEY_HINT)
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except (ValueError, TypeError):
        raise ConfigurationError("DSR_EXPORT_KEY holds a value that is not a Fernet key "
                                 "(32 url-safe base64-encoded bytes). " + KEY_HINT) from None


class SealedWriter(LandsOnExit, io.RawIOBase):
    """A write-only stream that lands at `path` in `store` only when closed without an error, so
    a crash never leaves a half file under the final name. Not seekable: zipfile writes to it as
    to a pipe."""

    def __init__(self, store: ExportStore, path: str, keys: MultiFernet) -> None:
        super().__init__()
        self.path, self.keys = path, keys
        self._out = store.writer(path)
        self._out.write(MAGIC)
        self._buffer = bytearray()
        self._index = 0
        self.plain_bytes = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._buffer += data
        while len(self._buffer) > FRAME_BYTES:
            self._frame(bytes(self._buffer[:FRAME_BYTES]), last=False)
            del self._buffer[:FRAME_BYTES]
        return len(data)

    def _frame(self, plain: bytes, *, last: bool) -> None:
        token = self.keys.encrypt(_FRAME.pack(self._index, int(last)) + plain)
        self._out.write(_LENGTH.pack(len(token)) + token)
        self._index += 1
        self.plain_bytes += len(plain)

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._frame(bytes(self._buffer), last=True)
            self._out.close()
        except BaseException:
            self._out.abort()  # what did not land is not left behind either
            raise
        finally:
            super().close()

    def abort(self) -> None:
        self._out.abort()
        super().close()


class _Exact:
    """Reads of an exact length from chunks of any length (as a store hands them out)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks, self._buffer = iter(chunks), bytearray()

    def read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


def read_sealed(store: ExportStore, path: str, keys: MultiFernet) -> Iterator[bytes]:
    """The plaintext of a sealed file, frame by frame; SealBroken if it does not check out."""
    name = posixpath.basename(path)
    file = _Exact(store.read(path))
    if file.read(len(MAGIC)) != MAGIC:
        raise SealBroken(f"{name} is not a sealed file")
    index = 0
    while True:
        length = file.read(_LENGTH.size)
        if len(length) < _LENGTH.size:
            raise SealBroken(f"{name} is truncated: its last frame is missing")
        token = file.read(_LENGTH.unpack(length)[0])
        try:
            plain = keys.decrypt(token)
        except InvalidToken:
            raise SealBroken(f"{name} does not decrypt with the configured DSR_EXPORT_KEY "
                             "(a different key, or the file was altered)") from None
        got, last = _FRAME.unpack_from(plain)
        if got != index:
            raise SealBroken(f"{name}: frame {got} found where frame {index} belongs")
        yield plain[_FRAME.size:]
        if last:
            if file.read(1):
                raise SealBroken(f"{name} has data after its last frame")
            return
        index += 1


def unseal(store: ExportStore, path: str, keys: MultiFernet) -> bytes:
    """A small sealed file's whole plaintext (one staged document)."""
    return b"".join(read_sealed(store, path, keys))
