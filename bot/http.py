"""HTTP mode: Slack's requests at POST /slack/events (signature verified by bolt), GET /healthz.

`wsgi_app(runtime)` is the WSGI app; `serve` runs it under gunicorn's pre-fork server for
`dsr-desk run --http`. Each worker process is a replica as ARCHITECTURE.md describes: its own
app, database pool and scheduler, with the work claimed in the database, never divided by
trusting that one process runs. Processes, not threads, are what keep acknowledgements fast:
the threads of one process take turns on one interpreter lock, so under load a short ack
waits behind the listeners' work (bench/slack_ack.py measures it).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from flask import Flask, jsonify, request
from gunicorn.app.base import BaseApplication
from slack_bolt.adapter.flask import SlackRequestHandler
from sqlalchemy import text

from bot.app import Runtime


def wsgi_app(runtime: Runtime) -> Flask:
    web = Flask("dsr-desk")
    handler = SlackRequestHandler(runtime.app)

    @web.post("/slack/events")
    def slack_events():  # noqa: ANN202
        return handler.handle(request)

    @web.get("/healthz")
    def healthz():  # noqa: ANN202
        try:
            with runtime.service.sessions() as session:
                session.exec(text("SELECT 1"))
        except Exception:  # noqa: BLE001 - the answer says the database is down
            return jsonify({"ok": False, "database": "unreachable"}), 503
        return jsonify({"ok": True})

    return web


class HttpServer(BaseApplication):
    """gunicorn with the app built in each worker after the fork (threads and connections do not
    survive a fork), its scheduler started there and stopped as the worker exits."""

    def __init__(self, build: Callable[[], Runtime], options: dict[str, Any]) -> None:
        self.build = build
        self.options = options
        self.runtime: Runtime | None = None
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        # A thread asking for the interpreter lock waits up to this long for the running one to
        # hand it over. Python's 5 ms is paid at each step of a request (read, dispatch, write)
        # while lazy listeners compute; 1 ms keeps acks quick behind them (bench/slack_ack.py).
        sys.setswitchinterval(0.001)
        self.runtime = self.build()
        self.runtime.scheduler.start()
        return wsgi_app(self.runtime)


def _stop_worker(_arbiter: Any, worker: Any) -> None:
    # Lazy listeners still running finish first: the interpreter joins their pool as it exits
    # (within gunicorn's graceful timeout).
    if worker.app.runtime is not None:
        worker.app.runtime.close()


def _ready(arbiter: Any) -> None:
    for listener in arbiter.LISTENERS:
        print(f"DSR Desk listening on {listener}/slack/events "
              f"({arbiter.num_workers} worker processes)", flush=True)


def serve(build: Callable[[], Runtime], *, host: str, port: int, workers: int, threads: int,
          log_level: str) -> None:
    """Serve until SIGTERM or SIGINT. One thread a worker is gunicorn's sync worker (a
    connection per request, spread over the workers by the kernel); more threads give its
    gthread worker (keep-alive)."""
    HttpServer(build, {
        "bind": f"{host}:{port}", "workers": workers, "threads": threads,
        "worker_class": "gthread" if threads > 1 else "sync",
        "proc_name": "dsr-desk", "loglevel": log_level.lower(),
        # A request waiting out SQLite's 30 s busy timeout must not get its worker killed.
        "timeout": 90, "graceful_timeout": 30,
        "when_ready": _ready, "worker_exit": _stop_worker,
    }).run()
