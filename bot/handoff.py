"""HTTP mode: the doorbell from the processes answering Slack to the background process.

The work after each ack is a row of the inbox, written before the ack returns (bot.inbox); the
process that acked then sends one byte on a local datagram socket, so that the background
process claims the row at once instead of at its next poll. Only the row counts: a byte lost
(the background process is being restarted, or its queue is full) costs at most a poll. The
socket is a Unix socket in a directory only this user can open.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from contextlib import suppress


class Doorbell:
    """In a process answering Slack: `ring` never waits and never fails."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.setblocking(False)

    def ring(self) -> None:
        with suppress(OSError):  # nobody listening, or a full queue: the runner polls anyway
            self._socket.sendto(b"\0", self.address)


def answer(listener: socket.socket, wake: Callable[[], None]) -> None:
    """In the background process: calls `wake` for each ring on `listener` (a bound datagram
    socket)."""

    def listen() -> None:
        while True:
            try:
                listener.recv(64)
            except OSError:
                return  # closed: this process is stopping
            wake()

    threading.Thread(target=listen, name="dsr-doorbell", daemon=True).start()
