"""VendorHTTP against a real local server with injected faults."""

from __future__ import annotations

import contextlib
import json
import socket

import httpx
import pytest

from services.connectors.http import (
    AnswerLost,
    Limits,
    VendorBusy,
    VendorHTTP,
    retry_after_seconds,
)
from services.sandbox import server
from services.sandbox.traffic import FaultPlan, LoseAnswers, TrafficControl


def ok_app(environ, start_response):
    body = json.dumps({"path": environ["PATH_INFO"]}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def error_body(status, retry_after):
    return "application/json", json.dumps({"error": f"E{status}"}).encode()


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def serve():
    running = []

    def start(**traffic_options):
        traffic = TrafficControl(ok_app, error_body, **traffic_options)
        running.append(server.start(traffic))
        return traffic, running[-1].url

    yield start
    for r in running:
        r.stop()


def make(url_limits=None, **limits) -> tuple[VendorHTTP, Sleeps]:
    sleeps = Sleeps()
    http = VendorHTTP(httpx.Client(), vendor="Vendor", sleep=sleeps,
                      limits=Limits(backoff_base=0.01, backoff_max=0.05, **limits))
    return http, sleeps


def test_429_is_retried_after_its_retry_after(serve) -> None:
    traffic, url = serve(faults=FaultPlan(error_rate=1.0, rate_limit_share=1.0, retry_after=0))
    http, sleeps = make(attempts=3)
    with pytest.raises(VendorBusy) as raised:
        http.request("GET", f"{url}/api/things?email=jane@example.com")
    assert traffic.stats.injected[429] == 3
    assert sleeps == [0.0, 0.0]  # Retry-After: 0 honoured, not the backoff
    assert "429 on GET /api/things" in str(raised.value)
    assert "jane" not in str(raised.value)  # never the query string


def test_5xx_backoff_then_success(serve) -> None:
    traffic, url = serve(faults=FaultPlan(error_rate=0.6, rate_limit_share=0.0, seed=3))
    http, sleeps = make(attempts=10)
    for n in range(20):
        assert http.request("GET", f"{url}/n/{n}").json() == {"path": f"/n/{n}"}
    injected = sum(traffic.stats.injected.values())
    assert injected > 5
    assert len(sleeps) == injected
    assert all(0 < s <= 0.06 for s in sleeps)
    assert http.calls == 20 + injected


def test_long_retry_after_goes_back_to_the_engine(serve) -> None:
    _, url = serve(faults=FaultPlan(error_rate=1.0, rate_limit_share=1.0, retry_after=120))
    http, sleeps = make(max_inline_wait=60)
    with pytest.raises(VendorBusy) as raised:
        http.request("GET", f"{url}/x")
    assert raised.value.retry_after == 120
    assert sleeps == []


def test_timeouts_are_retried_and_reported_without_the_query(serve) -> None:
    _, url = serve(faults=FaultPlan(slow_rate=1.0, slow_seconds=0.3))
    http, sleeps = make(attempts=2, timeout=0.05)
    with pytest.raises(VendorBusy, match=r"timeout on GET /slow") as raised:
        http.request("GET", f"{url}/slow?phone=%2B15550001")
    assert "15550001" not in str(raised.value)
    assert len(sleeps) == 1


def test_rate_limit_blocks_the_call_over_the_limit(serve) -> None:
    _, url = serve()
    http, _ = make(requests_per_minute=3)

    class Blocked(Exception):
        pass

    def refuse_to_wait(seconds: float) -> None:
        raise Blocked

    http.sleep = refuse_to_wait
    for _ in range(3):
        http.request("GET", f"{url}/ok")
    with pytest.raises(Blocked):
        http.request("GET", f"{url}/ok")
    assert http.calls == 3


@pytest.mark.parametrize(("header", "seconds"), [("7", 7.0), ("0", 0.0), ("nonsense", None),
                                                 (None, None), ("-3", 0.0)])
def test_retry_after_parsing(header, seconds) -> None:
    assert retry_after_seconds(header) == seconds


class Counting:
    """An app that counts the calls it processed, by method."""

    def __init__(self) -> None:
        self.processed: list[str] = []

    def __call__(self, environ, start_response):
        self.processed.append(environ["REQUEST_METHOD"])
        return ok_app(environ, start_response)


@pytest.fixture
def counted():
    running = []

    def start(faults: FaultPlan) -> tuple[Counting, TrafficControl, str]:
        app = Counting()
        traffic = TrafficControl(app, error_body, faults=faults)
        running.append(server.start(traffic))
        return app, traffic, running[-1].url

    yield start
    for r in running:
        r.stop()


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_a_lost_answer_to_a_non_idempotent_call_is_not_sent_again(counted, method) -> None:
    app, traffic, url = counted(FaultPlan(lose=(LoseAnswers(method, "/things"),)))
    http, sleeps = make()
    with pytest.raises(AnswerLost, match=f"RemoteProtocolError on {method} /things") as raised:
        http.request(method, f"{url}/things?email=jane@example.com", json={"a": 1})
    assert "jane" not in str(raised.value)
    assert app.processed == [method] and http.calls == 1 and sleeps == []  # processed once
    assert traffic.stats.lost == {f"{method} /things": 1}


def test_a_5xx_to_a_post_is_ambiguous_a_429_is_a_refusal(counted) -> None:
    _, traffic, url = counted(FaultPlan(error_rate=1.0, rate_limit_share=0.0))
    http, _ = make(attempts=3)
    with pytest.raises(AnswerLost) as raised:
        http.request("POST", f"{url}/things", json={})
    assert raised.value.status in (500, 502, 503, 504) and http.calls == 1
    traffic.set_faults(FaultPlan(error_rate=1.0, rate_limit_share=1.0))
    with pytest.raises(VendorBusy) as refused:
        http.request("POST", f"{url}/things", json={})
    assert not isinstance(refused.value, AnswerLost) and http.calls == 1 + 3  # retried


def test_a_timeout_after_sending_a_post_is_ambiguous(counted) -> None:
    app, _, url = counted(FaultPlan(slow_rate=1.0, slow_seconds=0.3))
    http, _ = make(attempts=3, timeout=0.05)
    with pytest.raises(AnswerLost, match="timeout on POST /slow"):
        http.request("POST", f"{url}/slow", json={})
    assert http.calls == 1


def test_a_post_that_could_not_connect_is_retried() -> None:
    with socket.socket() as taken:  # a port nobody listens on once it is closed
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
    http, sleeps = make(attempts=3)
    with pytest.raises(VendorBusy) as raised:
        http.request("POST", f"http://127.0.0.1:{port}/things", json={})
    assert not isinstance(raised.value, AnswerLost)
    assert http.calls == 3 and len(sleeps) == 2


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_a_lost_answer_to_an_idempotent_call_is_sent_again(counted, method) -> None:
    app, _, url = counted(FaultPlan(lose=(LoseAnswers(method, "/things"),)))
    http, sleeps = make()
    assert http.request(method, f"{url}/things").json() == {"path": "/things"}
    assert app.processed == [method, method] and len(sleeps) == 1


def test_lost_answers_are_targeted_or_a_random_share(counted) -> None:
    target = LoseAnswers("POST", "/jobs", count=2, skip=1, exact=True)
    app, traffic, url = counted(FaultPlan(lose=(target,)))
    client = httpx.Client()
    answers = []
    for path in ("/jobs", "/jobs/1", "/jobs", "/jobs", "/jobs"):
        try:
            answers.append(client.post(f"{url}{path}").status_code)
        except httpx.RemoteProtocolError:
            answers.append("lost")
    assert answers == [200, 200, "lost", "lost", 200]  # the 2nd and 3rd POST /jobs
    assert len(app.processed) == 5  # every one was processed
    traffic.set_faults(FaultPlan(lose=(LoseAnswers("POST", "/jobs"),), lost_answer_status=504))
    assert client.post(f"{url}/jobs").status_code == 504 and len(app.processed) == 6
    traffic.set_faults(FaultPlan(lost_answer_rate=0.5, seed=1))
    for _ in range(40):
        with contextlib.suppress(httpx.RemoteProtocolError):
            client.get(f"{url}/any")
    assert 10 < traffic.stats.lost["GET /any"] < 30 and len(app.processed) == 46
    client.close()
