"""HTTP mode: Slack's requests at POST /slack/events (signature verified by bolt), GET /healthz.

`wsgi_app(runtime)` is the WSGI app; `serve` runs it under gunicorn's pre-fork server for
`dsr-desk run --http`: N worker processes answer Slack and do nothing else; one more, the
background process, runs the work after each ack (`bot.handoff`), the scheduled jobs and, for
simulated requests, the vendor stand-ins all of them use. Processes, not threads, keep
acknowledgements fast: the threads of one process take turns on one interpreter lock, so an
ack would wait behind a search or an approval; between processes the kernel shares the cores,
and the background process yields to the acks (bench/slack_ack.py measures it). Each
`dsr-desk run --http` is a replica as ARCHITECTURE.md describes: its work is claimed in the
database, never divided by trusting that one process runs.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import tempfile
from collections.abc import Callable
from typing import Any

from flask import Flask, jsonify, request
from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import ThreadWorker
from gunicorn.workers.sync import SyncWorker
from slack_bolt.adapter.flask import SlackRequestHandler
from sqlalchemy import text

from bot.app import Runtime, create_app
from bot.handoff import Forwarder, serve_lazy
from bot.settings import Settings

HTTP, BACKGROUND = "http", "background"
# The background process runs at a lower priority: under load the kernel gives the cores to the
# acks (Slack's 3 s) before the work after them, whose deadlines are seconds to days.
BACKGROUND_NICENESS = 10


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


def _worker_class(threads: int) -> type:
    """gunicorn's sync worker (one thread) or gthread worker, either of which can instead be the
    background process: the arbiter gives one worker that role before it forks (`_assign_role`),
    so gunicorn's own supervision restarts it like any worker."""
    base = ThreadWorker if threads > 1 else SyncWorker

    class DeskWorker(base):
        role = HTTP

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
    survive a fork. What the processes share is made here, before: the hand-off socket and the
    stand-ins' sockets."""

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        # Simulation mode's vendor stand-ins (unless settings name running ones): one of each
        # for all the processes, served by the background process on sockets bound here, before
        # the fork, so that every process names the same ones and a restart keeps the address.
        self.standins = {system: socket.create_server(("127.0.0.1", 0)) for system, url in (
            ("genesys", settings.sandbox_genesys_url),
            ("zendesk", settings.sandbox_zendesk_url)) if not url}
        self.settings = settings.model_copy(update={
            f"sandbox_{system}_url": f"http://127.0.0.1:{listener.getsockname()[1]}"
            for system, listener in self.standins.items()})
        self.options = options
        self.handoff_dir = tempfile.mkdtemp(prefix="dsr-desk-")  # only this user may enter
        self.handoff = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.handoff.bind(f"{self.handoff_dir}/handoff.sock")
        self.handoff.listen(64)
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
            runtime = create_app(self.settings, verify_requests=False)  # see bot.handoff
            for system, listener in self.standins.items():
                runtime.registry.sandboxes.serve(system, listener)
            runtime.scheduler.start()
            listeners = runtime.app.listener_runner.listener_executor
            serve_lazy(self.handoff, runtime.app, listeners)

            def stop() -> None:
                runtime.scheduler.stop()
                listeners.shutdown(wait=True)  # the work after acks already received
                runtime.close()

            self.stop_loaded = stop
            return None
        # Answering Slack only: it runs no step, so it needs no stable worker slot.
        runtime = create_app(self.settings, worker_id=f"{socket.gethostname()}:http:{os.getpid()}")
        forwarder = Forwarder(self.handoff.getsockname(), runtime.app.logger)
        runtime.app.listener_runner.lazy_listener_runner = forwarder

        def stop() -> None:
            forwarder.drain(timeout=10)
            runtime.close()

        self.stop_loaded = stop
        return wsgi_app(runtime)


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
    """Serve until SIGTERM or SIGINT. One thread a worker is gunicorn's sync worker (a
    connection per request, spread over the workers by the kernel); more threads give its
    gthread worker (keep-alive)."""
    HttpServer(settings, {
        "bind": f"{host}:{port}", "workers": workers + 1, "threads": threads,
        "worker_class": _worker_class(threads),
        "proc_name": "dsr-desk", "loglevel": log_level.lower(),
        # A request waiting out SQLite's 30 s busy timeout must not get its worker killed.
        "timeout": 90, "graceful_timeout": 30,
        "pre_fork": _assign_role, "post_fork": _take_role, "on_reload": _new_generation,
        "when_ready": _ready, "worker_exit": _stop_worker, "on_exit": _remove_handoff,
    }).run()
