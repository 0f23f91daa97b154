"""Pages: sign in/out, the gallery, one image. Handlers call the services directly."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from imagegate.container import Services
from imagegate.errors import AuthenticationFailed, InvalidRequest, NotFound
from imagegate.models import ImageQuery, Principal
from imagegate.services.images import ImagePage
from imagegate.web.session import COOKIE, Sessions, csrf_ok, session_secret

if TYPE_CHECKING:
    from fastapi.templating import Jinja2Templates

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
router = APIRouter(include_in_schema=False)

CSP = (
    "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
PAGE_SIZE = 40


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _sessions(request: Request) -> Sessions:
    sessions: Sessions | None = getattr(request.app.state, "web_sessions", None)
    if sessions is None:
        settings = _services(request).settings
        secret = session_secret(settings.data_dir, settings.web.session_secret)
        sessions = Sessions(secret, settings.web.session_seconds)
        request.app.state.web_sessions = sessions
    return sessions


@functools.cache
def _templates() -> Jinja2Templates:
    """Loaded with the first page: a gateway serving only the API never imports jinja2."""
    from fastapi.templating import Jinja2Templates

    return Jinja2Templates(directory=HERE / "templates")


def _render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    principal: Principal | None = getattr(request.state, "web_principal", None)
    context.setdefault("is_admin", principal is not None and principal.is_admin)
    oidc = _services(request).settings.web.oidc
    context.setdefault("oidc_label", oidc.label if oidc.enabled else None)
    response = _templates().TemplateResponse(request, name, context, status_code=status)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-store"
    return response


async def _signed_in(request: Request) -> tuple[Principal, dict[str, str]] | None:
    session = _sessions(request).read(request.cookies.get(COOKIE))
    if session is None:
        return None
    keys = _services(request).keys
    try:
        principal = await keys.principal_for_key(session.get("key_id", ""))
    except AuthenticationFailed:
        return None  # a revoked key signs its sessions out
    request.state.web_principal = principal
    return principal, session


EVERYONE = "*"
FILTERS = ("q", "model", "tag", "from", "user")


def gallery_query(principal: Principal, params: Mapping[str, str]) -> ImageQuery:
    """The gallery's filters: words (``q``), ``model``, ``tag``, ``from`` (YYYY-MM-DD: created
    on or after). Everyone's gallery shows their own images, admins' too: an admin sees
    another user's with ``user=<name>`` and everyone's only with ``user=*``."""
    start = None
    if day := params.get("from"):
        try:
            start = datetime.fromisoformat(day)
        except ValueError:
            raise InvalidRequest("'from' must be a date: YYYY-MM-DD.", param="from") from None
    user: str | None = principal.user_id
    if principal.is_admin and (wanted := params.get("user", "").strip()):
        user = None if wanted == EVERYONE else wanted
    return ImageQuery(
        q=params.get("q") or None,
        model=params.get("model") or None,
        tag=params.get("tag") or None,
        start=start,
        user=user,
    )


@router.get("/", response_class=HTMLResponse)
async def gallery(request: Request, cursor: str | None = None) -> Response:
    found = await _signed_in(request)
    if found is None:
        return _render(request, "signin.html")
    principal, session = found
    params = request.query_params
    filters = {name: params.get(name, "") for name in FILTERS}
    models = sorted(spec.name for spec in _services(request).generations.available_models())
    context: dict[str, Any] = {"filters": filters, "models": models, "csrf": session["csrf"]}
    try:
        query = gallery_query(principal, params)
        page = await _services(request).images.list(principal, query, cursor, PAGE_SIZE)
    except (InvalidRequest, NotFound) as exc:  # a bad date or cursor; an unknown user (admins)
        status = 400 if isinstance(exc, InvalidRequest) else 404
        empty = ImagePage((), None)
        return _render(request, "gallery.html", status, page=empty, error=exc.message, **context)
    more = urlencode({"cursor": page.next_cursor or "", **{k: v for k, v in filters.items() if v}})
    return _render(request, "gallery.html", page=page, more=more, **context)


@router.post("/signin")
async def sign_in(request: Request) -> Response:
    form = await request.form()
    key = str(form.get("api_key", "")).strip()
    try:
        principal = await _services(request).keys.authenticate(f"Bearer {key}")
    except AuthenticationFailed:
        return _render(request, "signin.html", status=401, error="That API key is not valid.")
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        COOKIE,
        _sessions(request).issue(principal.key_id or ""),
        max_age=_sessions(request).max_age,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/signout")
async def sign_out(request: Request) -> Response:
    session = _sessions(request).read(request.cookies.get(COOKIE))
    form = await request.form()
    if session is None or not csrf_ok(session, str(form.get("csrf", ""))):
        return _render(request, "signin.html", status=403, error="Your session expired.")
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(COOKIE)
    return response


@router.get("/images/{image_id}", response_class=HTMLResponse)
async def image_detail(request: Request, image_id: str) -> Response:
    found = await _signed_in(request)
    if found is None:
        raise NotFound("No such image.")
    principal, session = found
    view = await _services(request).images.get(principal, image_id)
    return _render(request, "detail.html", view=view, csrf=session["csrf"])
