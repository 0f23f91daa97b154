"""The image library's public contract: image and generation objects, the edit body."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from imagegate.models import Generation, Outcome
from imagegate.services.enhancer import ENHANCED, FALLBACK
from imagegate.services.images import (
    MAX_ALT_TEXT,
    MAX_TAGS,
    GenerationView,
    ImagePage,
    ImageView,
)
from imagegate.services.usage import format_usd


class ImageObject(BaseModel):
    id: str
    object: Literal["image"] = "image"
    url: str = Field(description="Permanent URL of the full image.")
    thumbnail_url: str | None = Field(
        description="Permanent URL of a 300x300 WebP thumbnail (null for images stored "
        "before thumbnails existed)."
    )
    placeholder: str | None = Field(
        description="A tiny blurred preview as a data: URI, to show while the thumbnail loads."
    )
    width: int
    height: int
    bytes: int
    mime: str = Field(examples=["image/png"])
    alt_text: str = Field(description="Set by you, else a cleaned form of the prompt.")
    tags: list[str]
    pinned: bool
    prompt: str
    revised_prompt: str | None
    model: str
    provider: str | None = Field(description="Null when no provider was called (cache hits).")
    outcome: Outcome = Field(description="How the request was answered: generated, cache_hit, ...")
    generation_id: str
    user_id: str
    created_at: int = Field(description="Unix seconds.")


class ImageDetail(ImageObject):
    """One image with what its generation request recorded."""

    parameters: dict[str, Any] = Field(description="The normalized request parameters.")
    cost_usd: str = Field(description="What its request was charged, USD with 6 decimals.")
    saved_usd: str = Field(description="What the cache saved on its request.")
    latency_ms: int
    attempts: int = Field(description="Provider calls made for its request.")


class ImageList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ImageObject] = Field(description="Newest first.")
    has_more: bool
    next_cursor: str | None = Field(description="Pass as cursor for the next (older) page.")


class ImagePatch(BaseModel):
    """What an owner may change; a missing field stays as it is."""

    model_config = ConfigDict(strict=True, extra="forbid")

    alt_text: str | None = Field(
        default=None,
        max_length=MAX_ALT_TEXT,
        description='Alt text; "" goes back to the default (the cleaned prompt).',
    )
    tags: list[str] | None = Field(
        default=None,
        max_length=MAX_TAGS,
        description="The whole new list; stored trimmed and lower-cased.",
    )
    pinned: bool | None = Field(default=None, description="Pinned images outlive retention.")


class GenerationError(BaseModel):
    code: str | None
    message: str | None


class PromptEnhancement(BaseModel):
    status: Literal["enhanced", "fallback"] = Field(
        description="enhanced: the rewrite went to the provider; fallback: the prompt as asked."
    )
    reason: str | None = Field(
        description="Why it fell back: timeout, error, refused, empty, too_long, not_configured."
    )


class GenerationObject(BaseModel):
    id: str
    object: Literal["generation"] = "generation"
    model: str
    provider: str | None
    upstream_model: str | None
    prompt: str
    n: int
    parameters: dict[str, Any]
    outcome: Outcome
    attempts: int
    latency_ms: int
    estimated_cost_usd: str
    cost_usd: str
    saved_usd: str
    source_generation_id: str | None = Field(
        description="For cache hits and coalesced requests: whose images were reused."
    )
    error: GenerationError | None
    created_at: int
    completed_at: int
    images: list[ImageObject] = Field(description="Its images still in the library.")
    enhanced_prompt: str | None = Field(
        default=None,
        description="The prompt enhancer's rewrite the provider was given; null = the prompt "
        "as asked.",
    )
    prompt_enhancement: PromptEnhancement | None = Field(
        default=None, description="Set when the request asked for prompt enhancement."
    )


def image_object(view: ImageView) -> ImageObject:
    record = view.record
    image = record.image
    return ImageObject(
        id=record.id,
        url=view.url,
        thumbnail_url=view.thumbnail_url,
        placeholder=image.placeholder,
        width=image.width,
        height=image.height,
        bytes=image.byte_size,
        mime=image.mime,
        alt_text=view.alt_text,
        tags=list(record.tags),
        pinned=record.pinned,
        prompt=record.prompt,
        revised_prompt=image.revised_prompt,
        model=record.model,
        provider=record.provider,
        outcome=record.outcome,
        generation_id=record.generation_id,
        user_id=record.user_id,
        created_at=int(record.created_at.timestamp()),
    )


def image_detail(view: ImageView) -> ImageDetail:
    generation = view.generation
    base = image_object(view).model_dump()
    if generation is None:  # its generation row is gone (never, short of manual deletes)
        return ImageDetail(
            **base, parameters={}, cost_usd=format_usd(0), saved_usd=format_usd(0),
            latency_ms=0, attempts=0,
        )  # fmt: skip
    return ImageDetail(
        **base,
        parameters=generation.params,
        cost_usd=format_usd(generation.cost_micro_usd),
        saved_usd=format_usd(generation.saved_cost_micro_usd),
        latency_ms=generation.latency_ms,
        attempts=generation.attempts,
    )


def image_list(page: ImagePage) -> ImageList:
    return ImageList(
        data=[image_object(view) for view in page.images],
        has_more=page.next_cursor is not None,
        next_cursor=page.next_cursor,
    )


def generation_object(view: GenerationView) -> GenerationObject:
    g: Generation = view.generation
    error = None
    if g.error_code is not None or g.error_message is not None:
        error = GenerationError(code=g.error_code, message=g.error_message)
    return GenerationObject(
        id=g.id,
        model=g.model,
        provider=g.provider,
        upstream_model=g.upstream_model,
        prompt=g.prompt,
        n=g.n,
        parameters=g.params,
        outcome=g.outcome,
        attempts=g.attempts,
        latency_ms=g.latency_ms,
        estimated_cost_usd=format_usd(g.estimated_cost_micro_usd),
        cost_usd=format_usd(g.cost_micro_usd),
        saved_usd=format_usd(g.saved_cost_micro_usd),
        source_generation_id=g.source_generation_id,
        error=error,
        created_at=int(g.created_at.timestamp()),
        completed_at=int(g.completed_at.timestamp()),
        images=[image_object(image) for image in view.images],
        enhanced_prompt=g.enhanced_prompt,
        prompt_enhancement=_prompt_enhancement(g),
    )


def _prompt_enhancement(g: Generation) -> PromptEnhancement | None:
    for event in g.events:
        if event.type == ENHANCED:
            return PromptEnhancement(status="enhanced", reason=None)
        if event.type == FALLBACK:
            reason = event.data.get("reason")
            return PromptEnhancement(status="fallback", reason=str(reason) if reason else None)
    return None
