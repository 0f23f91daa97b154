"""Model lanes with the in-memory limiter: room, fairness between keys, bounds, abandoning."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from imagegate.errors import ConcurrencyLimitExceeded, QueueFull, RequestAbandoned
from imagegate.limits.memory import MemoryRateLimiter
from imagegate.models import Principal, RateLimits, Role
from imagegate.services.lanes import ModelLanes, QueueWatch


def _lanes(capacity: int = 1, **limits: int) -> ModelLanes:
    return ModelLanes(
        MemoryRateLimiter(),
        capacity=lambda _: capacity,
        concurrent_generations=limits.get("concurrent_generations", 0),
        max_waiting=limits.get("max_waiting", 100),
        max_waiting_per_key=limits.get("max_waiting_per_key", 100),
        slot_seconds=60,
    )


def _key(name: str, concurrency: int | None = None) -> Principal:
    return Principal(
        user_id=f"user-{name}",
        user_name=name,
        role=Role.USER,
        key_id=f"key-{name}",
        rate_limits=RateLimits(concurrent_generations=concurrency),
    )


class Gate:
    """Requests that hold their place until the test lets them go, in the order they start."""

    def __init__(self, lanes: ModelLanes) -> None:
        self.lanes = lanes
        self.started: list[str] = []
        self.release: dict[str, asyncio.Event] = {}

    def request(
        self, principal: Principal, label: str, watch: QueueWatch | None = None
    ) -> asyncio.Task[None]:
        self.release[label] = asyncio.Event()

        async def run() -> None:
            async with self.lanes.admitted(principal, "m", watch):
                self.started.append(label)
                await self.release[label].wait()

        return asyncio.create_task(run(), name=label)


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


async def test_requests_start_at_once_while_there_is_room_then_wait_their_turn() -> None:
    gate = Gate(_lanes(capacity=2))
    alice = _key("alice")
    tasks = [gate.request(alice, f"a{i}") for i in range(4)]
    await _settle()
    assert gate.started == ["a0", "a1"]
    assert gate.lanes.room("m") == 0
    gate.release["a0"].set()
    await _until(lambda: len(gate.started) == 3)
    assert gate.started == ["a0", "a1", "a2"]
    for event in gate.release.values():
        event.set()
    await asyncio.gather(*tasks)
    assert gate.started == ["a0", "a1", "a2", "a3"]
    assert gate.lanes.room("m") == 2


async def test_keys_take_turns_so_a_flood_from_one_does_not_starve_another() -> None:
    gate = Gate(_lanes(capacity=1))
    flood, other = _key("flood"), _key("other")
    tasks = [gate.request(flood, f"f{i}") for i in range(5)]
    await _settle()
    tasks.append(gate.request(other, "o0"))
    await _settle()
    for label in ("f0", "f1", "o0", "f2", "f3", "f4"):
        await _until(lambda label=label: label in gate.started)  # type: ignore[misc]
        gate.release[label].set()
    await asyncio.gather(*tasks)
    # f0 held the lane when the others arrived; then f1 (first in line), then the other key
    assert gate.started == ["f0", "f1", "o0", "f2", "f3", "f4"]


async def test_a_waiter_hears_its_place_go_down_and_when_it_starts() -> None:
    gate = Gate(_lanes(capacity=1))
    alice = _key("alice")
    places: list[int] = []
    started: list[bool] = []
    watch = QueueWatch(on_position=places.append, on_start=lambda: started.append(True))
    tasks = [gate.request(alice, f"a{i}") for i in range(3)]
    await _settle()
    tasks.append(gate.request(alice, "watched", watch))
    await _settle()
    assert places == [3]
    for label in ("a0", "a1", "a2"):
        gate.release[label].set()
        await _settle()
    await _until(lambda: "watched" in gate.started)
    assert places == [3, 2, 1]
    assert started == [True]
    gate.release["watched"].set()
    await asyncio.gather(*tasks)


async def test_a_key_at_its_concurrency_waits_while_other_keys_go_past() -> None:
    gate = Gate(_lanes(capacity=3))
    one_at_a_time, other = _key("single", concurrency=1), _key("other")
    tasks = [gate.request(one_at_a_time, "s0"), gate.request(one_at_a_time, "s1")]
    await _settle()
    tasks.append(gate.request(other, "o0"))
    await _until(lambda: "o0" in gate.started)
    assert gate.started == ["s0", "o0"]  # s1 keeps its place until s0 ends
    gate.release["s0"].set()
    await _until(lambda: "s1" in gate.started)
    for event in gate.release.values():
        event.set()
    await asyncio.gather(*tasks)


@pytest.mark.parametrize(
    ("limits", "error", "code"),
    [
        ({"max_waiting": 2}, QueueFull, "queue_full"),
        ({"max_waiting_per_key": 2}, ConcurrencyLimitExceeded, "concurrency_limit_exceeded"),
    ],
)
async def test_a_full_line_refuses_at_once_with_a_retry_hint(
    limits: dict[str, int], error: type[Exception], code: str
) -> None:
    gate = Gate(_lanes(capacity=1, **limits))
    alice = _key("alice")
    tasks = [gate.request(alice, f"a{i}") for i in range(3)]  # one running, two waiting
    await _settle()
    with pytest.raises(error) as refused:
        async with gate.lanes.admitted(alice, "m"):
            pass
    assert refused.value.code == code  # type: ignore[attr-defined]
    assert refused.value.retry_after >= 1  # type: ignore[attr-defined]
    for event in gate.release.values():
        event.set()
    await asyncio.gather(*tasks)


async def test_an_abandoned_waiter_leaves_the_line_and_never_starts() -> None:
    gate = Gate(_lanes(capacity=1))
    alice = _key("alice")
    abandoned = asyncio.Event()
    first = gate.request(alice, "first")
    await _settle()
    leaving = gate.request(alice, "leaving", QueueWatch(abandoned=abandoned))
    behind = gate.request(alice, "behind")
    await _settle()
    abandoned.set()
    with pytest.raises(RequestAbandoned):
        await leaving
    gate.release["first"].set()
    await _until(lambda: "behind" in gate.started)
    gate.release["behind"].set()
    await asyncio.gather(first, behind)
    assert gate.started == ["first", "behind"]


async def test_a_canceled_waiter_frees_its_place() -> None:
    gate = Gate(_lanes(capacity=1))
    alice = _key("alice")
    first = gate.request(alice, "first")
    await _settle()
    canceled = gate.request(alice, "canceled")
    await _settle()
    canceled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await canceled
    gate.release["first"].set()
    await first
    assert gate.lanes.room("m") == 1
    assert gate.lanes.stats()[0].waiting == 0
