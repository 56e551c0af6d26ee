"""Serve a WSGI app on a localhost socket in a background thread."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

log = logging.getLogger("dsr_desk.sandbox")


class QuietHandler(WSGIRequestHandler):
    """Logs method, path and status only: query strings hold emails and phone numbers."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("%s %s -> %s", self.command, self.path.split("?", 1)[0], code)


@dataclass
class RunningServer:
    server: BaseWSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start(app: Any, port: int = 0, host: str = "127.0.0.1", *,
          listener: socket.socket | None = None) -> RunningServer:
    """Start serving `app`; port 0 picks a free port (see `.url`). A `listener` made elsewhere
    (another process, before a fork) is served instead of a new socket."""
    if listener is not None:
        host, port = listener.getsockname()[:2]
    server = make_server(host, port, app, threaded=True, request_handler=QuietHandler,
                         fd=listener.fileno() if listener is not None else None)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"sandbox:{server.port}", daemon=True)
    thread.start()
    return RunningServer(server, thread)


@contextmanager
def serve(app: Any, port: int = 0) -> Iterator[RunningServer]:
    running = start(app, port)
    try:
        yield running
    finally:
        running.stop()
