"""HTTP mode: Slack's requests at POST /slack/events (signature verified here, then by bolt),
GET /healthz.

`wsgi_app(runtime)` is the WSGI app; `serve` runs it under gunicorn's pre-fork server for
`dsr-desk run --http`: N worker processes answer Slack and do nothing else; one more, the
background process, runs the work after each ack (which the worker that acked wrote to the
inbox before answering: `bot.inbox`, rung for by `bot.handoff`), the scheduled jobs and, for
simulated requests, the vendor stand-ins all of them use. Processes keep acknowledgements fast:
the threads of one process take turns on one interpreter lock, so an ack in the process that
did a search or an approval would wait behind it; between processes the kernel shares the
cores, and the background process yields to the acks (bench/slack_ack.py measures it).

Each worker process still answers with several threads (gunicorn's gthread worker), because
what holds an ack up is also the network: a client that sends its request slowly holds the
thread reading it, and with one thread a process, a few such clients would stop every ack.
Those threads run acks, which wait mostly on sockets and the database, so they hardly contend
for the interpreter lock; the searches and approvals after the acks stay in the background
process. A request must arrive whole within READ_SECONDS of its first byte, after which its
connection is no longer read: a slow client holds one thread, for that long at most. (A reverse
proxy that buffers requests, as nginx does by default, keeps such clients away altogether.)

Each `dsr-desk run --http` is a replica as ARCHITECTURE.md describes: its work is claimed in the
database, never divided by trusting that one process runs.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import Any

from flask import Flask, jsonify, request
from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import ThreadWorker
from slack_bolt.adapter.flask.handler import to_bolt_request, to_flask_response
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import text

from bot.app import Runtime, create_app
from bot.handoff import Doorbell, answer
from bot.settings import Settings
from services.vendors import VENDORS

log = logging.getLogger("dsr_desk.http")
HTTP, BACKGROUND = "http", "background"
# The background process runs at a lower priority: under load the kernel gives the cores to the
# acks (Slack's 3 s) before the work after them, whose deadlines are seconds to days.
BACKGROUND_NICENESS = 10
SOCKET_PATH_BYTES = 108  # sockaddr_un's sun_path on Linux
# Slack sends a request at once, and a proxy passes it on at once: one still arriving after this
# long is a slow client, whose connection stops being read (see DeskWorker).
READ_SECONDS = 10
# Slack's largest payloads (a 250 kB view, a message of 50 blocks, form-encoded) fit many times:
# a larger body is refused (413) before it is read, signed or not.
MAX_BODY_BYTES = 4 * 1024 * 1024


def signed(verifier: SignatureVerifier, headers: Mapping[str, str], raw: bytes) -> bool:
    """Whether Slack signed this body within the last 5 minutes (SignatureVerifier's window).
    Whatever else arrives is False, never an exception: a timestamp that is no number, a
    signature or body that is no text."""
    stamp = headers.get("X-Slack-Request-Timestamp", "")
    signature = headers.get("X-Slack-Signature", "")
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12 and signature.isascii()):
        return False
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return verifier.is_valid(body=body, timestamp=stamp, signature=signature)


def wsgi_app(runtime: Runtime) -> Flask:
    web = Flask("dsr-desk")
    web.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    secret = runtime.core.settings.slack_signing_secret
    verifier = SignatureVerifier(secret.get_secret_value()) if secret else None

    @web.post("/slack/events")
    def slack_events():  # noqa: ANN202
        # The signature is checked before anything is parsed: bolt parses the body before it
        # verifies it, so an unsigned request with a malformed body would fail in there, with a
        # traceback in the log, for anyone who can reach this URL. bolt verifies again.
        if verifier is None or not signed(verifier, request.headers, request.get_data()):
            log.debug("refused a request not signed by Slack")  # anyone can send these
            return jsonify({"error": "invalid request"}), 401
        try:
            slack_request = to_bolt_request(request)
        except (ValueError, TypeError, AttributeError, LookupError, RecursionError) as exc:
            # Signed, so Slack's (or the secret's holder's): worth a line, never the body.
            log.warning("refused a signed request whose body is not Slack's: %s", type(exc).__name__)
            return jsonify({"error": "malformed request"}), 400
        return to_flask_response(runtime.app.dispatch(slack_request))

    @web.get("/healthz")
    def healthz():  # noqa: ANN202
        try:
            with runtime.service.sessions() as session:
                session.exec(text("SELECT 1"))
        except Exception:  # noqa: BLE001 - the answer says the database is down
            return jsonify({"ok": False, "database": "unreachable"}), 503
        return jsonify({"ok": True})

    return web


def _worker_class() -> type:
    """gunicorn's gthread worker, with a deadline for reading each request; or, instead, the
    background process: the arbiter gives one worker that role before it forks (`_assign_role`),
    so gunicorn's own supervision restarts it like any worker."""

    class DeskWorker(ThreadWorker):
        role = HTTP
        reading: dict[Any, float]  # connection -> when it stops being read

        def init_process(self) -> None:
            self.reading = {}
            super().init_process()

        def handle(self, conn: Any) -> Any:  # in a request thread
            self.reading[conn] = time.monotonic() + READ_SECONDS
            try:
                return super().handle(conn)
            finally:
                self.reading.pop(conn, None)

        def murder_pending(self) -> None:
            """gthread's main loop calls this every second: a connection read past its deadline
            is shut for reading, so the thread blocked on it sees the end of its input at once
            (and drops it). A response being written is not affected."""
            super().murder_pending()
            now = time.monotonic()
            for conn, deadline in self.reading.copy().items():
                if deadline < now:
                    self.reading.pop(conn, None)
                    with suppress(OSError):
                        conn.sock.shutdown(socket.SHUT_RD)

        def run(self) -> None:
            if self.role == HTTP:
                super().run()
                return
            for listener in self.sockets:
                listener.close()
            # The arbiter's heartbeat, until SIGTERM or the arbiter's death; a signal writes to
            # PIPE, which ends the wait at once.
            while self.alive and self.ppid == os.getppid():
                self.notify()
                if select.select([self.PIPE[0]], [], [], 1.0)[0]:
                    os.read(self.PIPE[0], 512)

    return DeskWorker


class HttpServer(BaseApplication):
    """gunicorn with the app built in each worker after the fork: threads and connections do not
    survive a fork. What the processes share is made here, before: the doorbell's socket and the
    stand-ins' sockets."""

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        # Simulation mode's vendor stand-ins (unless settings name running ones): one of each
        # for all the processes, served by the background process on sockets bound here, before
        # the fork, so that every process names the same ones and a restart keeps the address.
        self.standins = {system: socket.create_server(("127.0.0.1", 0)) for system in VENDORS
                         if not settings.vendor(system).sandbox_url}
        self.settings = settings.with_sandbox_urls({
            system: f"http://127.0.0.1:{listener.getsockname()[1]}"
            for system, listener in self.standins.items()})
        self.options = options
        self.handoff_dir = _handoff_dir()
        self.handoff = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # bot.handoff's doorbell
        self.handoff.bind(f"{self.handoff_dir}/handoff.sock")
        self.role = HTTP
        self.generation_from = 0  # the oldest worker age of the current generation (see reload)
        self.stop_loaded: Callable[[], None] = lambda: None  # stops what `load` started
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask | None:
        if self.role == BACKGROUND:
            os.nice(BACKGROUND_NICENESS)
            runtime = create_app(self.settings)
            for system, listener in self.standins.items():
                runtime.registry.sandboxes.serve(system, listener)
            runtime.scheduler.start()  # the jobs, and the inbox: the work after every worker's acks
            answer(self.handoff, runtime.inbox.wake)
            listeners = runtime.app.listener_runner.listener_executor

            def stop() -> None:
                runtime.scheduler.stop()  # claims no more work from the inbox
                listeners.shutdown(wait=True)  # finishes what it claimed
                runtime.close()

            self.stop_loaded = stop
            return None
        # Answering Slack only: it runs no step, so it needs no stable worker slot; it writes
        # the work after its acks to the inbox and rings the background process.
        runtime = create_app(self.settings, worker_id=f"{socket.gethostname()}:http:{os.getpid()}")
        runtime.inbox.ring = Doorbell(self.handoff.getsockname()).ring
        self.stop_loaded = runtime.close
        return wsgi_app(runtime)


def _handoff_dir() -> str:
    """A folder only this user may enter, for the doorbell's socket: in TMPDIR, unless the
    socket's path would be longer than a Unix socket's (108 bytes with its NUL), then in /tmp."""
    base = tempfile.gettempdir()
    if len(os.path.join(base, "dsr-desk-12345678", "handoff.sock")) >= SOCKET_PATH_BYTES:
        base = "/tmp"
    return tempfile.mkdtemp(prefix="dsr-desk-", dir=base)


def _assign_role(arbiter: Any, worker: Any) -> None:
    # In the arbiter, before the fork: the background role goes to a new worker whenever no
    # worker of the current generation has it (at start, after its death, after a reload).
    current = (w for w in arbiter.WORKERS.values() if w.age >= arbiter.app.generation_from)
    worker.role = HTTP if any(w.role == BACKGROUND for w in current) else BACKGROUND


def _take_role(_arbiter: Any, worker: Any) -> None:
    worker.app.role = worker.role  # in the new worker, before it loads


def _new_generation(arbiter: Any) -> None:
    # A reload (SIGHUP) starts a new generation of workers, then stops the old one.
    arbiter.app.generation_from = arbiter.worker_age + 1


def _stop_worker(_arbiter: Any, worker: Any) -> None:
    worker.app.stop_loaded()  # within gunicorn's graceful timeout


def _remove_handoff(arbiter: Any) -> None:
    shutil.rmtree(arbiter.app.handoff_dir, ignore_errors=True)


def _ready(arbiter: Any) -> None:
    for listener in arbiter.LISTENERS:
        print(f"DSR Desk listening on {listener}/slack/events ({arbiter.num_workers - 1} worker "
              "processes, and one in the background)", flush=True)


def serve(settings: Settings, *, host: str, port: int, workers: int, threads: int,
          log_level: str) -> None:
    """Serve until SIGTERM or SIGINT: `workers` processes of `threads` request threads each
    (gunicorn's gthread worker: keep-alive, connections spread over the processes by the
    kernel), and the background process."""
    HttpServer(settings, {
        "bind": f"{host}:{port}", "workers": workers + 1, "threads": threads,
        "worker_class": _worker_class(),
        "proc_name": "dsr-desk", "loglevel": log_level.lower(),
        # A worker whose main loop stops answering the arbiter this long is restarted (a
        # request thread waiting out SQLite's 30 s busy timeout does not stop it).
        "timeout": 90, "graceful_timeout": 30,
        "pre_fork": _assign_role, "post_fork": _take_role, "on_reload": _new_generation,
        "when_ready": _ready, "worker_exit": _stop_worker, "on_exit": _remove_handoff,
    }).run()
