"""The composition root: settings in, a wired Slack app (and its background worker) out."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from sqlalchemy import Engine

from bot.deliveries import Deliveries
from bot.directory import SlackDirectory, SlackPeople
from bot.doctor import Finding, authenticate
from bot.identity import WorkerIdentity, claim
from bot.inbox import Inbox, open_inbox, run_lazy_work_from
from bot.jobs import Jobs
from bot.logs import bolt_logger
from bot.notifier import SlackNotifier
from bot.scheduler import Scheduler
from bot.settings import Settings
from bot.wiring import ConnectorRegistry, export_store
from handlers import register_handlers
from handlers.deps import Deps
from handlers.edge import answer_error
from services.clock import Clock, SystemClock
from services.connectors.budget import SharedBudget
from services.data_map import DataMap
from services.engine import DEFAULT_CONFIG, EngineConfig, Worker
from services.errors import ConfigurationError
from services.exports import SealedSink
from services.lookup import IdentifierLookup, backfill_lookups
from services.notify import LoggingNotifier
from services.policy import Policy
from services.requests import RequestService
from services.vendors import VENDORS
from storage import migrate
from storage.db import make_engine, make_session_factory
from storage.queries import list_jurisdictions

log = logging.getLogger("dsr_desk")
# The work after acks (lazy listeners, run from the inbox) runs at most this many at once, fewer
# than a process's database connections (SQLAlchemy's pool: 5, plus 10 overflow): a burst of
# clicks waits in the inbox, not on the pool's 30 s checkout timeout.
LISTENER_THREADS = 8
SETUP_HINT = "See the README, section 'Creating the Slack app'."


@dataclass
class Core:
    """Everything but the Slack listeners: what the scheduled jobs need."""

    settings: Settings
    service: RequestService
    registry: ConnectorRegistry
    deps: Deps
    jobs: Jobs
    client: WebClient
    identity: WorkerIdentity | None = None  # the worker's stable id, held while it runs


@dataclass
class Runtime:
    app: App
    core: Core
    scheduler: Scheduler
    inbox: Inbox

    @property
    def service(self) -> RequestService:
        return self.core.service

    @property
    def deps(self) -> Deps:
        return self.core.deps

    @property
    def registry(self) -> ConnectorRegistry:
        return self.core.registry

    def close(self) -> None:
        self.scheduler.stop()
        self.core.registry.sandboxes.stop()
        if self.core.identity is not None:
            self.core.identity.release()


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


def open_database(settings: Settings) -> Engine:
    """The database, refused unless its schema is current."""
    engine = make_engine(settings.effective_database_url)
    if not migrate.is_current(engine):
        engine.dispose()
        raise ConfigurationError("The database is not up to date: run `dsr-desk db upgrade`.")
    return engine


def preflight(settings: Settings) -> None:
    """What would stop the app from starting, checked once before it starts (and before HTTP
    mode forks its workers): one clear message instead of a traceback from each worker."""
    settings.export_keys  # noqa: B018 - a ConfigurationError if it is missing
    open_database(settings).dispose()
    client = WebClient(token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url)
    auth = authenticate(client, settings)
    if isinstance(auth, Finding):
        raise ConfigurationError(f"{auth.what}: {auth.fix}. `dsr-desk doctor` checks the whole set-up.")


def build_core(settings: Settings, *, clock: Clock | None = None, worker_id: str | None = None,
               lease_seconds: float = DEFAULT_CONFIG.lease_seconds,
               **registry_overrides: object) -> Core:
    keys = settings.export_keys  # a missing key stops start-up before anything runs
    engine = open_database(settings)
    # Unless told, the worker takes a stable id (bot.identity): restarted, it resumes at once.
    identity = claim(settings.effective_database_url, "worker") if worker_id is None else None
    worker_id = identity.id if identity else worker_id
    clock = clock or SystemClock()
    sessions = make_session_factory(engine)
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    client = WebClient(token=token, base_url=settings.slack_api_url)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=3))
    budget = SharedBudget(sessions)  # on the wall clock: the vendors' minutes are real ones
    registry = ConnectorRegistry(settings, budget=budget, **registry_overrides)
    roles = {role: settings.role_ids(role) for role in ("requesters", "approvers", "managers")}
    policy = Policy(**roles, erasure_approvals=settings.erasure_approvals,
                    directory=SlackDirectory(client, set().union(*roles.values())))
    lookup = IdentifierLookup(settings.identifier_lookup_key)
    backfill_lookups(sessions, lookup)
    service = RequestService(sessions, registry, policy, clock, settings.zone, lookup=lookup)

    def jurisdictions() -> list:
        with sessions() as session:
            return list_jurisdictions(session=session)

    live = {name for name in VENDORS if settings.vendor(name).configured}
    speed = getattr(clock, "speed", 1.0)  # a rehearsal clock stretches leases (see bot.jobs)
    worker = Worker(sessions, registry,
                    lambda request, system: SealedSink(
                        export_store(settings, sessions), request.reference, keys),
                    clock, worker_id=worker_id, config=EngineConfig(lease_seconds=lease_seconds * speed))
    people = SlackPeople(client) if token else None  # names in compliance records (users:read)
    deliveries = Deliveries(client, sessions, settings, clock, policy, owner=worker.id, people=people)
    deps = Deps(service=service, approvals_channel=settings.approvals_channel,
                systems=sorted(VENDORS), live_systems=live, jurisdictions=jurisdictions,
                wake_worker=lambda: None,  # the scheduler's, once there is one
                deliverables=deliveries, data_map=DataMap(sessions, policy, clock))
    notifier = SlackNotifier(client, deps, deliveries) if token else LoggingNotifier()
    jobs = Jobs(settings=settings, sessions=sessions, worker=worker, notifier=notifier,
                client=client if token else None, clock=clock, people=people)
    return Core(settings, service, registry, deps, jobs, client, identity)


def create_app(settings: Settings, *, clock: Clock | None = None,
               intervals: dict[str, float] | None = None, **registry_overrides: object) -> Runtime:
    """The app. The work after its acks is written to the inbox (bot.inbox), which its scheduler
    runs once started: a process that only answers Slack never starts it."""
    core = build_core(settings, clock=clock, **registry_overrides)
    executor = ThreadPoolExecutor(max_workers=LISTENER_THREADS, thread_name_prefix="dsr-listener")
    app = App(
        client=core.client,
        logger=bolt_logger(),
        # The ack is sent when a listener's ack function returns (bolt no longer polls for it
        # every 10 ms), after the work that follows it (lazy listeners) is in the inbox.
        process_before_response=True,
        listener_executor=executor,
        signing_secret=settings.slack_signing_secret.get_secret_value()
        if settings.slack_signing_secret else None,
        # Checked once, before anything is parsed, by the one HTTP entry (bot.http.wsgi_app);
        # Socket Mode's requests and the inbox's carry no signature to check.
        request_verification_enabled=False,
    )
    database = core.service.sessions
    inbox = Inbox(open_inbox(database), app, executor, owner=core.jobs.owner,
                  capacity=LISTENER_THREADS, database=database)
    run_lazy_work_from(inbox)
    scheduler = Scheduler(core.jobs, intervals=intervals, inbox=inbox,
                          speed=getattr(core.jobs.clock, "speed", 1.0))
    core.deps.wake_worker = scheduler.wake
    app.error(answer_error)  # what a listener's ack or a middleware let escape (handlers.edge)
    register_handlers(app, core.deps)
    return Runtime(app, core, scheduler, inbox)
