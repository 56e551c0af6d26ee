"""Runs a connector's plan step by step, in memory, the way the engine would (contract tests)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from services.connectors.base import (
    Candidate,
    Connector,
    Continue,
    Done,
    Failed,
    Outcome,
    PlanEntry,
    RequestSpec,
    RetryLater,
    StepRun,
    Waiting,
)


class MemorySink:
    def __init__(self) -> None:
        self.files: dict[str, Any] = {}

    def write(self, name: str, document: Any) -> None:
        self.files[name] = document

    def write_stream(self, name: str, chunks: Iterable[bytes]) -> None:
        self.files[name] = b"".join(chunks)  # stored only once every chunk arrived

    def exists(self, name: str) -> bool:
        return name in self.files

    def count(self, prefix: str) -> int:
        return sum(1 for name in self.files if name.startswith(prefix))


def drive(connector: Connector, spec: RequestSpec, sink: MemorySink | None = None,
          *, long_wait: float = 600, max_runs: int = 20_000) -> list[tuple[str, Outcome]]:
    """Run every planned step until done; stop at a failure or a wait longer than `long_wait`
    seconds (a wait on people, not on the vendor). Returns (action, outcome) for every run."""
    sink = sink or MemorySink()
    results: dict[str, dict[str, Any]] = {}
    trace: list[tuple[str, Outcome]] = []
    for step in connector.plan(spec):
        checkpoint = None
        for _ in range(max_runs):
            outcome = connector.run_step(StepRun(step.action, step.params, checkpoint, spec,
                                                 results, sink))
            trace.append((step.action, outcome))
            if isinstance(outcome, Done):
                results[step.action] = outcome.summary
                break
            if isinstance(outcome, Failed):
                return trace
            if isinstance(outcome, Waiting) and outcome.seconds > long_wait:
                return trace
            if isinstance(outcome, (Continue, Waiting)):
                checkpoint = outcome.checkpoint
            elif not isinstance(outcome, RetryLater):
                raise AssertionError(f"unknown outcome {outcome!r}")
        else:
            raise AssertionError(f"{step.action} did not finish in {max_runs} runs")
    return trace


def review(connector: Connector, spec: RequestSpec, choose=None,  # noqa: ANN001
           sink: MemorySink | None = None) -> tuple[RequestSpec, list[Candidate]]:
    """An erasure's discovery, run to the end, and its plan: each candidate's proposed action,
    or what `choose(candidate)` returns. Returns the spec carrying the plan, and the candidates."""
    candidates: list[Candidate] = []
    for step in connector.discover(spec):
        checkpoint = None
        while True:
            outcome = connector.run_step(StepRun(step.action, step.params, checkpoint, spec, {},
                                                 sink or MemorySink()))
            if isinstance(outcome, Done):
                candidates += outcome.candidates
                break
            if isinstance(outcome, Failed):
                raise AssertionError(f"discovery failed: {outcome.reason}")
            checkpoint = getattr(outcome, "checkpoint", checkpoint)
    plan = tuple(PlanEntry(c.kind, c.record_id, choose(c) if choose else c.proposed)
                 for c in candidates)
    return replace(spec, plan=plan), candidates


def summaries(trace: list[tuple[str, Outcome]]) -> dict[str, dict[str, Any]]:
    return {action: o.summary for action, o in trace if isinstance(o, Done)}
