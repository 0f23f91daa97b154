"""The gateway's Prometheus metrics, in one registry per process (no module globals).

Labels are bounded on purpose: route templates (never raw paths), model and provider names
from the configuration, outcomes and error classes from fixed sets. No prompts, no key ids.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from imagegate.models import Generation, Outcome

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BREAKER_STATES = ("closed", "half_open", "open")
_CACHE = {
    Outcome.CACHE_HIT: "hit",
    Outcome.SEMANTIC_HIT: "hit",
    Outcome.COALESCED: "coalesced",
    Outcome.GENERATED: "miss",
}


@dataclass(frozen=True, slots=True)
class LaneGauge:
    model: str
    running: int
    waiting: int


class _LiveState(Collector):
    """Gauges read when scraped: queue depth per model and breaker state per target."""

    def __init__(
        self, lanes: Callable[[], Iterable[LaneGauge]], breakers: Callable[[], dict[str, str]]
    ) -> None:
        self._lanes = lanes
        self._breakers = breakers

    def collect(self) -> Iterator[GaugeMetricFamily]:
        waiting = GaugeMetricFamily(
            "imagegate_queue_waiting", "Requests waiting in a model's line", labels=["model"]
        )
        running = GaugeMetricFamily(
            "imagegate_queue_running", "Requests of a model calling a provider", labels=["model"]
        )
        for lane in self._lanes():
            waiting.add_metric([lane.model], lane.waiting)
            running.add_metric([lane.model], lane.running)
        breaker = GaugeMetricFamily(
            "imagegate_breaker_state",
            "1 for the state each route target's circuit breaker is in",
            labels=["target", "state"],
        )
        for target, state in self._breakers().items():
            for candidate in _BREAKER_STATES:
                breaker.add_metric([target, candidate], 1.0 if candidate == state else 0.0)
        yield from (waiting, running, breaker)


class Metrics:
    def __init__(self) -> None:
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        """Each metric's child per label values: ``labels()`` checks and locks on every call,
        several times per request; the label sets are bounded (see the module's docstring)."""
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_seconds = Histogram(
            "imagegate_http_request_duration_seconds",
            "HTTP request latency by route template, method and status",
            ["route", "method", "status"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.generation_seconds = Histogram(
            "imagegate_generation_duration_seconds",
            "Generation latency by public model, provider and outcome",
            ["model", "provider", "outcome"],
            registry=r,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )
        self.upstream_attempts = Counter(
            "imagegate_upstream_attempts",
            "Upstream calls by route target and outcome (ok or the error code)",
            ["target", "outcome"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "imagegate_upstream_errors",
            "Failed upstream calls by route target and error class",
            ["target", "error"],
            registry=r,
        )
        self.cache = Counter(
            "imagegate_cache_requests",
            "Cache outcomes: hit, miss, coalesced",
            ["result"],
            registry=r,
        )
        self.queue_wait = Histogram(
            "imagegate_queue_wait_seconds",
            "Time a request waited in its model's line before calling a provider",
            ["model"],
            registry=r,
            buckets=(0.001, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )
        self.spend = Counter(
            "imagegate_spend_usd", "Provider cost charged, by model", ["model"], registry=r
        )
        self.saved = Counter(
            "imagegate_saved_usd", "Cost saved by the cache and coalescing, by model", ["model"],
            registry=r,
        )  # fmt: skip

    def watch(
        self, lanes: Callable[[], Iterable[LaneGauge]], breakers: Callable[[], dict[str, str]]
    ) -> None:
        self.registry.register(_LiveState(lanes, breakers))

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe_http(self, route: str, method: str, status: int, seconds: float) -> None:
        self._child(self.http_seconds, route, method, str(status)).observe(seconds)

    def observe_queue_wait(self, model: str, seconds: float) -> None:
        self._child(self.queue_wait, model).observe(seconds)

    def observe_generation(self, generation: Generation) -> None:
        model = generation.model
        provider = generation.provider or "none"
        outcome = generation.outcome.value
        self._child(self.generation_seconds, model, provider, outcome).observe(
            generation.latency_ms / 1000
        )
        for attempt in generation.attempt_log:
            self._child(self.upstream_attempts, attempt.target, attempt.outcome).inc()
            if attempt.error is not None:
                self._child(self.upstream_errors, attempt.target, attempt.error).inc()
        cache = _CACHE.get(generation.outcome)
        if cache is not None:
            self._child(self.cache, cache).inc()
        if generation.cost_micro_usd:
            self._child(self.spend, model).inc(generation.cost_micro_usd / 1_000_000)
        if generation.saved_cost_micro_usd:
            self._child(self.saved, model).inc(generation.saved_cost_micro_usd / 1_000_000)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
