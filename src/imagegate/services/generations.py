"""The spine of one request: validate -> route -> verify and store -> record -> respond.

Every front end builds a ``GenerationRequest`` and calls ``GenerationService.generate``. Bad
input is refused before anything is written; a provider failure is recorded as a ``failed``
generation and re-raised for the front end to report.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from imagegate.cache.base import SemanticIndex, SemanticMatch
from imagegate.catalog import ModelSpec
from imagegate.db.base import GenerationRepository
from imagegate.errors import ImagegateError, NotFound, StorageError, Unavailable
from imagegate.fingerprint import cache_key, normalize_request, picture_params, semantic_group
from imagegate.models import (
    Attempt,
    CachedResult,
    CacheEntry,
    Event,
    FlightClaim,
    Generation,
    GenerationRequest,
    InputImage,
    JobLink,
    NormalizedRequest,
    Outcome,
    Principal,
    ProviderResult,
    RawImage,
    ResponseFormat,
    StoredImage,
    new_id,
)
from imagegate.providers.base import ModelRouter
from imagegate.services.budgets import BudgetService, Reservation
from imagegate.services.caching import CacheMode, ResultCache
from imagegate.services.enhancer import PromptEnhancer
from imagegate.services.lanes import ModelLanes, QueueWatch
from imagegate.services.single_flight import SingleFlight
from imagegate.services.thumbnails import Thumbnails
from imagegate.services.traffic import TrafficService
from imagegate.settings import EnhancerSettings
from imagegate.storage.base import BlobStore, content_key
from imagegate.storage.images import (
    PreparedImage,
    cheap_to_prepare,
    prepare,
    thumbnail_key_for,
    verify_upload,
)


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
    cache_status: str
    """``miss`` (made now), ``hit`` (from the cache), ``semantic`` (from the cache, for a
    near-duplicate prompt), ``coalesced`` (joined an identical request in flight) or
    ``bypass`` (made now, cache not used)."""
    semantic: SemanticMatch | None = None


@dataclass(frozen=True, slots=True)
class Estimate:
    model: str
    n: int
    size: str
    quality: str
    unit_micro_usd: int
    total_micro_usd: int
    """What the request would be charged now: 0 when the cache would answer it."""
    list_micro_usd: int
    """What it costs at list price without the cache."""
    cached: bool


def request_params(request: NormalizedRequest, end_user: str | None) -> dict[str, object]:
    """The normalized parameters as recorded on the generation (JSON-safe)."""
    return {
        **picture_params(request),
        "response_format": request.response_format.value,
        "user": end_user,
        "enhance_prompt": request.enhance_prompt,
    }


class GenerationService:
    def __init__(
        self,
        router: ModelRouter,
        blobs: BlobStore,
        generations: GenerationRepository,
        cache: ResultCache,
        flights: SingleFlight,
        budgets: BudgetService,
        traffic: TrafficService,
        lanes: ModelLanes,
        thumbnails: Thumbnails,
        *,
        default_model: str,
        max_pixels: int,
        semantic: SemanticIndex | None = None,
        semantic_models: frozenset[str] = frozenset(),
        enhancer: PromptEnhancer | None = None,
    ) -> None:
        self._enhancer = enhancer or PromptEnhancer(None, EnhancerSettings())
        self._semantic = semantic
        self._semantic_models = semantic_models
        self._background: set[asyncio.Task[None]] = set()
        self._router = router
        self._cache = cache
        self._flights = flights
        self._budgets = budgets
        self._traffic = traffic
        self._lanes = lanes
        self._blobs = blobs
        self._thumbnails = thumbnails
        self._generations = generations
        self._default_model = default_model
        self._max_pixels = max_pixels

    @property
    def enhancer_configured(self) -> bool:
        """Whether requests may ask for prompt enhancement (front ends show the toggle)."""
        return self._enhancer.configured

    def enhanced_by_default(self) -> list[str]:
        """The models whose requests are enhanced unless they say no (none without an
        enhancer)."""
        return sorted(s.name for s in self.available_models() if self._enhancer.wanted(s, None))

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

    async def record_of(self, generation_id: str) -> Generation | None:
        """A generation by id, for a caller already known to own it (a job's result)."""
        return await self._generations.get(generation_id)

    async def estimate(self, principal: Principal, request: GenerationRequest) -> Estimate:
        """What ``request`` would cost now, without generating (0 if the cache would answer)."""
        spec, normalized = self.resolve(request)
        unit = spec.price_micro_usd(normalized.quality, normalized.size)
        key = cache_key(normalized)
        hit = await self._cache.lookup(self._cache.scope_for(principal), key)
        return Estimate(
            model=spec.name,
            n=normalized.n,
            size=str(normalized.size),
            quality=normalized.quality,
            unit_micro_usd=unit,
            total_micro_usd=0 if hit else unit * normalized.n,
            list_micro_usd=unit * normalized.n,
            cached=hit is not None,
        )

    def resolve(self, request: GenerationRequest) -> tuple[ModelSpec, NormalizedRequest]:
        """Check ``request`` against its model; raises before anything is written."""
        spec = self._router.resolve(request.model or self._default_model)
        normalized = normalize_request(request, spec)
        if self._enhancer.wanted(spec, request.enhance_prompt):
            normalized = replace(normalized, enhance_prompt=True)
        return spec, normalized

    async def generate(
        self,
        principal: Principal,
        request: GenerationRequest,
        cache_mode: CacheMode = CacheMode.DEFAULT,
        watch: QueueWatch | None = None,
        job: JobLink | None = None,
    ) -> GenerationResult:
        """Answer ``request``: from the cache, by joining an identical request in flight, or by
        calling a provider once there is room in the model's line (``watch`` follows it there).

        With ``job``, the job's success is recorded with the generation; ``JobSuperseded``
        (nothing recorded, nothing charged) when the job was canceled or its lease lost.
        """
        if request.images or request.mask:
            request = await self._verified_uploads(request)
        spec, normalized = self.resolve(request)
        await self._traffic.count_images(principal, normalized.n)
        draft = self._draft(principal, request, spec, normalized)
        started = time.perf_counter()
        if cache_mode is CacheMode.BYPASS or not self._cache.enabled:
            return await self._fresh(
                principal, draft, spec, normalized, None, None, started, "bypass", watch, job
            )
        scope = self._cache.scope_for(principal)
        group = self._semantic_group(spec, normalized)
        if cache_mode is CacheMode.DEFAULT:
            hit = await self._cache.lookup(scope, draft.cache_key)
            if hit is not None:
                return await self._reuse(
                    draft, normalized, hit, Outcome.CACHE_HIT, started, job=job
                )
            if group is not None:
                near = await self._near_duplicate(scope, group, normalized.prompt)
                if near is not None:
                    match, source = near
                    return await self._reuse(
                        draft, normalized, source, Outcome.SEMANTIC_HIT, started, match, job=job
                    )
        entry = self._cache.entry(scope, draft.cache_key)
        led = False

        async def lead(claim: FlightClaim | None) -> GenerationResult:
            nonlocal led
            led = True
            if cache_mode is CacheMode.DEFAULT and claim is None:
                # Look again now that this request leads: an identical one in this process may
                # have finished between the first look and taking the lead (it remembers its
                # entry before it lets go). A cross-process claim looked in its transaction.
                hit = await self._cache.remembered(scope, draft.cache_key)
                if hit is not None:
                    return await self._reuse(
                        draft, normalized, hit, Outcome.CACHE_HIT, started, job=job
                    )
            made = await self._fresh(
                principal, draft, spec, normalized, entry, claim, started, "miss", watch, job
            )
            if group is not None and self._semantic is not None:
                self._in_background(self._semantic.add(group, normalized.prompt, draft.cache_key))
            return made

        try:
            outcome = await self._flights.run(
                scope,
                draft.cache_key,
                lead,
                _shared,
                reuse_cached=cache_mode is CacheMode.DEFAULT,
            )
        except Exception as exc:
            if not led:  # the leader recorded its own failure; this is a follower's
                await self._record_failure(draft, exc, started)
            raise
        if isinstance(outcome, CachedResult):
            return await self._reuse(
                draft, normalized, outcome, Outcome.COALESCED, started, job=job
            )
        return outcome

    def _semantic_group(self, spec: ModelSpec, normalized: NormalizedRequest) -> str | None:
        if self._semantic is None:
            return None
        if self._semantic_models and spec.name not in self._semantic_models:
            return None
        return semantic_group(normalized)

    async def _near_duplicate(
        self, scope: str, group: str, prompt: str
    ) -> tuple[SemanticMatch, CachedResult] | None:
        assert self._semantic is not None
        match = await self._semantic.find(group, prompt)
        if match is None:
            return None
        source = await self._cache.lookup(scope, match.cache_key)
        return None if source is None else (match, source)

    async def flush(self) -> None:
        """Wait for background work (semantic indexing) to finish: tests and shutdown."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Work the response need not wait for (kept referenced until done)."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _draft(
        self,
        principal: Principal,
        request: GenerationRequest,
        spec: ModelSpec,
        normalized: NormalizedRequest,
    ) -> Generation:
        now = datetime.now(UTC)
        return Generation(
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
            attempts=0,
            latency_ms=0,
            estimated_cost_micro_usd=spec.price_micro_usd(normalized.quality, normalized.size)
            * normalized.n,
            cost_micro_usd=0,
            created_at=now,
            completed_at=now,
            events=(
                Event("generation_started", now, {"model": spec.name, "n": normalized.n}),
                *self._enhancer.unavailable(request.enhance_prompt),
            ),
        )

    async def _fresh(
        self,
        principal: Principal,
        draft: Generation,
        spec: ModelSpec,
        normalized: NormalizedRequest,
        entry: CacheEntry | None,
        flight: FlightClaim | None,
        started: float,
        cache_status: str,
        watch: QueueWatch | None,
        job: JobLink | None,
    ) -> GenerationResult:
        """Wait for room in the model's line, call the provider, store the images, record it
        all (with its cache entry)."""
        attempts: list[Attempt] = []
        try:
            reservation = await self._budgets.reserve(
                principal, draft.estimated_cost_micro_usd, normalized.n
            )
        except ImagegateError as exc:
            await self._record_failure(draft, exc, started)
            raise
        try:
            async with self._lanes.admitted(principal, spec.name, watch):
                told = watch.on_enhancing if watch is not None else None
                enhancement = await self._enhancer.apply(spec, normalized, told)
                draft = enhancement.recorded_on(draft)
                if watch is not None and watch.on_generating is not None:
                    watch.on_generating()
                if enhancement.fell_back:
                    entry = None  # the next identical request tries the enhancer again
                sent = enhancement.request
                prepared = _Prepared(sent, self._max_pixels, enhancement.enhanced_prompt)
                result = await self._router.generate(spec, sent, attempts, prepared.check)
            delivered = await self._store_all(result.images, prepared)
        except BaseException as exc:
            await asyncio.shield(self._give_back(reservation))
            if isinstance(exc, Exception):
                failed = replace(draft, attempt_log=tuple(attempts))
                await self._record_failure(failed, exc, started)
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
                *draft.events,
                Event(
                    "generation_completed",
                    completed_at,
                    {"latency_ms": latency_ms, "images": len(delivered)},
                ),
            ),
        )
        settlement = self._budgets.settlement(
            reservation, generation.cost_micro_usd, len(delivered)
        )
        try:
            await self._generations.record(generation, entry, flight, job, settlement)
        except BaseException:
            # Nothing recorded, nothing paid (a superseded job's result is discarded). Had the
            # record committed after all (its answer lost with the connection), this finds the
            # hold already settled and gives back nothing.
            await asyncio.shield(self._give_back(reservation))
            raise
        self._thumbnails.submit(generation.images)  # recorded: their thumbnails can be made
        if entry is not None:
            await self._cache.remember(entry, _shared(GenerationResult(generation, delivered, "")))
        return GenerationResult(generation, delivered, cache_status)

    async def _reuse(
        self,
        draft: Generation,
        normalized: NormalizedRequest,
        source: CachedResult,
        outcome: Outcome,
        started: float,
        match: SemanticMatch | None = None,
        *,
        job: JobLink | None = None,
    ) -> GenerationResult:
        """Answer with images already made: no provider call, nothing charged, saving recorded."""
        inline = normalized.response_format is ResponseFormat.B64_JSON
        delivered = await self.deliver(source.images, inline=inline)
        completed_at = datetime.now(UTC)
        reason = outcome.value
        details: dict[str, object] = {"reason": reason, "source": source.generation_id}
        if match is not None:
            details |= {"matched_prompt": match.prompt, "similarity": round(match.similarity, 4)}
        generation = replace(
            draft,
            outcome=outcome,
            provider=None,
            upstream_model=None,
            latency_ms=_elapsed_ms(started),
            saved_cost_micro_usd=source.cost_micro_usd,
            source_generation_id=source.generation_id,
            completed_at=completed_at,
            images=tuple(self._thumbnails.completed(image) for image in source.images),
            events=(
                *draft.events,
                Event("generation_skipped", completed_at, details),
            ),
        )
        await self._generations.record(generation, job=job)
        status = {Outcome.CACHE_HIT: "hit", Outcome.SEMANTIC_HIT: "semantic"}.get(
            outcome, "coalesced"
        )
        return GenerationResult(generation, delivered, status, match)

    async def deliver(
        self, stored: Sequence[StoredImage], *, inline: bool
    ) -> tuple[DeliveredImage, ...]:
        """Stored images as a caller receives them: URLs, and the bytes when ``inline``."""
        delivered = []
        for image in stored:
            data = await self._blobs.get(image.storage_key) if inline else b""
            if data is None:
                raise StorageError(f"stored image {image.storage_key} is missing")
            url = self._blobs.url_for(image.storage_key)
            delivered.append(DeliveredImage(image=image, url=url, data=data))
        return tuple(delivered)

    async def _give_back(self, reservation: Reservation | None) -> None:
        """Release a hold; if the database cannot be reached now, it is given back when it
        expires (the caller's own error is the one worth reporting)."""
        with contextlib.suppress(Unavailable):
            await self._budgets.release(reservation)

    async def _verified_uploads(self, request: GenerationRequest) -> GenerationRequest:
        """Reference images and mask with their type read from their bytes, turned upright by
        their EXIF orientation; bad, truncated, bomb and polyglot files refused."""

        async def verified(image: InputImage, field: str) -> InputImage:
            mime, data = await asyncio.to_thread(verify_upload, image.data, self._max_pixels, field)
            if data is image.data:
                return replace(image, mime=mime)
            return InputImage.from_upload(data, mime)

        images = await asyncio.gather(*(verified(image, "image") for image in request.images))
        mask = await verified(request.mask, "mask") if request.mask else None
        return replace(request, images=tuple(images), mask=mask)

    async def _store_all(
        self, images: Sequence[RawImage], prepared: _Prepared
    ) -> tuple[DeliveredImage, ...]:
        return tuple(await asyncio.gather(*(self._store(raw, prepared) for raw in images)))

    async def _store(self, raw: RawImage, prepared: _Prepared) -> DeliveredImage:
        made = await prepared.of(raw)
        output_format = prepared.request.output_format
        key = content_key(made.data, output_format)
        await self._blobs.put(key, made.data)
        image = StoredImage(
            content_hash=key.partition(".")[0],
            storage_key=key,
            mime=output_format.mime,
            width=made.width,
            height=made.height,
            byte_size=len(made.data),
            revised_prompt=raw.revised_prompt or prepared.enhanced_prompt,
            thumbnail_key=thumbnail_key_for(key),
        )
        image = self._thumbnails.completed(image)
        return DeliveredImage(image=image, url=self._blobs.url_for(key), data=made.data)

    async def _record_failure(self, draft: Generation, exc: Exception, started: float) -> None:
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
            events=(*draft.events, Event("generation_failed", completed_at, {"code": code})),
        )
        # The caller gets the original error; losing the failure record is the lesser harm.
        with contextlib.suppress(Unavailable):
            await self._generations.record(failed)


class _Prepared:
    """Post-processing of one request's provider results, run as the router's check of each
    call: bytes that do not decode fail that attempt (retried, or the next target tried)
    instead of failing the request after the provider was paid."""

    def __init__(
        self, request: NormalizedRequest, max_pixels: int, enhanced_prompt: str | None = None
    ) -> None:
        self.request = request
        self.enhanced_prompt = enhanced_prompt
        """The enhancer's rewrite the provider was given: each image's revised prompt, unless
        the provider revised it further itself (dall-e-3)."""
        self._max_pixels = max_pixels
        self._done: dict[int, PreparedImage] = {}  # by id() of the RawImage, alive in results

    async def check(self, result: ProviderResult) -> None:
        made = await asyncio.gather(*(self._prepare(raw) for raw in result.images))
        for raw, image in zip(result.images, made, strict=True):
            self._done[id(raw)] = image

    async def of(self, raw: RawImage) -> PreparedImage:
        done = self._done.get(id(raw))
        return done if done is not None else await self._prepare(raw)

    async def _prepare(self, raw: RawImage) -> PreparedImage:
        request = self.request
        args = (raw.data, request.output_format, request.output_compression, self._max_pixels)
        # Checking the bytes takes from microseconds (a small PNG's CRCs) to milliseconds (a
        # conversion): the cheap ones on the loop, the others off it, since they would stall it.
        if cheap_to_prepare(raw.data, request.output_format):
            return prepare(*args)
        return await asyncio.to_thread(prepare, *args)


def _shared(result: GenerationResult) -> CachedResult:
    """What identical requests reuse from a fresh generation."""
    generation = result.generation
    return CachedResult(
        generation.source_generation_id or generation.id,
        generation.images,
        generation.cost_micro_usd or generation.saved_cost_micro_usd,
    )


def _elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
