"""The ImageProvider protocol every adapter implements."""

from __future__ import annotations

from typing import Protocol

from imagegate.catalog import ModelSpec
from imagegate.models import NormalizedRequest, ProviderResult


class ImageProvider(Protocol):
    """One upstream service. Adapters classify their failures into ``imagegate.errors``."""

    name: str

    async def generate(self, request: NormalizedRequest, upstream_model: str) -> ProviderResult:
        """Make ``request.n`` images, in ``request.output_format`` where the provider can."""
        ...

    async def aclose(self) -> None: ...


class ModelRouter(Protocol):
    """Sends a request for a public model to the target(s) that serve it."""

    def serves(self, spec: ModelSpec) -> bool:
        """Whether a configured provider can serve ``spec``."""
        ...

    async def generate(self, spec: ModelSpec, request: NormalizedRequest) -> ProviderResult: ...
