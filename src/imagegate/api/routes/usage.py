"""``GET /v1/usage`` (what a caller used, spent and saved) and ``GET /v1/events`` (admins)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from imagegate.api.deps import AdminPrincipal, CurrentPrincipal, ServicesDep
from imagegate.api.schemas import (
    BudgetBody,
    EventBody,
    EventList,
    UsageCounts,
    UsageGroup,
    UsageReportBody,
)
from imagegate.services.budgets import BudgetStatus
from imagegate.services.usage import MAX_EVENTS_PAGE, UsageGrouping, UsageTally, format_usd

router = APIRouter(prefix="/v1")

_MOMENT = "ISO 8601 date or date-time; UTC unless it has an offset."
From = Annotated[datetime | None, Query(alias="from", description=f"Included. {_MOMENT}")]
To = Annotated[datetime | None, Query(alias="to", description=f"Excluded. {_MOMENT}")]


def _counts(tally: UsageTally) -> UsageCounts:
    return UsageCounts(
        requests=tally.requests,
        images=tally.images,
        generated=tally.generated,
        cache_hit=tally.cache_hit,
        semantic_hit=tally.semantic_hit,
        coalesced=tally.coalesced,
        failed=tally.failed,
        spend_usd=format_usd(tally.spend_micro_usd),
        saved_usd=format_usd(tally.saved_micro_usd),
    )


def _group(tally: UsageTally) -> UsageGroup:
    return UsageGroup(key=tally.key, key_name=tally.key_name, **_counts(tally).model_dump())


@router.get(
    "/usage",
    response_model=UsageReportBody,
    tags=["Usage"],
    summary="Requests, images, spend and savings",
    description="Your own usage; admins see everyone's, or one user's with `user`. "
    "The period defaults to the current UTC month until now.",
)
async def usage(
    principal: CurrentPrincipal,
    services: ServicesDep,
    start: From = None,
    end: To = None,
    group_by: Annotated[UsageGrouping | None, Query(description="Split the totals.")] = None,
    user: Annotated[
        str | None, Query(max_length=200, description="Admins only: a user name or id.")
    ] = None,
) -> UsageReportBody:
    report = await services.usage.report(
        principal, start=start, end=end, group_by=group_by, user=user
    )
    return UsageReportBody(
        user=report.user,
        start=report.start,
        end=report.end,
        group_by=report.group_by,
        totals=_counts(report.totals),
        groups=[_group(tally) for tally in report.groups],
        budget=[_budget(status) for status in report.budget],
    )


def _budget(status: BudgetStatus) -> BudgetBody:
    def usd(micro: int | None) -> str | None:
        return None if micro is None else format_usd(micro)

    return BudgetBody(
        applies_to=status.applies_to,
        window=status.window,
        resets_at=status.resets_at,
        limit_usd=usd(status.limit_micro_usd),
        spent_usd=format_usd(status.spent_micro_usd),
        reserved_usd=format_usd(status.reserved_micro_usd),
        remaining_usd=usd(status.remaining_micro_usd),
        images_limit=status.images_limit,
        images=status.images,
    )


@router.get(
    "/events",
    response_model=EventList,
    tags=["Admin"],
    summary="Telemetry events, newest first",
)
async def events(
    principal: AdminPrincipal,
    services: ServicesDep,
    event_type: Annotated[
        str | None,
        Query(alias="type", max_length=40, pattern=r"^[a-z_]+$", examples=["generation_failed"]),
    ] = None,
    generation_id: Annotated[str | None, Query(max_length=40)] = None,
    start: From = None,
    end: To = None,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENTS_PAGE)] = 50,
    cursor: Annotated[
        int | None, Query(ge=1, description="next_cursor of the previous page.")
    ] = None,
) -> EventList:
    page = await services.usage.events(
        principal,
        event_type=event_type,
        generation_id=generation_id,
        start=start,
        end=end,
        cursor=cursor,
        limit=limit,
    )
    return EventList(
        data=[
            EventBody(
                id=e.id,
                type=e.type,
                generation_id=e.generation_id,
                data=e.data,
                created_at=e.created_at,
            )
            for e in page.events
        ],
        next_cursor=page.next_cursor,
    )
