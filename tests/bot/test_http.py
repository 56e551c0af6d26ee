"""HTTP mode's pieces: the doorbell to the background process (bot.handoff) over a real Unix
socket, and the signature check before anything is parsed."""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import socket
import tempfile
import threading
import time

import pytest
from slack_sdk.signature import SignatureVerifier

from bot.handoff import Doorbell, answer
from bot.http import SOCKET_PATH_BYTES, _handoff_dir, signed


def test_the_doorbell_never_waits_and_wakes_the_background_process_once_it_listens(
        tmp_path) -> None:
    address = str(tmp_path / "handoff.sock")
    bell = Doorbell(address)
    began = time.monotonic()
    for _ in range(50):  # nobody listens yet (gunicorn is starting the background process)
        bell.ring()
    assert time.monotonic() - began < 1  # an ack never waits on it

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    woken = threading.Event()
    answer(listener, woken.set)
    for _ in range(5000):  # more than its queue holds: the rest are dropped, not waited for
        bell.ring()
    assert woken.wait(10)
    listener.close()


@pytest.mark.parametrize("too_deep", [False, True])
def test_the_doorbell_binds_wherever_tmpdir_points(monkeypatch, too_deep) -> None:
    """A TMPDIR too deep for a Unix socket's path (as under a CI runner's workspace) does not
    stop the server from starting: the doorbell's folder goes to /tmp instead."""
    base = tempfile.mkdtemp(dir="/tmp")
    tmpdir = os.path.join(base, *["a-rather-long-folder-name"] * (4 if too_deep else 0))
    os.makedirs(tmpdir, exist_ok=True)
    monkeypatch.setattr("tempfile.tempdir", tmpdir)
    folder = _handoff_dir()
    try:
        assert os.path.dirname(folder) == ("/tmp" if too_deep else tmpdir)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(f"{folder}/handoff.sock")
        assert len(listener.getsockname()) < SOCKET_PATH_BYTES
        listener.close()
    finally:
        shutil.rmtree(folder)
        shutil.rmtree(base)


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
