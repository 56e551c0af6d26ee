"""The hand-off of the work after an ack to the background process (bot.handoff), over a real
Unix socket, with a recording stand-in for the background app."""

from __future__ import annotations

import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

from slack_bolt import BoltRequest, BoltResponse

from bot.handoff import Forwarder, serve_lazy


class RecordingApp:
    def __init__(self) -> None:
        self.requests: list[BoltRequest] = []
        self.arrived = threading.Semaphore(0)

    def dispatch(self, request: BoltRequest) -> BoltResponse:
        self.requests.append(request)
        self.arrived.release()
        return BoltResponse(status=200)


def lazy_request(n: int) -> BoltRequest:
    request = BoltRequest(body=f"command=%2Fdsr&text=search+{n}",
                          headers={"X-Slack-Signature": "v0=abc", "Content-Type":
                                   "application/x-www-form-urlencoded"})
    request.lazy_function_name = "after_ack"
    return request


def test_requests_queued_while_the_background_process_is_down_reach_it_once_it_listens(
        tmp_path) -> None:
    address = str(tmp_path / "handoff.sock")
    forwarder = Forwarder(address, logging.getLogger("test"))
    for n in range(50):  # nobody listens yet (gunicorn is starting the background process)
        forwarder.start(lambda: None, lazy_request(n))

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen()
    app = RecordingApp()
    serve_lazy(listener, app, ThreadPoolExecutor(max_workers=4))
    assert all(app.arrived.acquire(timeout=10) for _ in range(50))
    forwarder.drain(timeout=5)
    assert forwarder.frames.unfinished_tasks == 0

    texts = sorted(int(r.body["text"].split()[1]) for r in app.requests)
    assert texts == list(range(50))  # each once, none lost
    first = app.requests[0]
    assert first.lazy_only and first.lazy_function_name == "after_ack"
    assert first.headers["x-slack-signature"] == ["v0=abc"]
