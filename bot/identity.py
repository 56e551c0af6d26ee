"""A worker's identity that survives its restart, so that the restart resumes its work at once.

Steps, notices and deliverables are leased in the database to a worker id. A worker that dies
(SIGKILL, OOM) leaves its leases until they expire, unless the process that replaces it knows
it is the same worker: then `Worker.recover()` releases them at start. The id is
`host:role:slot`, where the slot is the first one whose lock file this process can hold: the
kernel drops the lock when the holder dies, however it dies, so a replacement takes the same
slot, and two live processes can never hold the same id (which would let one release the
other's running steps). Lock files are per database, so other deployments on the host keep
their own slots.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import tempfile
from pathlib import Path
from typing import IO

MAX_SLOTS = 256


class WorkerIdentity:
    """Holds the slot's lock for as long as the process lives (or until `release`)."""

    def __init__(self, worker_id: str, lock: IO[bytes]) -> None:
        self.id = worker_id
        self._lock = lock

    def release(self) -> None:
        self._lock.close()  # closing the file drops the lock


def claim(database_url: str, role: str, lock_dir: Path | None = None) -> WorkerIdentity:
    """The first free slot of `role` for this host and database."""
    folder = lock_dir or Path(tempfile.gettempdir())
    deployment = hashlib.sha256(database_url.encode()).hexdigest()[:12]
    host = socket.gethostname()
    for slot in range(1, MAX_SLOTS + 1):
        lock = (folder / f"dsr-desk-{deployment}-{role}-{slot}.lock").open("ab")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        os.set_inheritable(lock.fileno(), False)  # a child process must not keep the slot
        return WorkerIdentity(f"{host}:{role}:{slot}", lock)
    raise RuntimeError(f"more than {MAX_SLOTS} {role} workers on this host for one database")
