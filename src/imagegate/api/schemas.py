"""The public HTTP contract. Field names and meanings follow OpenAI's Images API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from imagegate.fingerprint import MAX_SEED
from imagegate.models import GenerationRequest, InputImage, OutputFormat, ResponseFormat
from imagegate.services.usage import UsageGrouping


def _generation_request(
    body: CreateImageRequest | CreateImageEditForm, **specific: Any
) -> GenerationRequest:
    """The fields generations and edits share, plus what only one of them has."""
    return GenerationRequest(
        prompt=body.prompt,
        model=body.model,
        n=body.n,
        size=body.size,
        quality=body.quality,
        background=body.background,
        output_format=OutputFormat(body.output_format) if body.output_format else None,
        output_compression=body.output_compression,
        response_format=ResponseFormat(body.response_format or ResponseFormat.URL),
        seed=body.seed,
        user=body.user,
        negative_prompt=body.negative_prompt,
        enhance_prompt=body.enhance_prompt,
        **specific,
    )


class CreateImageRequest(BaseModel):
    """OpenAI's ``CreateImageRequest``, plus imagegate's ``seed`` extension."""

    model_config = ConfigDict(strict=True, extra="forbid")

    prompt: str = Field(description="What to draw. Whitespace is normalized.")
    model: str | None = Field(default=None, description="Public model name; see GET /v1/models.")
    n: int = Field(default=1, description="How many images (1 to the model's max_n).")
    size: str | None = Field(default=None, description="WxH from the model's sizes, or auto.")
    quality: str | None = None
    style: str | None = None
    background: str | None = None
    response_format: Literal["url", "b64_json"] | None = None
    output_format: Literal["png", "jpeg", "webp"] | None = None
    output_compression: int | None = Field(default=None, description="0-100, jpeg/webp only.")
    moderation: Literal["auto", "low"] | None = Field(
        default=None, description="Passed to providers that support it."
    )
    stream: Literal[False] | None = Field(default=None, description="Streaming is not supported.")
    partial_images: Literal[0] | None = None
    user: str | None = Field(default=None, description="Your end user's id, recorded.")
    seed: int | None = Field(
        default=None,
        ge=0,
        le=MAX_SEED,
        description="imagegate extension: same seed, same picture.",
    )
    negative_prompt: str | None = Field(
        default=None, description="imagegate extension: what to avoid, where the model takes it."
    )
    cache: Literal["default", "refresh", "bypass"] | None = Field(
        default=None,
        description="imagegate extension: refresh = make a fresh image and replace the cache "
        "entry; bypass = fresh, and no entry (same as Cache-Control no-cache / no-store).",
    )
    enhance_prompt: bool | None = Field(
        default=None,
        description="imagegate extension: have the configured LLM rewrite the prompt first "
        "(returned as revised_prompt); null = the model's default. Never fails the request: "
        "without an enhancer, or when it fails, the prompt is used as given.",
    )

    def to_domain(self) -> GenerationRequest:
        return _generation_request(self, style=self.style)


class CreateImageEditForm(BaseModel):
    """OpenAI's ``CreateImageEditRequest`` form fields (the files travel beside them).

    Form values arrive as text, so numbers are parsed from strings here (lax mode).
    """

    model_config = ConfigDict(extra="forbid")

    prompt: str
    model: str | None = None
    n: int = 1
    size: str | None = None
    quality: str | None = None
    background: str | None = None
    response_format: Literal["url", "b64_json"] | None = None
    output_format: Literal["png", "jpeg", "webp"] | None = None
    output_compression: int | None = None
    input_fidelity: Literal["high", "low"] | None = None
    moderation: Literal["auto", "low"] | None = None
    stream: Literal[False] | None = None
    partial_images: Literal[0] | None = None
    user: str | None = None
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    negative_prompt: str | None = None
    strength: float | None = None
    cache: Literal["default", "refresh", "bypass"] | None = None
    enhance_prompt: bool | None = None

    def to_domain(self, images: list[InputImage], mask: InputImage | None) -> GenerationRequest:
        return _generation_request(self, images=tuple(images), mask=mask, strength=self.strength)


class ImageRef(BaseModel):
    """OpenAI's ``ImageRefParam``: imagegate takes ``data:`` URLs (it never fetches URLs)."""

    model_config = ConfigDict(extra="forbid")

    image_url: str | None = None
    file_id: str | None = None


class CreateImageEditJson(CreateImageEditForm):
    """OpenAI's JSON form of an edit (``EditImageBodyJsonParam``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    images: list[ImageRef] = Field(min_length=1)
    mask: ImageRef | None = None


def edit_form_openapi() -> dict[str, object]:
    """The multipart body of /v1/images/edits for the OpenAPI document."""
    schema = CreateImageEditForm.model_json_schema()
    binary = {"type": "string", "format": "binary"}
    schema["properties"]["image"] = {
        "anyOf": [binary, {"type": "array", "items": binary}],
        "description": "One or more images (also accepted as image[]).",
    }
    schema["properties"]["mask"] = {**binary, "description": "PNG; transparent = area to edit."}
    schema["required"] = ["prompt", "image"]
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": schema},
                "application/json": {"schema": CreateImageEditJson.model_json_schema()},
            },
        }
    }


class EstimateResponse(BaseModel):
    model: str
    n: int
    size: str
    quality: str
    unit_cost_usd: float = Field(description="List price of one image.")
    estimated_cost_usd: float = Field(description="What the request would be charged now.")
    list_cost_usd: float = Field(description="List price of the request without the cache.")
    cached: bool = Field(description="Whether the cache would answer (no provider call).")


class ImageData(BaseModel):
    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    created: int
    data: list[ImageData]
    output_format: Literal["png", "jpeg", "webp"]
    size: str
    quality: str


class ModelObject(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    description: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Readiness(BaseModel):
    status: Literal["ok", "degraded", "unavailable"]
    """degraded: serving (200), but something is off; ``degraded`` says what."""
    checks: dict[str, str]
    degraded: list[str] = Field(
        default_factory=list, description="Why the service is degraded (e.g. limits fail-open)."
    )
    providers: dict[str, str] = Field(
        default_factory=dict, description="Configured providers: ok, or why left out."
    )


MAX_BUDGET_USD = 1_000_000_000
MAX_COUNT = 2**31 - 1


class LimitsBody(BaseModel):
    """Budgets and quotas; a missing or null field means unlimited."""

    model_config = ConfigDict(extra="forbid")

    # Upper bounds keep every value a finite 64-bit integer once in micro-USD (1e300 was a 500).
    budget_usd_day: float | None = Field(
        default=None, ge=0, le=MAX_BUDGET_USD, description="USD per UTC day."
    )
    budget_usd_month: float | None = Field(
        default=None, ge=0, le=MAX_BUDGET_USD, description="USD per UTC month."
    )
    images_per_minute: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    images_per_day: int | None = Field(default=None, ge=0, le=MAX_COUNT)


class KeyExpiryBody(BaseModel):
    """When a key stops working: an ISO 8601 moment (without an offset: UTC), or null for never."""

    model_config = ConfigDict(extra="forbid")

    expires_at: datetime | None = Field(
        description="After this moment the key is refused with 401 api_key_expired."
    )


class KeyLimitsBody(LimitsBody):
    """A key's budgets and quotas (missing or null = unlimited) and its traffic limits
    (missing or null = the gateway's configured default, 0 = unlimited)."""

    requests_per_minute: int | None = Field(
        default=None,
        ge=0,
        le=MAX_COUNT,
        description="Requests per minute on the image routes (moving window); null = the "
        "default (IMAGEGATE_LIMITS__REQUESTS_PER_MINUTE), 0 = unlimited.",
    )
    concurrent_generations: int | None = Field(
        default=None,
        ge=0,
        le=MAX_COUNT,
        description="Generations calling a provider at once; more wait in line. null = the "
        "default (IMAGEGATE_LIMITS__CONCURRENT_GENERATIONS), 0 = unlimited.",
    )


class ProviderReportBody(BaseModel):
    providers: dict[str, str] = Field(description="Configured providers: ok, or why left out.")
    targets: dict[str, str] = Field(description="Circuit state of each route target.")


class UsageCounts(BaseModel):
    requests: int = Field(description="Generation requests recorded, whatever their outcome.")
    images: int = Field(description="Images delivered (generated, cache hits and coalesced).")
    generated: int = Field(description="Requests a provider was called for.")
    cache_hit: int = Field(description="Requests answered from the cache.")
    semantic_hit: int = Field(description="Requests answered with a near-duplicate's images.")
    coalesced: int = Field(description="Requests that joined an identical one in flight.")
    failed: int
    spend_usd: str = Field(description="Cost, USD with 6 decimals.", examples=["0.040000"])
    saved_usd: str = Field(description="What the cache hits and coalesced ones would cost.")


class UsageGroup(UsageCounts):
    key: str | None = Field(
        description="The UTC day (YYYY-MM-DD), model, provider or API key prefix; null for "
        "requests made without a provider or a key (the local command line)."
    )
    key_name: str | None = Field(default=None, description="The API key's name (group_by=key).")


class BudgetBody(BaseModel):
    applies_to: Literal["key", "user"]
    window: Literal["minute", "day", "month"]
    resets_at: datetime
    limit_usd: str | None = Field(description="Null when only images are limited.")
    spent_usd: str
    reserved_usd: str = Field(description="Held by requests still running.")
    remaining_usd: str | None
    images_limit: int | None
    images: int


class UsageReportBody(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    user: str | None = Field(description="Whose usage; null means every user (admins).")
    start: datetime = Field(alias="from", description="Start of the period (included), UTC.")
    end: datetime = Field(alias="to", description="End of the period (excluded), UTC.")
    group_by: UsageGrouping | None
    totals: UsageCounts
    groups: list[UsageGroup] = Field(description="Partition the totals; empty unless group_by.")
    budget: list[BudgetBody] = Field(
        default_factory=list,
        description="The caller's own limits and what is left of them (own reports only).",
    )


class EventBody(BaseModel):
    id: int
    type: str = Field(examples=["generation_completed"])
    generation_id: str | None
    data: dict[str, object]
    created_at: datetime


class EventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EventBody] = Field(description="Newest first.")
    next_cursor: int | None = Field(
        description="Pass as cursor for the next, older page; null on the last page."
    )
