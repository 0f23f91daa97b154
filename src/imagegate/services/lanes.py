"""One line per public model: bounded, fair, with visible positions.

A request that must call a provider (a cache miss that leads its single-flight) enters its
model's lane. It starts at once when the lane has room (fewer than ``capacity`` running, by
default the first target's provider ``max_concurrency``) and its API key has a free
generation slot (``concurrent_generations``, default 2); otherwise it waits in line:

- **Fair.** Waiters are grouped by key and served round-robin: each pass starts the oldest
  waiter of every key in turn, so one key with a hundred requests waiting does not starve a
  key with one. Within a key the order is FIFO. A waiter whose key has no free slot is passed
  over (its key is at its concurrency) and keeps its place.
- **Bounded.** A lane holds at most ``max_waiting`` waiters and a key at most
  ``max_waiting_per_key`` in one lane; beyond that a request is refused at once with a 429
  (``queue_full`` / ``concurrency_limit_exceeded``) and a ``Retry-After`` from the lane's
  recent service time, never left to hang.
- **Visible.** ``QueueWatch.on_position`` hears the waiter's 1-based place in the serving
  order whenever it changes; ``on_start`` when it leaves the line.
- **Abandonable.** When ``QueueWatch.abandoned`` is set (the HTTP client disconnected, a job
  was canceled) a waiter leaves the line with ``RequestAbandoned``: no provider is called.

Key slots live in the ``RateLimiter`` (memory, or Redis so every replica shares them); lanes
themselves are per process. A key slot freed in another process is noticed by polling every
``poll_seconds`` while a waiter is passed over for it. When the limiter fails (Redis
unreachable), the request that was taking a slot gets its error, a waiter in line too rather
than waiting forever, and the lane keeps its capacity; a slot that cannot be released is
logged and lapses by itself after ``slot_seconds``, so a finished generation still finishes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from imagegate.errors import ConcurrencyLimitExceeded, QueueFull, RequestAbandoned
from imagegate.limits.base import RateLimiter
from imagegate.models import Principal, new_id

log = logging.getLogger(__name__)


@dataclass(slots=True)
class QueueWatch:
    """How a caller follows its request through a lane (every field optional)."""

    on_position: Callable[[int], None] | None = None
    """Called with the 1-based place in line when the request must wait, and on every change."""
    on_start: Callable[[], None] | None = None
    """Called once when the request leaves the line to call the provider."""
    abandoned: asyncio.Event | None = None
    """Set it to take the request out of the line (the caller no longer wants the result)."""
    on_enhancing: Callable[[], None] | None = None
    """Called after ``on_start`` when the prompt goes to the prompt enhancer first (not for
    cache hits, nor when no enhancement is asked for or configured)."""
    on_generating: Callable[[], None] | None = None
    """Called after ``on_start`` (and after the prompt enhancer, if it was asked) as the
    request goes to the provider."""


@dataclass(frozen=True, slots=True)
class LaneStats:
    model: str
    capacity: int
    running: int
    waiting: int


@dataclass(eq=False, slots=True)
class _Ticket:
    key: str
    """Whose turn it is in the round-robin: the API key, or the user for keyless callers."""
    slot_key: str | None
    """The limiter key of the API key's generation slots; None when unlimited."""
    slot_limit: int
    holder: str
    watch: QueueWatch | None
    admitted: asyncio.Future[None]
    position: int = 0
    has_slot: bool = False


@dataclass(slots=True)
class _Lane:
    model: str
    capacity: int
    running: int = 0
    waiting: OrderedDict[str, deque[_Ticket]] = field(default_factory=OrderedDict)
    count: int = 0
    service_seconds: float = 10.0
    """Moving average of how long a request holds its place: the basis of ``Retry-After``."""
    dispatching: bool = False
    again: bool = False
    poll: asyncio.TimerHandle | None = None


def effective_limit(own: int | None, default: int | None) -> int:
    """The limit that applies (0 = unlimited): the key's own, else the default."""
    return (default if own is None else own) or 0


class ModelLanes:
    def __init__(
        self,
        limiter: RateLimiter,
        *,
        capacity: Callable[[str], int],
        concurrent_generations: int | None,
        max_waiting: int,
        max_waiting_per_key: int,
        slot_seconds: float,
        poll_seconds: float = 0.25,
        on_wait: Callable[[str, float], None] | None = None,
    ) -> None:
        self._on_wait = on_wait
        """Hears (model, seconds) each time a request leaves the line (metrics)."""
        self._limiter = limiter
        self._capacity = capacity
        self._concurrent_generations = concurrent_generations
        self._max_waiting = max_waiting
        self._max_waiting_per_key = max_waiting_per_key
        self._slot_seconds = slot_seconds
        """How long a slot of a process that died mid-generation stays taken (Redis)."""
        self._poll_seconds = poll_seconds
        self._lanes: dict[str, _Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- what callers see ---------------------------------------------------------------------

    @asynccontextmanager
    async def admitted(
        self, principal: Principal, model: str, watch: QueueWatch | None = None
    ) -> AsyncIterator[None]:
        """Hold a place among ``model``'s running requests for the body of the ``async with``,
        waiting in line first if need be."""
        lane = self._lane(model)
        ticket = self._ticket(principal, watch)
        arrived = time.monotonic()
        await self._enter(lane, ticket)
        started = time.monotonic()
        if self._on_wait is not None:
            self._on_wait(model, started - arrived)
        try:
            yield
        finally:
            lane.service_seconds += 0.2 * (time.monotonic() - started - lane.service_seconds)
            await asyncio.shield(self._leave(lane, ticket))

    def room(self, model: str) -> int:
        """How many more requests for ``model`` would start at once (workers claim by this)."""
        lane = self._lane(model)
        return max(0, lane.capacity - lane.running - lane.count)

    def stats(self) -> list[LaneStats]:
        return [
            LaneStats(lane.model, lane.capacity, lane.running, lane.count)
            for lane in self._lanes.values()
        ]

    async def aclose(self) -> None:
        for lane in self._lanes.values():
            if lane.poll is not None:
                lane.poll.cancel()
        for task in list(self._tasks):
            task.cancel()

    # -- entering and leaving -----------------------------------------------------------------

    def _lane(self, model: str) -> _Lane:
        lane = self._lanes.get(model)
        if lane is None:
            lane = self._lanes[model] = _Lane(model, max(1, self._capacity(model)))
        return lane

    def _ticket(self, principal: Principal, watch: QueueWatch | None) -> _Ticket:
        limit = 0
        if principal.key_id is not None:
            limit = effective_limit(
                principal.rate_limits.concurrent_generations, self._concurrent_generations
            )
        return _Ticket(
            key=principal.key_id or f"user:{principal.user_id}",
            slot_key=f"generations:{principal.key_id}" if limit else None,
            slot_limit=limit,
            holder=new_id(),
            watch=watch,
            admitted=asyncio.get_running_loop().create_future(),
        )

    async def _enter(self, lane: _Lane, ticket: _Ticket) -> None:
        if lane.count == 0 and lane.running < lane.capacity:
            lane.running += 1  # held across the await below, so no one else takes it
            try:
                took = await self._take_slot(ticket)
            except BaseException:
                lane.running -= 1
                raise
            if took:
                self._started(ticket)
                return
            lane.running -= 1
        self._queue(lane, ticket)
        try:
            await self._wait(ticket)
        except BaseException:
            if _was_admitted(ticket):
                await asyncio.shield(self._leave(lane, ticket))  # admitted, but nobody is left
            else:
                self._remove(lane, ticket)
            raise
        self._started(ticket)

    def _queue(self, lane: _Lane, ticket: _Ticket) -> None:
        mine = lane.waiting.get(ticket.key)
        if lane.count >= self._max_waiting:
            raise QueueFull(
                f"The queue for model {lane.model!r} is full ({lane.count} waiting); "
                "try again later or use another model.",
                param="model",
                retry_after=self._retry_after(lane, lane.count),
            )
        if mine is not None and len(mine) >= self._max_waiting_per_key:
            raise ConcurrencyLimitExceeded(
                f"This API key already has {len(mine)} requests waiting for model "
                f"{lane.model!r} behind the {ticket.slot_limit or lane.capacity} it may run at "
                "once. Wait for some to finish, or use the jobs API (POST /v1/jobs) to queue "
                "more.",
                retry_after=self._retry_after(lane, len(mine)),
            )
        if mine is None:
            mine = lane.waiting[ticket.key] = deque()
        mine.append(ticket)
        lane.count += 1
        self._publish_positions(lane)
        self._kick(lane)

    async def _wait(self, ticket: _Ticket) -> None:
        abandoned = ticket.watch.abandoned if ticket.watch else None
        if abandoned is None:
            await ticket.admitted
            return
        if abandoned.is_set():
            raise RequestAbandoned("The caller left before the request started.")
        gone = asyncio.ensure_future(abandoned.wait())
        try:
            await asyncio.wait((ticket.admitted, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not ticket.admitted.done():
            raise RequestAbandoned("The caller left before the request started.")
        ticket.admitted.result()  # raises the limiter's error if it failed while this waited

    def _remove(self, lane: _Lane, ticket: _Ticket) -> None:
        mine = lane.waiting.get(ticket.key)
        if mine is not None and ticket in mine:
            mine.remove(ticket)
            lane.count -= 1
            if not mine:
                del lane.waiting[ticket.key]
            self._publish_positions(lane)
            self._kick(lane)  # a passed-over waiter's key may hold a slot it no longer needs

    async def _leave(self, lane: _Lane, ticket: _Ticket) -> None:
        lane.running -= 1
        if ticket.has_slot and ticket.slot_key is not None:
            ticket.has_slot = False
            try:
                await self._limiter.release_slot(ticket.slot_key, ticket.holder)
            except Exception as exc:  # the limiter's own (e.g. Redis) error
                log.warning(
                    "could not release a generation slot of %s (%s: %s); it lapses in %.0fs",
                    ticket.slot_key,
                    type(exc).__name__,
                    exc,
                    self._slot_seconds,
                )
        for other in self._lanes.values():  # the key's slot may unblock it in another lane
            if other.count:
                self._kick(other)

    def _started(self, ticket: _Ticket) -> None:
        if ticket.watch is not None and ticket.watch.on_start is not None:
            ticket.watch.on_start()

    async def _take_slot(self, ticket: _Ticket) -> bool:
        if ticket.slot_key is None:
            return True
        ticket.has_slot = await self._limiter.acquire_slot(
            ticket.slot_key, ticket.slot_limit, ticket.holder, self._slot_seconds
        )
        return ticket.has_slot

    # -- serving the line ---------------------------------------------------------------------

    def _kick(self, lane: _Lane) -> None:
        """Serve ``lane`` soon, once (a dispatch already running goes round again)."""
        if lane.dispatching:
            lane.again = True
            return
        lane.dispatching = True
        task = asyncio.get_running_loop().create_task(self._dispatch(lane))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dispatch(self, lane: _Lane) -> None:
        try:
            while True:
                lane.again = False
                passed_over = await self._serve(lane)
                if not lane.again:
                    break
            if passed_over and lane.poll is None:
                lane.poll = asyncio.get_running_loop().call_later(
                    self._poll_seconds, self._polled, lane
                )
        finally:
            lane.dispatching = False

    def _polled(self, lane: _Lane) -> None:
        lane.poll = None
        if lane.count:
            self._kick(lane)

    async def _serve(self, lane: _Lane) -> bool:
        """Start waiters round-robin while there is room; True if one was passed over because
        its key had no free slot (and room was left for it)."""
        passed_over = False
        progressed = True
        while progressed and lane.count and lane.running < lane.capacity:
            progressed = False
            for key in list(lane.waiting):
                if lane.running >= lane.capacity:
                    break
                mine = lane.waiting.get(key)
                if not mine:
                    continue
                ticket = mine[0]
                lane.running += 1
                try:
                    took = await self._take_slot(ticket)
                except Exception as exc:  # the limiter failed: tell the waiter, do not hang it
                    lane.running -= 1
                    if mine and mine[0] is ticket:  # (unless it left meanwhile)
                        self._remove(lane, ticket)
                        ticket.admitted.set_exception(exc)
                    continue
                if not took:
                    lane.running -= 1
                    passed_over = True
                    continue
                if mine and mine[0] is ticket:
                    mine.popleft()
                    lane.count -= 1
                    if mine:
                        lane.waiting.move_to_end(key)
                    else:
                        del lane.waiting[key]
                    ticket.admitted.set_result(None)
                    progressed = True
                else:  # it left the line while its slot was being taken
                    await self._leave(lane, ticket)
        self._publish_positions(lane)
        return passed_over

    def _publish_positions(self, lane: _Lane) -> None:
        """Tell each waiter its place in the serving order (round-robin over keys) if changed."""
        queues = list(lane.waiting.values())
        place = 0
        depth = max((len(q) for q in queues), default=0)
        for round_ in range(depth):
            for queue in queues:
                if round_ < len(queue):
                    place += 1
                    ticket = queue[round_]
                    if ticket.position != place:
                        ticket.position = place
                        watch = ticket.watch
                        if watch is not None and watch.on_position is not None:
                            watch.on_position(place)

    def _retry_after(self, lane: _Lane, ahead: int) -> float:
        return float(max(1, math.ceil(lane.service_seconds * (ahead + 1) / lane.capacity)))


def _was_admitted(ticket: _Ticket) -> bool:
    admitted = ticket.admitted
    return admitted.done() and not admitted.cancelled() and admitted.exception() is None
