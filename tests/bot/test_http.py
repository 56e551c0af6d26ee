"""The hand-off of the work after an ack to the background process (bot.handoff), over a real
Unix socket, with a recording stand-in for the background app."""

from __future__ import annotations

import hashlib
import hmac
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from slack_bolt import BoltRequest, BoltResponse
from slack_sdk.signature import SignatureVerifier

from bot.handoff import Forwarder, serve_lazy
from bot.http import signed


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


SECRET = "unit-signing-secret"


def _sign(body: bytes, stamp: str) -> str:
    return "v0=" + hmac.new(SECRET.encode(), b"v0:%s:%s" % (stamp.encode(), body),
                            hashlib.sha256).hexdigest()


def test_a_body_slack_signed_just_now_is_signed() -> None:
    now = str(int(time.time()))
    assert signed(SignatureVerifier(SECRET), {"X-Slack-Request-Timestamp": now,
                                              "X-Slack-Signature": _sign(b"text=help", now)},
                  b"text=help")


@pytest.mark.parametrize(("stamp", "signature", "body"), [
    ("\uff11\uff12\uff13", "v0=0", b"text=help"),  # digits, but not ASCII ones: int() takes them
    ("12a", "v0=0", b"text=help"),
    ("+1700000000", "v0=0", b"text=help"),
    ("9" * 5000, "v0=0", b"text=help"),  # more digits than int() converts
    ("", "v0=0", b"text=help"),
    ("NOW", "v0=\u00e9", b"text=help"),  # hmac.compare_digest refuses non-ASCII text
    ("NOW", "", b"text=help"),
    ("NOW", "SIGNED", b"payload=\xff\xfe"),  # signed, but no UTF-8: not Slack's
    ("OLD", "SIGNED", b"text=help"),  # signed, 6 minutes ago: a replay
])
def test_anything_else_is_unsigned_and_never_an_exception(stamp, signature, body) -> None:
    stamp = {"NOW": str(int(time.time())), "OLD": str(int(time.time()) - 360)}.get(stamp, stamp)
    signature = _sign(body, stamp) if signature == "SIGNED" else signature
    headers = {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature}
    assert signed(SignatureVerifier(SECRET), headers, body) is False
