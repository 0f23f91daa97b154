"""Usage reports and the telemetry view, scoped to who asks.

A user sees only their own usage; an admin sees everyone's or one user's. Asking about another
user without being an admin is a 404, exactly like asking about a user who does not exist, so
the answer never confirms who is there. Money stays integer micro-USD until it is shown.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta

from imagegate.db.base import EventRecord, UsageGrouping, UsageRepository, UsageTally
from imagegate.errors import InvalidRequest, NotFound
from imagegate.models import Principal
from imagegate.services.budgets import BudgetService, BudgetStatus

# Front ends may not import ``db``; they take the report's parts from here.
__all__ = [
    "MAX_EVENTS_PAGE",
    "EventPage",
    "EventRecord",
    "UsageGrouping",
    "UsageReport",
    "UsageService",
    "UsageTally",
    "format_usd",
    "report_window",
]

MAX_EVENTS_PAGE = 200


@dataclass(frozen=True, slots=True)
class UsageReport:
    """What a user (or everyone, ``user`` None) did in ``[start, end)``, in total and per group."""

    user: str | None
    start: datetime
    end: datetime
    group_by: UsageGrouping | None
    totals: UsageTally
    groups: tuple[UsageTally, ...]
    """Empty when not grouped; otherwise they partition ``totals`` exactly."""
    budget: tuple[BudgetStatus, ...] = ()
    """The caller's own limits (key and user) and what is left of them; empty when the report
    is not the caller's own or no limit applies."""


@dataclass(frozen=True, slots=True)
class EventPage:
    events: tuple[EventRecord, ...]
    """Newest first."""
    next_cursor: int | None
    """Pass as ``cursor`` for the next (older) page; None on the last page."""


def format_usd(micro_usd: int) -> str:
    """Integer micro-USD as dollars with 6 decimals, exactly (no float on the way)."""
    sign = "-" if micro_usd < 0 else ""
    whole, fraction = divmod(abs(micro_usd), 1_000_000)
    return f"{sign}{whole}.{fraction:06d}"


def as_utc(moment: datetime) -> datetime:
    """Naive times (a bare date from a form or the command line) are taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def report_window(
    start: datetime | None, end: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """The half-open period ``[start, end)`` a report covers, in UTC.

    ``end`` defaults to now; ``start`` to the first instant of the UTC month ``end`` falls in
    (the month of its last included instant, so ``to=2026-02-01`` reports January).
    """
    end = as_utc(end) if end is not None else now
    if start is None:
        last = end - timedelta(microseconds=1)
        start = last.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start = as_utc(start)
    _check_order(start, end)
    return start, end


def _check_order(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and start > end:
        raise InvalidRequest(
            f"'from' ({start.isoformat()}) is after 'to' ({end.isoformat()}).", param="from"
        )


def _add_up(tallies: tuple[UsageTally, ...]) -> UsageTally:
    counted = [f.name for f in fields(UsageTally) if f.name not in ("key", "key_name")]
    return UsageTally(**{name: sum(getattr(t, name) for t in tallies) for name in counted})


class UsageService:
    def __init__(self, repository: UsageRepository, budgets: BudgetService) -> None:
        self._repository = repository
        self._budgets = budgets

    async def report(
        self,
        principal: Principal,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        group_by: UsageGrouping | None = None,
        user: str | None = None,
    ) -> UsageReport:
        """The caller's usage; an admin's ``user`` (a name or an id) picks one user, and an
        admin without it sees everyone. Default period: this UTC month until now."""
        start, end = report_window(start, end, datetime.now(UTC))
        user_id, user_name = await self._scope(principal, user)
        tallies = tuple(
            await self._repository.tally(user_id=user_id, start=start, end=end, group_by=group_by)
        )
        return UsageReport(
            user=user_name,
            start=start,
            end=end,
            group_by=group_by,
            totals=_add_up(tallies),
            groups=tallies if group_by is not None else (),
            budget=tuple(await self._budgets.status(principal))
            if user_id == principal.user_id
            else (),
        )

    async def _scope(self, principal: Principal, user: str | None) -> tuple[str | None, str | None]:
        """``(user id, user name)`` the report covers; ``(None, None)`` means everyone."""
        if user is None:
            if principal.is_admin:
                return None, None
            return principal.user_id, principal.user_name
        found = await self._repository.find_user(user) if principal.is_admin else None
        if found is None:
            raise NotFound(f"No user {user!r}.", param="user")
        return found

    async def events(
        self,
        principal: Principal,
        *,
        event_type: str | None = None,
        generation_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        cursor: int | None = None,
        limit: int = 50,
    ) -> EventPage:
        """Telemetry events, newest first, for admins only (404 for anyone else)."""
        if not principal.is_admin:
            raise NotFound("Unknown route.")
        if not 1 <= limit <= MAX_EVENTS_PAGE:
            raise InvalidRequest(f"'limit' must be 1 to {MAX_EVENTS_PAGE}.", param="limit")
        start = as_utc(start) if start is not None else None
        end = as_utc(end) if end is not None else None
        _check_order(start, end)
        found = await self._repository.events(
            event_type=event_type,
            generation_id=generation_id,
            start=start,
            end=end,
            before_id=cursor,
            limit=limit + 1,  # one more than shown tells whether another page exists
        )
        page = tuple(found[:limit])
        return EventPage(events=page, next_cursor=page[-1].id if len(found) > limit else None)
