"""The composition root: the one place that names concrete backends and owns their lifecycles.

``build_services(settings)`` builds everything from its own settings slice and closes it all on
exit. The API, the CLI and the tests all start here; nothing is built at import time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

from imagegate.cache.base import CacheTier, SemanticIndex
from imagegate.cache.memory import MemoryCache
from imagegate.db.budgets import SqlBudgetRepository
from imagegate.db.cache import SqlCacheRepository
from imagegate.db.engine import (
    AsyncTransactions,
    SqlDatabase,
    SqliteThread,
    create_engine,
    is_sqlite,
    upgrade_to_head,
)
from imagegate.db.flights import SqlFlightRepository
from imagegate.db.generations import SqlGenerationRepository
from imagegate.db.idempotency import SqlIdempotencyRepository
from imagegate.db.images import SqlImageRepository
from imagegate.db.keys import SqlKeyRepository
from imagegate.db.maintenance import SqlMaintenanceRepository
from imagegate.db.usage import SqlUsageRepository
from imagegate.limits.base import RateLimiter
from imagegate.limits.fail_open import FailOpenRateLimiter
from imagegate.limits.memory import MemoryRateLimiter
from imagegate.observability.metered import MeteredGenerations
from imagegate.observability.metrics import LaneGauge, Metrics
from imagegate.outbound.client import OutboundClient, new_outbound_client
from imagegate.providers.assembly import build_router
from imagegate.providers.base import ChatModel
from imagegate.providers.chat import ChatCompletions
from imagegate.providers.http import UpstreamClient, new_client
from imagegate.queue.outbox import SqlWebhookOutbox
from imagegate.queue.sql import SqlJobQueue
from imagegate.queue.webhooks import WebhookSender, generate_secret, next_retry_delay
from imagegate.services.budgets import BudgetService
from imagegate.services.caching import ResultCache
from imagegate.services.enhancer import PromptEnhancer
from imagegate.services.generations import GenerationService
from imagegate.services.health import HealthService
from imagegate.services.idempotency import IdempotencyService
from imagegate.services.images import ImageFileService, ImageLibrary
from imagegate.services.job_runs import JobRuns
from imagegate.services.jobs import Broadcast, JobService
from imagegate.services.keys import KeyService
from imagegate.services.lanes import ModelLanes
from imagegate.services.maintenance import MaintenanceService
from imagegate.services.providers import ProviderStatusService
from imagegate.services.single_flight import SingleFlight
from imagegate.services.thumbnails import Thumbnails
from imagegate.services.traffic import TrafficService
from imagegate.services.usage import UsageService
from imagegate.services.webhook_deliveries import WebhookDeliveries
from imagegate.settings import Settings
from imagegate.storage.base import BlobStore
from imagegate.storage.local import LocalBlobStore


@dataclass(frozen=True, slots=True)
class Services:
    """Everything a front end may call."""

    settings: Settings
    keys: KeyService
    generations: GenerationService
    image_files: ImageFileService
    thumbnails: Thumbnails
    images: ImageLibrary
    health: HealthService
    usage: UsageService
    providers: ProviderStatusService
    idempotency: IdempotencyService
    traffic: TrafficService
    lanes: ModelLanes
    jobs: JobService
    budgets: BudgetService
    job_runs: JobRuns
    webhooks: WebhookDeliveries
    metrics: Metrics
    maintenance: MaintenanceService
    outbound: OutboundClient
    """The SSRF-guarded client for URLs imagegate must not trust blindly (webhooks, OIDC)."""


def _build_blob_store(settings: Settings) -> BlobStore:
    if settings.storage.backend == "local":
        return LocalBlobStore(settings.storage_root, settings.base_url)
    from imagegate.storage.s3 import S3BlobStore  # aiobotocore only when asked for

    return S3BlobStore(settings.storage.s3, settings.base_url)


def _semantic_index(settings: Settings) -> SemanticIndex | None:
    if not (settings.cache.enabled and settings.cache.semantic):
        return None
    from imagegate.cache.semantic import MiniLMIndex  # numpy and torch only when asked for

    return MiniLMIndex(settings.cache.semantic_threshold)


def _prompt_enhancer(settings: Settings, client: UpstreamClient) -> PromptEnhancer:
    """Off unless a chat endpoint is configured; it shares the providers' connection pool."""
    chat: ChatModel | None = None
    if settings.enhancer.base_url:
        chat = ChatCompletions(settings.enhancer, client)
    return PromptEnhancer(chat, settings.enhancer)


@dataclass(frozen=True, slots=True)
class _SharedState:
    """The rate limiter and the cache's shared tier: in this process's memory, or in Redis
    for every replica (one connection pool for both, closed last)."""

    limiter: RateLimiter
    cache_tier: CacheTier | None
    aclose: Callable[[], Awaitable[None]]
    degraded: Callable[[], str | None] = lambda: None


def _shared_state(settings: Settings) -> _SharedState:
    if settings.redis_url is None:
        memory = MemoryRateLimiter()
        return _SharedState(memory, None, memory.aclose)
    # the redis client only when asked for
    from imagegate.cache.redis import RedisCache
    from imagegate.limits.redis import RedisRateLimiter, connection_pool

    pool = connection_pool(settings.redis_url, settings.redis_timeout_seconds)
    limiter: RateLimiter = RedisRateLimiter(pool, settings.redis_prefix)
    fail_open: FailOpenRateLimiter | None = None
    if settings.limits.on_redis_error == "open":
        limiter = fail_open = FailOpenRateLimiter(limiter)

    def degraded() -> str | None:
        return None if fail_open is None else fail_open.degraded

    tier = None
    if settings.cache.enabled:
        tier = RedisCache(
            pool, prefix=settings.redis_prefix, max_seconds=settings.cache.redis_seconds
        )

    async def aclose() -> None:
        if tier is not None:
            await tier.aclose()
        await limiter.aclose()
        await pool.disconnect()

    return _SharedState(limiter, tier, aclose, degraded)


@asynccontextmanager
async def build_services(settings: Settings) -> AsyncIterator[Services]:
    outbound = new_outbound_client(settings.outbound)  # first: a bad allowlist stops start-up
    blobs = _build_blob_store(settings)
    shared = _shared_state(settings)  # opens no connection yet
    http_client = new_client()
    try:
        assembly = build_router(settings, http_client)
    except BaseException:
        await http_client.aclose()
        await blobs.aclose()
        await shared.aclose()
        raise
    router = assembly.router
    engine = create_engine(settings.database_url, settings.database)
    sqlite = is_sqlite(settings.database_url)
    transactions = (
        SqliteThread(settings.database_url, settings.database, "writer")
        if sqlite
        else AsyncTransactions(engine)
    )
    reads = (
        SqliteThread(settings.database_url, settings.database, "reader")
        if sqlite
        else AsyncTransactions(engine)
    )
    generation_records = SqlGenerationRepository(engine, transactions.run)
    budgets = BudgetService(
        SqlBudgetRepository(engine, transactions.run), settings.budget_hold_seconds
    )
    cache = ResultCache(
        SqlCacheRepository(reads.run),
        MemoryCache(settings.cache.memory_entries, settings.cache.memory_seconds),
        shared=shared.cache_tier,
        enabled=settings.cache.enabled,
        ttl_seconds=settings.cache.ttl_seconds,
        per_user=settings.cache.scope == "user",
    )
    traffic = TrafficService(
        shared.limiter,
        requests_per_minute=settings.limits.requests_per_minute,
        images_per_minute=settings.limits.images_per_minute,
    )
    metrics = Metrics()
    lanes = ModelLanes(
        shared.limiter,
        on_wait=metrics.observe_queue_wait,
        capacity=router.capacity,
        concurrent_generations=settings.limits.concurrent_generations,
        max_waiting=settings.limits.queue_size,
        max_waiting_per_key=settings.limits.queue_size_per_key,
        slot_seconds=settings.resilience.deadline_seconds + 60,
    )
    job_queue = SqlJobQueue(engine, transactions.run)
    changes = Broadcast()
    metrics.watch(
        lambda: [LaneGauge(s.model, s.running, s.waiting) for s in lanes.stats()],
        router.breaker_states,
    )
    image_records = SqlImageRepository(engine, transactions.run)
    thumbnails = Thumbnails(blobs, image_records, settings.max_image_pixels)
    generations = GenerationService(
        router,
        blobs,
        MeteredGenerations(generation_records, metrics),
        cache,
        SingleFlight(
            SqlFlightRepository(engine, transactions.run),
            cache,
            cross_process=settings.cache.cross_process and settings.cache.enabled,
            lease_seconds=settings.cache.flight_lease_seconds,
        ),
        budgets,
        traffic,
        lanes,
        thumbnails,
        default_model=settings.default_model,
        max_pixels=settings.max_image_pixels,
        semantic=_semantic_index(settings),
        semantic_models=frozenset(settings.cache.semantic_models),
        enhancer=_prompt_enhancer(settings, http_client),
    )
    keys = KeyService(SqlKeyRepository(engine), settings.auth_cache_seconds, generate_secret)
    jobs = settings.jobs
    job_service = JobService(
        job_queue,
        generations,
        changes,
        max_attempts=jobs.max_attempts,
        batch_concurrency=jobs.batch_concurrency,
        poll_seconds=jobs.poll_seconds,
        check_webhook_url=partial(outbound.guard.check, param="webhook"),
    )
    try:
        if settings.database.auto_migrate:
            await upgrade_to_head(engine, settings.database.connect_timeout_seconds)
        yield Services(
            settings=settings,
            keys=keys,
            generations=generations,
            image_files=ImageFileService(blobs, thumbnails),
            thumbnails=thumbnails,
            images=ImageLibrary(image_records, generation_records, blobs),
            health=HealthService(
                SqlDatabase(engine, settings.database.connect_timeout_seconds + 2),
                blobs,
                (shared.degraded,),
            ),
            usage=UsageService(SqlUsageRepository(engine), budgets),
            providers=ProviderStatusService(router, assembly.provider_status),
            idempotency=IdempotencyService(
                SqlIdempotencyRepository(engine),
                ttl_seconds=settings.idempotency_ttl_seconds,
                wait_seconds=settings.resilience.deadline_seconds,
            ),
            traffic=traffic,
            lanes=lanes,
            jobs=job_service,
            budgets=budgets,
            webhooks=WebhookDeliveries(
                SqlWebhookOutbox(engine, transactions.run),
                WebhookSender(outbound, settings.webhooks),
                job_queue,
                job_service,
                base_url=settings.base_url,
                retry_delay=next_retry_delay,
            ),
            metrics=metrics,
            outbound=outbound,
            maintenance=MaintenanceService(
                SqlMaintenanceRepository(engine, transactions.run),
                image_records,
                blobs,
                thumbnails,
                grace_seconds=settings.cleanup_grace_seconds,
                retention_days=settings.retention_days,
            ),
            job_runs=JobRuns(
                job_queue,
                generations,
                keys,
                lanes,
                changes,
                lease_seconds=jobs.lease_seconds,
                retry_base_seconds=jobs.retry_base_seconds,
                max_rate_limit_wait_seconds=jobs.max_rate_limit_wait_seconds,
            ),
        )
    finally:
        await generations.flush()
        await thumbnails.aclose()
        await keys.aclose()
        await generation_records.aclose()
        await transactions.aclose()
        await reads.aclose()
        await lanes.aclose()
        await outbound.aclose()
        await shared.aclose()
        await router.aclose()
        await http_client.aclose()
        await engine.dispose()
        await blobs.aclose()
