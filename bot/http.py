"""HTTP mode: Slack's requests at POST /slack/events (signature verified by bolt), GET /healthz.

`wsgi_app(runtime)` is a plain WSGI app: `dsr-desk run --http` serves it with a threaded
server; behind a load balancer it can run under gunicorn just as well.
"""

from __future__ import annotations

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
