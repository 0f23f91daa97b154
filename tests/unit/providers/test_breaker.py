from __future__ import annotations

from imagegate.providers.breaker import BreakerPolicy, BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _breaker(**policy: float) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    defaults = {"consecutive_failures": 3, "failure_rate": 0.5, "window": 10, "open_seconds": 30}
    return CircuitBreaker(BreakerPolicy(**{**defaults, **policy}), clock), clock  # type: ignore[arg-type]


def test_opens_after_consecutive_failures_and_refuses_calls() -> None:
    breaker, _ = _breaker()
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()


def test_a_success_resets_the_consecutive_count() -> None:
    breaker, _ = _breaker(failure_rate=1.0)
    for _ in range(5):
        breaker.record_failure()
        breaker.record_failure()
        breaker.record_success()
    assert breaker.state is BreakerState.CLOSED


def test_opens_on_failure_rate_over_the_window() -> None:
    breaker, _ = _breaker(consecutive_failures=100, failure_rate=0.5, window=10)
    for _ in range(3):
        breaker.record_failure()
        breaker.record_success()
    assert breaker.state is BreakerState.OPEN  # 3 of 6 recent calls failed


def test_half_open_lets_exactly_one_probe_through() -> None:
    breaker, clock = _breaker()
    for _ in range(3):
        breaker.record_failure()
    clock.now += 30
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow()  # a second caller must not pile onto a possibly dead target
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()


def test_a_failed_probe_opens_again_for_a_full_period() -> None:
    breaker, clock = _breaker()
    for _ in range(3):
        breaker.record_failure()
    clock.now += 30
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    clock.now += 29
    assert not breaker.allow()
    assert breaker.seconds_until_probe() == 1


def test_a_probe_without_verdict_frees_the_slot() -> None:
    breaker, clock = _breaker()
    for _ in range(3):
        breaker.record_failure()
    clock.now += 30
    assert breaker.allow()
    breaker.release_probe()
    assert breaker.allow()
