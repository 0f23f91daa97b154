"""Provider health as operators see it: configured providers and each target's circuit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from imagegate.providers.base import ModelRouter


@dataclass(frozen=True, slots=True)
class ProviderReport:
    providers: dict[str, str]
    """Each configured provider: ``ok`` or why it is left out (e.g. no api_key)."""
    targets: dict[str, str]
    """Each route target (``provider/upstream-model``): closed, open or half_open."""


class ProviderStatusService:
    def __init__(self, router: ModelRouter, provider_status: Mapping[str, str]) -> None:
        self._router = router
        self._provider_status = dict(provider_status)

    def report(self) -> ProviderReport:
        return ProviderReport(
            providers=dict(self._provider_status), targets=self._router.breaker_states()
        )
