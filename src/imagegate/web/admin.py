"""Admin pages (admins only; 404 for everyone else): API keys — create (shown once), revoke."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from imagegate.errors import ImagegateError, NotFound
from imagegate.models import Principal, Role
from imagegate.web.pages import _render, _services, _signed_in
from imagegate.web.session import csrf_ok

router = APIRouter(include_in_schema=False)


async def _admin(request: Request) -> tuple[Principal, dict[str, str]]:
    found = await _signed_in(request)
    if found is None or not found[0].is_admin:
        raise NotFound("Unknown route.")
    return found


async def _keys_page(
    request: Request, csrf: str, status: int = 200, **extra: object
) -> HTMLResponse:
    keys = await _services(request).keys.list_keys(include_revoked=True)
    return _render(request, "admin_keys.html", status=status, csrf=csrf, keys=keys, **extra)


@router.get("/admin/keys", response_class=HTMLResponse)
async def keys_page(request: Request) -> Response:
    _, session = await _admin(request)
    return await _keys_page(request, session["csrf"])


@router.post("/admin/keys", response_class=HTMLResponse)
async def keys_action(request: Request) -> Response:
    _, session = await _admin(request)
    form = {key: str(value) for key, value in (await request.form()).items()}
    if not csrf_ok(session, form.get("csrf")):
        return _render(request, "signin.html", status=403, error="Your session expired.")
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
