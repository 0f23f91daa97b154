"""The native jobs API: asynchronous generations with positions, events, webhooks, batches."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response, StreamingResponse

from imagegate.api.deps import CurrentPrincipal, ServicesDep
from imagegate.api.job_schemas import (
    BatchObject,
    CreateBatchRequest,
    CreateJobRequest,
    JobExtras,
    JobList,
    JobObject,
)
from imagegate.api.rate_limits import AdmittedPrincipal
from imagegate.api.routes.openai_images import ERRORS, cache_mode
from imagegate.errors import ImagegateError, InvalidRequest
from imagegate.models import GenerationRequest, JobStatus
from imagegate.services.documents import batch_object, job_object
from imagegate.services.jobs import JobOptions

router = APIRouter(prefix="/v1", tags=["Jobs"])

MAX_WAIT_SECONDS = 60
KEEPALIVE_SECONDS = 5.0
_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait=(\d+)")


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def _base(request: Request, services: ServicesDep) -> str:
    """Where the caller reaches this gateway: the public URL if set, else as it asked."""
    return (services.settings.public_url or str(request.base_url)).rstrip("/")


def _options(body: JobExtras, request: Request, requested: str | None) -> JobOptions:
    return JobOptions(
        cache_mode=cache_mode(request.headers.get("cache-control"), requested),
        priority=body.priority,
        webhook_url=body.webhook,
        webhook_events=tuple(body.webhook_events),
        metadata=body.metadata,
    )


def _prefer_wait(request: Request) -> int | None:
    match = _PREFER_WAIT.search(request.headers.get("prefer", ""))
    return None if match is None else min(int(match.group(1)), MAX_WAIT_SECONDS)


@router.post(
    "/jobs",
    status_code=202,
    response_model=JobObject,
    responses=ERRORS,
    summary="Queue a generation; Prefer: wait=N returns it finished if done within N s",
)
async def create_job(
    body: CreateJobRequest, request: Request, principal: AdmittedPrincipal, services: ServicesDep
) -> Response:
    options = _options(body, request, body.cache)
    view = await services.jobs.submit(principal, body.to_domain(), options)
    headers = {"Location": f"/v1/jobs/{view.job.id}"}
    wait = _prefer_wait(request)
    if wait:
        view = await services.jobs.wait(principal, view.job.id, wait)
        headers["Preference-Applied"] = f"wait={wait}"
    status = 200 if view.job.status.finished else 202
    return _json(job_object(view, _base(request, services)), status, headers)


@router.get("/jobs", response_model=JobList, responses=ERRORS, summary="Your jobs, newest first")
async def list_jobs(
    request: Request,
    principal: CurrentPrincipal,
    services: ServicesDep,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    views, next_cursor = await services.jobs.page(principal, status, limit, cursor)
    base = _base(request, services)
    return _json(
        {
            "object": "list",
            "data": [job_object(view, base) for view in views],
            "has_more": next_cursor is not None,
            "next_cursor": next_cursor,
        }
    )


@router.get("/jobs/{job_id}", response_model=JobObject, responses=ERRORS, summary="One job")
async def get_job(
    job_id: str, request: Request, principal: CurrentPrincipal, services: ServicesDep
) -> Response:
    return _json(job_object(await services.jobs.get(principal, job_id), _base(request, services)))


@router.post(
    "/jobs/{job_id}/cancel", response_model=JobObject, responses=ERRORS, summary="Cancel a job"
)
async def cancel_job(
    job_id: str, request: Request, principal: CurrentPrincipal, services: ServicesDep
) -> Response:
    view = await services.jobs.cancel(principal, job_id)
    return _json(job_object(view, _base(request, services)))


@router.get(
    "/jobs/{job_id}/events",
    responses={200: {"content": {"text/event-stream": {}}}, **ERRORS},
    summary="Server-Sent Events: queued (with position), started, progress, and the end",
)
async def job_events(
    job_id: str, request: Request, principal: CurrentPrincipal, services: ServicesDep
) -> StreamingResponse:
    await services.jobs.get(principal, job_id)  # a 404 now, not an empty stream
    base = _base(request, services)
    authorization = request.headers.get("authorization")

    async def stream() -> AsyncIterator[bytes]:
        started = False
        checked = time.monotonic()
        async for view in services.jobs.follow(principal, job_id, KEEPALIVE_SECONDS):
            if time.monotonic() - checked >= KEEPALIVE_SECONDS:
                # A key revoked while its stream is open loses it within seconds.
                await services.keys.authenticate(authorization)
                checked = time.monotonic()
            if view is None:
                yield b": keep-alive\n\n"
                continue
            job = view.job
            names = []
            if job.status is JobStatus.QUEUED:
                names = ["queued"]
            elif job.status is JobStatus.RUNNING:
                names = ["progress"] if started else ["started"]
            else:
                if not started and job.started_at is not None:
                    names.append("started")
                names.append(job.status.value)
            started = started or (job.started_at is not None and job.status is not JobStatus.QUEUED)
            data = orjson.dumps(job_object(view, base))
            for name in names:
                yield b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"

    return StreamingResponse(
        _closing_on_refusal(stream()),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _closing_on_refusal(events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """End the stream (with an ``error`` event) when the key is refused mid-stream."""
    try:
        async for chunk in events:
            yield chunk
    except ImagegateError as exc:
        body = orjson.dumps({"error": {"message": exc.message, "type": exc.type,
                                       "param": exc.param, "code": exc.code}})  # fmt: skip
        yield b"event: error\ndata: " + body + b"\n\n"


def _batch_requests(body: CreateBatchRequest) -> list[GenerationRequest]:
    if body.requests is not None:
        if body.request is not None or body.prompts is not None:
            raise InvalidRequest(
                "Send either requests, or request with prompts, not both.", param="requests"
            )
        return [one.to_domain() for one in body.requests]
    if body.request is None or body.prompts is None:
        raise InvalidRequest(
            "A batch needs requests (a list of generation requests), or request and prompts.",
            param="requests",
        )
    template = body.request
    return [template.model_copy(update={"prompt": p}).to_domain() for p in body.prompts]


@router.post(
    "/batches",
    status_code=202,
    response_model=BatchObject,
    responses=ERRORS,
    summary="Queue up to 100 generations as one batch",
)
async def create_batch(
    body: CreateBatchRequest,
    request: Request,
    principal: AdmittedPrincipal,
    services: ServicesDep,
) -> Response:
    requested = body.request.cache if body.request is not None else None
    view = await services.jobs.submit_batch(
        principal, _batch_requests(body), _options(body, request, requested), body.concurrency
    )
    headers = {"Location": f"/v1/batches/{view.batch.id}"}
    return _json(batch_object(view, _base(request, services)), 202, headers)


@router.get(
    "/batches/{batch_id}", response_model=BatchObject, responses=ERRORS, summary="One batch"
)
async def get_batch(
    batch_id: str, request: Request, principal: CurrentPrincipal, services: ServicesDep
) -> Response:
    view = await services.jobs.batch(principal, batch_id)
    return _json(batch_object(view, _base(request, services)))
