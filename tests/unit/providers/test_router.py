"""Router policy with scripted in-process providers (its dependencies, not the router, are
stand-ins); the same behaviour over real HTTP fakes is in tests/integration/test_resilience.py."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest
from PIL import Image

from imagegate.catalog import Catalog, Target
from imagegate.errors import (
    ContentPolicyViolation,
    ImagegateError,
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from imagegate.fingerprint import normalize_request
from imagegate.models import (
    Attempt,
    GenerationRequest,
    NormalizedRequest,
    OutputFormat,
    ProviderResult,
    RawImage,
)
from imagegate.providers.breaker import BreakerPolicy
from imagegate.providers.router import RetryPolicy, Route, Router
from imagegate.storage.images import encode, prepare

BUILTIN = Catalog.load().get("builtin")
Step = ImagegateError | float | None  # an error to raise, seconds to hang, or None to succeed


class Scripted:
    """Answers each call with the next step of its script (then succeeds)."""

    def __init__(self, name: str, *script: Step) -> None:
        self.name = name
        self.script = list(script)
        self.calls: list[int] = []

    async def generate(self, request: NormalizedRequest, target: Target) -> ProviderResult:
        self.calls.append(request.n)
        step = self.script.pop(0) if self.script else None
        if isinstance(step, ImagegateError):
            raise step
        if isinstance(step, float):
            await asyncio.sleep(step)
        images = tuple(RawImage(b"img", "image/png") for _ in range(request.n))
        return ProviderResult(self.name, target.spec.upstream_model, images, cost_micro_usd=10)

    async def aclose(self) -> None:
        return None


def _router(
    *providers: Scripted,
    per_call: int | None = None,
    retry: RetryPolicy | None = None,
    breaker: BreakerPolicy | None = None,
) -> Router:
    spec = BUILTIN.model_copy(update={"max_n_per_call": per_call}) if per_call else BUILTIN
    targets = tuple(Target(spec, p.name) for p in providers)
    return Router(
        {"builtin": Route("builtin", targets)},
        {p.name: p for p in providers},
        retry=retry or RetryPolicy(backoff_base_seconds=0.001, backoff_max_seconds=0.002),
        breaker=breaker,
    )


def _request(n: int = 1) -> NormalizedRequest:
    return normalize_request(GenerationRequest(prompt="fox", n=n), BUILTIN)


async def _generate(router: Router, n: int = 1) -> tuple[ProviderResult, list[Attempt]]:
    attempts: list[Attempt] = []
    result = await router.generate(BUILTIN, _request(n), attempts)
    return result, attempts


async def test_a_retryable_failure_moves_to_the_healthy_next_target() -> None:
    primary = Scripted("a", ProviderError("503"))
    backup = Scripted("b")
    result, attempts = await _generate(_router(primary, backup))
    assert result.provider == "b"
    assert [(a.target, a.outcome) for a in attempts] == [
        ("a/abstract-art-v1", "upstream_error"),
        ("b/abstract-art-v1", "ok"),
    ]


async def test_a_single_target_is_retried_with_backoff() -> None:
    only = Scripted("a", ProviderTimeout("slow"))
    result, attempts = await _generate(_router(only))
    assert len(only.calls) == 2
    assert result.provider == "a"
    assert [a.outcome for a in attempts] == ["upstream_timeout", "ok"]


async def test_rate_limited_target_is_left_for_the_next_without_waiting() -> None:
    primary = Scripted("a", ProviderRateLimited("429", retry_after=30))
    backup = Scripted("b")
    started = time.monotonic()
    result, _ = await _generate(_router(primary, backup))
    assert result.provider == "b"
    assert time.monotonic() - started < 5  # did not sit out the 30 s Retry-After


async def test_retry_after_is_honoured_when_there_is_no_other_target() -> None:
    only = Scripted("a", ProviderRateLimited("429", retry_after=0.2))
    started = time.monotonic()
    result, _ = await _generate(_router(only))
    assert result.provider == "a"
    assert time.monotonic() - started >= 0.2


@pytest.mark.parametrize(
    "error",
    [ContentPolicyViolation("blocked by safety system"), ProviderBadRequest("bad size")],
)
async def test_final_errors_make_exactly_one_call(error: ImagegateError) -> None:
    primary = Scripted("a", error)
    backup = Scripted("b")
    with pytest.raises(type(error)):
        await _generate(_router(primary, backup))
    assert (len(primary.calls), len(backup.calls)) == (1, 0)


async def test_rejected_target_is_not_retried_but_the_next_is_tried() -> None:
    primary = Scripted("a", ProviderRejected("bad key"), ProviderRejected("bad key"))
    backup = Scripted("b")
    result, _ = await _generate(_router(primary, backup))
    assert result.provider == "b"
    assert len(primary.calls) == 1


async def test_when_every_target_is_rate_limited_the_caller_gets_429_with_retry_after() -> None:
    primary = Scripted("a", *[ProviderRateLimited("429", retry_after=60)] * 3)
    backup = Scripted("b", *[ProviderRateLimited("429", retry_after=45)] * 3)
    retry = RetryPolicy(max_attempts=2, deadline_seconds=5)
    with pytest.raises(ProviderRateLimited) as caught:
        await _generate(_router(primary, backup, retry=retry))
    assert caught.value.status == 429
    assert caught.value.retry_after is not None
    assert 40 < caught.value.retry_after <= 60


async def test_no_attempt_outlives_the_deadline() -> None:
    hanging = Scripted("a", 30.0, 30.0)
    retry = RetryPolicy(deadline_seconds=0.3, backoff_base_seconds=0.001)
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        await _generate(_router(hanging, retry=retry))
    assert time.monotonic() - started < 2
    assert "deadline" in caught.value.message


async def test_an_open_breaker_skips_the_dead_target_without_calling_it() -> None:
    dead = Scripted("a", *[ProviderError("down")] * 100)
    backup = Scripted("b")
    router = _router(dead, backup, breaker=BreakerPolicy(consecutive_failures=3, open_seconds=60))
    for _ in range(3):
        await _generate(router)
    calls_when_opened = len(dead.calls)
    assert router.breaker_states()["a/abstract-art-v1"] == "open"
    for _ in range(10):
        result, attempts = await _generate(router)
        assert result.provider == "b"
        assert [a.target for a in attempts] == ["b/abstract-art-v1"]
    assert len(dead.calls) == calls_when_opened


async def test_all_targets_open_is_503() -> None:
    dead = Scripted("a", *[ProviderError("down")] * 100)
    router = _router(dead, breaker=BreakerPolicy(consecutive_failures=1, open_seconds=60))
    with pytest.raises(ProviderError):
        await _generate(router)
    with pytest.raises(ProviderUnavailable) as caught:
        await _generate(router)
    assert caught.value.status == 503


async def test_n_above_the_per_call_maximum_is_split_and_merged() -> None:
    provider = Scripted("a")
    result, attempts = await _generate(_router(provider, per_call=4), n=10)
    assert sorted(provider.calls) == [2, 4, 4]
    assert len(result.images) == 10
    assert result.cost_micro_usd == 30
    assert len(attempts) == 3


async def test_partial_success_keeps_the_images_already_paid_for() -> None:
    flaky = Scripted("a", None, ContentPolicyViolation("one chunk blocked"))
    result, _ = await _generate(_router(flaky, per_call=1), n=2)
    assert len(result.images) == 1


async def test_targets_that_cannot_take_the_request_are_skipped() -> None:
    small = BUILTIN.model_copy(update={"sizes": (BUILTIN.default_size,)})
    skipped = Scripted("a")
    taker = Scripted("b")
    router = Router(
        {"builtin": Route("builtin", (Target(small, "a"), Target(BUILTIN, "b")))},
        {"a": skipped, "b": taker},
    )
    request = replace(_request(), size=BUILTIN.sizes[0])
    result = await router.generate(BUILTIN, request, [])
    assert result.provider == "b"
    assert skipped.calls == []


class Returning(Scripted):
    """Answers each call with the next bytes of its list, as one image."""

    def __init__(self, name: str, *answers: bytes) -> None:
        super().__init__(name)
        self.answers = list(answers)

    async def generate(self, request: NormalizedRequest, target: Target) -> ProviderResult:
        self.calls.append(request.n)
        data = self.answers.pop(0)
        return ProviderResult(self.name, target.spec.upstream_model, (RawImage(data, "x"),))


async def test_a_result_that_fails_verification_is_a_failed_attempt_and_retried() -> None:
    whole = encode(Image.effect_noise((64, 64), 60).convert("RGB"), OutputFormat.PNG, None)
    provider = Returning("a", whole[: len(whole) // 2], whole)
    router = _router(provider)
    verified: list[bytes] = []

    async def verify(result: ProviderResult) -> None:
        for raw in result.images:
            verified.append(prepare(raw.data, OutputFormat.PNG, None, 1_000_000).data)

    attempts: list[Attempt] = []
    result = await router.generate(BUILTIN, _request(), attempts, verify)
    assert result.images[0].data == whole
    assert verified == [whole]
    assert [a.outcome for a in attempts] == ["upstream_error", "ok"]
    assert provider.calls == [1, 1]
