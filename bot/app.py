"""The composition root: settings in, a wired Slack app (and its background worker) out."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from bot.directory import SlackDirectory
from bot.logs import bolt_logger
from bot.notifier import SlackNotifier
from bot.settings import Settings
from bot.wiring import ConnectorRegistry
from handlers import register_handlers
from handlers.deps import Deps
from services.clock import Clock, SystemClock
from services.connectors import CONNECTORS
from services.engine import Worker
from services.errors import ConfigurationError
from services.exports import DirectorySink
from services.policy import Policy
from services.requests import RequestService
from storage import migrate
from storage.db import make_engine, make_session_factory
from storage.queries import list_jurisdictions

log = logging.getLogger("dsr_desk")
SETUP_HINT = "See the README, section 'Creating the Slack app'."


class BackgroundWorker:
    """Runs due steps in this process: polls every `interval` seconds, and at once when woken
    (after an approval or a retry). Work is claimed in the database, so replicas can all run one."""

    def __init__(self, worker: Worker, interval: float = 2.0) -> None:
        self.worker = worker
        self.interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dsr-worker", daemon=True)

    def start(self) -> None:
        self.worker.recover()
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                ran = self.worker.run_once()
            except Exception as exc:  # noqa: BLE001 - the loop must survive; logged without data
                log.error("worker round failed: %s", type(exc).__name__)
                ran = 0
            if not ran:
                self._wake.wait(self.interval)
                self._wake.clear()


@dataclass
class Runtime:
    app: App
    service: RequestService
    worker: BackgroundWorker
    registry: ConnectorRegistry
    deps: Deps

    def close(self) -> None:
        self.worker.stop()
        self.registry.sandboxes.stop()


def check_slack_settings(settings: Settings, *, http: bool) -> None:
    missing = [name for name, value in (
        ("SLACK_BOT_TOKEN", settings.slack_bot_token),
        ("SLACK_SIGNING_SECRET" if http else "SLACK_APP_TOKEN",
         settings.slack_signing_secret if http else settings.slack_app_token),
        ("DSR_APPROVALS_CHANNEL", settings.approvals_channel),
        ("DSR_APPROVERS", settings.approvers),
    ) if not value]
    if missing:
        raise ConfigurationError(f"Missing settings: {', '.join(missing)}. {SETUP_HINT}")


def create_app(settings: Settings, *, clock: Clock | None = None,
               worker_interval: float = 2.0, **registry_overrides: object) -> Runtime:
    clock = clock or SystemClock()
    engine = make_engine(settings.effective_database_url)
    if not migrate.is_current(engine):
        raise ConfigurationError("The database is not up to date: run `dsr-desk db upgrade`.")
    sessions = make_session_factory(engine)
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    client = WebClient(token=token, base_url=settings.slack_api_url)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=3))
    app = App(
        client=client,
        logger=bolt_logger(),
        # bolt answers Slack once a listener acks, then finishes the listener on this pool;
        # its default of 5 threads would make acks queue behind slow work in a burst of clicks.
        listener_executor=ThreadPoolExecutor(max_workers=64, thread_name_prefix="dsr-listener"),
        signing_secret=settings.slack_signing_secret.get_secret_value()
        if settings.slack_signing_secret else None,
    )
    registry = ConnectorRegistry(settings, **registry_overrides)
    roles = {role: settings.role_ids(role) for role in ("requesters", "approvers", "managers")}
    policy = Policy(**roles, erasure_approvals=settings.erasure_approvals,
                    directory=SlackDirectory(client, set().union(*roles.values())))
    service = RequestService(sessions, registry, policy, clock, settings.zone)

    def jurisdictions() -> list:
        with sessions() as session:
            return list_jurisdictions(session=session)

    live = {name for name, configured in (
        ("genesys", bool(settings.genesys_client_id and settings.genesys_client_secret)),
        ("zendesk", bool(settings.zendesk_base_url and settings.zendesk_api_token))) if configured}
    holder: dict[str, BackgroundWorker] = {}
    deps = Deps(service=service, approvals_channel=settings.approvals_channel,
                systems=sorted(CONNECTORS), live_systems=live, jurisdictions=jurisdictions,
                wake_worker=lambda: holder["worker"].wake())
    exports = settings.data_dir / "exports"
    worker = Worker(sessions, registry,
                    lambda request, system: DirectorySink(exports / request.reference),
                    SlackNotifier(client, deps), clock)
    holder["worker"] = BackgroundWorker(worker, worker_interval)
    register_handlers(app, deps)
    return Runtime(app, service, holder["worker"], registry, deps)
