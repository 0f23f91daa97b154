"""The jobs API's public contract: request bodies and the job and batch objects."""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from imagegate.api.schemas import CreateImageRequest, ErrorDetail, ImagesResponse
from imagegate.models import JobStatus

MAX_METADATA_BYTES = 4096
WebhookEvent = Literal["start", "completed"]


def _small_metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        encoded = orjson.dumps(value)
    except orjson.JSONEncodeError:  # a lone surrogate, or an integer beyond 64 bits
        raise ValueError(
            "metadata must be JSON with valid Unicode text and integers within 64 bits"
        ) from None
    if len(encoded) > MAX_METADATA_BYTES:
        raise ValueError(f"metadata must be at most {MAX_METADATA_BYTES} bytes of JSON")
    return value


class JobExtras(BaseModel):
    """What a job adds to a generation request."""

    webhook: str | None = Field(
        default=None,
        max_length=2048,
        description="https URL POSTed the job (signed, Standard Webhooks) on webhook_events.",
    )
    webhook_events: list[WebhookEvent] = Field(
        default=["start", "completed"],
        description="start: when a worker starts it; completed: succeeded, failed or canceled.",
    )
    priority: int = Field(
        default=0, ge=-10, le=10, description="Higher runs first; FIFO among equals."
    )
    metadata: dict[str, Any] | None = Field(
        default=None, description=f"Yours, returned as is (at most {MAX_METADATA_BYTES} bytes)."
    )

    _metadata = field_validator("metadata")(_small_metadata)


class CreateJobRequest(CreateImageRequest, JobExtras):
    """The body of ``POST /v1/images/generations``, plus what a job adds."""

    model_config = ConfigDict(strict=True, extra="forbid")


class BatchTemplate(CreateImageRequest):
    """A generation request whose prompt comes from the batch's ``prompts``."""

    model_config = ConfigDict(strict=True, extra="forbid")

    prompt: str = Field(default="", description="Ignored: each job takes one of prompts.")


class CreateBatchRequest(JobExtras):
    """Up to 100 generation requests, or one request and a list of prompts."""

    model_config = ConfigDict(strict=True, extra="forbid")

    requests: list[CreateImageRequest] | None = Field(
        default=None, min_length=1, max_length=100, description="One job per request."
    )
    request: BatchTemplate | None = Field(
        default=None, description="A template: one job per entry of prompts."
    )
    prompts: list[str] | None = Field(default=None, min_length=1, max_length=100)
    concurrency: int | None = Field(
        default=None, ge=1, le=100, description="Jobs of the batch running at once (default 3)."
    )


class JobUrls(BaseModel):
    self_: str = Field(alias="self")
    events: str
    cancel: str


class JobObject(BaseModel):
    id: str
    object: Literal["job"] = "job"
    status: JobStatus
    model: str
    position: int | None = Field(description="Place in the model's queue while queued (1 = next).")
    stage: str | None = Field(
        description="While running: waiting, enhancing (the prompt enhancer is at work) or "
        "generating."
    )
    priority: int
    attempts: int
    max_attempts: int
    created_at: int = Field(description="Unix seconds.")
    started_at: int | None
    finished_at: int | None
    batch_id: str | None
    generation_id: str | None
    cost_usd: str | None = Field(description="What the job was charged (USD, 6 decimals).")
    cache: str | None = Field(description="The generation's outcome: generated, cache_hit, ...")
    result: ImagesResponse | None
    error: ErrorDetail | None
    metadata: dict[str, Any] | None
    urls: JobUrls


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[JobObject]
    has_more: bool
    next_cursor: str | None = Field(description="Pass as cursor for the next (older) page.")


class BatchObject(BaseModel):
    id: str
    object: Literal["batch"] = "batch"
    status: Literal["queued", "running", "finished"]
    total: int
    finished: int
    progress: float = Field(description="Finished jobs / total, 0 to 1.")
    counts: dict[JobStatus, int]
    concurrency: int
    created_at: int
    metadata: dict[str, Any] | None
    jobs: list[JobObject]
