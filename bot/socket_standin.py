"""Slack's Socket Mode side, locally: a WebSocket server that says hello, sends envelopes
(slash commands, interactions, events) to the connected app, and returns the app's acks.
Used by the tests (needs the `websockets` package from the dev extra).
Point the Web API stand-in's `socket_url` at it; `apps.connections.open` then hands it out."""

from __future__ import annotations

import json
import queue
import threading
import uuid
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve


class SocketModeStandIn:
    def __init__(self) -> None:
        self._server = serve(self._session, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}/link"
        self._connections: list[ServerConnection] = []
        self._acks: dict[str, queue.Queue[dict[str, Any]]] = {}
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _session(self, connection: ServerConnection) -> None:
        connection.send(json.dumps({"type": "hello", "num_connections": 1,
                                    "connection_info": {"app_id": "A0DSRDESK"},
                                    "debug_info": {"host": "standin"}}))
        self._connections.append(connection)
        self._connected.set()
        try:
            for message in connection:
                ack = json.loads(message)
                if ack.get("envelope_id") in self._acks:
                    self._acks[ack["envelope_id"]].put(ack)
        except ConnectionClosed:
            pass  # the app went away, as apps do

    def wait_connected(self, timeout: float = 30) -> bool:
        return self._connected.wait(timeout)

    def send(self, kind: str, payload: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        """Deliver one envelope to the app; returns its ack (with the response payload)."""
        envelope_id = uuid.uuid4().hex
        acks: queue.Queue[dict[str, Any]] = queue.Queue()
        self._acks[envelope_id] = acks
        self._connections[-1].send(json.dumps({"envelope_id": envelope_id, "type": kind,
                                               "payload": payload,
                                               "accepts_response_payload": True}))
        try:
            return acks.get(timeout=timeout)
        finally:
            self._acks.pop(envelope_id, None)

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
