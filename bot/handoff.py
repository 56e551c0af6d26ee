"""HTTP mode: the work after an ack runs in the background process, not in the one that acked.

bolt runs a listener's `lazy=[...]` functions after its ack. In the processes answering Slack,
`Forwarder` hands each such request (its raw body, headers and the function's name) over a
local socket to the background process, which runs it with its own app (`serve_lazy`). So the
processes answering Slack do nothing else, and an ack never waits on the interpreter lock behind
a search or an approval (bench/slack_ack.py measures it). This is bolt's own pattern for AWS
Lambda (`LambdaLazyListenerRunner`), with a socket instead of a second function.

The socket is a Unix socket in a directory only this user can open; the requests on it were
verified by the worker that acked them, so the background app does not verify them again (a
request queued past Slack's 5-minute signature window must still run, not be refused).
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from slack_bolt import App, BoltRequest
from slack_bolt.lazy_listener import LazyListenerRunner

log = logging.getLogger("dsr_desk.handoff")
SIZE = struct.Struct("!I")
RECONNECT_SECONDS = 0.2


class Forwarder(LazyListenerRunner):
    """In a process answering Slack: queues each lazy request in memory (the ack never waits
    on the socket) and sends it from one thread, reconnecting while the background process is
    (re)started by gunicorn."""

    def __init__(self, address: str, logger: logging.Logger) -> None:
        self.address = address
        self.logger = logger
        self.frames: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._send_forever, name="dsr-handoff", daemon=True).start()

    def drain(self, timeout: float) -> None:
        """Waits (up to `timeout`) until every queued request is sent: as the worker stops."""
        sent = threading.Thread(target=self.frames.join, daemon=True)
        sent.start()
        sent.join(timeout)

    def start(self, function: Callable[..., None], request: BoltRequest) -> None:
        payload = json.dumps({"function": request.lazy_function_name, "body": request.raw_body,
                              "headers": request.headers}).encode()
        self.frames.put(SIZE.pack(len(payload)) + payload)

    def _send_forever(self) -> None:
        connection: socket.socket | None = None
        while True:
            frame = self.frames.get()
            while True:
                try:
                    if connection is None:
                        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                        connection.connect(self.address)
                    connection.sendall(frame)
                    self.frames.task_done()
                    break
                except OSError:
                    if connection is not None:
                        connection.close()
                    connection = None
                    time.sleep(RECONNECT_SECONDS)


def serve_lazy(listener: socket.socket, app: App, executor: Executor) -> None:
    """In the background process: runs the lazy requests the workers send, on `executor`."""

    def receive(connection: socket.socket) -> None:
        with connection, connection.makefile("rb") as stream:
            while len(head := stream.read(SIZE.size)) == SIZE.size:
                size = SIZE.unpack(head)[0]
                payload = stream.read(size)
                if len(payload) < size:
                    return  # the worker stopped mid-request: it sends it again, whole
                request = json.loads(payload)
                headers: dict[str, Any] = request["headers"] | {
                    "x-slack-bolt-lazy-only": ["1"],
                    "x-slack-bolt-lazy-function-name": [request["function"]]}
                try:
                    executor.submit(_dispatch, app, BoltRequest(body=request["body"], headers=headers))
                except RuntimeError:  # the executor is shut down: this process is stopping
                    log.error("work after an ack arrived as the background process stopped: not run")

    def accept() -> None:
        while True:
            connection, _ = listener.accept()
            threading.Thread(target=receive, args=(connection,), name="dsr-handoff-in",
                             daemon=True).start()

    threading.Thread(target=accept, name="dsr-handoff-accept", daemon=True).start()


def _dispatch(app: App, request: BoltRequest) -> None:
    response = app.dispatch(request)
    if response.status != 200:  # bolt has logged why; the team must hear of it
        log.error("work after an ack was refused: HTTP %s", response.status)
