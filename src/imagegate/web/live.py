"""The JSON and Server-Sent-Events endpoints the pages' scripts call (``/web/...``).

Each takes the signed session cookie (never a key header: the key stays out of JavaScript), is
scoped to the signed-in caller exactly as the API is (another user's job is 404), and every
POST carries the session's CSRF token in the ``X-CSRF-Token`` header or a ``csrf`` field.
Errors use the API's OpenAI error shape; the pages still work without any of this.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile
from starlette.responses import Response, StreamingResponse

from imagegate.errors import AuthenticationFailed, ImagegateError, InvalidRequest
from imagegate.models import GenerationRequest, InputImage, JobStatus, Principal
from imagegate.services.caching import CacheMode
from imagegate.services.generations import DeliveredImage
from imagegate.services.images import ImageView
from imagegate.services.jobs import JobOptions, JobView
from imagegate.web.pages import _services, _signed_in, gallery_query
from imagegate.web.session import csrf_ok

router = APIRouter(prefix="/web", include_in_schema=False)
KEEPALIVE_SECONDS = 5.0
PAGE_SIZE = 40
MAX_REFERENCES = 16
FRIENDLY = {
    "content_policy_violation": "The provider declined this prompt. Try wording it differently.",
    "upstream_rejected": "The provider declined this prompt. Try wording it differently.",
    "budget_exceeded": "You have reached your spending budget for now.",
    "quota_exceeded": "You have reached your image quota for now.",
    "rate_limit_exceeded": "Too many requests just now. Wait a moment and try again.",
    "concurrency_limit_exceeded": "You already have as many images in progress as you may.",
    "queue_full": "The queue is full right now. Try again in a minute.",
    "upstream_timeout": "The provider took too long to answer. Try again.",
    "upstream_unavailable": "The provider is unavailable right now. Try again soon.",
    "upstream_rate_limited": "The provider is busy right now. Try again in a moment.",
}


class CsrfRejected(ImagegateError):
    """A state-changing call without the session's CSRF token."""

    status = 403
    type = "invalid_request_error"
    code = "csrf_token_invalid"


def friendly(code: str | None, message: str) -> str:
    """What the page says about an error: plain words where the code has them."""
    return FRIENDLY.get(code or "", f"Something went wrong: {message}")


def _json(body: object, status: int = 200) -> Response:
    return Response(
        orjson.dumps(body), status, {"Cache-Control": "no-store"}, media_type="application/json"
    )


async def _caller(request: Request) -> Principal:
    found = await _signed_in(request)
    if found is None:
        raise AuthenticationFailed("Sign in first.")
    return found[0]


async def _posted(request: Request) -> tuple[Principal, dict[str, str], list[UploadFile]]:
    """The caller, the form's text fields and its ``reference`` files; CSRF-checked."""
    found = await _signed_in(request)
    if found is None:
        raise AuthenticationFailed("Sign in first.")
    principal, session = found
    form = await request.form(max_files=MAX_REFERENCES)
    fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    token = request.headers.get("x-csrf-token") or fields.get("csrf")
    if not csrf_ok(session, token):
        raise CsrfRejected("Your session expired; reload the page.")
    files = [
        v
        for k, v in form.multi_items()
        if k == "reference" and isinstance(v, UploadFile) and v.size
    ]
    return principal, fields, files


def _request(
    fields: dict[str, str], images: Sequence[InputImage] = (), seed: int | None = None
) -> GenerationRequest:
    try:
        n = int(fields.get("n") or 1)
    except ValueError:
        raise InvalidRequest("The number of images must be a whole number.", param="n") from None
    return GenerationRequest(
        prompt=fields.get("prompt", ""),
        model=fields.get("model") or None,
        n=n,
        size=fields.get("size") or None,
        quality=fields.get("quality") or None,
        images=tuple(images),
        seed=seed,
        enhance_prompt=True if fields.get("enhance_prompt") == "1" else None,
    )


def _mode(fields: dict[str, str]) -> tuple[CacheMode, int | None]:
    """Regenerate forces a fresh image (cache refresh); Variations also takes a new seed."""
    intent = fields.get("intent", "")
    if intent == "variations":
        return CacheMode.BYPASS, secrets.randbelow(2**31)
    if intent == "regenerate" or fields.get("regenerate") == "1":
        return CacheMode.REFRESH, None
    return CacheMode.DEFAULT, None


def _unix(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _image(item: DeliveredImage) -> dict[str, object]:
    stored = item.image
    return {
        "url": item.url,
        "width": stored.width,
        "height": stored.height,
        "placeholder": stored.placeholder,
        "revised_prompt": stored.revised_prompt,
    }


def job_state(view: JobView) -> dict[str, object]:
    """A job as the generate page shows it."""
    job = view.job
    error = None
    if job.error is not None:
        error = {
            "message": job.error.message,
            "code": job.error.code,
            "friendly": friendly(job.error.code, job.error.message),
        }
    generation = view.generation
    return {
        "id": job.id,
        "status": job.status.value,
        "stage": job.stage,
        "position": view.position,
        "created_at": _unix(job.created_at),
        "started_at": _unix(job.started_at),
        "finished_at": _unix(job.finished_at),
        "now": time.time(),
        "cache": None if generation is None else generation.outcome.value,
        "cost_usd": None if generation is None else f"{generation.cost_micro_usd / 1e6:.4f}",
        "images": [_image(item) for item in view.images],
        "error": error,
        "events": f"/web/jobs/{job.id}/events",
    }


@router.post("/jobs")
async def submit(request: Request) -> Response:
    """Queue a generation (or, with reference images, make it now: jobs take none)."""
    principal, fields, files = await _posted(request)
    services = _services(request)
    state = await services.traffic.count_request(principal)
    if state is not None:
        services.traffic.refuse_if_over(state)
    mode, seed = _mode(fields)
    if files:
        images = [InputImage.from_upload(await f.read(), f.content_type) for f in files]
        result = await services.generations.generate(principal, _request(fields, images), mode)
        return _json(
            {
                "id": None,
                "status": JobStatus.SUCCEEDED.value,
                "cache": result.generation.outcome.value,
                "cost_usd": f"{result.generation.cost_micro_usd / 1e6:.4f}",
                "images": [_image(item) for item in result.images],
                "error": None,
            }
        )
    view = await services.jobs.submit(principal, _request(fields, seed=seed), JobOptions(mode))
    return _json(job_state(view), 202)


@router.get("/jobs/{job_id}")
async def job(request: Request, job_id: str) -> Response:
    principal = await _caller(request)
    return _json(job_state(await _services(request).jobs.get(principal, job_id)))


@router.get("/jobs/{job_id}/events")
async def job_events(request: Request, job_id: str) -> StreamingResponse:
    """``state`` events (see ``job_state``) each time the job changes, ending when it ends."""
    principal = await _caller(request)
    services = _services(request)
    await services.jobs.get(principal, job_id)  # a 404 now, not an empty stream

    async def stream() -> AsyncIterator[bytes]:
        checked = time.monotonic()
        try:
            async for view in services.jobs.follow(principal, job_id, KEEPALIVE_SECONDS):
                if time.monotonic() - checked >= KEEPALIVE_SECONDS:
                    await _caller(request)  # a revoked key loses its stream within seconds
                    checked = time.monotonic()
                if view is None:
                    yield b": keep-alive\n\n"
                    continue
                yield b"event: state\ndata: " + orjson.dumps(job_state(view)) + b"\n\n"
        except ImagegateError as exc:
            body = {"error": {"message": exc.message, "code": exc.code,
                              "friendly": friendly(exc.code, exc.message)}}  # fmt: skip
            yield b"event: failure\ndata: " + orjson.dumps(body) + b"\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.post("/estimate")
async def estimate(request: Request) -> Response:
    """What the form's request would cost now (0 when the cache would answer it)."""
    principal, fields, _ = await _posted(request)
    found = await _services(request).generations.estimate(principal, _request(fields))
    return _json(
        {
            "model": found.model,
            "n": found.n,
            "size": found.size,
            "quality": found.quality,
            "estimated_cost_usd": f"{found.total_micro_usd / 1e6:.4f}",
            "list_cost_usd": f"{found.list_micro_usd / 1e6:.4f}",
            "cached": found.cached,
        }
    )


def gallery_item(view: ImageView) -> dict[str, Any]:
    record = view.record
    return {
        "id": record.id,
        "href": f"/images/{record.id}",
        "url": view.url,
        "thumbnail_url": view.thumbnail_url or view.url,
        "placeholder": record.image.placeholder,
        "alt": view.alt_text,
        "prompt": record.prompt,
        "model": record.model,
        "tags": list(record.tags),
        "created_at": record.created_at.isoformat(),
    }


@router.get("/images")
async def images(request: Request, cursor: str | None = None) -> Response:
    """One page of the caller's gallery (keyset: pass ``next_cursor`` back as ``cursor``)."""
    principal = await _caller(request)
    query = gallery_query(principal, request.query_params)
    page = await _services(request).images.list(principal, query, cursor, PAGE_SIZE)
    return _json(
        {"images": [gallery_item(v) for v in page.images], "next_cursor": page.next_cursor}
    )
