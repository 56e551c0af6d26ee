"""Logging that cannot leak a subject's data: bolt quotes whole request payloads in some
warnings (an unhandled request, a missing ack), and payloads hold what people typed."""

from __future__ import annotations

import logging
import re

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


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in URL_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
