"""Per-key and per-user budgets (USD per day and month) and quotas (images per minute and day).

The estimate is reserved before any provider is called, atomically against every limit of the
key and of its user (``BudgetRepository``), so concurrent requests can never overspend; the
actual cost is settled with the generation's record (one transaction), and the reservation
released on failure or cancellation. A hold that cannot be released (the database is down, the
process died) is given back when it expires. Cache
hits and coalesced requests reserve nothing. Requests with no limits pay no database trip.
Windows are calendar periods in UTC (the minute, the day, the month).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from imagegate.db.base import BudgetRepository
from imagegate.models import BudgetCounter, BudgetSettlement, Limits, Principal, new_id


@dataclass(frozen=True, slots=True)
class Reservation:
    id: str
    counters: tuple[BudgetCounter, ...]
    micro_usd: int
    images: int


def _windows(now: datetime) -> dict[str, tuple[datetime, datetime]]:
    minute = now.replace(second=0, microsecond=0)
    day = minute.replace(hour=0, minute=0)
    month = day.replace(day=1)
    next_month = (month + timedelta(days=32)).replace(day=1)
    return {
        "minute": (minute, minute + timedelta(minutes=1)),
        "day": (day, day + timedelta(days=1)),
        "month": (month, next_month),
    }


def counters_for(subject: str, limits: Limits, now: datetime) -> list[BudgetCounter]:
    """The windows ``limits`` constrain for ``subject`` (none when it is unlimited)."""
    windows = _windows(now)
    wanted = {
        "minute": (None, limits.images_per_minute),
        "day": (limits.budget_micro_usd_day, limits.images_per_day),
        "month": (limits.budget_micro_usd_month, None),
    }
    return [
        BudgetCounter(subject, window, *windows[window], money, images)
        for window, (money, images) in wanted.items()
        if money is not None or images is not None
    ]


def _counters(principal: Principal, now: datetime) -> list[BudgetCounter]:
    key = counters_for(f"key:{principal.key_id}", principal.key_limits, now)
    user = counters_for(f"user:{principal.user_id}", principal.user_limits, now)
    return [*(key if principal.key_id else []), *user]


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """Where one limit stands now."""

    applies_to: str
    """``key`` or ``user``."""
    window: str
    resets_at: datetime
    limit_micro_usd: int | None
    spent_micro_usd: int
    reserved_micro_usd: int
    images_limit: int | None
    images: int

    @property
    def remaining_micro_usd(self) -> int | None:
        if self.limit_micro_usd is None:
            return None
        return max(0, self.limit_micro_usd - self.spent_micro_usd - self.reserved_micro_usd)


class BudgetService:
    def __init__(self, budgets: BudgetRepository, hold_seconds: float = 3600.0) -> None:
        self._budgets = budgets
        self._hold = timedelta(seconds=hold_seconds)
        """How long a reservation is kept for a request that never settles it (its process
        died); longer than any request waits in line and runs."""

    async def status(self, principal: Principal) -> list[BudgetStatus]:
        """Every limit of the principal's key and user, with what is used and when it resets."""
        counters = _counters(principal, datetime.now(UTC))
        levels = await self._budgets.levels(counters) if counters else []
        return [
            BudgetStatus(
                applies_to=counter.subject.partition(":")[0],
                window=counter.window,
                resets_at=counter.resets_at,
                limit_micro_usd=counter.micro_usd_limit,
                spent_micro_usd=spent,
                reserved_micro_usd=reserved,
                images_limit=counter.images_limit,
                images=images,
            )
            for counter, (spent, reserved, images) in zip(counters, levels, strict=True)
        ]

    async def reserve(
        self, principal: Principal, micro_usd: int, images: int
    ) -> Reservation | None:
        """Hold ``micro_usd`` and ``images`` against every limit, or raise a 429."""
        now = datetime.now(UTC)
        counters = _counters(principal, now)
        if not counters:
            return None
        reservation = Reservation(new_id(), tuple(counters), micro_usd, images)
        await self._budgets.reserve(reservation.id, counters, micro_usd, images, now + self._hold)
        return reservation

    @staticmethod
    def settlement(
        reservation: Reservation | None, micro_usd: int, images: int
    ) -> BudgetSettlement | None:
        """What settling ``reservation`` writes: handed to the generation's record, so that
        both are one transaction."""
        if reservation is None:
            return None
        return BudgetSettlement(
            reservation.id,
            reservation.counters,
            reservation.micro_usd,
            reservation.images,
            micro_usd,
            images,
        )

    async def settle(self, reservation: Reservation | None, micro_usd: int, images: int) -> None:
        settlement = self.settlement(reservation, micro_usd, images)
        if settlement is not None:
            await self._budgets.settle(settlement)

    async def release(self, reservation: Reservation | None) -> None:
        await self.settle(reservation, 0, 0)

    async def release_expired(self) -> int:
        """Give back the holds of requests whose process died (run periodically by workers)."""
        return await self._budgets.release_expired(datetime.now(UTC))
