"""A generation repository that reports every recorded generation to ``Metrics``.

Every outcome (made, cache hit, coalesced, failed) passes through ``record``, so the metrics
need no hook in the spine itself.
"""

from __future__ import annotations

from imagegate.db.base import GenerationRepository
from imagegate.models import BudgetSettlement, CacheEntry, FlightClaim, Generation, JobLink
from imagegate.observability.metrics import Metrics


class MeteredGenerations:
    def __init__(self, inner: GenerationRepository, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    async def record(
        self,
        generation: Generation,
        cache_entry: CacheEntry | None = None,
        flight: FlightClaim | None = None,
        job: JobLink | None = None,
        settlement: BudgetSettlement | None = None,
    ) -> None:
        await self._inner.record(generation, cache_entry, flight, job, settlement)
        self._metrics.observe_generation(generation)

    async def get(self, generation_id: str) -> Generation | None:
        return await self._inner.get(generation_id)
