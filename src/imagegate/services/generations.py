"""The spine of one request: validate -> route -> verify and store -> record -> respond.

Every front end builds a ``GenerationRequest`` and calls ``GenerationService.generate``. Bad
input is refused before anything is written; a provider failure is recorded as a ``failed``
generation and re-raised for the front end to report.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from imagegate.catalog import ModelSpec
from imagegate.db.base import GenerationRepository
from imagegate.errors import ImagegateError, NotFound, Unavailable
from imagegate.fingerprint import cache_key, normalize_request, picture_params
from imagegate.models import (
    Attempt,
    Event,
    Generation,
    GenerationRequest,
    InputImage,
    NormalizedRequest,
    Outcome,
    Principal,
    RawImage,
    StoredImage,
    new_id,
)
from imagegate.providers.base import ModelRouter
from imagegate.storage.base import BlobStore, content_key
from imagegate.storage.images import inspect_upload, prepare

INLINE_PREPARE_BYTES = 64 * 1024
"""Provider images up to this size are verified (and converted if need be) on the event loop,
where a thread hop would cost more than the work; larger ones go to a worker thread."""


@dataclass(frozen=True, slots=True)
class DeliveredImage:
    """A stored image as the caller receives it: its permanent URL and its bytes."""

    image: StoredImage
    url: str
    data: bytes


@dataclass(frozen=True, slots=True)
class GenerationResult:
    generation: Generation
    images: tuple[DeliveredImage, ...]


def request_params(request: NormalizedRequest, end_user: str | None) -> dict[str, object]:
    """The normalized parameters as recorded on the generation (JSON-safe)."""
    return {
        **picture_params(request),
        "response_format": request.response_format.value,
        "user": end_user,
    }


class GenerationService:
    def __init__(
        self,
        router: ModelRouter,
        blobs: BlobStore,
        generations: GenerationRepository,
        *,
        default_model: str,
        max_pixels: int,
    ) -> None:
        self._router = router
        self._blobs = blobs
        self._generations = generations
        self._default_model = default_model
        self._max_pixels = max_pixels

    def available_models(self) -> list[ModelSpec]:
        """Models a configured provider serves; others are never called."""
        return self._router.models()

    async def get(self, principal: Principal, generation_id: str) -> Generation:
        """One generation of the caller's (any, for admins); NotFound otherwise."""
        generation = await self._generations.get(generation_id)
        if generation is None or not (
            principal.is_admin or generation.user_id == principal.user_id
        ):
            raise NotFound(f"No generation {generation_id!r}.", param="id")
        return generation

    def resolve(self, request: GenerationRequest) -> tuple[ModelSpec, NormalizedRequest]:
        """Check ``request`` against its model; raises before anything is written."""
        spec = self._router.resolve(request.model or self._default_model)
        return spec, normalize_request(request, spec)

    async def generate(self, principal: Principal, request: GenerationRequest) -> GenerationResult:
        if request.images or request.mask:
            request = await self._verified_uploads(request)
        spec, normalized = self.resolve(request)
        started_at = datetime.now(UTC)
        started = time.perf_counter()
        draft = Generation(
            id=new_id(),
            user_id=principal.user_id,
            key_id=principal.key_id,
            model=spec.name,
            provider=spec.provider,
            upstream_model=spec.upstream_model,
            prompt=normalized.prompt,
            n=normalized.n,
            params=request_params(normalized, request.user),
            cache_key=cache_key(normalized),
            outcome=Outcome.GENERATED,
            attempts=1,
            latency_ms=0,
            estimated_cost_micro_usd=spec.price_micro_usd(normalized.quality, normalized.size)
            * normalized.n,
            cost_micro_usd=0,
            created_at=started_at,
            completed_at=started_at,
        )
        begin = Event("generation_started", started_at, {"model": spec.name, "n": normalized.n})
        attempts: list[Attempt] = []
        try:
            result = await self._router.generate(spec, normalized, attempts)
            delivered = await self._store_all(result.images, normalized)
        except Exception as exc:
            await self._record_failure(
                replace(draft, attempt_log=tuple(attempts)), begin, exc, started
            )
            raise
        completed_at = datetime.now(UTC)
        latency_ms = _elapsed_ms(started)
        generation = replace(
            draft,
            provider=result.provider,
            upstream_model=result.upstream_model,
            latency_ms=latency_ms,
            attempts=len(attempts),
            attempt_log=tuple(attempts),
            cost_micro_usd=result.cost_micro_usd,
            completed_at=completed_at,
            images=tuple(d.image for d in delivered),
            events=(
                begin,
                Event(
                    "generation_completed",
                    completed_at,
                    {"latency_ms": latency_ms, "images": len(delivered)},
                ),
            ),
        )
        await self._generations.record(generation)
        return GenerationResult(generation=generation, images=delivered)

    async def _verified_uploads(self, request: GenerationRequest) -> GenerationRequest:
        """Reference images and mask with their type read from their bytes; bad ones refused."""

        async def verified(image: InputImage, field: str) -> InputImage:
            mime = await asyncio.to_thread(inspect_upload, image.data, self._max_pixels, field)
            return replace(image, mime=mime)

        images = await asyncio.gather(*(verified(image, "image") for image in request.images))
        mask = await verified(request.mask, "mask") if request.mask else None
        return replace(request, images=tuple(images), mask=mask)

    async def _store_all(
        self, images: Sequence[RawImage], request: NormalizedRequest
    ) -> tuple[DeliveredImage, ...]:
        return tuple(await asyncio.gather(*(self._store(raw, request) for raw in images)))

    async def _store(self, raw: RawImage, request: NormalizedRequest) -> DeliveredImage:
        args = (raw.data, request.output_format, request.output_compression, self._max_pixels)
        if len(raw.data) <= INLINE_PREPARE_BYTES:
            prepared = prepare(*args)
        else:
            prepared = await asyncio.to_thread(prepare, *args)
        key = content_key(prepared.data, request.output_format)
        await self._blobs.put(key, prepared.data)
        image = StoredImage(
            content_hash=key.partition(".")[0],
            storage_key=key,
            mime=request.output_format.mime,
            width=prepared.width,
            height=prepared.height,
            byte_size=len(prepared.data),
            revised_prompt=raw.revised_prompt,
        )
        return DeliveredImage(image=image, url=self._blobs.url_for(key), data=prepared.data)

    async def _record_failure(
        self, draft: Generation, begin: Event, exc: Exception, started: float
    ) -> None:
        code = exc.code if isinstance(exc, ImagegateError) else "internal_error"
        message = exc.message if isinstance(exc, ImagegateError) else type(exc).__name__
        completed_at = datetime.now(UTC)
        failed = replace(
            draft,
            outcome=Outcome.FAILED,
            attempts=len(draft.attempt_log),
            latency_ms=_elapsed_ms(started),
            completed_at=completed_at,
            error_code=code,
            error_message=message,
            events=(begin, Event("generation_failed", completed_at, {"code": code})),
        )
        # The caller gets the original error; losing the failure record is the lesser harm.
        with contextlib.suppress(Unavailable):
            await self._generations.record(failed)


def _elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
