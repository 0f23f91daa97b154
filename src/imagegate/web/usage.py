"""The usage page: spend and images per day as server-rendered SVG charts (each bar titled
with its figures, and the same figures in a table), totals, a per-model table, and what is
left of each budget and quota with when it resets."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from imagegate.db.base import UsageGrouping, UsageTally
from imagegate.services.budgets import BudgetStatus
from imagegate.services.usage import format_usd
from imagegate.web.pages import _render, _services, _signed_in

router = APIRouter(include_in_schema=False)
CHART_W, CHART_H = 600, 160
METER_W = 200


def bars(days: tuple[UsageTally, ...]) -> list[dict[str, object]]:
    """One labelled bar per day, scaled to the busiest day (heights in SVG units)."""
    top = max((day.spend_micro_usd for day in days), default=0) or 1
    width = CHART_W / max(len(days), 1)
    return [
        {
            "x": round(index * width, 1),
            "w": round(max(width - 2, 1), 1),
            "h": round(CHART_H * day.spend_micro_usd / top, 1),
            "label": f"{day.key}: ${format_usd(day.spend_micro_usd)}, {day.images} images",
        }
        for index, day in enumerate(days)
    ]


def image_bars(days: tuple[UsageTally, ...]) -> list[dict[str, object]]:
    """One labelled bar per day for the images made, scaled to the busiest day."""
    top = max((day.images for day in days), default=0) or 1
    width = CHART_W / max(len(days), 1)
    return [
        {
            "x": round(index * width, 1),
            "w": round(max(width - 2, 1), 1),
            "h": round(CHART_H * day.images / top, 1),
            "label": f"{day.key}: {day.images} images",
        }
        for index, day in enumerate(days)
    ]


def _until(moment: datetime, now: datetime) -> str:
    left = max(0, int((moment - now).total_seconds()))
    days, rest = divmod(left, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"in {days} d {hours} h"
    if hours:
        return f"in {hours} h {minutes} min"
    return f"in {max(minutes, 1)} min"


WINDOW_NAMES = {"minute": "this minute", "day": "today (UTC)", "month": "this month (UTC)"}


def budget_rows(budget: tuple[BudgetStatus, ...], now: datetime) -> list[dict[str, object]]:
    """Each limit in words: what it covers, what is left, when it resets, and a meter whose
    filled share is also written as a percentage (never told by colour alone)."""
    rows: list[dict[str, object]] = []
    for status in budget:
        scope = "This API key" if status.applies_to == "key" else "Your account"
        window = WINDOW_NAMES.get(status.window, status.window)
        resets = f"{status.resets_at:%Y-%m-%d %H:%M} UTC ({_until(status.resets_at, now)})"
        if status.limit_micro_usd is not None:
            used = status.spent_micro_usd + status.reserved_micro_usd
            share = min(1.0, used / status.limit_micro_usd) if status.limit_micro_usd else 1.0
            rows.append(
                {
                    "what": f"{scope}: spend {window}",
                    "limit": f"${format_usd(status.limit_micro_usd)}",
                    "used": f"${format_usd(used)}",
                    "remaining": f"${format_usd(status.remaining_micro_usd or 0)}",
                    "resets": resets,
                    "percent": round(100 * share),
                    "fill": round(METER_W * share, 1),
                }
            )
        if status.images_limit is not None:
            share = min(1.0, status.images / status.images_limit) if status.images_limit else 1.0
            rows.append(
                {
                    "what": f"{scope}: images {window}",
                    "limit": f"{status.images_limit} images",
                    "used": f"{status.images} images",
                    "remaining": f"{max(0, status.images_limit - status.images)} images",
                    "resets": resets,
                    "percent": round(100 * share),
                    "fill": round(METER_W * share, 1),
                }
            )
    return rows


def rate(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "—"


@router.get("/usage", response_class=HTMLResponse)
async def usage_page(request: Request) -> Response:
    found = await _signed_in(request)
    if found is None:
        return RedirectResponse("/", status_code=303)
    principal, session = found
    usage = _services(request).usage
    # an admin's page is their own usage too (the API's /v1/usage shows everyone's)
    own = principal.user_id if principal.is_admin else None
    by_day = await usage.report(principal, group_by=UsageGrouping.DAY, user=own)
    by_model = await usage.report(principal, group_by=UsageGrouping.MODEL, user=own)
    totals = by_day.totals
    return _render(
        request,
        "usage.html",
        csrf=session["csrf"],
        totals=totals,
        days=by_day.groups,
        models=by_model.groups,
        bars=bars(by_day.groups),
        image_bars=image_bars(by_day.groups),
        budgets=budget_rows(by_day.budget, datetime.now(UTC)),
        meter_w=METER_W,
        chart_w=CHART_W,
        chart_h=CHART_H,
        usd=format_usd,
        hit_rate=rate(totals.cache_hit + totals.semantic_hit, totals.requests),
        coalesce_rate=rate(totals.coalesced, totals.requests),
        budget=by_day.budget,
    )
