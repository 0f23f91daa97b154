"""The usage page: spend per day as a server-rendered SVG chart, totals, per-model table."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from imagegate.db.base import UsageGrouping, UsageTally
from imagegate.services.usage import format_usd
from imagegate.web.pages import _render, _services, _signed_in

router = APIRouter(include_in_schema=False)
CHART_W, CHART_H = 600, 160


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


def rate(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "—"


@router.get("/usage", response_class=HTMLResponse)
async def usage_page(request: Request) -> Response:
    found = await _signed_in(request)
    if found is None:
        return RedirectResponse("/", status_code=303)
    principal, session = found
    usage = _services(request).usage
    by_day = await usage.report(principal, group_by=UsageGrouping.DAY)
    by_model = await usage.report(principal, group_by=UsageGrouping.MODEL)
    totals = by_day.totals
    return _render(
        request,
        "usage.html",
        csrf=session["csrf"],
        totals=totals,
        days=by_day.groups,
        models=by_model.groups,
        bars=bars(by_day.groups),
        chart_w=CHART_W,
        chart_h=CHART_H,
        usd=format_usd,
        hit_rate=rate(totals.cache_hit + totals.semantic_hit, totals.requests),
        coalesce_rate=rate(totals.coalesced, totals.requests),
        budget=by_day.budget,
    )
