"""The peer of bench.slack_ack: a bare bolt app, served as DSR Desk is.

The same signing secret, Slack Web API and Flask adapter; a `/dsr` command that acks with a line
of text and any button click that acks with nothing; run by gunicorn's gthread worker as
`dsr-desk run --http` runs (2 processes answering Slack, 8 threads each):

    SLACK_SIGNING_SECRET=... SLACK_BOT_TOKEN=... SLACK_API_URL=... \
        python -m gunicorn -k gthread -w 2 --threads 8 bench.bare_bolt:web
"""

from __future__ import annotations

import os
import re

from flask import Flask, request
from slack_bolt import Ack, App
from slack_bolt.adapter.flask import SlackRequestHandler
from slack_sdk import WebClient

app = App(signing_secret=os.environ["SLACK_SIGNING_SECRET"], process_before_response=True,
          client=WebClient(token=os.environ["SLACK_BOT_TOKEN"],
                           base_url=os.environ["SLACK_API_URL"]))


@app.command("/dsr")
def dsr(ack: Ack) -> None:
    ack(response_type="ephemeral", text="Requests: none.")


@app.action(re.compile(".*"))
def click(ack: Ack) -> None:
    ack()


web = Flask("bare-bolt")
handler = SlackRequestHandler(app)


@web.post("/slack/events")
def events():  # noqa: ANN201
    return handler.handle(request)


@web.get("/healthz")
def healthz():  # noqa: ANN201
    return {"ok": True}
