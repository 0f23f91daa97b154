"""A circuit breaker per route target, asyncio-native and cheap enough for the hot path.

closed -> open      after ``consecutive_failures`` failures in a row, or when at least half the
                    window has been seen and the failure rate over the last ``window`` calls
                    reaches ``failure_rate``
open -> half-open   after ``open_seconds``: exactly one probe call is let through
half-open -> closed on the probe's success (history cleared); -> open again on its failure

Only failures that say something about the target's health count (timeouts, resets, 5xx, 429,
bad credentials); a content-policy refusal or an invalid request does not.

pybreaker was considered: it counts consecutive failures only, lets every concurrent call through
while half-open, and guards calls through a thread lock around sync or Tornado code.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    consecutive_failures: int = 5
    failure_rate: float = 0.5
    window: int = 20
    open_seconds: float = 30.0


class CircuitBreaker:
    def __init__(self, policy: BreakerPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self._policy = policy
        self._clock = clock
        self._recent: deque[bool] = deque(maxlen=policy.window)  # True = failure
        self._consecutive = 0
        self._opened_at: float | None = None
        self._probe_in_flight = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at < self._policy.open_seconds:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def allow(self) -> bool:
        """Whether a call may go out now; in half-open, only the first caller gets through."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._probe_in_flight:
            self._probe_in_flight = True
            return True
        return False

    def seconds_until_probe(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self._policy.open_seconds - self._clock())

    def record_success(self) -> None:
        state = self.state
        if state is BreakerState.OPEN:
            return  # a call that started before the circuit opened proves little
        if state is BreakerState.HALF_OPEN:  # the probe succeeded: close
            self._opened_at = None
            self._recent.clear()
        self._probe_in_flight = False
        self._consecutive = 0
        self._recent.append(False)

    def record_failure(self) -> None:
        self._probe_in_flight = False
        if self._opened_at is not None:  # a failed probe (or a late failure) re-opens
            self._opened_at = self._clock()
            return
        self._consecutive += 1
        self._recent.append(True)
        if self._consecutive >= self._policy.consecutive_failures or self._rate_exceeded():
            self._opened_at = self._clock()
            self._consecutive = 0

    def release_probe(self) -> None:
        """The probe ended without a verdict on health (e.g. a content-policy refusal)."""
        self._probe_in_flight = False

    def _rate_exceeded(self) -> bool:
        seen = len(self._recent)
        if seen < max(2, self._policy.window // 2):
            return False
        return sum(self._recent) / seen >= self._policy.failure_rate
