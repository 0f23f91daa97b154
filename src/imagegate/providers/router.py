"""Routes a public model to its targets: retries, fallback, circuit breakers and n-splitting.

A public model is a route: an ordered list of targets (a catalogue model at a configured
provider). One request's attempts follow these rules:

- Targets that cannot take the request (another request kind, a size they cannot map) are
  skipped; so are targets whose breaker is open.
- A retryable failure (timeout, reset, 5xx, malformed body) may be retried on the same target,
  after exponential backoff with full jitter, up to ``max_attempts_per_target``; a healthy next
  target is preferred when there is one.
- A rate-limited target (429) cools down for its ``Retry-After``; the next healthy target is
  tried at once, or, when there is none, the wait is honoured if the deadline allows.
- A rejected target (our credentials, unknown upstream model) is not retried; the next is tried.
- A content-policy refusal or an invalid request ends the request at once: no retry, no fallback.
- Nothing waits past the request's deadline: every attempt is bounded by what is left of it.
- ``n`` above a target's per-call maximum is split into parallel calls; if some succeed and some
  fail, the images made are returned (and paid for) rather than thrown away.

When every try fails, the caller gets a 429 with ``Retry-After`` if every target was rate
limited, 503 if none could be tried, else the last error.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from imagegate.catalog import ModelSpec, Target
from imagegate.errors import (
    ImagegateError,
    ModelNotFound,
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderUnavailable,
)
from imagegate.models import Attempt, NormalizedRequest, ProviderResult
from imagegate.providers.base import ImageProvider, ResultCheck
from imagegate.providers.breaker import BreakerPolicy, BreakerState, CircuitBreaker

DEFAULT_PROVIDER_CONCURRENCY = 10


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 4
    max_attempts_per_target: int = 2
    backoff_base_seconds: float = 0.25
    backoff_max_seconds: float = 8.0
    deadline_seconds: float = 120.0


@dataclass(frozen=True, slots=True)
class Route:
    """A public model name and the targets that serve it, in order of preference."""

    name: str
    targets: tuple[Target, ...]
    weighted: bool = False
    concurrency: int | None = None
    """Requests of this model running at once per process; None: the first target's provider's
    ``max_concurrency``."""

    @property
    def spec(self) -> ModelSpec:
        """What the public model accepts: its first target's limits, under the public name."""
        first = self.targets[0].spec
        return first if first.name == self.name else first.model_copy(update={"name": self.name})


@dataclass
class _Plan:
    """The state of one call's tries: what each target has left and when it may be tried."""

    targets: list[Target]
    tries: dict[str, int] = field(default_factory=dict)
    cooling_until: dict[str, float] = field(default_factory=dict)
    excluded: set[str] = field(default_factory=set)


def _accepts(target: Target, request: NormalizedRequest) -> bool:
    spec = target.spec
    if request.kind not in spec.kinds:
        return False
    return bool(spec.aspect_ratios) or request.size in spec.sizes


class Router:
    def __init__(
        self,
        routes: Mapping[str, Route],
        providers: Mapping[str, ImageProvider],
        retry: RetryPolicy | None = None,
        breaker: BreakerPolicy | None = None,
        concurrency: Mapping[str, int] | None = None,
    ) -> None:
        self._routes = dict(routes)
        self._providers = dict(providers)
        self._concurrency = {
            name: (concurrency or {}).get(name, DEFAULT_PROVIDER_CONCURRENCY) for name in providers
        }
        # Upstream calls in flight per provider, across every model and route that uses it.
        self._gates = {name: asyncio.Semaphore(n) for name, n in self._concurrency.items()}
        self._retry = retry or RetryPolicy()
        breaker_policy = breaker or BreakerPolicy()
        self._breakers = {
            t.name: CircuitBreaker(breaker_policy) for r in routes.values() for t in r.targets
        }

    # -- what is served -------------------------------------------------------------------

    def models(self) -> list[ModelSpec]:
        return [route.spec for route in self._routes.values()]

    def resolve(self, name: str) -> ModelSpec:
        route = self._routes.get(name)
        if route is None:
            raise ModelNotFound(
                f"The model {name!r} does not exist or is not configured on this gateway. "
                f"Available models: {', '.join(self._routes) or 'none'}.",
                param="model",
            )
        return route.spec

    def capacity(self, name: str) -> int:
        route = self._routes.get(name)
        if route is None:
            return DEFAULT_PROVIDER_CONCURRENCY
        if route.concurrency is not None:
            return route.concurrency
        return self._concurrency[route.targets[0].provider]

    def breaker_states(self) -> dict[str, str]:
        return {name: breaker.state.value for name, breaker in self._breakers.items()}

    # -- calling --------------------------------------------------------------------------

    async def generate(
        self,
        spec: ModelSpec,
        request: NormalizedRequest,
        attempts: list[Attempt],
        verify: ResultCheck | None = None,
    ) -> ProviderResult:
        """Make ``request.n`` images for public model ``spec.name``; every try is appended to
        ``attempts``, also when the call fails. A result ``verify`` refuses is a failed try."""
        route = self._routes.get(spec.name)
        if route is None:
            raise ModelNotFound(f"The model {spec.name!r} is not configured.", param="model")
        targets = [t for t in self._ordered(route) if _accepts(t, request)]
        if not targets:
            raise ProviderUnavailable(f"No target of {spec.name!r} can serve this request.")
        deadline = time.monotonic() + self._retry.deadline_seconds
        per_call = min(t.spec.per_call for t in targets)
        if request.n <= per_call:  # the common case: one call, no extra task
            return await self._call(targets, request, deadline, attempts, verify)
        chunks = [per_call] * (request.n // per_call)
        if request.n % per_call:
            chunks.append(request.n % per_call)
        outcomes = await asyncio.gather(
            *(
                self._call(targets, replace(request, n=n), deadline, attempts, verify)
                for n in chunks
            ),
            return_exceptions=True,
        )
        results = [o for o in outcomes if isinstance(o, ProviderResult)]
        if not results:
            error = next(o for o in outcomes if isinstance(o, BaseException))
            raise error
        return _merge(results)

    def _ordered(self, route: Route) -> list[Target]:
        targets = list(route.targets)
        if route.weighted and len(targets) > 1:
            first = random.choices(targets, weights=[t.weight for t in targets])[0]
            targets.remove(first)
            targets.insert(0, first)
        return targets

    async def _call(
        self,
        targets: list[Target],
        request: NormalizedRequest,
        deadline: float,
        attempts: list[Attempt],
        verify: ResultCheck | None,
    ) -> ProviderResult:
        plan = _Plan(targets=targets)
        last_error: ImagegateError | None = None
        for _ in range(self._retry.max_attempts):
            target, wait = self._next(plan, last_error)
            if target is None or time.monotonic() + wait >= deadline:
                break
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                return await self._attempt(target, request, deadline, attempts, verify)
            except ImagegateError as exc:
                if not (exc.retryable or exc.fallback):
                    raise
                last_error = exc
                self._note_failure(plan, target, exc)
        raise self._final_error(plan, last_error)

    def _next(self, plan: _Plan, last: ImagegateError | None) -> tuple[Target | None, float]:
        """The target to try next and how long to wait first."""
        now = time.monotonic()
        usable = [
            t
            for t in plan.targets
            if t.name not in plan.excluded
            and plan.tries.get(t.name, 0) < self._retry.max_attempts_per_target
            and self._breakers[t.name].state is not BreakerState.OPEN
        ]
        ready = [t for t in usable if plan.cooling_until.get(t.name, 0.0) <= now]
        ready.sort(key=lambda t: plan.tries.get(t.name, 0))  # untried targets first, in route order
        for target in ready:
            if self._breakers[target.name].allow():
                untried = plan.tries.get(target.name, 0) == 0
                return target, 0.0 if untried or last is None else self._backoff(target, plan)
        cooling = [t for t in usable if t not in ready]
        if cooling:
            soonest = min(cooling, key=lambda t: plan.cooling_until[t.name])
            if self._breakers[soonest.name].allow():
                return soonest, plan.cooling_until[soonest.name] - now
        return None, 0.0

    def _backoff(self, target: Target, plan: _Plan) -> float:
        tries = plan.tries.get(target.name, 0)
        ceiling = min(self._retry.backoff_max_seconds, self._retry.backoff_base_seconds * 2**tries)
        return random.uniform(0, ceiling)  # full jitter

    async def _attempt(
        self,
        target: Target,
        request: NormalizedRequest,
        deadline: float,
        attempts: list[Attempt],
        verify: ResultCheck | None,
    ) -> ProviderResult:
        provider = self._providers[target.provider]
        breaker = self._breakers[target.name]
        started = time.monotonic()
        try:
            async with asyncio.timeout(max(0.0, deadline - started)), self._gates[target.provider]:
                result = await provider.generate(request, target)
            if not result.images:
                raise ProviderError(f"{target.name} returned no image")
            if verify is not None:  # bad bytes are the target's failure, like a 5xx
                await verify(result)  # outside the deadline and the gate: our CPU, not theirs
        except TimeoutError:
            error: ImagegateError = ProviderError(
                f"{target.name}: no answer before the request's deadline", code="upstream_timeout"
            )
            self._record(attempts, target, started, error)
            breaker.record_failure()
            raise error from None
        except ImagegateError as exc:
            self._record(attempts, target, started, exc)
            if isinstance(exc, ProviderError) and not isinstance(exc, ProviderBadRequest):
                breaker.record_failure()
            else:  # the caller's request was the problem, not the target's health
                breaker.release_probe()
            raise
        except asyncio.CancelledError:  # the client went away: no verdict on the target
            breaker.release_probe()
            raise
        self._record(attempts, target, started, None)
        breaker.record_success()
        return replace(result, provider=target.provider, upstream_model=target.spec.upstream_model)

    @staticmethod
    def _record(
        attempts: list[Attempt], target: Target, started: float, error: ImagegateError | None
    ) -> None:
        attempts.append(
            Attempt(
                target=target.name,
                outcome="ok" if error is None else error.code,
                latency_ms=round((time.monotonic() - started) * 1000),
                error=None if error is None else type(error).__name__,
            )
        )

    def _note_failure(self, plan: _Plan, target: Target, error: ImagegateError) -> None:
        plan.tries[target.name] = plan.tries.get(target.name, 0) + 1
        if isinstance(error, ProviderRateLimited):
            hint = (
                error.retry_after if error.retry_after is not None else self._backoff(target, plan)
            )
            plan.cooling_until[target.name] = time.monotonic() + hint
        elif not error.retryable:
            plan.excluded.add(target.name)

    @staticmethod
    def _final_error(plan: _Plan, last: ImagegateError | None) -> ImagegateError:
        if last is None:
            return ProviderUnavailable(
                "Every provider for this model is unavailable right now (circuit open); "
                "try again shortly.",
                retry_after=5,
            )
        tried = [t for t in plan.targets if plan.tries.get(t.name)]
        if tried and all(t.name in plan.cooling_until for t in tried):
            wait = min(plan.cooling_until.values()) - time.monotonic()
            return ProviderRateLimited(
                f"Every provider for this model is rate limiting; last: {last.message}",
                retry_after=max(1.0, wait),
            )
        return last

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()


def _merge(results: Sequence[ProviderResult]) -> ProviderResult:
    if len(results) == 1:
        return results[0]
    usage: dict[str, int] = {}
    for result in results:
        for key, value in (result.usage or {}).items():
            usage[key] = usage.get(key, 0) + value
    return ProviderResult(
        provider=results[0].provider,
        upstream_model=results[0].upstream_model,
        images=tuple(image for result in results for image in result.images),
        cost_micro_usd=sum(result.cost_micro_usd for result in results),
        usage=usage or None,
    )
