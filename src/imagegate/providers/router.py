"""Routes a public model to the provider that serves it.

Today a model has one target, named by its catalogue entry (provider + upstream model). Retries,
circuit breakers and fallback chains across targets belong here too, and only here.
"""

from __future__ import annotations

from collections.abc import Mapping

from imagegate.catalog import ModelSpec, Target
from imagegate.errors import ModelNotFound
from imagegate.models import NormalizedRequest, ProviderResult
from imagegate.providers.base import ImageProvider


class Router:
    def __init__(self, providers: Mapping[str, ImageProvider]) -> None:
        self._providers = dict(providers)

    def serves(self, spec: ModelSpec) -> bool:
        """Whether a provider for ``spec`` is configured; unconfigured models are never called."""
        return spec.provider in self._providers

    async def generate(self, spec: ModelSpec, request: NormalizedRequest) -> ProviderResult:
        provider = self._providers.get(spec.provider)
        if provider is None:
            raise ModelNotFound(
                f"The model {spec.name!r} is not available: provider {spec.provider!r} is not "
                "configured on this gateway.",
                param="model",
            )
        return await provider.generate(request, Target(spec=spec, provider=spec.provider))

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
