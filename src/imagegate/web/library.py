"""Changing one image from its page: alt text, tags, pin, delete (each form CSRF-checked).

The edit form also answers the page's script: with ``Accept: application/json`` and the CSRF
token in ``X-CSRF-Token`` it saves and answers the saved values instead of redirecting."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from imagegate.errors import NotFound
from imagegate.models import Principal
from imagegate.web.live import CsrfRejected
from imagegate.web.pages import _render, _services, _signed_in
from imagegate.web.session import csrf_ok

router = APIRouter(include_in_schema=False)


async def _checked(request: Request) -> tuple[Principal, dict[str, str]]:
    """The signed-in caller and the form, or 404 (signed out) / 403 (bad CSRF token)."""
    found = await _signed_in(request)
    if found is None:
        raise NotFound("No such image.")
    principal, session = found
    form = {key: str(value) for key, value in (await request.form()).items()}
    if not csrf_ok(session, request.headers.get("x-csrf-token") or form.get("csrf")):
        raise _Forbidden
    return principal, form


class _Forbidden(Exception):
    pass


@router.post("/images/{image_id}/edit")
async def edit_image(request: Request, image_id: str) -> Response:
    scripted = "application/json" in request.headers.get("accept", "")
    try:
        principal, form = await _checked(request)
    except _Forbidden:
        if scripted:
            raise CsrfRejected("Your session expired; reload the page.") from None
        return _render(request, "signin.html", status=403, error="Your session expired.")
    tags = [tag for tag in form.get("tags", "").split(",") if tag.strip()]
    view = await _services(request).images.update(
        principal,
        image_id,
        alt_text=form.get("alt_text", ""),
        tags=tags,
        pinned=form.get("pinned") == "on",
    )
    if scripted:  # the page's script (detail.js) saves in place
        record = view.record
        return JSONResponse(
            {"alt_text": view.alt_text, "tags": list(record.tags), "pinned": record.pinned},
            headers={"Cache-Control": "no-store"},
        )
    return RedirectResponse(f"/images/{image_id}", status_code=303)


@router.post("/images/{image_id}/delete")
async def delete_image(request: Request, image_id: str) -> Response:
    try:
        principal, form = await _checked(request)
    except _Forbidden:
        return _render(request, "signin.html", status=403, error="Your session expired.")
    if form.get("confirm") != "yes":
        return RedirectResponse(f"/images/{image_id}", status_code=303)
    await _services(request).images.delete(principal, image_id)
    return RedirectResponse("/", status_code=303)
