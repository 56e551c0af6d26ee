"""HTTP mode: Slack's requests at POST /slack/events (signature verified by bolt), GET /healthz.

`wsgi_app(runtime)` is the WSGI app; `serve` runs it under gunicorn's pre-fork server for
`dsr-desk run --http`: N worker processes answer Slack, one more runs the scheduled jobs
(execution, status updates, reminders, digest, records, retention). Processes, not threads,
keep acknowledgements fast: the threads of one process take turns on one interpreter lock, so an
ack would wait behind the execution of approved requests; between processes the kernel shares
the cores, and the jobs process yields to the acks (bench/slack_ack.py measures it). Each
`dsr-desk run --http` is a replica as ARCHITECTURE.md describes: its work is claimed in the
database, never divided by trusting that one process runs.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from flask import Flask, jsonify, request
from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import ThreadWorker
from gunicorn.workers.sync import SyncWorker
from slack_bolt.adapter.flask import SlackRequestHandler
from sqlalchemy import text

from bot.app import Runtime, build_core, create_app
from bot.scheduler import Scheduler
from bot.settings import Settings

HTTP, JOBS = "http", "jobs"
# The jobs process runs at a lower priority: under load the kernel gives the cores to the acks
# (Slack's 3 s) before the jobs, whose deadlines are seconds to days.
JOBS_NICENESS = 10


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


class WakePipe:
    """From the HTTP workers to the jobs process: an approval or a retry runs the execute job at
    once instead of at its next tick. Made before the fork, so every process holds both ends."""

    def __init__(self) -> None:
        self.read_end, self.write_end = os.pipe()
        os.set_blocking(self.write_end, False)

    def send(self) -> None:
        with contextlib.suppress(BlockingIOError):  # the pipe is full: wakes are pending already
            os.write(self.write_end, b"!")

    def listen(self, wake: Callable[[], None]) -> None:
        def relay() -> None:
            while os.read(self.read_end, 512):
                wake()

        threading.Thread(target=relay, name="dsr-wake", daemon=True).start()


def _worker_class(threads: int) -> type:
    """gunicorn's sync worker (one thread) or gthread worker, either of which can instead run
    the scheduled jobs: the arbiter gives one worker that role before it forks (`_assign_role`),
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
    """gunicorn with the app (or the scheduler) built in each worker after the fork: threads and
    connections do not survive a fork."""

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        # Simulation mode's vendor stand-ins: one of each for all the processes, served by the
        # jobs process on sockets bound here, before the fork, so that a search in one worker
        # and the execution in another see the same stand-in (unless settings name running ones).
        self.standins = {system: socket.create_server(("127.0.0.1", 0)) for system, url in (
            ("genesys", settings.sandbox_genesys_url),
            ("zendesk", settings.sandbox_zendesk_url)) if not url}
        self.settings = settings.model_copy(update={
            f"sandbox_{system}_url": f"http://127.0.0.1:{listener.getsockname()[1]}"
            for system, listener in self.standins.items()})
        self.options = options
        self.wake = WakePipe()
        self.role = HTTP
        self.generation_from = 0  # the oldest worker age of the current generation (see reload)
        self.stop_loaded: Callable[[], None] = lambda: None  # stops what `load` started
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask | None:
        if self.role == JOBS:
            os.nice(JOBS_NICENESS)
            core = build_core(self.settings)
            for system, listener in self.standins.items():
                core.registry.sandboxes.serve(system, listener)
            scheduler = Scheduler(core.jobs)
            scheduler.start()
            self.wake.listen(scheduler.wake)

            def stop() -> None:
                scheduler.stop()
                core.registry.sandboxes.stop()

            self.stop_loaded = stop
            return None
        # A thread asking for the interpreter lock waits up to this long for the running one to
        # hand it over. Python's 5 ms is paid at each step of a request (read, dispatch, write)
        # while lazy listeners compute; 1 ms keeps acks quick behind them (bench/slack_ack.py).
        sys.setswitchinterval(0.001)
        runtime = create_app(self.settings)
        runtime.deps.wake_worker = self.wake.send
        self.stop_loaded = runtime.close
        return wsgi_app(runtime)


def _assign_role(arbiter: Any, worker: Any) -> None:
    # In the arbiter, before the fork: the jobs role goes to a new worker whenever no worker of
    # the current generation has it (at start, after its death, after a reload).
    current = (w for w in arbiter.WORKERS.values() if w.age >= arbiter.app.generation_from)
    worker.role = HTTP if any(w.role == JOBS for w in current) else JOBS


def _take_role(_arbiter: Any, worker: Any) -> None:
    worker.app.role = worker.role  # in the new worker, before it loads


def _new_generation(arbiter: Any) -> None:
    # A reload (SIGHUP) starts a new generation of workers, then stops the old one.
    arbiter.app.generation_from = arbiter.worker_age + 1


def _stop_worker(_arbiter: Any, worker: Any) -> None:
    # Lazy listeners still running finish first: the interpreter joins their pool as it exits
    # (within gunicorn's graceful timeout).
    worker.app.stop_loaded()


def _ready(arbiter: Any) -> None:
    for listener in arbiter.LISTENERS:
        print(f"DSR Desk listening on {listener}/slack/events ({arbiter.num_workers - 1} worker "
              "processes, and one for the scheduled jobs)", flush=True)


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
        "when_ready": _ready, "worker_exit": _stop_worker,
    }).run()
