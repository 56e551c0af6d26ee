"""HTTP mode: Slack's requests at POST /slack/events (signature verified by bolt), GET /healthz.

`wsgi_app(runtime)` is a plain WSGI app. `serve(...)` runs it under gunicorn, one process per
core: a listener's Python work holds the GIL, so one process acknowledges on one core at most.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, jsonify, request
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


def serve(make_app: Callable[[], Any], *, host: str, port: int, workers: int,
          threads: int = 1) -> None:
    """Serve the WSGI app that `make_app()` builds in each of `workers` gunicorn processes (built
    after the fork: database connections are not shared). With `threads` 1 a process handles one
    request at a time (gunicorn's sync worker: no GIL contention between requests, but it
    expects a load balancer that buffers requests); with more, gthread workers with keep-alive."""
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):
        def load_config(self) -> None:
            for key, value in {"bind": f"{host}:{port}", "workers": workers, "threads": threads,
                               "worker_class": "gthread" if threads > 1 else "sync",
                               "keepalive": 75, "accesslog": None, "loglevel": "warning",
                               }.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return make_app()

    Server().run()
