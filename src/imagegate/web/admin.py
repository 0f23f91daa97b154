"""Admin pages (admins only; 404 for everyone else, signed in or not).

- ``/admin/keys``: create (the secret shown once), revoke, and per key (``/admin/keys/{prefix}``)
  its budgets, quotas and traffic limits.
- ``/admin/users``: every user with their active keys, this month's spend and their limits;
  per user (``/admin/users/{name}``) the budgets and quotas shared by all their keys.
- ``/admin/health``: readiness, degradations, providers, circuit breakers, queue depths.
- ``/admin/cleanup``: a dry-run preview, then a run that must be confirmed.

Every form carries the session's CSRF token; a bad token is a 403 and changes nothing.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.routing import APIRoute
from starlette.routing import Match

from imagegate.errors import ImagegateError, InvalidRequest, NotFound
from imagegate.models import JobStatus, Limits, Principal, RateLimits, Role
from imagegate.services.usage import format_usd
from imagegate.web.pages import _render, _services, _signed_in
from imagegate.web.session import csrf_ok

router = APIRouter(include_in_schema=False)
MAX_USERS = 500

BREAKER_LABELS = {
    "closed": "✓ closed (calls go through)",
    "half_open": "◐ half-open (one probe call allowed)",
    "open": "✕ open (calls refused until the probe)",
}
"""Breaker states in words and a symbol, so no state is told by colour alone."""


async def _admin(request: Request) -> tuple[Principal, dict[str, str]]:
    found = await _signed_in(request)
    if found is None or not found[0].is_admin:
        raise NotFound("Unknown route.")
    return found


async def _admin_form(request: Request) -> tuple[Principal, dict[str, str], dict[str, str]] | None:
    """The admin, their session and the posted form; None when the CSRF token is wrong."""
    principal, session = await _admin(request)
    form = {key: str(value) for key, value in (await request.form()).items()}
    if not csrf_ok(session, form.get("csrf")):
        return None
    return principal, session, form


def _expired(request: Request) -> HTMLResponse:
    return _render(request, "signin.html", status=403, error="Your session expired.")


def _usd(value: int | None) -> str:
    return "" if value is None else format_usd(value).rstrip("0").rstrip(".")


def _whole(form: dict[str, str], name: str, label: str) -> int | None:
    raw = form.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise InvalidRequest(f"{label} must be a whole number (or empty).", param=name)
    return int(raw)


def _micro_usd(form: dict[str, str], name: str, label: str) -> int | None:
    raw = form.get(name, "").strip().lstrip("$")
    if not raw:
        return None
    try:
        usd = Decimal(raw)
    except InvalidOperation:
        usd = Decimal(-1)
    if not usd.is_finite() or usd < 0:
        raise InvalidRequest(f"{label} must be an amount in USD, e.g. 5 or 0.25.", param=name)
    return int(usd * 1_000_000)


def _limits_from(form: dict[str, str]) -> Limits:
    return Limits(
        budget_micro_usd_day=_micro_usd(form, "budget_usd_day", "The daily budget"),
        budget_micro_usd_month=_micro_usd(form, "budget_usd_month", "The monthly budget"),
        images_per_minute=_whole(form, "images_per_minute", "Images per minute"),
        images_per_day=_whole(form, "images_per_day", "Images per day"),
    )


def _limit_fields(limits: Limits) -> dict[str, str]:
    """A form's values for ``limits`` (empty = unlimited)."""
    return {
        "budget_usd_day": _usd(limits.budget_micro_usd_day),
        "budget_usd_month": _usd(limits.budget_micro_usd_month),
        "images_per_minute": _count(limits.images_per_minute),
        "images_per_day": _count(limits.images_per_day),
    }


def _count(value: int | None) -> str:
    return "" if value is None else str(value)


def _limits_text(limits: Limits) -> str:
    parts = []
    if limits.budget_micro_usd_day is not None:
        parts.append(f"${_usd(limits.budget_micro_usd_day) or '0'}/day")
    if limits.budget_micro_usd_month is not None:
        parts.append(f"${_usd(limits.budget_micro_usd_month) or '0'}/month")
    if limits.images_per_minute is not None:
        parts.append(f"{limits.images_per_minute} images/min")
    if limits.images_per_day is not None:
        parts.append(f"{limits.images_per_day} images/day")
    return ", ".join(parts) or "unlimited"


# -- keys ---------------------------------------------------------------------------------


async def _keys_page(
    request: Request, csrf: str, status: int = 200, **extra: object
) -> HTMLResponse:
    keys = await _services(request).keys.list_keys(include_revoked=True)
    return _render(
        request,
        "admin_keys.html",
        status=status,
        csrf=csrf,
        keys=keys,
        limits_text=_limits_text,
        **extra,
    )


@router.get("/admin/keys", response_class=HTMLResponse)
async def keys_page(request: Request) -> Response:
    _, session = await _admin(request)
    return await _keys_page(request, session["csrf"])


@router.post("/admin/keys", response_class=HTMLResponse)
async def keys_action(request: Request) -> Response:
    checked = await _admin_form(request)
    if checked is None:
        return _expired(request)
    _, session, form = checked
    keys = _services(request).keys
    try:
        if form.get("action") == "revoke":
            await keys.revoke(form.get("prefix", ""))
            return await _keys_page(request, session["csrf"], notice="Key revoked.")
        role = Role.ADMIN if form.get("role") == "admin" else Role.USER
        issued = await keys.create(form.get("name", "").strip() or "web", role)
    except ImagegateError as exc:
        return await _keys_page(request, session["csrf"], status=400, error=exc.message)
    return await _keys_page(request, session["csrf"], secret=issued.secret)


async def _active_key(request: Request, prefix: str) -> Any:
    for key in await _services(request).keys.list_keys(include_revoked=False):
        if key.prefix == prefix:
            return key
    raise NotFound(f"No active API key has the prefix {prefix!r}.")


def _key_form(key: Any) -> dict[str, str]:
    return {
        **_limit_fields(key.limits),
        "requests_per_minute": _count(key.rate_limits.requests_per_minute),
        "concurrent_generations": _count(key.rate_limits.concurrent_generations),
    }


@router.get("/admin/keys/{prefix}", response_class=HTMLResponse)
async def key_page(request: Request, prefix: str) -> Response:
    _, session = await _admin(request)
    key = await _active_key(request, prefix)
    return _render(request, "admin_key.html", csrf=session["csrf"], key=key, form=_key_form(key))


@router.post("/admin/keys/{prefix}", response_class=HTMLResponse)
async def set_key_limits(request: Request, prefix: str) -> Response:
    checked = await _admin_form(request)
    if checked is None:
        return _expired(request)
    _, session, form = checked
    key = await _active_key(request, prefix)
    try:
        limits = _limits_from(form)
        rate_limits = RateLimits(
            requests_per_minute=_whole(form, "requests_per_minute", "Requests per minute"),
            concurrent_generations=_whole(form, "concurrent_generations", "Concurrent generations"),
        )
        [key, *_] = await _services(request).keys.set_limits(prefix, limits, rate_limits)
    except ImagegateError as exc:
        return _render(
            request,
            "admin_key.html",
            status=400,
            csrf=session["csrf"],
            key=key,
            form=form,
            error=exc.message,
        )
    return _render(
        request,
        "admin_key.html",
        csrf=session["csrf"],
        key=key,
        form=_key_form(key),
        notice="Limits saved.",
    )


# -- users --------------------------------------------------------------------------------


@router.get("/admin/users", response_class=HTMLResponse)
async def users_page(request: Request) -> Response:
    principal, session = await _admin(request)
    services = _services(request)
    users = await services.keys.list_users(MAX_USERS)
    rows = []
    for user in users:
        report = await services.usage.report(principal, user=user.id)
        rows.append(
            {
                "user": user,
                "spend": format_usd(report.totals.spend_micro_usd),
                "images": report.totals.images,
                "limits": _limits_text(user.limits),
            }
        )
    return _render(
        request,
        "admin_users.html",
        csrf=session["csrf"],
        rows=rows,
        truncated=len(users) >= MAX_USERS,
    )


async def _user(request: Request, name: str) -> Any:
    user = await _services(request).keys.find_user(name)
    if user is None:
        raise NotFound(f"No user {name!r}.")
    return user


@router.get("/admin/users/{name}", response_class=HTMLResponse)
async def user_page(request: Request, name: str) -> Response:
    _, session = await _admin(request)
    user = await _user(request, name)
    return _render(
        request, "admin_user.html", csrf=session["csrf"], user=user, form=_limit_fields(user.limits)
    )


@router.post("/admin/users/{name}", response_class=HTMLResponse)
async def set_user_limits(request: Request, name: str) -> Response:
    checked = await _admin_form(request)
    if checked is None:
        return _expired(request)
    _, session, form = checked
    user = await _user(request, name)
    try:
        limits = _limits_from(form)
        await _services(request).keys.set_user_limits(user.name, limits)
    except ImagegateError as exc:
        return _render(
            request,
            "admin_user.html",
            status=400,
            csrf=session["csrf"],
            user=user,
            form=form,
            error=exc.message,
        )
    user = await _user(request, name)
    return _render(
        request,
        "admin_user.html",
        csrf=session["csrf"],
        user=user,
        form=_limit_fields(user.limits),
        notice="Limits saved.",
    )


# -- health and queues --------------------------------------------------------------------


@router.get("/admin/health", response_class=HTMLResponse)
async def health_page(request: Request) -> Response:
    principal, session = await _admin(request)
    services = _services(request)
    checks = await services.health.readiness()
    report = services.providers.report()
    depths = await services.jobs.depths(principal)
    lanes = {lane.model: lane for lane in services.lanes.stats()}
    models = sorted(set(depths) | set(lanes))
    queues = [
        {
            "model": model,
            "jobs_queued": depths.get(model, {}).get(JobStatus.QUEUED, 0),
            "jobs_running": depths.get(model, {}).get(JobStatus.RUNNING, 0),
            "waiting": lanes[model].waiting if model in lanes else 0,
            "calling": lanes[model].running if model in lanes else 0,
            "capacity": lanes[model].capacity if model in lanes else None,
        }
        for model in models
    ]
    return _render(
        request,
        "admin_health.html",
        csrf=session["csrf"],
        checks=checks,
        ready=all(state == "ok" for state in checks.values()),
        degraded=services.health.degraded(),
        providers=report.providers,
        targets=[(t, s, BREAKER_LABELS.get(s, s)) for t, s in sorted(report.targets.items())],
        queues=queues,
    )


# -- cleanup ------------------------------------------------------------------------------


def _size(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} bytes"  # pragma: no cover


CATEGORY_LABELS = {
    "orphan_blobs": "Orphan files (no image refers to them)",
    "young_orphans_kept": "Young orphan files (kept: may be a write in flight)",
    "repaired_thumbnails": "Missing thumbnails made again from their image",
    "missing_blobs": "Images whose file is missing (reported only: cannot be repaired)",
    "expired_cache_entries": "Expired cache entries",
    "expired_images": "Images past the retention period (unpinned)",
}


@router.get("/admin/cleanup", response_class=HTMLResponse)
async def cleanup_page(request: Request) -> Response:
    _, session = await _admin(request)
    return _render(request, "admin_cleanup.html", csrf=session["csrf"], report=None)


@router.post("/admin/cleanup", response_class=HTMLResponse)
async def cleanup(request: Request) -> Response:
    checked = await _admin_form(request)
    if checked is None:
        return _expired(request)
    _, session, form = checked
    run = form.get("action") == "run"
    if run and form.get("confirm") != "yes":
        return _render(
            request,
            "admin_cleanup.html",
            status=400,
            csrf=session["csrf"],
            report=None,
            error="Tick the confirmation box to delete; nothing was removed.",
        )
    report = await _services(request).maintenance.cleanup(dry_run=not run)
    rows = [
        (CATEGORY_LABELS.get(name, name), tally.count, _size(tally.bytes))
        for name, tally in report.tallies().items()
    ]
    return _render(
        request,
        "admin_cleanup.html",
        csrf=session["csrf"],
        report=report,
        rows=rows,
        missing=report.missing_records[:100],
    )


OTHER_METHODS = ["POST", "PUT", "PATCH", "DELETE"]


@router.api_route("/admin/{rest:path}", methods=OTHER_METHODS, include_in_schema=False)
async def other_method(request: Request, rest: str) -> Response:
    """Any other method on an admin page: 404 unless the caller is an admin (a 405 would tell
    everyone the page exists), then 405 with the methods the page takes. Routes are matched in
    order, so the pages' own handlers above answer first."""
    await _admin(request)
    allowed: set[str] = set()
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        if route.endpoint is not other_method and route.matches(request.scope)[0] is Match.PARTIAL:
            allowed |= getattr(route, "methods", set())
    if not allowed:
        raise NotFound("Unknown route.")
    return Response(status_code=405, headers={"Allow": ", ".join(sorted(allowed))})
