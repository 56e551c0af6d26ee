"""HTTP to a vendor: per-vendor rate and concurrency limits, bounded retries, safe errors.

429s are honoured with their Retry-After; 5xx answers, timeouts and dropped connections are
retried with exponential backoff and jitter. A wait longer than `max_inline_wait` is not slept
through: it raises VendorBusy, and the engine schedules the step for later instead of holding a
worker.

Only calls that are safe to repeat are repeated blindly. A POST or PATCH whose answer is lost
after it was sent (a timeout while waiting, the connection dropped, a 5xx from a gateway that
may have passed it on) may have been processed: sending it again could create a second
request at the vendor. It raises AnswerLost instead, and the connector looks its effect up
before it tries again. What cannot have reached the vendor (a refused connection, a 429, which
is a refusal) is retried as for any call. GET, PUT and DELETE are idempotent by HTTP's
definition; a connector whose vendor breaks that rule handles it where it calls.

Errors name the method and path only: query strings can hold a subject's email, and headers
hold credentials, so neither reaches a message or a log line.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import tenacity
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from services.connectors.budget import SharedBudget

log = logging.getLogger(__name__)

RETRIABLE_STATUS = {429, 500, 502, 503, 504}
# Safe to send again after an answer that never came (RFC 9110, 9.2.2: idempotent methods).
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# Failures that happen before any byte of the request left: nothing can have been processed.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class VendorError(Exception):
    """A vendor call that did not succeed; the message is safe to show and to log."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class VendorBusy(VendorError):
    """Rate limited or failing for longer than we wait inline: try the step again later."""

    def __init__(self, message: str, *, retry_after: float, status: int | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class AnswerLost(VendorBusy):
    """A call that is not safe to repeat (POST, PATCH) was sent, but its answer was lost: it
    may or may not have been processed. Look its effect up at the vendor before sending it
    again; the engine, if it gets this, tries the step again later."""


class _Transient(Exception):
    def __init__(self, description: str, retry_after: float | None) -> None:
        super().__init__(description)
        self.description = description
        self.retry_after = retry_after


@dataclass(frozen=True)
class Limits:
    requests_per_minute: int | None = None
    # Where the per-minute limit is counted: by every process sharing the database (see
    # services.connectors.budget), or, without one, by this process alone.
    budget: SharedBudget | None = field(default=None, compare=False)
    concurrency: int = 4
    attempts: int = 5  # tries of one call before giving up to the engine
    backoff_base: float = 0.5  # seconds; doubled each try, with jitter
    backoff_max: float = 30.0
    max_inline_wait: float = 60.0  # a longer Retry-After goes back to the engine
    timeout: float = 30.0


DEFAULT_LIMITS = Limits()
# Each HTTP exchange leaves httpx/httpcore objects in reference cycles (a closed connection,
# its stream and request), which only a full collection frees; between full collections they
# pile up with the number of calls, so a long export's peak memory grew with its size (1.5x
# for 10x the tickets). Collecting every few hundred calls keeps it flat, for a few ms each.
COLLECT_EVERY = 250


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def describe(request: httpx.Request) -> str:
    return f"{request.method} {request.url.path}"


class VendorHTTP:
    """Sends a vendor's requests through its limits; one instance per vendor and process."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        vendor: str,
        base_url: str = "",
        auth: httpx.Auth | None = None,
        limits: Limits = DEFAULT_LIMITS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.vendor = vendor
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.limits = limits
        self.sleep = sleep
        self._slots = threading.BoundedSemaphore(limits.concurrency)
        self._window = MovingWindowRateLimiter(MemoryStorage())
        self._rate = (
            RateLimitItemPerMinute(limits.requests_per_minute) if limits.requests_per_minute else None
        )
        self.calls = 0  # HTTP requests actually sent (benchmarks count them)

    def call(self, method: str, path: str, *, ok: Sequence[int] = (200, 201, 202, 204),
             **kwargs: Any) -> httpx.Response:
        """A call to `path` (under base_url, or an absolute URL) that must answer one of `ok`."""
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        response = self.request(method, url, auth=self.auth, **kwargs)
        if response.status_code not in ok:
            raise error_from(response, f"{self.vendor} refused {method}")
        return response

    @contextmanager
    def stream(self, method: str, url: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A call whose body the caller reads inside the `with` block (`iter_bytes()`), never
        held whole. Transient faults before the body starts are retried as in `request`; any
        other answer is yielded for the caller to check. Sends this instance's `auth` and no
        other credentials: an instance without auth strips any Authorization header, so that a
        pre-signed URL on a foreign host never receives one."""
        response = self.request(method, url, auth=self.auth, _stream=True, **kwargs)
        try:
            yield response
        finally:
            response.close()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send, retrying transient faults; returns any non-transient response (2xx/3xx/4xx)."""
        kwargs.setdefault("timeout", self.limits.timeout)
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.limits.attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(_Transient),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._send_once(method, url, **kwargs)
        except _Transient as exc:
            raise VendorBusy(
                f"{self.vendor} kept failing ({exc.description}) after "
                f"{self.limits.attempts} tries",
                retry_after=exc.retry_after or self.limits.backoff_max,
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _send_once(self, method: str, url: str, *, _stream: bool = False,
                   **kwargs: Any) -> httpx.Response:
        self._await_rate_limit()
        with self._slots:
            self.calls += 1
            if self.calls % COLLECT_EVERY == 0:
                gc.collect()
            try:
                if _stream:
                    auth = kwargs.pop("auth", None)
                    built = self.client.build_request(method, url, **kwargs)
                    if auth is None:
                        built.headers.pop("Authorization", None)
                    response = self.client.send(built, auth=auth, stream=True)
                else:
                    response = self.client.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                kind = "timeout" if isinstance(exc, httpx.TimeoutException) else type(exc).__name__
                what = f"{kind} on {method} {httpx.URL(url).path}"
                if not isinstance(exc, NOT_SENT):
                    self._unless_repeatable(method, what, None)
                raise _Transient(what, None) from None
        if response.status_code not in RETRIABLE_STATUS:
            return response
        response.close()  # a streamed answer that will not be read
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        what = f"{response.status_code} on {describe(response.request)}"
        if response.status_code != 429:  # a gateway's 5xx may come after the vendor acted
            self._unless_repeatable(method, what, wait, response.status_code)
        log.info("%s answered %s; retrying", self.vendor, what)
        if wait is not None and wait > self.limits.max_inline_wait:
            raise VendorBusy(f"{self.vendor} asked us to wait {wait:.0f} s ({what})",
                             retry_after=wait, status=response.status_code)
        raise _Transient(what, wait)

    def _unless_repeatable(self, method: str, what: str, wait: float | None,
                           status: int | None = None) -> None:
        """Raise AnswerLost for a call that must not be sent again blindly."""
        if method.upper() in IDEMPOTENT:
            return
        log.warning("%s: the answer to a %s was lost (%s); not sending it again", self.vendor,
                    method.upper(), what)
        raise AnswerLost(f"{self.vendor} may have processed {what}, but its answer was lost",
                         retry_after=wait or self.limits.backoff_max, status=status)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return exc.retry_after
        backoff = tenacity.wait_exponential_jitter(
            multiplier=self.limits.backoff_base, max=self.limits.backoff_max,
            jitter=self.limits.backoff_base,
        )
        return backoff(state)

    def _await_rate_limit(self) -> None:
        if self._rate is None:
            return
        if self.limits.budget is not None:
            self.limits.budget.acquire(f"{self.vendor} {self.base_url}"[:200],
                                       self.limits.requests_per_minute or 0)
            return
        while not self._window.hit(self._rate, self.vendor):
            reset = self._window.get_window_stats(self._rate, self.vendor).reset_time
            self.sleep(max(0.01, min(reset - time.time(), 1.0)))


def error_from(response: httpx.Response, what: str) -> VendorError:
    """A VendorError for an unexpected answer, with the vendor's error code but no payload."""
    code = None
    try:
        body = response.json()
        if isinstance(body, dict):
            code = body.get("error") or body.get("code")
            code = code if isinstance(code, str) else None
    except ValueError:
        pass
    suffix = f" ({code})" if code else ""
    return VendorError(
        f"{what}: {describe(response.request)} answered {response.status_code}{suffix}",
        status=response.status_code,
        code=code,
    )
