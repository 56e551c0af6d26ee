"""`dsr-desk run --http` keeps acknowledging while clients dribble their requests: a slow
connection holds one request thread (never a whole worker process), and only for
READ_SECONDS, after which the server stops reading it."""

from __future__ import annotations

import select
import socket
import threading
import time
from urllib.parse import urlparse

import httpx
import pytest

from bot.http import READ_SECONDS
from tests.e2e.test_http_server import run_http

SLOW_CLIENTS = 6  # more than the 2 worker processes; fewer than one process's threads


class Dribbler(threading.Thread):
    """A client that starts a request and sends the rest of its headers a byte at a time."""

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(address)
        self.sent_first = threading.Event()
        self.cut = threading.Event()  # the server stopped reading and closed the connection
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            self.sock.sendall(b"POST /slack/events HTTP/1.1\r\nHost: dsr-desk\r\nX-Slow: ")
            self.sent_first.set()
            while not self.stop.is_set():
                if select.select([self.sock], [], [], 0.25)[0] and not self.sock.recv(4096):
                    break  # the server closed it
                self.sock.sendall(b"a")
        except OSError:
            pass  # reset by the server
        finally:
            self.cut.set()
            self.sock.close()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_slow_clients_hold_no_acknowledgement_up(database_url, tmp_path) -> None:
    with run_http(database_url, tmp_path) as running:
        running.settled()
        driver = running.conversation.driver
        driver.http = httpx.Client(timeout=10)  # far less than the 90 s a worker could be held
        url = urlparse(driver.url)
        slow = [Dribbler((url.hostname, url.port)) for _ in range(SLOW_CLIENTS)]
        try:
            for client in slow:
                client.start()
            # Connected, and requests begun, before the command: first in the server's queue.
            assert all(client.sent_first.wait(5) for client in slow)

            started = time.monotonic()
            answer = driver.command("U_REQ", "help")
            assert answer.status_code == 200 and "DSR Desk help" in answer.text
            assert time.monotonic() - started < READ_SECONDS / 2
            assert not any(client.cut.is_set() for client in slow)  # all still being read

            # A client still sending after READ_SECONDS is no longer read: its thread is free.
            assert all(client.cut.wait(READ_SECONDS + 5) for client in slow)
        finally:
            for client in slow:
                client.stop.set()
    assert "Traceback" not in running.log.read_text()
