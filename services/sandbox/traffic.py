"""Rate limits and injected faults in front of a stand-in, as WSGI middleware.

A 429 or 5xx fault is decided before the request reaches the stand-in, so it never changes its
state: a run with faults must end in exactly the state of a run without them.

A lost answer is the other kind of fault: the call reaches the stand-in and is fully processed,
then the answer never reaches the caller. That is what a real network does when a proxy or a
load balancer drops the connection (an idle timeout, a restart) after the vendor acted: the
client sees the connection closed without a response (httpx: RemoteProtocolError "Server
disconnected without sending a response"), and cannot tell whether anything happened. A caller
that simply sends the call again doubles its effect unless the call is idempotent.
"""

from __future__ import annotations

import math
import random
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

# (status, retry_after or None) -> (content type, body); each vendor answers in its own format.
ErrorBody = Callable[[int, int | None], tuple[str, bytes]]
# (limit, remaining, seconds until the window frees a call) -> headers added to every answer that
# passed the limit; each vendor names its rate-limit headers its own way.
LimitHeaders = Callable[[int, int, int], list[tuple[str, str]]]


def x_rate_limit_headers(limit: int, remaining: int, reset: int) -> list[tuple[str, str]]:
    """The default: `X-Rate-Limit` and `X-Rate-Limit-Remaining`."""
    return [("X-Rate-Limit", str(limit)), ("X-Rate-Limit-Remaining", str(remaining))]

_REASONS = {429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout"}


@dataclass(frozen=True)
class LoseAnswers:
    """Lose the answers of the next `count` calls of `method` to a path starting with `prefix`
    (to `prefix` itself when `exact`), after letting `skip` such calls through."""

    method: str
    prefix: str
    count: int = 1
    skip: int = 0
    exact: bool = False

    def matches(self, method: str, path: str) -> bool:
        return method == self.method and (
            path == self.prefix if self.exact else path.startswith(self.prefix))


@dataclass
class FaultPlan:
    error_rate: float = 0.0  # share of calls answered with an injected 429 or 5xx
    rate_limit_share: float = 0.5  # of the injected faults, the share that are 429s
    retry_after: int = 0  # seconds, in the injected 429s' Retry-After
    slow_rate: float = 0.0  # share of calls answered only after slow_seconds
    slow_seconds: float = 0.0
    lost_answer_rate: float = 0.0  # share of calls processed whose answer is then lost
    lose: tuple[LoseAnswers, ...] = ()  # targeted lost answers (exactly these calls)
    # How an answer is lost: None drops the connection after processing (the canonical case);
    # a status (e.g. 504) is what a gateway answers when the vendor was too slow for it.
    lost_answer_status: int | None = None
    seed: int = 0


@dataclass
class TrafficStats:
    calls: Counter[str] = field(default_factory=Counter)  # "GET /api/v2/users" -> count
    injected: Counter[int] = field(default_factory=Counter)  # status -> count
    lost: Counter[str] = field(default_factory=Counter)  # "POST /api/v2/..." -> answers lost
    rate_limited: int = 0

    @property
    def total(self) -> int:
        return sum(self.calls.values())


class TrafficControl:
    """Counts calls, enforces a per-minute limit, injects faults; the rest reaches `app`."""

    def __init__(
        self,
        app: Any,
        error_body: ErrorBody,
        *,
        requests_per_minute: int | None = None,
        faults: FaultPlan | None = None,
        exempt: Callable[[str], bool] = lambda path: False,
        clock: Callable[[], float] = time.monotonic,
        limit_headers: LimitHeaders = x_rate_limit_headers,
    ) -> None:
        self.app = app
        self.error_body = error_body
        self.requests_per_minute = requests_per_minute
        self.faults = faults or FaultPlan()
        self.exempt = exempt
        self.clock = clock
        self.limit_headers = limit_headers
        self.stats = TrafficStats()
        self._random = random.Random(self.faults.seed)
        self._seen = [0] * len(self.faults.lose)  # matching calls so far, per LoseAnswers
        self._window: deque[float] = deque()
        self._lock = threading.Lock()

    def set_faults(self, faults: FaultPlan) -> None:
        with self._lock:
            self.faults = faults
            self._random = random.Random(faults.seed)
            self._seen = [0] * len(faults.lose)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "")
        call, exempt = f"{method} {path}", self.exempt(path)
        with self._lock:
            self.stats.calls[call] += 1
            decision = None if exempt else self._decide()
            lose = decision is None and not exempt and self._lose_answer(method, path)
            if lose:
                self.stats.lost[call] += 1
            slow = bool(self.faults.slow_rate) and self._random.random() < self.faults.slow_rate
            remaining = max(0, (self.requests_per_minute or 0) - len(self._window))
            reset = (max(1, math.ceil(60 - (self.clock() - self._window[0])))
                     if self._window else 60)
        if decision is not None:
            status, retry_after = decision
            return self._error(start_response, status, retry_after)
        if lose:
            return self._process_then_lose(environ, start_response)
        if slow:
            time.sleep(self.faults.slow_seconds)
        if not self.requests_per_minute:
            return self.app(environ, start_response)
        limit_headers = self.limit_headers(self.requests_per_minute, remaining, reset)

        def start_with_limits(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            return start_response(status, headers + limit_headers, *exc)

        return self.app(environ, start_with_limits)

    def _decide(self) -> tuple[int, int | None] | None:
        """Under the lock: a 429 for the real limit, an injected fault, or None to pass."""
        if self.requests_per_minute:
            now = self.clock()
            while self._window and now - self._window[0] >= 60:
                self._window.popleft()
            if len(self._window) >= self.requests_per_minute:
                self.stats.rate_limited += 1
                return 429, max(1, int(60 - (now - self._window[0])) + 1)
            self._window.append(now)
        plan = self.faults
        if plan.error_rate and self._random.random() < plan.error_rate:
            status = 429 if self._random.random() < plan.rate_limit_share else self._random.choice(
                [500, 502, 503, 504]
            )
            self.stats.injected[status] += 1
            return status, plan.retry_after if status == 429 else None
        return None

    def _lose_answer(self, method: str, path: str) -> bool:
        """Under the lock: whether this call's answer is to be lost (targeted, then random)."""
        plan = self.faults
        for n, target in enumerate(plan.lose):
            if target.matches(method, path):
                self._seen[n] += 1
                if target.skip < self._seen[n] <= target.skip + target.count:
                    return True
        return bool(plan.lost_answer_rate) and self._random.random() < plan.lost_answer_rate

    def _process_then_lose(self, environ: dict[str, Any],
                           start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Let the stand-in process the call to the end (its body read and discarded), then
        lose the answer: the connection is closed without a response, as a proxy that drops it
        does; or, with `lost_answer_status`, the gateway's error replaces the answer."""
        answer = self.app(environ, lambda status, headers, *exc: lambda data: None)
        try:
            for _ in answer:
                pass
        finally:
            getattr(answer, "close", lambda: None)()
        connection = environ.get("werkzeug.socket")
        if self.faults.lost_answer_status is not None or connection is None:
            return self._error(start_response, self.faults.lost_answer_status or 504, None)
        connection.shutdown(socket.SHUT_RDWR)
        # The server takes a ConnectionError for a client that went away: no answer, no log.
        raise ConnectionAbortedError("answer lost (injected fault)")

    def _error(self, start_response: Callable[..., Any], status: int,
               retry_after: int | None) -> list[bytes]:
        content_type, body = self.error_body(status, retry_after)
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        if retry_after is not None:
            headers.append(("Retry-After", str(retry_after)))
        start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
        return [body]
