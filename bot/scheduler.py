"""APScheduler in every process of the bot: each job of `bot.jobs` on its interval; and, in a
process with the Slack app, the work after its acks (bot.inbox).

The jobs claim their work in the database, so every replica runs the same schedule safely.
With a rehearsal clock (`ScaledClock`) the intervals shrink by its speed, so a simulated day
keeps its rhythm.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

from bot.inbox import Inbox
from bot.jobs import SPECS, Jobs

log = logging.getLogger("dsr_desk.scheduler")
MIN_INTERVAL = 0.05  # seconds


class Scheduler:
    def __init__(self, jobs: Jobs, *, intervals: dict[str, float] | None = None,
                 speed: float = 1.0, inbox: Inbox | None = None) -> None:
        self.jobs = jobs
        self.inbox = inbox
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            # a job still running when it is due again is not started twice; missed runs
            # collapse into one
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        seconds = {name: spec.every_seconds for name, spec in SPECS.items()} | (intervals or {})
        for name, every in seconds.items():
            self._scheduler.add_job(self._run, "interval", args=[name], id=name, name=name,
                                    seconds=max(every / speed, MIN_INTERVAL),
                                    next_run_time=datetime.now(UTC))

    @property
    def job_names(self) -> list[str]:
        return [job.id for job in self._scheduler.get_jobs()]

    def start(self) -> None:
        recovered = self.jobs.worker.recover()
        if recovered:
            log.warning("resumed %d step(s) left running by a crash of this worker", recovered)
        self._scheduler.start()
        if self.inbox is not None:
            self.inbox.serve()

    def wake(self) -> None:
        """Run the execute job now (after an approval or a retry) instead of at its next tick."""
        self._scheduler.modify_job("execute", next_run_time=datetime.now(UTC))

    def stop(self) -> None:
        if self.inbox is not None:
            self.inbox.stop()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)

    def _run(self, name: str) -> None:
        try:
            outcome = self.jobs.run(name)
        except Exception as exc:  # noqa: BLE001 - the next run retries; logged without data
            log.error("job %s failed: %s", name, type(exc).__name__)
            return
        log.debug("job %s: %s", name, outcome)
