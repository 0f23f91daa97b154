"""The generate page: a plain form that works without JavaScript (submits and waits).

Prompt enhancement: when an enhancer is configured the form has an "Enhance the prompt"
checkbox. Ticked, the request asks for enhancement; unticked, the model's default applies (as
for an API request without ``enhance_prompt``). The rewrite is shown with the result.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from imagegate.catalog import ModelSpec, nearest_aspect_ratio
from imagegate.errors import ImagegateError
from imagegate.models import GenerationRequest, InputImage
from imagegate.services.caching import CacheMode
from imagegate.web.pages import _render, _services, _signed_in
from imagegate.web.session import csrf_ok

router = APIRouter(include_in_schema=False)
MAX_N = 4
MAX_REFERENCES = 16


def size_choices(spec: ModelSpec) -> list[tuple[str, str]]:
    """(value, label) of each size the model offers. A model that takes aspect ratios draws
    each size at its nearest ratio, and the label says which: "1536x1024 (drawn at 4:3)"."""
    if not spec.aspect_ratios:
        return [(str(size), str(size)) for size in spec.sizes]
    return [
        (str(size), f"{size} (drawn at {nearest_aspect_ratio(size, spec.aspect_ratios)})")
        for size in spec.sizes
    ]


def _form_context(request: Request, form: dict[str, str]) -> dict[str, Any]:
    generations = _services(request).generations
    models = list(generations.available_models())
    return {
        "models": models,
        "size_choices": {spec.name: size_choices(spec) for spec in models},
        "form": form,
        "max_n": MAX_N,
        "enhancer": generations.enhancer_configured,
    }


@router.get("/generate", response_class=HTMLResponse)
async def generate_page(request: Request) -> Response:
    found = await _signed_in(request)
    if found is None:
        return RedirectResponse("/", status_code=303)
    _, session = found
    return _render(request, "generate.html", csrf=session["csrf"], **_form_context(request, {}))


@router.post("/generate", response_class=HTMLResponse)
async def generate(request: Request) -> Response:
    found = await _signed_in(request)
    if found is None:
        return RedirectResponse("/", status_code=303)
    principal, session = found
    posted = await request.form(max_files=MAX_REFERENCES)
    form = {key: value for key, value in posted.multi_items() if isinstance(value, str)}
    files = [v for k, v in posted.multi_items() if k == "reference" and not isinstance(v, str)]
    if not csrf_ok(session, form.get("csrf")):
        return _render(request, "signin.html", status=403, error="Your session expired.")
    context = _form_context(request, form)
    try:
        n = min(max(int(form.get("n") or 1), 1), MAX_N)
    except ValueError:
        n = 1
    references = [InputImage.from_upload(await f.read(), f.content_type) for f in files if f.size]
    wanted = GenerationRequest(
        prompt=form.get("prompt", ""),
        model=form.get("model") or None,
        n=n,
        size=form.get("size") or None,
        quality=form.get("quality") or None,
        enhance_prompt=True if form.get("enhance_prompt") == "1" else None,
        images=tuple(references),
    )
    mode = CacheMode.REFRESH if form.get("regenerate") == "1" else CacheMode.DEFAULT
    services = _services(request)
    try:
        # the same per-key request count as the API's routes (images, budgets and
        # concurrency are checked inside the generation service)
        state = await services.traffic.count_request(principal)
        if state is not None:
            services.traffic.refuse_if_over(state)
        result = await services.generations.generate(principal, wanted, mode)
    except ImagegateError as exc:
        return _render(
            request, "generate.html", status=200, csrf=session["csrf"], error=exc.message, **context
        )
    return _render(request, "generate.html", csrf=session["csrf"], result=result, **context)
