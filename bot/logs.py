"""Logging that cannot leak a subject's data: bolt quotes whole request payloads in some
warnings (an unhandled request, a missing ack), and payloads hold what people typed."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

_PAYLOAD = re.compile(r"\{.*\}", re.DOTALL)


class RedactPayloads(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "{" in message:
            record.msg, record.args = _PAYLOAD.sub("{…payload withheld…}", message), ()
        return True


def bolt_logger() -> logging.Logger:
    logger = logging.getLogger("dsr_desk.slack")
    if not any(isinstance(f, RedactPayloads) for f in logger.filters):
        logger.addFilter(RedactPayloads())
    return logger


# Libraries that log every request's full URL at INFO: vendor search URLs carry emails and
# phone numbers in their query strings, so they only speak up for warnings.
URL_LOGGERS = ("httpx", "httpcore", "urllib3", "slack_sdk", "alembic.runtime.migration")
# Alembic names each of its plugins at INFO when first imported: in the CLI, after logging is
# configured (bot.cli imports what a command needs when the command runs).
CHATTY_LOGGERS = ("alembic.runtime.plugins",)


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in URL_LOGGERS + CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))


# Warnings that are noise in the demo: its jobs run every 0.2 s, so apscheduler warns each time
# one is still busy ("skipped: maximum number of running instances reached").
DEMO_NOISE = ("apscheduler",)


@contextmanager
def transcript_logging(environ: Mapping[str, str] = os.environ) -> Iterator[None]:
    """While a transcript prints (the offline demo), only warnings that matter are logged: no
    INFO line of ours or of a library (apscheduler, fontTools, ...) interleaves with it. Setting
    DSR_LOG_LEVEL in the environment asks for the logs: then nothing changes."""
    if "DSR_LOG_LEVEL" in environ:
        yield
        return
    loggers = [logging.getLogger(), *map(logging.getLogger, DEMO_NOISE)]
    levels = [logger.level for logger in loggers]
    loggers[0].setLevel(max(logging.WARNING, levels[0]))
    for logger in loggers[1:]:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:  # the levels are the process's: a test playing the demo leaves them as they were
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
