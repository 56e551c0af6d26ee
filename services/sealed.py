"""Files encrypted at rest, written and read a chunk at a time.

Fernet (from `cryptography`) encrypts and authenticates one message held in memory, and an
export can be far larger than memory should hold, so a sealed file is a sequence of Fernet
tokens, one per frame of at most 64 KiB. Each frame's plaintext starts with its index and a
last-frame flag, so frames cannot be reordered, dropped, or cut off the end without reading
failing. The keys come from `DSR_EXPORT_KEY` (comma-separated Fernet keys; the first encrypts,
all decrypt, so a key can be rotated) and are never written to disk, the database, or a log.

Paths may be plain strings: a sink writes one file per document, and pathlib interns every new
file name, so 10,000 tickets would grow the interpreter's table of interned strings.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from services.errors import ConfigurationError, DsrError

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


class SealedWriter(io.RawIOBase):
    """A write-only stream that lands at `path` only when closed without an error, so a crash
    never leaves a half file under the final name. Not seekable: zipfile writes to it as to a
    pipe."""

    def __init__(self, path: str | Path, keys: MultiFernet) -> None:
        super().__init__()
        self.path, self.keys = path, keys
        self._partial = f"{path}.partial"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self._file = open(self._partial, "wb")  # noqa: SIM115 - closed in close() or abort()
        self._file.write(MAGIC)
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
        self._file.write(_LENGTH.pack(len(token)) + token)
        self._index += 1
        self.plain_bytes += len(plain)

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._frame(bytes(self._buffer), last=True)
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._partial, self.path)
        finally:
            super().close()

    def abort(self) -> None:
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._partial)
        super().close()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if error is not None:
            self.abort()
        else:
            self.close()


def read_sealed(path: str | Path, keys: MultiFernet) -> Iterator[bytes]:
    """The plaintext of a sealed file, frame by frame; SealBroken if it does not check out."""
    name = os.path.basename(path)
    with open(path, "rb") as file:
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


def unseal(path: str | Path, keys: MultiFernet) -> bytes:
    """A small sealed file's whole plaintext (one staged document)."""
    return b"".join(read_sealed(path, keys))
